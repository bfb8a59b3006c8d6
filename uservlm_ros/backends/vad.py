"""Silero VAD (ONNX, run with onnxruntime): one speech probability per 32 ms frame at 16 kHz.

The model file ships in the `silero-vad` package (installed without its torch dependencies by
`make setup`). The model is recurrent: it carries a state from frame to frame and, since v5,
looks at the last 64 samples of the previous frame as context, so frames must be fed in order
and `reset()` called between independent streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from uservlm_ros.core.errors import ModelLoadError
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.registry import Registry

FRAME_SAMPLES = 512  # at 16 kHz; the model accepts no other size
CONTEXT_SAMPLES = 64
SAMPLE_RATE = 16000


def default_vad_path() -> Path:
    """The Silero VAD ONNX file of the installed `silero-vad` package."""
    try:
        import silero_vad
    except ImportError as error:
        raise ModelLoadError(
            "the silero-vad package is not installed (make setup installs it); or set "
            "vad.model_path to a silero_vad.onnx file"
        ) from error
    return Path(silero_vad.__file__).parent / "data" / "silero_vad.onnx"


class Vad(Protocol):
    """Speech probability (0..1) of consecutive 32 ms frames at 16 kHz, fed in order."""

    @property
    def model_id(self) -> str: ...

    def reset(self) -> None:
        """Forget the stream (between independent streams)."""

    def __call__(self, frame: np.ndarray) -> float: ...


@dataclass(frozen=True)
class SileroOptions:
    path: str = setting("", name="vad.model_path")
    """Silero VAD ONNX file ("" = the one in the silero-vad package)"""
    threads: int = setting(1, name="vad.threads", min=1, max=16)
    """CPU threads of the VAD model"""


class SileroVad:
    """Speech probability of consecutive 512-sample frames; see the module docstring."""

    def __init__(self, options: SileroOptions | None = None) -> None:
        import onnxruntime as ort

        options = options or SileroOptions()
        self.path = Path(options.path) if options.path else default_vad_path()
        if not self.path.is_file():
            raise ModelLoadError(f"Silero VAD model {self.path} not found")
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.threads
        session_options.inter_op_num_threads = 1
        session_options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own types for a bad file
            raise ModelLoadError(f"cannot load the VAD model {self.path}: {error}") from error
        names = {i.name for i in self._session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise ModelLoadError(
                f"{self.path} is not a Silero VAD v5/v6 model (inputs {sorted(names)})"
            )
        self._sr = np.array(SAMPLE_RATE, np.int64)
        self.reset()

    @property
    def model_id(self) -> str:
        return f"silero-vad:{self.path.name}"

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, np.float32)

    def __call__(self, frame: np.ndarray) -> float:
        """The probability (0..1) that this 512-sample float32 frame holds speech."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"Silero VAD takes {FRAME_SAMPLES}-sample frames, got {len(frame)}")
        x = np.concatenate([self._context, np.asarray(frame, np.float32)])[None, :]
        output, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": self._sr}
        )
        self._context = x[0, -CONTEXT_SAMPLES:]
        return float(output[0, 0])


# `vad.backend` of speech_node. Adding a detector: a class like SileroVad, its options, one line.
DETECTORS: Registry[Vad] = Registry("voice activity detector", "")
DETECTORS.add("silero", SileroVad, SileroOptions, "Silero VAD (ONNX, onnxruntime)")
