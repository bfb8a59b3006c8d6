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
from uservlm_ros.training import vlm
from uservlm_ros.training.config import option


@dataclass
class AlignConfig(vlm.VlmStageConfig):
    output_dir: str = option("runs/align", "checkpoints, logs and final/ (a full model folder)")
    epochs: float = option(1.0, "training epochs (papers: 1)")
    lr: float = option(1e-4, "peak learning rate (papers: 1e-4)")


def freeze_all_but_projector(model) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad = vlm.PROJECTOR in name


def train_align(config: AlignConfig) -> Path:
    model, processor = vlm.load_vlm(config)
    freeze_all_but_projector(model)
    train, val = vlm.read_stage_data("align", config)
    collator = vlm.PrefixSuffixCollator(processor, lambda r: IMAGE_TOKEN, lambda r: r["caption"])
    trainer = vlm.stage_trainer(config, model, train, val, collator)
    return vlm.train_and_save(trainer, processor, config, val, vlm.last_checkpoint(config))


def main(config: AlignConfig) -> int:
    print(f"projector written to {train_align(config)}")
    return 0
