"""Recorded speech through the speech node's own VAD + ASR code: `uservlm transcribe`, the
speech benchmark and the evaluation's word error rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from uservlm_ros.backends.asr import AsrOptions, make_asr_backend
from uservlm_ros.backends.audio import AudioError, load_speech
from uservlm_ros.backends.audio_sources import wav_files
from uservlm_ros.backends.listener import FileUtterance, transcribe_audio
from uservlm_ros.backends.vad import SileroVad
from uservlm_ros.core.errors import ConfigError, UservlmError
from uservlm_ros.core.metrics import percentiles
from uservlm_ros.core.utterances import SAMPLE_RATE, VadConfig, noise_reason, word_error_rate


@dataclass
class FileTranscript:
    path: str
    text: str  # the utterances that are speech, joined by spaces
    duration_s: float
    utterances: list[FileUtterance] = field(default_factory=list)
    error: str = ""  # set (one line) when the file could not be used

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
    ) -> None:
        self.vad = SileroVad(vad_path)
        self.asr = make_asr_backend(backend, asr_options or AsrOptions())
        self.config = vad_config or VadConfig()

    def transcribe_file(self, path: str | Path) -> FileTranscript:
        """A file's transcript; bad audio gives a FileTranscript with `error` set."""
        try:
            samples = load_speech(path)
        except AudioError as error:
            return FileTranscript(str(path), "", 0.0, error=str(error))
        utterances = transcribe_audio(samples, self.vad, self.asr, self.config)
        spoken = [u.text for u in utterances if u.text and not noise_reason(u.text)]
        return FileTranscript(str(path), " ".join(spoken), len(samples) / SAMPLE_RATE, utterances)


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
