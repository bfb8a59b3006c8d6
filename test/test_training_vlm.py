"""User-VLM stages on a tiny PaliGemma-2: the loss falls and only the intended weights change."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_models import build_tiny_paligemma
from transformers import PaliGemmaProcessor

from uservlm_ros.backends import mole
from uservlm_ros.training.align import AlignConfig, train_align
from uservlm_ros.training.config import load_config
from uservlm_ros.training.data import read_vlm_dataset
from uservlm_ros.training.dpo import DpoConfig, PreferenceCollator, train_dpo
from uservlm_ros.training.sft import SftConfig, add_adapters, train_sft
from uservlm_ros.training.synthetic import make_vlm_datasets
from uservlm_ros.training.vlm import PrefixSuffixCollator, load_vlm, prompt_for, trainable_names

FAST = ["batch_size=4", "grad_accum=1", "logging_steps=1", "progress=false", "warmup_ratio=0.0"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm")
    return build_tiny_paligemma(root / "base"), make_vlm_datasets(root / "data", count=4, size=32)


def _config(cls, workspace, stage, output, *overrides):
    base, data = workspace
    common = [f"model_path={base}", f"data_path={data / f'{stage}.jsonl'}", f"output_dir={output}"]
    return load_config(cls, None, [*common, *FAST, *overrides])


def _losses(output) -> list[float]:
    history = json.loads((output / "log_history.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def _weights(folder) -> dict[str, torch.Tensor]:
    from transformers import PaliGemmaForConditionalGeneration

    return PaliGemmaForConditionalGeneration.from_pretrained(folder).state_dict()


def test_align_trains_the_projector_only(workspace, tmp_path):
    output = tmp_path / "align"
    final = train_align(_config(AlignConfig, workspace, "align", output, "epochs=6", "lr=1e-2"))
    losses = _losses(output)
    assert losses[-1] < losses[0]
    before, after = _weights(workspace[0]), _weights(final)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all("multi_modal_projector" in name for name in changed)


def test_align_resumes_from_its_last_checkpoint(workspace, tmp_path):
    output = tmp_path / "align"
    train_align(_config(AlignConfig, workspace, "align", output, "epochs=1"))
    assert (output / "checkpoint-1").is_dir()
    train_align(_config(AlignConfig, workspace, "align", output, "epochs=2"))
    state = json.loads((output / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    steps = [
        e["step"] for e in json.loads((output / "log_history.json").read_text())["log_history"]
    ]
    assert steps[0] == 1 and steps[-1] == 2  # the history runs on from the first run


def test_sft_lora_adapts_the_language_model_only_with_labels_on_the_answer(workspace, tmp_path):
    config = _config(SftConfig, workspace, "sft", tmp_path / "sft", "epochs=6", "lr=1e-2")
    model, _ = load_vlm(config)
    names = trainable_names(add_adapters(model, config))
    assert names and all("lora_" in n and "language_model" in n for n in names)
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in names} == set(config.lora_targets)

    processor = PaliGemmaProcessor.from_pretrained(workspace[0])
    records, _ = read_vlm_dataset("sft", workspace[1] / "sft.jsonl")
    collator = PrefixSuffixCollator(
        processor, lambda r: prompt_for(r, r["question"], config), lambda r: r["answer"]
    )
    labels = collator(records[:1])["labels"][0]
    answer = processor.tokenizer(records[0]["answer"], add_special_tokens=False).input_ids
    assert labels[labels != -100].tolist() == [*answer, processor.tokenizer.eos_token_id]

    final = train_sft(config)
    losses = _losses(tmp_path / "sft")
    assert losses[-1] < losses[0]
    assert (final / "adapter_config.json").is_file()
    from safetensors.torch import load_file

    adapter = load_file(final / "adapter_model.safetensors")
    assert adapter and all("lora_" in k and "language_model" in k for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)


def test_sft_mole_routes_tokens_and_trains_the_router(workspace, tmp_path):
    config = _config(
        SftConfig, workspace, "sft", tmp_path / "mole", "epochs=4", "lr=1e-2", "method=mole"
    )
    model, _ = load_vlm(config)
    names = trainable_names(add_adapters(model, config))
    assert any(".router." in n for n in names) and any(".gate." in n for n in names)
    lora = [n for n in names if "lora_" in n]
    assert lora and all(
        n.split(".lora_")[0].endswith(("q_proj", "k_proj", "v_proj", "o_proj")) for n in lora
    )
    assert all("language_model" in n for n in names)

    final = train_sft(config)
    assert (final / mole.WEIGHTS_FILE).is_file()
    assert (tmp_path / "mole" / "checkpoint-4" / mole.WEIGHTS_FILE).is_file()
    fresh, _ = load_vlm(config)
    initial = {k: v.clone() for k, v in mole.mole_state(add_adapters(fresh, config)).items()}
    trained, _ = load_vlm(config)
    wrappers = mole.load_mole(trained, final)
    state = mole.mole_state(trained)
    routers = [k for k in state if k.endswith("router.weight")]
    # Zero-initialised expert outputs would give the router no gradient at the first step; after
    # training both the experts and (through the straight-through weights) the router moved.
    assert any(not torch.allclose(state[k], initial[k]) for k in routers)
    x = torch.randn(1, 5, wrappers[0].router.in_features)
    wrappers[0](x)
    assert wrappers[0].last_choice.shape == (1, 5)


def test_router_gets_gradient_through_the_straight_through_weights():
    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_proj = torch.nn.Linear(8, 16)
            self.up_proj = torch.nn.Linear(8, 16)
            self.down_proj = torch.nn.Linear(16, 8)
            self.act_fn = torch.nn.GELU()

    layer = mole.MoLEMLP(Mlp(), experts=3, rank=2, alpha=4, dropout=0.0)
    for pair in (layer.gate, layer.up, layer.down):
        torch.nn.init.normal_(pair[1])  # non-zero experts
    layer(torch.randn(2, 4, 8)).pow(2).sum().backward()
    assert layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0


def test_dpo_trains_lora_only_and_prefers_the_chosen_answers(workspace, tmp_path):
    config = _config(DpoConfig, workspace, "dpo", tmp_path / "dpo", "epochs=4", "lr=1e-2")
    assert (config.beta, DpoConfig().lr, DpoConfig().epochs) == (0.1, 2e-6, 1.0)
    processor = PaliGemmaProcessor.from_pretrained(workspace[0])

    records, _ = read_vlm_dataset("dpo", workspace[1] / "dpo.jsonl")
    batch = PreferenceCollator(processor, config)(records[:2])
    assert batch["input_ids"].shape[0] == 4  # chosen rows, then rejected rows
    completion = batch["input_ids"][0][batch["completion_mask"][0].bool()]
    chosen = processor.tokenizer(records[0]["chosen"], add_special_tokens=False).input_ids
    assert completion.tolist() == [*chosen, processor.tokenizer.eos_token_id]

    final = train_dpo(config)
    history = json.loads((tmp_path / "dpo" / "log_history.json").read_text())["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert math.isclose(losses[0], math.log(2), rel_tol=1e-3)  # policy == reference at start
    assert losses[-1] < losses[0]
    margins = [e["rewards/margins"] for e in history if "rewards/margins" in e]
    assert margins[-1] > 0
    from safetensors.torch import load_file

    adapter = load_file(final / "adapter_model.safetensors")
    assert adapter and all("lora_" in k and "language_model" in k for k in adapter)
