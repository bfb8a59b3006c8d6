"""Recorded speech through the speech node's own VAD + ASR code: `uservlm transcribe`, the
speech benchmark and `uservlm eval`'s word error rate on a bag's audio.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from uservlm_ros.backends.asr import RECOGNISERS, AsrOptions
from uservlm_ros.backends.audio import AudioBlock, AudioError, StreamResampler, load_speech
from uservlm_ros.backends.audio_sources import wav_files
from uservlm_ros.backends.listener import FileUtterance, transcribe_audio
from uservlm_ros.backends.vad import SileroOptions, SileroVad
from uservlm_ros.core.errors import ConfigError, UservlmError
from uservlm_ros.core.metrics import percentiles
from uservlm_ros.core.utterances import (
    SAMPLE_RATE,
    TranscriptFilter,
    VadConfig,
    word_error_rate,
)
from uservlm_ros.eval.labels_file import LabelledUtterance
from uservlm_ros.ros.topics import TRANSCRIPT as TRANSCRIPT_TOPIC
from uservlm_ros.ros.topics import absolute


@dataclass
class FileTranscript:
    path: str
    text: str  # the utterances that are speech, joined by spaces
    duration_s: float
    utterances: list[FileUtterance] = field(default_factory=list)
    error: str = ""  # set (one line) when the file could not be used
    warning: str = ""  # set (one line) when the file was used but is damaged (truncated)

    @property
    def asr_ms(self) -> float:
        return sum(u.asr_ms for u in self.utterances)

    @property
    def vad_ms(self) -> float:
        return sum(u.vad_ms for u in self.utterances)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(asr_ms=round(self.asr_ms, 1), vad_ms=round(self.vad_ms, 1))
        for utterance in data["utterances"]:
            for key in ("start_s", "end_s", "confidence", "vad_ms", "asr_ms"):
                utterance[key] = round(utterance[key], 3)
        return data


class Recogniser:
    """Silero VAD + a speech recogniser, loaded once for many files."""

    def __init__(
        self,
        asr_options: AsrOptions | None = None,
        vad_config: VadConfig | None = None,
        backend: str = "faster_whisper",
        vad_path: str = "",
        filters: TranscriptFilter | None = None,
    ) -> None:
        self.vad = SileroVad(SileroOptions(path=vad_path))
        self.asr = RECOGNISERS.create(backend, asr_options or AsrOptions())
        self.config = vad_config or VadConfig()
        self.filters = filters or TranscriptFilter()

    def transcribe_file(self, path: str | Path) -> FileTranscript:
        """A file's transcript; bad audio gives a FileTranscript with `error` set."""
        warnings: list[str] = []
        try:
            samples = load_speech(path, warnings.append)
        except AudioError as error:
            return FileTranscript(str(path), "", 0.0, error=str(error))
        utterances = transcribe_audio(samples, self.vad, self.asr, self.config, self.filters)
        spoken = [u.text for u in utterances if not u.dropped]
        return FileTranscript(
            str(path),
            " ".join(spoken),
            len(samples) / SAMPLE_RATE,
            utterances,
            warning="; ".join(warnings),
        )


def with_pause(audio: np.ndarray, pause_s: float, level: float = 0.01) -> np.ndarray:
    """16 kHz mono speech with a pause of `pause_s` between two words: silence spliced in at the
    quietest 20 ms in the middle 60 % of the speech, so that with the quiet samples already there
    (below `level`) it lasts `pause_s`. A question paused in mid-sentence, for counting questions
    cut in two (bench/speech.py, the tests)."""
    quiet = np.abs(audio) <= level
    loud = np.flatnonzero(~quiet)
    first, last = int(loud[0]), int(loud[-1])
    window = SAMPLE_RATE // 50
    energy = np.convolve(np.asarray(audio, np.float64) ** 2, np.ones(window), "valid")
    lo, hi = first + (last - first) // 5, first + (last - first) * 4 // 5
    cut = lo + int(np.argmin(energy[lo:hi])) + window // 2
    before = cut - int(np.flatnonzero(~quiet[:cut])[-1]) - 1 if not quiet[:cut].all() else cut
    after = int(np.argmax(~quiet[cut:])) if (~quiet[cut:]).any() else len(audio) - cut
    missing = max(int(pause_s * SAMPLE_RATE) - before - after, 0)
    silence = np.zeros(missing, np.float32)
    return np.concatenate([audio[:cut], silence, audio[cut:]]).astype(np.float32)


def expand_paths(paths: Iterable[str | Path]) -> Iterator[Path | tuple[Path, str]]:
    """Files as given, folders as their *.wav files; a path that does not exist comes back as
    (path, error)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                yield from wav_files(path)
            except ConfigError as error:
                yield path, str(error)
        else:
            yield path


@dataclass
class SpeechScore:
    """WER and ASR cost over labelled clips."""

    n: int
    wer: float
    asr_ms: dict[str, float]
    real_time_factor: float  # ASR compute / audio duration
    items: list[dict] = field(default_factory=list)


def score_speech(recogniser: Recogniser, labelled: Sequence[tuple[str | Path, str]]) -> SpeechScore:
    """Transcribe each (file, reference) and score the corpus WER."""
    references, hypotheses, asr_ms, items = [], [], [], []
    audio_s = compute_s = 0.0
    for path, reference in labelled:
        result = recogniser.transcribe_file(path)
        if result.error:
            raise UservlmError(result.error)
        references.append(reference)
        hypotheses.append(result.text)
        asr_ms.append(result.asr_ms)
        audio_s += result.duration_s
        compute_s += result.asr_ms / 1e3
        items.append(
            {
                "file": str(path),
                "reference": reference,
                "heard": result.text,
                "wer": word_error_rate([reference], [result.text]),
                "asr_ms": round(result.asr_ms, 1),
            }
        )
    return SpeechScore(
        n=len(items),
        wer=word_error_rate(references, hypotheses) if items else 0.0,
        asr_ms=percentiles(asr_ms),
        real_time_factor=compute_s / audio_s if audio_s else 0.0,
        items=items,
    )


def bag_audio(bag: Path, topic: str) -> tuple[np.ndarray, int]:
    """The recorded AudioChunks of `topic` as one 16 kHz mono stream (blocks mixed down and
    resampled, laid end to end) and how many messages it came from."""
    from rclpy.serialization import deserialize_message
    from uservlm.msg import AudioChunk

    from uservlm_ros.eval.bags import iter_bag

    resampler = StreamResampler()
    parts = []
    for message in iter_bag(bag, [topic]):
        chunk = deserialize_message(message.data, AudioChunk)
        block = AudioBlock(
            np.asarray(chunk.samples, np.int16), chunk.sample_rate, chunk.channels, 0
        )
        try:
            parts.append(resampler(block))
        except AudioError as error:
            raise UservlmError(f"{bag}: a bad audio message on {topic}: {error}") from error
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return samples, len(parts)


def evaluate_speech(
    bag: Path, utterances: Sequence[LabelledUtterance], topic: str, recogniser: Recogniser
) -> dict:
    """WER and ASR latency of the speech node's VAD + recognition on the bag's audio.

    Each labelled utterance is compared with the text of the detected utterances that overlap
    it (none: every reference word is a deletion); detected speech overlapping no label is
    counted as `extra`.
    """
    samples, messages = bag_audio(bag, topic)
    if messages == 0:
        raise UservlmError(f"{bag} has no audio on {topic} (record it with `uservlm record`)")
    detected = [
        u
        for u in transcribe_audio(
            samples, recogniser.vad, recogniser.asr, recogniser.config, recogniser.filters
        )
        if u.dropped not in ("too_short", "empty")
    ]
    items, used = [], set()
    for label in utterances:
        overlapping = [
            i for i, u in enumerate(detected) if u.start_s < label.end_s and u.end_s > label.start_s
        ]
        used.update(overlapping)
        heard = " ".join(detected[i].text for i in overlapping if not detected[i].dropped)
        items.append(
            {
                "start_s": label.start_s,
                "end_s": label.end_s,
                "reference": label.text,
                "heard": heard,
                "wer": word_error_rate([label.text], [heard]),
                "asr_ms": round(sum(detected[i].asr_ms for i in overlapping), 1),
            }
        )
    audio_s = len(samples) / SAMPLE_RATE
    asr_ms = [u.asr_ms for u in detected]
    return {
        "model": recogniser.asr.model_id,
        "audio_s": round(audio_s, 2),
        "n": len(items),
        "wer": word_error_rate([i["reference"] for i in items], [i["heard"] for i in items])
        if items
        else 0.0,
        "detected": len(detected),
        "extra": len(detected) - len(used),
        "asr_ms": percentiles(asr_ms),
        "real_time_factor": sum(asr_ms) / 1e3 / audio_s if audio_s else 0.0,
        "recorded_asr_ms": _recorded_asr_ms(bag),
        "items": items,
    }


def _recorded_asr_ms(bag: Path) -> dict[str, float]:
    """ASR compute the live speech node reported in the bag's transcripts."""
    from rclpy.serialization import deserialize_message
    from uservlm.msg import Transcript

    from uservlm_ros.eval.bags import iter_bag

    values = [
        deserialize_message(m.data, Transcript).asr_ms
        for m in iter_bag(bag, [absolute(TRANSCRIPT_TOPIC)])
    ]
    return percentiles([v for v in values if v > 0])
