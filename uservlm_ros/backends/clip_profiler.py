"""The `clip` profiler: a CLIP-family image-text model classifying face crops zero-shot.

FLYP-style heads (the papers' method): per class, the L2-normalised text embeddings of its
prompts over every template (`core/labels.class_prompts`) are averaged and re-normalised; a crop's
logits are the learned logit scale times the cosine similarity of its image embedding with each
class. The same functions serve training (imported by the profiler training code), export to
ONNX, and the user_profiler_node backend.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from uservlm_ros.core import labels
from uservlm_ros.core.manifest import Manifest, write_manifest

# OpenAI CLIP's image normalisation (FaRL uses the same).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ONNX_FILE = "profiler.onnx"
ONNX_KIND = "profiler-clip-onnx"


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected embedding."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def zero_shot_heads(
    model: Any, tokenizer: Any, attributes: Iterable[str] = labels.ATTRIBUTES
) -> dict[str, torch.Tensor]:
    """Per attribute a [num_classes, dim] tensor of unit rows: each class's mean prompt embedding.

    The model is a transformers CLIPModel (or anything with `get_text_features`); the tokenizer a
    CLIP tokenizer called as `tokenizer(texts, padding=True, return_tensors="pt")`.
    """
    heads = {}
    device = _model_device(model)
    for attribute in attributes:
        prompts = labels.class_prompts(attribute)
        flat = [text for class_texts in prompts for text in class_texts]
        tokens = tokenizer(flat, padding=True, return_tensors="pt")
        embeds = _features(
            model.get_text_features(
                input_ids=tokens["input_ids"].to(device),
                attention_mask=tokens["attention_mask"].to(device),
            )
        ).float()
        embeds = torch.nn.functional.normalize(embeds, dim=-1)
        per_class = embeds.reshape(len(prompts), len(prompts[0]), -1).mean(dim=1)
        heads[attribute] = torch.nn.functional.normalize(per_class, dim=-1)
    return heads


def image_embeddings(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """L2-normalised image embeddings [batch, dim] (float32)."""
    embeds = _features(model.get_image_features(pixel_values=pixel_values)).float()
    return torch.nn.functional.normalize(embeds, dim=-1)


def attribute_logits(
    model: Any, pixel_values: torch.Tensor, heads: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per attribute [batch, num_classes] logits: logit_scale.exp() * cos(image, class)."""
    embeds = image_embeddings(model, pixel_values)
    scale = model.logit_scale.exp().float()
    return {name: scale * embeds @ head.to(embeds.device).T for name, head in heads.items()}


def preprocess_crops(rgb_crops: Sequence[np.ndarray], image_size: int = 224) -> torch.Tensor:
    """(h, w, 3) uint8 RGB crops -> [batch, 3, image_size, image_size] CLIP-normalised float32."""
    if not rgb_crops:
        return torch.empty(0, 3, image_size, image_size)
    batch = np.empty((len(rgb_crops), image_size, image_size, 3), dtype=np.float32)
    for index, crop in enumerate(rgb_crops):
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
            raise ValueError(f"expected (h, w, 3) uint8 RGB crops, got {crop.shape} {crop.dtype}")
        if crop.shape[:2] != (image_size, image_size):
            crop = cv2.resize(crop, (image_size, image_size), interpolation=cv2.INTER_AREA)
        batch[index] = crop
    batch = (batch / 255.0 - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


class _ProbabilityGraph(torch.nn.Module):
    """Image encoder + fixed heads -> one softmax output per attribute (the exported graph)."""

    def __init__(self, model: Any, heads: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.names = list(heads)
        for name, head in heads.items():
            self.register_buffer(f"head_{name}", head.detach().float().clone())

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        heads = {name: getattr(self, f"head_{name}") for name in self.names}
        logits = attribute_logits(self.model, pixel_values, heads)
        return tuple(torch.softmax(logits[name], dim=-1) for name in self.names)


def export_onnx(
    model: Any,
    heads: dict[str, torch.Tensor],
    out_dir: Path,
    name: str,
    version: str = "0.1.0",
    base: str = "",
    image_size: int | None = None,
    opset: int = 17,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write `out_dir/profiler.onnx` (input `pixel_values`, one probability output per attribute,
    named after it) and its manifest (kind profiler-clip-onnx); returns the manifest path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = image_size or int(model.config.vision_config.image_size)
    graph = _ProbabilityGraph(model, heads).eval()
    parameter = next(model.parameters())
    dummy = torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype)
    names = list(heads)
    with torch.no_grad(), warnings.catch_warnings():
        # shape checks traced as constants are fine: the image size is fixed by the model
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph,
            (dummy,),
            str(out_dir / ONNX_FILE),
            input_names=["pixel_values"],
            output_names=names,
            dynamic_axes={"pixel_values": {0: "batch"}, **{n: {0: "batch"} for n in names}},
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter needs no onnxscript
        )
    manifest = Manifest(
        name=name,
        kind=ONNX_KIND,
        version=version,
        base=base,
        labels={attribute: list(labels.LABEL_SETS[attribute]) for attribute in names},
        templates={attribute: list(labels.PROMPT_TEMPLATES[attribute]) for attribute in names},
        training=training or {},
        metrics=metrics or {},
    )
    return write_manifest(out_dir, manifest)
