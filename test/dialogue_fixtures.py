"""A tiny PaliGemma with two tiny LoRA adapters on disk, for the dialogue tests.

The adapters get random (non-zero) LoRA weights so that switching adapters visibly changes the
greedy output of the random model.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from tiny_models import build_tiny_paligemma

ADAPTERS = ("instruct", "dpo")


@cache
def tiny_vlm_with_adapters(root: Path) -> tuple[Path, dict[str, Path]]:
    """(model folder, {adapter name: adapter folder}) under root, built once per process."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import PaliGemmaForConditionalGeneration

    model_dir = build_tiny_paligemma(root / "tiny-paligemma")
    adapters = {}
    for seed, name in enumerate(ADAPTERS, start=1):
        model = PaliGemmaForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
        torch.manual_seed(seed)
        config = LoraConfig(
            r=4,
            lora_alpha=32,
            target_modules=["q_proj", "v_proj", "o_proj"],
            init_lora_weights=False,
        )
        peft_model = get_peft_model(model, config)
        with torch.no_grad():  # large enough to change the argmax of the random model
            for parameter_name, parameter in peft_model.named_parameters():
                if "lora_" in parameter_name:
                    parameter.mul_(4.0)
        adapters[name] = root / f"adapter-{name}"
        peft_model.save_pretrained(adapters[name])
    return model_dir, adapters
