"""Export trained models into `models/<name>/` with a manifest the nodes verify at configure.

    uservlm export profiler --checkpoint runs/profiler/best --name profiler [--format onnx|torch]
    uservlm export vlm --checkpoint runs/sft/final --name user-vlm-sft [--merge] [--base PATH]

profiler, onnx (default): image encoder + zero-shot heads rebuilt from the text encoder, one
probability output per attribute (`backends.clip_profiler.export_onnx`); the ONNX outputs are
checked against torch on random images and the largest difference is recorded in the manifest
(metrics.onnx_parity_max_abs_diff); above `tolerance` the export fails. With --quantize int8
the ONNX graph's weights become int8 (dynamic quantization: activations are quantized per run,
so no calibration set can go stale); its fidelity against the fp32 graph on real face crops
(`sim.photos.face_crops`: cosine of the image embeddings, top-1 agreement per attribute) is
recorded in metrics.int8_fidelity, and below `min_cosine` the export fails. profiler, torch: the
CLIP folder itself. vlm: an sft/dpo adapter folder is copied as is (kind vlm-adapter, `base` =
the model it was trained on) or, with --merge, merged into its base and saved as safetensors
(kind vlm-merged); a full model folder (align) is saved as vlm-merged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from uservlm_ros.backends import mole
from uservlm_ros.core import labels, prompt
from uservlm_ros.core.errors import ModelLoadError, UservlmError
from uservlm_ros.core.manifest import Manifest, read_manifest, write_manifest

TRAINING_CONFIG = "training_config.yaml"
METRICS = "metrics.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", mole.CONFIG_FILE)
ADAPTER_FILES += (mole.WEIGHTS_FILE,)
PROCESSOR_FILES = ("processor_config.json", "tokenizer.json", "tokenizer_config.json")
PROCESSOR_FILES += ("special_tokens_map.json", "preprocessor_config.json", "chat_template.jinja")


class ExportError(UservlmError):
    """An export could not be produced or failed its check (e.g. ONNX parity)."""


def _read_json_yaml(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    training = folder / TRAINING_CONFIG
    metrics = folder / METRICS
    return (
        yaml.safe_load(training.read_text()) if training.is_file() else {},
        json.loads(metrics.read_text()) if metrics.is_file() else {},
    )


def onnx_parity(model, heads, onnx_path: Path, image_size: int, count: int = 4) -> float:
    """Largest |torch - onnxruntime| over the probability outputs on random images."""
    import onnxruntime as ort
    import torch

    from uservlm_ros.backends import clip_profiler

    rng = np.random.default_rng(0)
    crops = [
        rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8) for _ in range(count)
    ]
    pixels = clip_profiler.preprocess_crops(crops, image_size)
    with torch.no_grad():
        logits = clip_profiler.attribute_logits(model, pixels, heads)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = session.run(list(heads), {"pixel_values": pixels.numpy()})
    return max(
        float(np.abs(torch.softmax(logits[name], dim=-1).numpy() - output).max())
        for name, output in zip(heads, outputs, strict=True)
    )


QUANTIZATIONS = ("", "int8")
# Cosine similarity of int8 vs fp32 image embeddings below which an int8 export is refused.
MIN_COSINE = 0.99


def quantize_int8(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantization of an ONNX graph's MatMul/Gemm weights (per output channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    staged = int8.with_suffix(".pre.onnx")
    try:
        # shapes and fused ops first, so the quantizer sees whole MatMuls
        quant_pre_process(str(fp32), str(staged), skip_symbolic_shape=True)
        quantize_dynamic(
            str(staged),
            str(int8),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
        )
    finally:
        staged.unlink(missing_ok=True)


def int8_fidelity(fp32: Path, int8: Path, crops: list[np.ndarray], batch: int = 8) -> dict:
    """int8 vs fp32 ONNX profiler graphs on RGB face crops: cosine of the image embeddings
    (min, mean) and per attribute the fraction of crops whose top-1 class agrees."""
    import onnxruntime as ort

    from uservlm_ros.backends import clip_profiler

    sessions = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32, int8)
    ]
    size = int(sessions[0].get_inputs()[0].shape[-1])
    names = [o.name for o in sessions[0].get_outputs()]
    if clip_profiler.EMBEDDING_OUTPUT not in names:
        raise ExportError(f"{fp32} has no {clip_profiler.EMBEDDING_OUTPUT} output; export it again")
    results: list[dict[str, list[np.ndarray]]] = [{n: [] for n in names} for _ in sessions]
    for start in range(0, len(crops), batch):
        pixels = clip_profiler.preprocess_crops(crops[start : start + batch], size).numpy()
        for session, result in zip(sessions, results, strict=True):
            for name, value in zip(
                names, session.run(names, {"pixel_values": pixels}), strict=True
            ):
                result[name].append(value)
    full, quant = ({n: np.concatenate(v) for n, v in r.items()} for r in results)
    embed = clip_profiler.EMBEDDING_OUTPUT
    cosine = np.sum(full[embed] * quant[embed], axis=1) / (
        np.linalg.norm(full[embed], axis=1) * np.linalg.norm(quant[embed], axis=1)
    )
    return {
        "crops": len(crops),
        "embedding_cosine_min": float(cosine.min()),
        "embedding_cosine_mean": float(cosine.mean()),
        "top1_agreement": {
            name: float(np.mean(full[name].argmax(1) == quant[name].argmax(1)))
            for name in names
            if name != embed
        },
    }


def export_profiler(
    checkpoint: Path,
    out_dir: Path,
    name: str,
    version: str = "0.1.0",
    export_format: str = "onnx",
    attributes: tuple[str, ...] = labels.ATTRIBUTES,
    tolerance: float = 1e-4,
    quantize: str = "",
    min_cosine: float = MIN_COSINE,
) -> Path:
    """Export a profiler checkpoint (a CLIP folder); returns the manifest path."""
    from uservlm_ros.backends import clip_profiler
    from uservlm_ros.training.profiler import load_clip

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if not (checkpoint / "config.json").is_file():
        raise ExportError(f"{checkpoint} is not a model folder (no config.json)")
    training, metrics = _read_json_yaml(checkpoint)
    base = str(training.get("model_path", checkpoint))
    model, tokenizer = load_clip(checkpoint, "cpu")
    model.eval()
    if export_format == "torch":
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(checkpoint, out_dir, ignore=shutil.ignore_patterns("trainer_state.pt"))
        manifest = Manifest(
            name=name,
            kind="profiler-clip-torch",
            version=version,
            base=base,
            labels={a: list(labels.LABEL_SETS[a]) for a in attributes},
            templates={a: list(labels.PROMPT_TEMPLATES[a]) for a in attributes},
            training=training,
            metrics=metrics,
        )
        return write_manifest(out_dir, manifest)
    if export_format != "onnx":
        raise ExportError(f"unknown profiler export format {export_format!r} (onnx or torch)")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r} (int8, or none)")
    heads = clip_profiler.zero_shot_heads(model, tokenizer, attributes)
    clip_profiler.export_onnx(
        model, heads, out_dir, name, version, base=base, training=training, metrics=metrics
    )
    size = int(model.config.vision_config.image_size)
    difference = onnx_parity(model, heads, out_dir / clip_profiler.ONNX_FILE, size)
    if difference > tolerance:
        raise ExportError(
            f"ONNX parity check failed: outputs differ from torch by {difference:.2e} "
            f"(> {tolerance:.0e}); the export in {out_dir} is not usable"
        )
    manifest = read_manifest(out_dir)
    manifest.metrics = {**manifest.metrics, "onnx_parity_max_abs_diff": difference}
    if quantize == "int8":
        manifest.metrics.update(_quantize_export(out_dir, min_cosine))
    return write_manifest(out_dir, manifest)


def _quantize_export(out_dir: Path, min_cosine: float) -> dict[str, Any]:
    """Replace out_dir's fp32 profiler.onnx by its int8 version if it is faithful enough;
    returns the metrics to record."""
    from uservlm_ros.backends import clip_profiler
    from uservlm_ros.sim.photos import face_crops

    fp32 = out_dir / clip_profiler.ONNX_FILE
    int8 = out_dir / "profiler.int8.onnx"
    try:
        quantize_int8(fp32, int8)
        fidelity = int8_fidelity(fp32, int8, face_crops())
        if fidelity["embedding_cosine_min"] < min_cosine:
            raise ExportError(
                f"int8 check failed: image embeddings of real face crops have cosine "
                f"{fidelity['embedding_cosine_min']:.4f} with fp32 (< {min_cosine}); "
                f"the fp32 export in {out_dir} is usable, the int8 one is not written"
            )
        int8.replace(fp32)
    finally:
        int8.unlink(missing_ok=True)
    return {"quantization": "int8-dynamic", "int8_fidelity": fidelity}


def _copy_files(source: Path, target: Path, names: tuple[str, ...]) -> None:
    for file in names:
        if (source / file).is_file():
            shutil.copy2(source / file, target / file)


def export_vlm(
    checkpoint: Path,
    out_dir: Path,
    name: str,
    version: str = "0.1.0",
    merge: bool = False,
    base: str = "",
) -> Path:
    """Export an align/sft/dpo result (final/ folder); returns the manifest path."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    training, _ = _read_json_yaml(checkpoint)
    is_adapter = (checkpoint / "adapter_config.json").is_file()
    if not is_adapter and not (checkpoint / "config.json").is_file():
        raise ExportError(f"{checkpoint} holds neither a peft adapter nor a model")
    if is_adapter:
        adapter = json.loads((checkpoint / "adapter_config.json").read_text())
        base = base or adapter.get("base_model_name_or_path") or training.get("model_path", "")
    else:
        base = base or training.get("model_path", "")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    if is_adapter and not merge:
        _copy_files(checkpoint, out_dir, ADAPTER_FILES + PROCESSOR_FILES)
        kind = "vlm-adapter"
    else:
        _save_merged(checkpoint, out_dir, base, is_adapter)
        kind = "vlm-merged"
    manifest = Manifest(
        name=name,
        kind=kind,
        version=version,
        base=base,
        prompt_template=prompt.TEMPLATE,
        training=training,
    )
    return write_manifest(out_dir, manifest)


def _save_merged(checkpoint: Path, out_dir: Path, base: str, is_adapter: bool) -> None:
    from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

    if is_adapter and (checkpoint / mole.CONFIG_FILE).is_file():
        raise ExportError("a MoLE adapter routes per token and cannot be merged; export it as is")
    source = base if is_adapter else checkpoint
    if is_adapter and not (Path(base) / "config.json").is_file():
        raise ModelLoadError(f"base model {base!r} of {checkpoint} not found; pass --base PATH")
    model = PaliGemmaForConditionalGeneration.from_pretrained(source)
    if is_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, checkpoint).merge_and_unload()
    model.save_pretrained(out_dir, safe_serialization=True)
    processor_folder = checkpoint if (checkpoint / "processor_config.json").is_file() else source
    PaliGemmaProcessor.from_pretrained(processor_folder).save_pretrained(out_dir)
