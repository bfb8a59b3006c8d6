"""Exports: profiler ONNX (parity, manifest, loaded by the clip profiler backend), VLM adapter and
merged folders (loaded by the PaliGemma responder backend), and the `uservlm train/export` CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny_models import build_tiny_clip, build_tiny_paligemma

from uservlm_ros.backends import clip_profiler
from uservlm_ros.cli import main as uservlm
from uservlm_ros.core import labels, prompt
from uservlm_ros.core.errors import ModelLoadError
from uservlm_ros.core.manifest import read_manifest
from uservlm_ros.training.align import AlignConfig
from uservlm_ros.training.config import load_config
from uservlm_ros.training.dpo import DpoConfig
from uservlm_ros.training.export import ExportError, export_profiler, export_vlm
from uservlm_ros.training.profiler import ProfilerConfig, load_clip, train_profiler
from uservlm_ros.training.sft import SftConfig, train_sft
from uservlm_ros.training.synthetic import make_face_dataset, make_vlm_datasets

CONFIGS = Path(__file__).resolve().parents[1] / "config" / "training"
QUIET = ["progress=false", "batch_size=8", "warmup_steps=1"]


@pytest.fixture(scope="module")
def profiler_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("profiler")
    clip = build_tiny_clip(root / "clip")
    faces = make_face_dataset(root / "faces", count=16, size=32)
    config = load_config(
        ProfilerConfig,
        None,
        [
            f"model_path={clip}",
            f"data_path={faces}",
            f"output_dir={root / 'run'}",
            "epochs=1",
            *QUIET,
        ],
    )
    train_profiler(config)
    return root / "run" / "best", clip


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm")
    base = build_tiny_paligemma(root / "base")
    data = make_vlm_datasets(root / "data", count=4, size=32)
    overrides = [f"model_path={base}", f"data_path={data / 'sft.jsonl'}", "progress=false"]
    overrides += ["batch_size=4", "grad_accum=1", "lr=1e-2", "epochs=2"]
    final = train_sft(load_config(SftConfig, None, [*overrides, f"output_dir={root / 'sft'}"]))
    return final, base, root


def test_profiler_onnx_export_matches_torch_and_its_manifest_round_trips(profiler_run, tmp_path):
    best, clip = profiler_run
    out = tmp_path / "models" / "profiler"
    export_profiler(best, out, "profiler", version="1.2.0")
    manifest = read_manifest(out)
    assert manifest.kind == "profiler-clip-onnx" and manifest.model_id == "profiler@1.2.0"
    assert manifest.base == str(clip) and manifest.training["lr"] == 1e-5
    assert manifest.labels == {a: list(labels.LABEL_SETS[a]) for a in labels.ATTRIBUTES}
    assert manifest.templates["gender"] == list(labels.PROMPT_TEMPLATES["gender"])
    assert manifest.metrics["onnx_parity_max_abs_diff"] < 1e-4
    assert "mean_macro_f1" in manifest.metrics and "profiler.onnx" in manifest.files
    with (out / "profiler.onnx").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelLoadError, match="sha256"):
        read_manifest(out)


def test_the_clip_profiler_backend_loads_the_onnx_export(profiler_run, tmp_path):
    from uservlm_ros.backends.profiler import PROFILERS, ProfilerOptions

    best, _ = profiler_run
    out = tmp_path / "profiler"
    export_profiler(best, out, "profiler")
    backend = PROFILERS.create("clip", ProfilerOptions(path=str(out)))
    assert backend.model_id == "profiler@0.1.0"
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    estimates = backend.estimate(crops, frozenset(labels.ATTRIBUTES))
    model, tokenizer = load_clip(best, "cpu")
    heads = clip_profiler.zero_shot_heads(model, tokenizer)
    with torch.no_grad():
        logits = clip_profiler.attribute_logits(
            model, clip_profiler.preprocess_crops(crops, 32), heads
        )
    for index, estimate in enumerate(estimates):
        expected = torch.softmax(logits["gender"][index], dim=-1).numpy()
        assert np.allclose(estimate.probabilities["gender"], expected, atol=1e-4)


def test_int8_profiler_export_records_its_fidelity_and_runs_in_the_backend(profiler_run, tmp_path):
    from uservlm_ros.backends.profiler import PROFILERS, ProfilerOptions

    best, _ = profiler_run
    fp32, int8 = tmp_path / "fp32", tmp_path / "int8"
    export_profiler(best, fp32, "profiler")
    export_profiler(best, int8, "profiler", quantize="int8", min_cosine=0.9)
    manifest = read_manifest(int8)
    assert manifest.metrics["quantization"] == "int8-dynamic"
    fidelity = manifest.metrics["int8_fidelity"]
    assert fidelity["crops"] == 12 + 40  # the photos' 12 head crops and 40 lfw faces
    assert 0.9 <= fidelity["embedding_cosine_min"] <= fidelity["embedding_cosine_mean"] <= 1.0001
    assert set(fidelity["top1_agreement"]) == set(labels.ATTRIBUTES)
    assert all(0.0 <= v <= 1.0 for v in fidelity["top1_agreement"].values())
    assert manifest.metrics["onnx_parity_max_abs_diff"] < 1e-4  # of the fp32 graph it came from
    assert "profiler.int8.onnx" not in manifest.files and "profiler.onnx" in manifest.files
    # the int8 graph's matrix products run on int8 weights
    import onnx

    ops = {node.op_type for node in onnx.load(str(int8 / "profiler.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops

    crops = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), np.uint8) for i in range(3)]
    attributes = frozenset(labels.ATTRIBUTES)
    full = PROFILERS.create("clip", ProfilerOptions(path=str(fp32))).estimate(crops, attributes)
    quant = PROFILERS.create(
        "clip",
        ProfilerOptions(path=str(int8)),
    ).estimate(crops, attributes)
    for a, b in zip(full, quant, strict=True):
        for name in labels.ATTRIBUTES:
            assert np.allclose(a.probabilities[name], b.probabilities[name], atol=0.05)


def test_int8_export_below_the_cosine_limit_fails_and_leaves_the_fp32_export(
    profiler_run, tmp_path
):
    best, _ = profiler_run
    out = tmp_path / "int8"
    with pytest.raises(ExportError, match=r"int8 check failed: .* cosine .* fp32 export .* usable"):
        export_profiler(best, out, "profiler", quantize="int8", min_cosine=1.01)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "profiler.onnx"]
    assert read_manifest(out).metrics.get("quantization") is None
    with pytest.raises(ExportError, match="unknown quantization 'int4'"):
        export_profiler(best, out, "profiler", quantize="int4")


def test_profiler_torch_export_is_a_verified_clip_folder(profiler_run, tmp_path):
    best, _ = profiler_run
    out = tmp_path / "profiler-torch"
    export_profiler(best, out, "profiler-torch", export_format="torch")
    assert read_manifest(out).kind == "profiler-clip-torch"
    model, _ = load_clip(out, "cpu")
    assert model.config.vision_config.image_size == 32


def test_vlm_adapter_and_merged_exports_load_in_the_responder_backend(sft_adapter, tmp_path):
    from uservlm_ros.backends.paligemma import PaliGemmaBackend
    from uservlm_ros.backends.vlm import GenerationRequest, VlmOptions

    final, base, _ = sft_adapter
    adapter_dir = tmp_path / "user-vlm-sft"
    export_vlm(final, adapter_dir, "user-vlm-sft")
    manifest = read_manifest(adapter_dir)
    assert manifest.kind == "vlm-adapter" and manifest.base == str(base)
    assert manifest.prompt_template == prompt.TEMPLATE and manifest.training["method"] == "lora"
    assert "adapter_model.safetensors" in manifest.files
    merged_dir = tmp_path / "user-vlm-sft-merged"
    export_vlm(final, merged_dir, "user-vlm-sft-merged", merge=True)
    assert read_manifest(merged_dir).kind == "vlm-merged"

    image = np.full((32, 32, 3), 128, dtype=np.uint8)
    question = prompt.build_prompt("What should I wear today?")
    answers = {}
    for name, options in {
        "adapter": VlmOptions(str(base), {"sft": str(adapter_dir)}, "sft", "cpu", "float32"),
        "merged": VlmOptions(str(merged_dir), device="cpu", dtype="float32"),
        "base": VlmOptions(str(base), device="cpu", dtype="float32"),
    }.items():
        backend = PaliGemmaBackend(dataclasses.replace(options, warmup=False), log=lambda _: None)
        backend.load()
        answers[name] = backend.generate(GenerationRequest(image, question, 6)).text
    assert answers["adapter"] == answers["merged"]
    assert answers["adapter"] != answers["base"]  # the adapter changed the model


def test_a_mole_adapter_cannot_be_merged(sft_adapter, tmp_path):
    final, _, _root = sft_adapter
    fake = tmp_path / "mole"
    fake.mkdir()
    for file in final.iterdir():
        (fake / file.name).write_bytes(file.read_bytes())
    (fake / "mole.json").write_text("{}")
    with pytest.raises(ExportError, match="MoLE"):
        export_vlm(fake, tmp_path / "out", "mole", merge=True)


def test_shipped_configs_hold_the_papers_settings():
    profiler = load_config(
        ProfilerConfig, CONFIGS / "profiler.yaml", ["model_path=m", "data_path=d"]
    )
    assert (profiler.lr, profiler.weight_decay, profiler.epochs, profiler.patience) == (
        1e-5,
        0.1,
        10,
        3,
    )
    align = load_config(AlignConfig, CONFIGS / "align.yaml", ["model_path=m", "data_path=d"])
    assert (align.epochs, align.lr) == (1.0, 1e-4)
    sft = load_config(SftConfig, CONFIGS / "sft.yaml", ["model_path=m", "data_path=d"])
    assert (sft.lora_r, sft.lora_alpha, sft.lora_dropout, sft.epochs, sft.lr) == (
        16,
        32,
        0.05,
        2.0,
        2e-5,
    )
    assert set(sft.lora_targets) == {"q_proj", "k_proj", "v_proj", "o_proj"} | {
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    dpo = load_config(DpoConfig, CONFIGS / "dpo.yaml", ["model_path=m", "data_path=d"])
    assert (dpo.epochs, dpo.lr, dpo.beta, dpo.lora_r) == (1.0, 2e-6, 0.1, 16)
    for cls, name in ((ProfilerConfig, "profiler"), (AlignConfig, "align"), (SftConfig, "sft")):
        keys = set(yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()))
        assert keys == {field.name for field in dataclasses.fields(cls)}


def test_cli_trains_and_exports_the_profiler(tmp_path, capsys):
    clip = build_tiny_clip(tmp_path / "clip")
    faces = make_face_dataset(tmp_path / "faces", count=8, size=32)
    code = uservlm(
        [
            "train",
            "profiler",
            "--config",
            str(CONFIGS / "profiler.yaml"),
            "--set",
            f"model_path={clip}",
            f"data_path={faces}",
            f"output_dir={tmp_path / 'run'}",
            "epochs=1",
            "num_workers=0",
            "device=cpu",
            *QUIET,
        ]
    )
    assert code == 0 and (tmp_path / "run" / "best" / "metrics.json").is_file()
    out = tmp_path / "models" / "profiler"
    code = uservlm(
        [
            "export",
            "profiler",
            "--checkpoint",
            str(tmp_path / "run" / "best"),
            "--name",
            "profiler",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and read_manifest(out).kind == "profiler-clip-onnx"
    assert "exported" in capsys.readouterr().out


def test_cli_rejects_unknown_config_keys(tmp_path, capsys):
    code = uservlm(["train", "sft", "--set", "model_path=m", "data_path=d", "lora_rank=8"])
    assert code != 0
    assert "lora_rank" in capsys.readouterr().err


def test_a_mole_adapter_loads_in_the_responder_beside_a_lora_adapter(sft_adapter, tmp_path):
    from uservlm_ros.backends import mole
    from uservlm_ros.backends.paligemma import PaliGemmaBackend
    from uservlm_ros.backends.vlm import GenerationRequest, VlmOptions

    lora_final, base, root = sft_adapter
    data = root / "data" / "sft.jsonl"
    overrides = [f"model_path={base}", f"data_path={data}", "progress=false", "batch_size=4"]
    overrides += ["grad_accum=1", "lr=1e-2", "epochs=2", "method=mole"]
    mole_final = train_sft(
        load_config(SftConfig, None, [*overrides, f"output_dir={root / 'mole'}"])
    )
    mole_dir, lora_dir = tmp_path / "user-vlm-mole", tmp_path / "user-vlm-sft"
    export_vlm(mole_final, mole_dir, "user-vlm-mole")
    export_vlm(lora_final, lora_dir, "user-vlm-sft")
    assert mole.is_mole_adapter(mole_dir) and read_manifest(mole_dir).training["method"] == "mole"

    image = np.full((32, 32, 3), 128, dtype=np.uint8)
    question = prompt.build_prompt("What should I wear today?")

    def answers(adapters: dict[str, str]) -> dict[str, str]:
        backend = PaliGemmaBackend(
            VlmOptions(str(base), adapters, device="cpu", dtype="float32", warmup=False),
            log=lambda _: None,
        )
        backend.load()
        # each adapter twice, interleaved: switching must not leak one adapter into another
        order = [*backend.adapters, *backend.adapters]
        results = [
            (a, backend.generate(GenerationRequest(image, question, 8, a)).text) for a in order
        ]
        for name in backend.adapters:
            assert len({text for a, text in results if a == name}) == 1, name
        return dict(results)

    both = answers({"mole": str(mole_dir), "sft": str(lora_dir)})
    alone = {**answers({"sft": str(lora_dir)}), **answers({"mole": str(mole_dir)})}
    assert both == alone  # the MoLE experts act only while their adapter is selected
    assert both["mole"] != both["base"]
    with pytest.raises(ModelLoadError, match="one MoLE adapter"):
        PaliGemmaBackend(
            VlmOptions(
                str(base),
                {"a": str(mole_dir), "b": str(mole_dir)},
                device="cpu",
                dtype="float32",
                warmup=False,
            ),
            log=lambda _: None,
        ).load()
