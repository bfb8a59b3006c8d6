"""User-VLM stage 2, instruction tuning: LoRA (or MoLE) on the language model.

    uservlm train sft --config config/training/sft.yaml \
        --set model_path=runs/align/final data_path=data/synthetic/vlm/sft.jsonl \
        output_dir=runs/sft

`method: lora` (default): LoRA r 16, alpha 32, dropout 0.05 on q, k, v, o, gate, up and down of
the language model; 2 epochs at lr 2e-5 (the papers). `method: mole`: attention LoRA plus three
LoRA experts on every MLP with a per-token top-1 router (see mole.py). The vision tower and the
projector stay frozen; the loss covers the answer only. `output_dir/final` is a peft adapter
folder (plus mole.* files for MoLE) for `uservlm export vlm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from uservlm_ros.backends import mole
from uservlm_ros.training import vlm
from uservlm_ros.training.config import check_choice, option

METHODS = ("lora", "mole")


@dataclass
class SftConfig(vlm.VlmStageConfig, vlm.LoraOptions):
    output_dir: str = option("runs/sft", "checkpoints, logs and final/ (an adapter folder)")
    epochs: float = option(2.0, "training epochs (papers: 2)")
    lr: float = option(2e-5, "peak learning rate (papers: 2e-5)")
    method: str = option("lora", "lora, or mole (LoRA experts on the MLP + attention LoRA)")
    mole_experts: int = option(3, "LoRA experts per MLP for method mole")

    def check(self) -> None:
        super().check()
        check_choice("method", self.method, METHODS)


class MoleCheckpoints(TrainerCallback):
    """Trainer checkpoints of a peft model hold the LoRA adapter only: add the MoLE experts."""

    def __init__(self, model, config: SftConfig) -> None:
        self.model = model
        self.config = config

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        c = self.config
        mole.save_mole(self.model, folder, c.mole_experts, c.lora_r, c.lora_alpha)


def add_adapters(model, config: SftConfig):
    """peft LoRA (attention only for MoLE) and, for MoLE, the routed MLP experts."""
    from peft import get_peft_model

    names = vlm.ATTENTION if config.method == "mole" else None
    model = get_peft_model(model, vlm.lora_config(config, names))
    if config.method == "mole":
        mole.apply_mole(
            model, config.mole_experts, config.lora_r, config.lora_alpha, config.lora_dropout
        )
    return model


def train_sft(config: SftConfig) -> Path:
    model, processor = vlm.load_vlm(config)
    model = add_adapters(model, config)
    train, val = vlm.read_stage_data("sft", config)
    collator = vlm.PrefixSuffixCollator(
        processor, lambda r: vlm.prompt_for(r, r["question"], config), lambda r: r["answer"]
    )
    callbacks = [MoleCheckpoints(model, config)] if config.method == "mole" else None
    trainer = vlm.stage_trainer(config, model, train, val, collator, callbacks=callbacks)
    resume = vlm.last_checkpoint(config)
    if resume and config.method == "mole":
        mole.restore_mole(model, Path(resume))
    final = vlm.train_and_save(trainer, processor, config, val, resume)
    if config.method == "mole":
        mole.save_mole(model, final, config.mole_experts, config.lora_r, config.lora_alpha)
    return final


def main(config: SftConfig) -> int:
    print(f"adapter written to {train_sft(config)}")
    return 0
