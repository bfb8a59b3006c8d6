"""User-VLM stage 1, alignment: train only the multimodal projector on profile captions.

    uservlm train align --config config/training/align.yaml \
        --set model_path=models/paligemma2-3b data_path=data/synthetic/vlm/align.jsonl \
        output_dir=runs/align

The prompt is the image alone; the target is the user's profile caption ("The person appears to
be ..."). The vision tower and the language model stay frozen; the papers train 1 epoch at lr
1e-4. `output_dir/final` is a full model folder (only the projector differs from model_path);
export it with `uservlm export vlm --checkpoint runs/align/final --merge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uservlm_ros.core.prompt import IMAGE_TOKEN
from uservlm_ros.training.config import option
from uservlm_ros.training.vlm import (
    PROJECTOR,
    PrefixSuffixCollator,
    VlmStageConfig,
    finish,
    last_checkpoint,
    load_vlm,
    read_stage_data,
    training_arguments,
)


@dataclass
class AlignConfig(VlmStageConfig):
    output_dir: str = option("runs/align", "checkpoints, logs and final/ (a full model folder)")
    epochs: float = option(1.0, "training epochs (papers: 1)")
    lr: float = option(1e-4, "peak learning rate (papers: 1e-4)")


def freeze_all_but_projector(model) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad = PROJECTOR in name


def train_align(config: AlignConfig) -> Path:
    from transformers import Trainer

    model, processor = load_vlm(config)
    freeze_all_but_projector(model)
    train, val = read_stage_data("align", config)
    collator = PrefixSuffixCollator(processor, lambda r: IMAGE_TOKEN, lambda r: r["caption"])
    trainer = Trainer(
        model=model,
        args=training_arguments(config),
        train_dataset=train,
        eval_dataset=val or None,
        data_collator=collator,
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(config))
    return finish(trainer, processor, config, trainer.evaluate() if val else None)


def main(config: AlignConfig) -> int:
    print(f"projector written to {train_align(config)}")
    return 0
