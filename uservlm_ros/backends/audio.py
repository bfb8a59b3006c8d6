"""Audio blocks, WAV files, channel mixing and resampling (to the 16 kHz mono the models take).

Every problem with a file or a block raises `AudioError` with one line saying what is wrong.
"""

from __future__ import annotations

import wave
from collections.abc import Callable
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.utterances import SAMPLE_RATE

MAX_CHANNELS = 64


class AudioError(UservlmError):
    """Audio that cannot be used: not a WAV, empty, unreadable, an unsupported sample format."""


@dataclass(frozen=True)
class AudioBlock:
    """Interleaved int16 PCM as captured, and the capture time of its first sample."""

    samples: np.ndarray  # int16, shape (frames * channels,)
    sample_rate: int
    channels: int
    start: float  # s, on the node's clock (wall time)

    @property
    def frames(self) -> int:
        return len(self.samples) // self.channels

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def check_format(sample_rate: int, channels: int, values: int) -> None:
    if not 1000 <= sample_rate <= 384000:
        raise AudioError(f"sample rate {sample_rate} Hz is not a usable audio rate")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{channels} channels (expected 1..{MAX_CHANNELS})")
    if values % channels:
        raise AudioError(f"{values} samples do not divide into {channels} channels")


def to_mono_float(samples: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved int16 -> mono float32 in [-1, 1] (channels averaged)."""
    data = np.asarray(samples, np.int16).astype(np.float32) / 32768.0
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of mono float32 audio (anti-aliased); no-op at the target rate."""
    if rate == target or len(samples) == 0:
        return np.asarray(samples, np.float32)
    from scipy.signal import resample_poly

    common = gcd(rate, target)
    return resample_poly(samples, target // common, rate // common).astype(np.float32)


class StreamResampler:
    """Resamples a stream block by block to 16 kHz mono.

    Pepper and most microphones already deliver 16 kHz (a copy-free path); other rates are
    resampled per block, which is fine for speech at block sizes of 100 ms and more.
    """

    def __init__(self, target: int = SAMPLE_RATE) -> None:
        self.target = target

    def __call__(self, block: AudioBlock) -> np.ndarray:
        check_format(block.sample_rate, block.channels, len(block.samples))
        return resample(to_mono_float(block.samples, block.channels), block.sample_rate)


def read_wav(
    path: str | Path, warn: Callable[[str], None] | None = None
) -> tuple[np.ndarray, int, int]:
    """(interleaved int16 samples, sample rate, channels) of a PCM WAV file; AudioError if the
    file is missing, not a WAV, compressed, empty or has no complete sample. A file holding less
    audio than its header says is read as far as it goes and `warn` gets one line about it."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes)")
    try:
        with wave.open(str(path), "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            frames = wav.getnframes()
            raw = wav.readframes(frames)
    except (wave.Error, EOFError) as error:
        reason = str(error) or "the header is cut short"
        raise AudioError(f"{path}: not a PCM WAV file ({reason})") from error
    except OSError as error:
        raise AudioError(f"{path}: cannot read ({error.strerror or error})") from error
    if frames == 0 or not raw:
        raise AudioError(f"{path}: the WAV file holds no audio")
    try:
        check_format(rate, channels, channels)
    except AudioError as error:
        raise AudioError(f"{path}: {error}") from None
    usable = len(raw) - len(raw) % (width * channels)
    if usable == 0:
        raise AudioError(f"{path}: the WAV file is truncated (no complete sample)")
    got = usable // (width * channels)
    if got < frames and warn is not None:
        warn(
            f"{path}: truncated: the header says {frames / rate:.2f} s of audio, the file holds "
            f"{got / rate:.2f} s (used as far as it goes)"
        )
    samples = _pcm_to_int16(raw[:usable], width, path)
    return samples, rate, channels


def _pcm_to_int16(raw: bytes, width: int, path: Path) -> np.ndarray:
    if width == 2:
        return np.frombuffer(raw, "<i2").copy()
    if width == 1:  # unsigned 8-bit
        return ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if width == 3:
        bytes3 = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        return bytes3[:, 1:].copy().view("<i2").reshape(-1)  # the top 16 bits
    if width == 4:
        return (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    raise AudioError(f"{path}: {width * 8}-bit samples are not supported (8, 16, 24, 32)")


def load_speech(path: str | Path, warn: Callable[[str], None] | None = None) -> np.ndarray:
    """A WAV file as 16 kHz mono float32 (mixed down and resampled as needed); `warn` as in
    `read_wav`."""
    samples, rate, channels = read_wav(path, warn)
    return resample(to_mono_float(samples, channels), rate)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> int16 PCM (clipped)."""
    return (np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Mono int16 (or float in [-1, 1]) samples to a 16-bit PCM WAV file."""
    data = samples if samples.dtype == np.int16 else to_int16(samples)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data.astype("<i2").tobytes())
