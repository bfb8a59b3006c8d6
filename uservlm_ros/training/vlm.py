"""What the User-VLM stages (align, sft, dpo) share: config, model loading, data, the Trainer.

The model is PaliGemma 2 (SigLIP vision tower -> multimodal projector -> Gemma 2). Every stage
feeds the processor the prompt of `core.prompt.build_prompt` as prefix and the target text as
suffix, so the processor's labels cover the answer only (prefix-LM: the prefix is attended
bidirectionally and not scored). Each stage writes `output_dir/final` (a model or adapter folder
with the processor and `training_config.yaml`), Trainer checkpoints `output_dir/checkpoint-N`
(resumed when `resume: true`), and `output_dir/log_history.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.prompt import MODES, USER_AWARE, build_prompt
from uservlm_ros.training.config import (
    check_choice,
    option,
    resolve_device,
    save_config,
    seed_everything,
)
from uservlm_ros.training.data import load_rgb, read_vlm_dataset

FINAL = "final"
CONFIG_FILE = "training_config.yaml"
LANGUAGE_MODEL = "language_model"
PROJECTOR = "multi_modal_projector"
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass
class VlmStageConfig:
    """Keys every VLM stage has; each stage's dataclass sets the papers' defaults."""

    model_path: str = option("", "PaliGemma-2 / User-VLM model folder (model + processor)")
    data_path: str = option("", "folder with train.jsonl (+ val.jsonl) or one JSONL file")
    output_dir: str = option("runs/vlm", "checkpoints, logs and final/")
    epochs: float = option(1.0, "training epochs")
    lr: float = option(1e-4, "peak learning rate (cosine schedule after warm-up)")
    warmup_ratio: float = option(0.03, "share of steps spent warming the learning rate up")
    weight_decay: float = option(0.0, "AdamW weight decay")
    batch_size: int = option(4, "samples per device micro-batch")
    grad_accum: int = option(4, "micro-batches per optimizer step")
    max_steps: int = option(-1, "stop after this many optimizer steps (-1 = by epochs)")
    prompt_mode: str = option(USER_AWARE, "user_aware or profile_prompt (user_profile in prompt)")
    val_fraction: float = option(0.0, "held-out share for evaluation when there is no val.jsonl")
    save_steps: int = option(0, "checkpoint every N steps (0 = each epoch)")
    save_total_limit: int = option(2, "checkpoints kept")
    logging_steps: int = option(10, "log the loss every N steps")
    seed: int = option(0, "random seed")
    device: str = option("auto", "auto, cpu or cuda[:N]")
    bf16: bool = option(True, "bf16 mixed precision on GPUs that support it")
    gradient_checkpointing: bool = option(False, "trade compute for memory on large models")
    num_workers: int = option(0, "DataLoader worker processes")
    resume: bool = option(True, "resume from the last checkpoint in output_dir when present")
    progress: bool = option(True, "show progress bars")

    def check(self) -> None:
        if not self.model_path:
            raise ConfigError("config needs model_path (a PaliGemma-2 / User-VLM folder)")
        if not self.data_path:
            raise ConfigError("config needs data_path (docs/training.md)")
        check_choice("prompt_mode", self.prompt_mode, MODES)
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be >= 1")


@dataclass
class LoraOptions:
    """The LoRA settings of sft and dpo (papers: r 16, alpha 32, dropout 0.05)."""

    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = option(0.05, "dropout on the LoRA input")
    lora_targets: tuple = option(ATTENTION + MLP, "language-model projections that get LoRA")


def language_model_targets(names: tuple[str, ...]) -> str:
    """A peft target regex for these projections in the language model only (not SigLIP)."""
    return rf".*{LANGUAGE_MODEL}.*\.({'|'.join(names)})$"


def lora_config(options: LoraOptions, names: tuple[str, ...] | None = None):
    from peft import LoraConfig

    return LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=language_model_targets(tuple(names or options.lora_targets)),
        task_type="CAUSAL_LM",
    )


def load_vlm(config: VlmStageConfig):
    """(model, processor) in float32 (mixed precision comes from the Trainer's bf16)."""
    from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

    folder = Path(config.model_path)
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"{folder}/config.json not found: model_path must be a PaliGemma-2 / User-VLM folder"
        )
    processor = PaliGemmaProcessor.from_pretrained(folder)
    model = PaliGemmaForConditionalGeneration.from_pretrained(folder)
    return model, processor


def trainable_names(model) -> list[str]:
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def prompt_for(record: dict[str, Any], question: str, config: VlmStageConfig) -> str:
    return build_prompt(question, config.prompt_mode, record.get("user_profile", ""))


class PrefixSuffixCollator:
    """Records -> processor batches: image + prefix prompt, suffix target (labels on it only)."""

    def __init__(self, processor, prefix, suffix):
        self.processor = processor
        self.prefix = prefix  # record -> prompt text (starting with <image>)
        self.suffix = suffix  # record -> target text

    def __call__(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return self.processor(
            images=[load_rgb(Path(r["image"])) for r in records],
            text=[self.prefix(r) for r in records],
            suffix=[self.suffix(r) for r in records],
            padding="longest",
            return_tensors="pt",
        )


def training_arguments(config: VlmStageConfig, args_class=None, **extra):
    """Trainer arguments from a stage config (progress bars, checkpoints, bf16, accumulation)."""
    from transformers import TrainingArguments

    from uservlm_ros.training.config import use_bf16

    device = resolve_device(config.device)
    per_epoch = config.save_steps <= 0
    return (args_class or TrainingArguments)(
        output_dir=config.output_dir,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.lr,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of all steps
        weight_decay=config.weight_decay,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        activation_checkpointing=config.gradient_checkpointing,
        bf16=use_bf16(config.bf16, device),
        use_cpu=device == "cpu",
        save_strategy="epoch" if per_epoch else "steps",
        save_steps=500 if per_epoch else config.save_steps,  # ignored per epoch
        save_total_limit=config.save_total_limit,
        eval_strategy="no",
        logging_steps=config.logging_steps,
        logging_first_step=True,
        seed=config.seed,
        dataloader_num_workers=config.num_workers,
        remove_unused_columns=False,
        report_to=[],
        disable_tqdm=not config.progress,
        **extra,
    )


def last_checkpoint(config: VlmStageConfig) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(config.output_dir)
    return get_last_checkpoint(str(folder)) if config.resume and folder.is_dir() else None


def read_stage_data(stage: str, config: VlmStageConfig):
    seed_everything(config.seed)
    return read_vlm_dataset(stage, Path(config.data_path), config.val_fraction, config.seed)


def stage_trainer(
    config: VlmStageConfig, model, train, val, collator, trainer_class=None, args=None, **extra
):
    """The stage's Trainer (transformers', or trainer_class with its own `extra` keywords) on
    the train records, with the val records (if any) for evaluation."""
    from transformers import Trainer

    return (trainer_class or Trainer)(
        model=model,
        args=training_arguments(config) if args is None else args,
        train_dataset=train,
        eval_dataset=val or None,
        data_collator=collator,
        **extra,
    )


def train_and_save(trainer, processor, config: VlmStageConfig, val, resume: str | None) -> Path:
    """Train (from the checkpoint `resume`, if any), evaluate when there are val records, and
    save final/ (weights or adapter + processor + config) and the loss history."""
    trainer.train(resume_from_checkpoint=resume)
    evaluation = trainer.evaluate() if val else None
    final = Path(config.output_dir) / FINAL
    trainer.save_model(str(final))
    processor.save_pretrained(final)
    save_config(config, final / CONFIG_FILE)
    history = {"log_history": trainer.state.log_history, "evaluation": evaluation or {}}
    (Path(config.output_dir) / "log_history.json").write_text(json.dumps(history, indent=1))
    return final
