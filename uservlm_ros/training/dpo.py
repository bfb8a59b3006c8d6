"""User-VLM stage 3, preference tuning: LoRA DPO with trl's DPOTrainer.

    uservlm train dpo --config config/training/dpo.yaml \
        --set model_path=models/user-vlm-sft data_path=data/synthetic/vlm/dpo.jsonl \
        output_dir=runs/dpo

The papers' settings: LoRA (r 16, alpha 32, dropout 0.05), 1 epoch, lr 2e-6, beta 0.1. The
reference model is the policy with its LoRA disabled, i.e. `model_path`: to start from an sft
adapter, export it merged first (`uservlm export vlm --merge`) and give that folder. Batches
are built by one processor call per batch (prompt as prefix, chosen / rejected answer as
suffix), so the completion tokens are exactly the suffix and PaliGemma's prefix-LM attention
is kept; trl computes the DPO loss. `output_dir/final` is a peft adapter folder on top of the
model DPO started from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uservlm_ros.training import vlm
from uservlm_ros.training.config import option
from uservlm_ros.training.data import load_rgb


@dataclass
class DpoConfig(vlm.VlmStageConfig, vlm.LoraOptions):
    output_dir: str = option("runs/dpo", "checkpoints, logs and final/ (an adapter folder)")
    epochs: float = option(1.0, "training epochs (papers: 1)")
    lr: float = option(2e-6, "peak learning rate (papers: 2e-6)")
    beta: float = option(0.1, "DPO beta: strength of the pull towards the reference (papers: 0.1)")


class PreferenceCollator:
    """Rows [chosen..., rejected...] as trl expects, with a completion mask over the suffix."""

    def __init__(self, processor, config: DpoConfig) -> None:
        self.processor = processor
        self.config = config

    def __call__(self, records: list[dict]) -> dict:
        images = [load_rgb(Path(r["image"])) for r in records]
        prompts = [vlm.prompt_for(r, r["prompt"], self.config) for r in records]
        batch = self.processor(
            images=images * 2,
            text=prompts * 2,
            suffix=[r["chosen"] for r in records] + [r["rejected"] for r in records],
            padding="longest",
            return_tensors="pt",
        )
        batch["completion_mask"] = batch["token_type_ids"] * batch["attention_mask"]
        del batch["labels"]
        return batch


def train_dpo(config: DpoConfig) -> Path:
    from datasets import Dataset
    from trl import DPOConfig as TrlDpoConfig
    from trl import DPOTrainer

    model, processor = vlm.load_vlm(config)
    train, val = vlm.read_stage_data("dpo", config)

    def table(records):
        return Dataset.from_list([{**r, "image": str(r["image"])} for r in records])

    trainer = vlm.stage_trainer(
        config,
        model,
        table(train),
        table(val) if val else None,
        PreferenceCollator(processor, config),
        trainer_class=DPOTrainer,
        args=vlm.training_arguments(config, TrlDpoConfig, beta=config.beta, max_length=None),
        ref_model=None,
        processing_class=processor,
        peft_config=vlm.lora_config(config),
    )
    return vlm.train_and_save(trainer, processor, config, val, vlm.last_checkpoint(config))


def main(config: DpoConfig) -> int:
    print(f"adapter written to {train_dpo(config)}")
    return 0
