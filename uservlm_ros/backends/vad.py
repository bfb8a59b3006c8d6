"""Silero VAD (ONNX, run with onnxruntime): one speech probability per 32 ms frame at 16 kHz.

The model file ships in the `silero-vad` package (installed without its torch dependencies by
`make setup`). The model is recurrent: it carries a state from frame to frame and, since v5,
looks at the last 64 samples of the previous frame as context, so frames must be fed in order
and `reset()` called between independent streams.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uservlm_ros.core.errors import ModelLoadError

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


class SileroVad:
    """Speech probability of consecutive 512-sample frames; see the module docstring."""

    def __init__(self, path: str | Path = "", threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path) if path else default_vad_path()
        if not self.path.is_file():
            raise ModelLoadError(f"Silero VAD model {self.path} not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
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
