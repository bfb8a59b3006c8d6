"""Audio in, utterances out: resampling, 32 ms framing, Silero VAD and the segmenter, in order.

One `Listener` per audio stream. The speech node feeds it the blocks it captures; `uservlm
transcribe`, the evaluation and the benchmark feed it whole files through `transcribe_audio`,
so every path cuts utterances with the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from uservlm_ros.backends.asr import AsrBackend, AsrResult
from uservlm_ros.backends.audio import AudioBlock, StreamResampler
from uservlm_ros.core.utterances import (
    SAMPLE_RATE,
    Framer,
    TranscriptFilter,
    Utterance,
    UtteranceSegmenter,
    VadConfig,
)


@dataclass
class HeardUtterance:
    """An utterance (or a tentative copy of one) and the VAD compute spent on its frames."""

    utterance: Utterance
    vad_ms: float

    @property
    def key(self) -> tuple[int, float]:
        return self.utterance.key


class Listener:
    """See the module docstring. Not thread-safe: one thread feeds it."""

    def __init__(self, vad: Callable[[np.ndarray], float], config: VadConfig) -> None:
        self.vad = vad
        self.config = config
        self.framer = Framer(config.frame_samples, SAMPLE_RATE)
        self.segmenter = UtteranceSegmenter(config)
        self.resampler = StreamResampler()
        self._vad_ms = 0.0  # compute spent since the open utterance started
        self.frames = 0
        self.last_probability = 0.0

    def push_block(self, block: AudioBlock) -> list[HeardUtterance]:
        """One captured block (any rate, any channel count); AudioError if it is malformed."""
        return self.push(self.resampler(block), block.start)

    def push(self, samples: np.ndarray, start: float) -> list[HeardUtterance]:
        """16 kHz mono float32 samples captured from `start` (s)."""
        heard = []
        for frame, frame_start in self.framer.push(samples, start):
            heard += self._frame(frame, frame_start)
        return heard

    def flush(self) -> list[HeardUtterance]:
        """End of the stream: the last partial frame and any open utterance."""
        heard = []
        for frame, frame_start in self.framer.flush():
            heard += self._frame(frame, frame_start)
        heard += [HeardUtterance(u, self._take_vad_ms()) for u in self.segmenter.flush()]
        return heard

    def discard_open(self) -> None:
        """Forget the open utterance: it was taken as finished from a tentative copy."""
        self.segmenter.discard_open()
        self._vad_ms = 0.0

    def reset(self) -> None:
        """Forget the stream (a new file, a reconnected robot)."""
        self.framer.reset()
        self.segmenter.reset()
        if hasattr(self.vad, "reset"):
            self.vad.reset()
        self._vad_ms = 0.0

    def _frame(self, frame: np.ndarray, start: float) -> list[HeardUtterance]:
        began = time.perf_counter()
        probability = self.vad(frame)
        spent = (time.perf_counter() - began) * 1e3
        self.frames += 1
        self.last_probability = probability
        was_open = self.segmenter.in_speech
        ended = self.segmenter.push(frame, start, probability)
        if was_open or self.segmenter.in_speech or ended:
            self._vad_ms += spent
        return [
            HeardUtterance(u, self._vad_ms if u.tentative else self._take_vad_ms()) for u in ended
        ]

    def _take_vad_ms(self) -> float:
        spent, self._vad_ms = self._vad_ms, 0.0
        return spent


@dataclass
class FileUtterance:
    """One utterance of a file: where it is, what was heard, and the compute it took."""

    start_s: float  # from the start of the file
    end_s: float
    text: str
    confidence: float
    vad_ms: float
    asr_ms: float
    dropped: str  # "" or why it is not a question: too_short, or TranscriptFilter's reason


def transcribe_audio(
    samples: np.ndarray,
    vad: Callable[[np.ndarray], float],
    asr: AsrBackend,
    config: VadConfig,
    filters: TranscriptFilter | None = None,
) -> list[FileUtterance]:
    """Every utterance of a 16 kHz mono recording, recognised and judged by the speech node's
    own filters (the `uservlm transcribe` path)."""
    filters = filters or TranscriptFilter()
    listener = Listener(vad, config)
    listener.reset()
    heard = listener.push(samples, 0.0) + listener.flush()
    results = []
    for item in heard:
        u = item.utterance
        if u.tentative:  # a file is recognised once per utterance, at its end
            continue
        if u.dropped:
            results.append(FileUtterance(u.start, u.end, "", 0.0, item.vad_ms, 0.0, u.dropped))
            continue
        result: AsrResult = asr.transcribe(u.samples)
        results.append(
            FileUtterance(
                u.start,
                u.end,
                result.text,
                result.confidence,
                item.vad_ms,
                result.compute_ms,
                filters.reason(result.text, result.confidence, u.duration_s),
            )
        )
    return results
