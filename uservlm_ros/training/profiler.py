"""Profiler training: FLYP (contrastive fine-tuning of a CLIP-family model) + optional MIM.

    uservlm train profiler --config config/training/profiler.yaml \
        --set model_path=models/farl-base data_path=data/fairface output_dir=runs/profiler

FLYP ("Finetune like you pretrain"): the image and text encoders are fine-tuned with the same
symmetric InfoNCE loss as in pre-training, on (face, caption) pairs whose captions come from the
label templates (`caption: profile` -> `core.labels.profile_text`, the papers' sentence; or
`caption: attribute` -> one `core.labels.PROMPT_TEMPLATES` prompt of one known attribute).
Captions that are identical within a batch count as positives of each other (several faces share
"a photo of a woman."), so the loss does not push apart true pairs. At each evaluation the
zero-shot heads are rebuilt from the text encoder (`backends.clip_profiler.zero_shot_heads`), and
per-attribute accuracy and macro-F1 are measured on the validation split; the best epoch (mean
macro-F1 over attributes) is kept in `output_dir/best`, the latest (with optimizer state, for
resume) in `output_dir/last`. Training stops after `patience` epochs without improvement.

Optional MIM term (FaRL-style masked image modelling), total loss = InfoNCE + mim_weight * MIM:
a random `mim_mask_ratio` (default 0.4, FaRL/BEiT's ratio) of the image patches is replaced by a
learned mask token after the patch embedding; a linear head predicts, from the encoder's output
at each masked patch, that patch's pixels (the CLIP-normalised input, normalised per patch, as in
MAE). FaRL predicts discrete tokens of a pre-trained image tokenizer instead; no such tokenizer is
available offline, and per-patch pixels need none.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from uservlm_ros.backends import clip_profiler
from uservlm_ros.core import labels
from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.metrics import accuracy, macro_f1
from uservlm_ros.training.config import (
    check_choice,
    option,
    resolve_device,
    save_config,
    seed_everything,
    use_bf16,
)
from uservlm_ros.training.data import FaceRecord, load_rgb, read_face_dataset

CAPTION_MODES = ("profile", "attribute")
STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "training_config.yaml"
# Files of a model folder that are not weights: copied into every checkpoint so that each one
# is a complete CLIP folder (tokenizer and image processor included).
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
    "processor_config.json",
)


@dataclass
class ProfilerConfig:
    model_path: str = option("", "CLIP-family model folder (HF format: model + tokenizer)")
    data_path: str = option("", "face dataset: FairFace folder, split folder or CSV/JSONL file")
    output_dir: str = option("runs/profiler", "checkpoints (best/, last/) and history.jsonl")
    attributes: tuple = option(labels.ATTRIBUTES, "attributes evaluated (zero-shot heads)")
    caption: str = option("profile", "caption per face: profile (profile_text) or attribute")
    epochs: int = option(10, "maximum epochs (FLYP: 10)")
    batch_size: int = option(32, "faces per optimizer micro-batch (and in-batch negatives)")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    lr: float = option(1e-5, "AdamW learning rate (FLYP: 1e-5)")
    weight_decay: float = option(0.1, "AdamW weight decay (FLYP: 0.1)")
    warmup_steps: int = option(500, "linear warm-up steps, capped at 10% of all steps")
    patience: int = option(3, "stop after this many evaluations without improvement")
    seed: int = option(0, "random seed (the papers average 5 seeds)")
    val_fraction: float = option(0.1, "held-out share when the data has no validation split")
    mim_weight: float = option(0.0, "weight of the masked-image-modelling term (0 = off)")
    mim_mask_ratio: float = option(0.4, "share of patches masked for MIM")
    flip: bool = option(True, "random horizontal flips of training faces")
    device: str = option("auto", "auto, cpu or cuda[:N]")
    bf16: bool = option(True, "bf16 autocast on GPUs that support it")
    num_workers: int = option(0, "DataLoader worker processes for image decoding")
    eval_batch_size: int = option(64, "faces per evaluation batch")
    max_steps: int = option(0, "stop after this many optimizer steps (0 = no limit)")
    resume: bool = option(True, "continue from output_dir/last when it exists")
    progress: bool = option(True, "show progress bars")

    def check(self) -> None:
        if not self.model_path:
            raise ConfigError("profiler config needs model_path (a CLIP-family model folder)")
        if not self.data_path:
            raise ConfigError("profiler config needs data_path (docs/training.md)")
        check_choice("caption", self.caption, CAPTION_MODES)
        unknown = set(self.attributes) - set(labels.ATTRIBUTES)
        if unknown:
            raise ConfigError(f"unknown attributes {sorted(unknown)}; known: {labels.ATTRIBUTES}")
        if not 0.0 < self.mim_mask_ratio < 1.0:
            raise ConfigError("mim_mask_ratio must be between 0 and 1")
        if min(self.epochs, self.batch_size, self.grad_accum, self.eval_batch_size) < 1:
            raise ConfigError("epochs, batch_size, grad_accum and eval_batch_size must be >= 1")


# --- losses -----------------------------------------------------------------------------------


def flyp_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: torch.Tensor, caption_ids: list
) -> torch.Tensor:
    """Symmetric InfoNCE over unit embeddings; equal captions are positives of each other."""
    logits = scale * image_embeds @ text_embeds.T
    ids = torch.tensor([hash(c) for c in caption_ids], device=logits.device)
    targets = (ids[:, None] == ids[None, :]).float()
    targets = targets / targets.sum(dim=1, keepdim=True)
    image_to_text = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    text_to_image = -(targets * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


def text_embeddings(model, tokens) -> torch.Tensor:
    """L2-normalised text embeddings [batch, dim] (float32), with gradients."""
    output = model.get_text_features(
        input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
    )
    embeds = output if isinstance(output, torch.Tensor) else output.pooler_output
    return F.normalize(embeds.float(), dim=-1)


class MaskedImageModelling(torch.nn.Module):
    """FaRL-style MIM on a ViT image encoder: mask patch embeddings, regress masked pixels."""

    def __init__(self, vision_model: torch.nn.Module, patch_size: int, mask_ratio: float):
        super().__init__()
        self.vision_model = [vision_model]  # a list: not registered as a submodule
        hidden = vision_model.config.hidden_size
        self.patch_size = patch_size
        self.mask_ratio = mask_ratio
        self.mask_token = torch.nn.Parameter(torch.zeros(hidden))
        self.head = torch.nn.Linear(hidden, patch_size * patch_size * 3)
        torch.nn.init.normal_(self.mask_token, std=0.02)
        self._mask: torch.Tensor | None = None
        vision_model.embeddings.patch_embedding.register_forward_hook(self._replace_masked)

    def _replace_masked(self, module, inputs, output: torch.Tensor) -> torch.Tensor | None:
        if self._mask is None:
            return None
        batch, hidden, rows, cols = output.shape
        mask = self._mask.view(batch, 1, rows, cols)
        token = self.mask_token.to(output.dtype).view(1, hidden, 1, 1)
        return torch.where(mask, token, output)

    def _patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """[batch, 3, H, W] -> [batch, patches, p*p*3], normalised per patch (MAE)."""
        p = self.patch_size
        patches = F.unfold(pixels.float(), kernel_size=p, stride=p).transpose(1, 2)
        mean = patches.mean(dim=-1, keepdim=True)
        std = patches.var(dim=-1, keepdim=True, unbiased=False).add(1e-6).sqrt()
        return (patches - mean) / std

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        targets = self._patches(pixels)
        batch, count, _ = targets.shape
        masked = max(1, round(count * self.mask_ratio))
        order = torch.rand(batch, count, device=pixels.device).argsort(dim=1)
        mask = torch.zeros(batch, count, dtype=torch.bool, device=pixels.device)
        mask.scatter_(1, order[:, :masked], True)
        self._mask = mask
        try:
            hidden = self.vision_model[0](pixel_values=pixels).last_hidden_state
        finally:
            self._mask = None
        predicted = self.head(hidden[:, -count:].float())  # drop a leading class token
        return F.mse_loss(predicted[mask], targets[mask])


# --- data -------------------------------------------------------------------------------------


class FaceDataset(torch.utils.data.Dataset):
    """Faces resized to the model's input (uint8), with their captions."""

    def __init__(self, records: list[FaceRecord], image_size: int, train: bool, config):
        self.records = records
        self.image_size = image_size
        self.train = train
        self.config = config

    def __len__(self) -> int:
        return len(self.records)

    def caption(self, record: FaceRecord, rng: random.Random) -> str:
        if self.config.caption == "profile":
            return record.caption
        known = [a for a in labels.ATTRIBUTES if record.label(a) != labels.UNKNOWN]
        attribute = rng.choice(known)
        index = labels.LABEL_SETS[attribute].index(record.label(attribute))
        return rng.choice(labels.class_prompts(attribute)[index])

    def __getitem__(self, index: int) -> tuple[np.ndarray, str, int]:
        import cv2

        record = self.records[index]
        image = cv2.resize(
            load_rgb(record.image), (self.image_size, self.image_size), interpolation=cv2.INTER_AREA
        )
        rng = random.Random(torch.randint(0, 2**31, ()).item()) if self.train else random.Random(0)
        if self.train and self.config.flip and rng.random() < 0.5:
            image = np.ascontiguousarray(image[:, ::-1])
        return image, self.caption(record, rng), index


def _collate(items: list) -> tuple[list[np.ndarray], list[str], list[int]]:
    images, captions, indices = zip(*items, strict=True)
    return list(images), list(captions), list(indices)


# --- evaluation -------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, tokenizer, loader, records, attributes, device, autocast) -> dict[str, Any]:
    """Per-attribute accuracy and macro-F1 of the zero-shot heads rebuilt from the text encoder."""
    model.eval()
    with autocast():
        heads = clip_profiler.zero_shot_heads(model, tokenizer, attributes)
    truth: dict[str, list[str]] = {a: [] for a in attributes}
    predicted: dict[str, list[str]] = {a: [] for a in attributes}
    for images, _, indices in loader:
        pixels = clip_profiler.preprocess_crops(images, images[0].shape[0]).to(device)
        with autocast():
            logits = clip_profiler.attribute_logits(model, pixels, heads)
        for attribute in attributes:
            best = logits[attribute].argmax(dim=-1).tolist()
            for index, choice in zip(indices, best, strict=True):
                label = records[index].label(attribute)
                if label != labels.UNKNOWN:
                    truth[attribute].append(label)
                    predicted[attribute].append(labels.LABEL_SETS[attribute][choice])
    metrics: dict[str, Any] = {}
    for attribute in attributes:
        if truth[attribute]:
            metrics[attribute] = {
                "accuracy": accuracy(truth[attribute], predicted[attribute]),
                "macro_f1": macro_f1(
                    truth[attribute], predicted[attribute], labels.LABEL_SETS[attribute]
                ),
                "count": len(truth[attribute]),
            }
    scored = [m["macro_f1"] for m in metrics.values()]
    metrics["mean_macro_f1"] = float(np.mean(scored)) if scored else 0.0
    return metrics


# --- training ---------------------------------------------------------------------------------


def _save_checkpoint(model, tokenizer, config: ProfilerConfig, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for name in PROCESSOR_FILES:
        source = Path(config.model_path) / name
        if source.is_file() and not (folder / name).exists():
            shutil.copy2(source, folder / name)
    save_config(config, folder / CONFIG_FILE)


def _scheduler(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_clip(folder: Path | str, device: str):
    """A CLIP-family model (needs get_image_features / get_text_features / logit_scale)."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder).to(device)
    if not hasattr(model, "logit_scale") or not hasattr(model, "get_image_features"):
        raise ConfigError(f"{folder} is not a CLIP-family model (no logit_scale)")
    return model, AutoTokenizer.from_pretrained(folder)


def train_profiler(config: ProfilerConfig) -> dict[str, Any]:
    """Run FLYP (+MIM) training; returns the best validation metrics."""
    from tqdm.auto import tqdm

    seed_everything(config.seed)
    device = resolve_device(config.device)
    bf16 = use_bf16(config.bf16, device)
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / CONFIG_FILE)
    train_records, val_records = read_face_dataset(
        Path(config.data_path), config.val_fraction, config.seed
    )
    train_records = [r for r in train_records if r.caption]  # faces without any label teach nothing

    last = output / "last"
    resuming = config.resume and (last / STATE_FILE).is_file()
    model, tokenizer = load_clip(last if resuming else config.model_path, device)
    vision = model.config.vision_config
    image_size = int(vision.image_size)
    mim = None
    if config.mim_weight > 0:
        mim = MaskedImageModelling(
            model.vision_model, int(vision.patch_size), config.mim_mask_ratio
        )
        mim.to(device)
    parameters = list(model.parameters()) + (list(mim.parameters()) if mim else [])
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)

    generator = torch.Generator().manual_seed(config.seed)
    train_loader = torch.utils.data.DataLoader(
        FaceDataset(train_records, image_size, True, config),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_records) > config.batch_size,
        num_workers=config.num_workers,
        collate_fn=_collate,
        generator=generator,
    )
    val_loader = torch.utils.data.DataLoader(
        FaceDataset(val_records, image_size, False, config),
        batch_size=config.eval_batch_size,
        num_workers=config.num_workers,
        collate_fn=_collate,
    )
    steps_per_epoch = max(1, len(train_loader) // config.grad_accum)
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    scheduler = _scheduler(optimizer, max(1, min(config.warmup_steps, total // 10)), total)

    state = {"epoch": 0, "step": 0, "best": -1.0, "bad_epochs": 0, "history": []}
    if resuming:
        saved = torch.load(last / STATE_FILE, map_location=device, weights_only=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if mim is not None and saved.get("mim"):
            mim.load_state_dict(saved["mim"])
        torch.set_rng_state(saved["rng"])
        generator.set_state(saved["generator"])
        state = saved["state"]

    def autocast():
        if bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    best_metrics: dict[str, Any] = {}
    while state["epoch"] < config.epochs and not (config.max_steps and state["step"] >= total):
        model.train()
        epoch_losses = []
        bar = tqdm(
            train_loader,
            desc=f"profiler epoch {state['epoch'] + 1}/{config.epochs}",
            disable=not config.progress,
        )
        for micro, (images, captions, _) in enumerate(bar):
            pixels = clip_profiler.preprocess_crops(images, image_size).to(device)
            tokens = tokenizer(
                captions,
                padding=True,
                truncation=True,
                max_length=model.config.text_config.max_position_embeddings,
                return_tensors="pt",
            ).to(device)
            with autocast():
                image_embeds = clip_profiler.image_embeddings(model, pixels)
                text_embeds = text_embeddings(model, tokens)
                scale = model.logit_scale.exp().clamp(max=100.0).float()
                loss = flyp_loss(image_embeds, text_embeds, scale, captions)
                if mim is not None:
                    loss = loss + config.mim_weight * mim(pixels)
            (loss / config.grad_accum).backward()
            epoch_losses.append(loss.item())
            if (micro + 1) % config.grad_accum == 0:
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                if config.max_steps and state["step"] >= total:
                    break
        state["epoch"] += 1
        metrics = evaluate(
            model, tokenizer, val_loader, val_records, config.attributes, device, autocast
        )
        metrics.update(epoch=state["epoch"], step=state["step"], train_loss=np.mean(epoch_losses))
        state["history"].append(metrics)
        with (output / "history.jsonl").open("a") as handle:
            handle.write(json.dumps(metrics, default=float) + "\n")
        if metrics["mean_macro_f1"] > state["best"]:
            state["best"], state["bad_epochs"] = metrics["mean_macro_f1"], 0
            _save_checkpoint(model, tokenizer, config, output / "best")
            (output / "best" / METRICS_FILE).write_text(json.dumps(metrics, default=float))
            best_metrics = metrics
        else:
            state["bad_epochs"] += 1
        _save_checkpoint(model, tokenizer, config, last)
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "mim": mim.state_dict() if mim is not None else None,
                "rng": torch.get_rng_state(),
                "generator": generator.get_state(),
                "state": state,
            },
            last / STATE_FILE,
        )
        if state["bad_epochs"] >= config.patience:
            break
    if not best_metrics and (output / "best" / METRICS_FILE).is_file():
        best_metrics = json.loads((output / "best" / METRICS_FILE).read_text())
    return best_metrics


def main(config: ProfilerConfig) -> int:
    metrics = train_profiler(config)
    print(json.dumps({"best": str(Path(config.output_dir) / "best"), **metrics}, default=float))
    return 0
