"""The bridge's `local` backend: the answer spoken by this computer, with a synthesized voice.

`LocalSpeech` splits each utterance into sentences, synthesizes the next sentence while the
current one plays, and sends the audio to an output: `SpeakerOutput` (the computer's speakers
through PortAudio / `sounddevice`) or `WavOutput` (one WAV file per utterance in a folder, for
headless machines and tests). `stop()` cuts the current utterance short (a cancelled goal, a new
question); `speak` then raises SpeechStopped.
"""

from __future__ import annotations

import contextlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from uservlm_ros.backends.audio import to_int16
from uservlm_ros.backends.pepper_speech import RobotUnavailable, Utterance
from uservlm_ros.backends.tts import Synthesizer, TtsError
from uservlm_ros.core.errors import ConfigError, UservlmError
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.registry import Registry
from uservlm_ros.core.sentences import first_sentence

CHUNK_S = 0.05  # speaker writes: how soon a stop is heard
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class SpeechStopped(UservlmError):
    """The utterance was cut short by `stop()`; it will not be said again."""


def split_sentences(text: str) -> list[str]:
    """`text` in sentences (the streaming rule of core/sentences), the last one possibly without
    an end mark."""
    sentences, rest = [], text.strip()
    while rest:
        sentence = first_sentence(rest + " ")
        if sentence is None:
            sentences.append(rest)
            break
        sentences.append(sentence)
        rest = rest[len(sentence) :].strip() if rest.startswith(sentence) else ""
    return sentences


class AudioOutput(Protocol):
    name: str

    def open(self) -> None:
        """ConfigError (one line) when there is nowhere to play."""
        ...

    def play(self, samples: np.ndarray, rate: int, stop: threading.Event) -> None:
        """Plays float32 mono `samples`; returns early once `stop` is set."""
        ...

    def end_utterance(self, utterance: Utterance) -> None:
        """The utterance is complete (or was stopped): what the output keeps of it."""
        ...

    def close(self) -> None: ...


def import_sounddevice():
    """The sounddevice module, or a one-line ConfigError where it or PortAudio is missing."""
    try:
        import sounddevice
    except ImportError as error:
        raise ConfigError(
            "no speakers: the sounddevice package is missing (pip install sounddevice); "
            "write WAV files instead (tts.output:=wav, uservlm say --out)"
        ) from error
    except OSError as error:  # the package is there, the PortAudio library is not
        raise ConfigError(
            f"no speakers: {error} (install PortAudio, e.g. apt install libportaudio2); "
            "write WAV files instead (tts.output:=wav, uservlm say --out)"
        ) from error
    return sounddevice


class SpeakerOutput:
    """The computer's speakers (PortAudio): `device` "" = the default output, an index or part
    of a device name."""

    name = "speaker"

    def __init__(self, device: str = "") -> None:
        device = device.strip()
        self.device: int | str | None = int(device) if device.isdigit() else (device or None)
        self._sd = None

    def open(self) -> None:
        sd = import_sounddevice()
        try:
            sd.query_devices(self.device, "output")
        except (ValueError, sd.PortAudioError) as error:
            raise ConfigError(
                f"no audio output device {self.device or '(default)'}: {error}; "
                "write WAV files instead (tts.output:=wav, uservlm say --out)"
            ) from error
        self._sd = sd

    def play(self, samples: np.ndarray, rate: int, stop: threading.Event) -> None:
        chunk = max(int(rate * CHUNK_S), 1)
        data = np.asarray(samples, np.float32).reshape(-1, 1)
        stream = self._sd.OutputStream(
            samplerate=rate, channels=1, dtype="float32", device=self.device
        )
        with stream as out:
            for start in range(0, len(data), chunk):
                if stop.is_set():
                    out.abort()  # drop what is buffered: silence now
                    return
                out.write(data[start : start + chunk])

    def end_utterance(self, utterance: Utterance) -> None:
        """Nothing kept: it was heard."""

    def close(self) -> None:
        self._sd = None


class WavOutput:
    """WAV files (16-bit mono at the voice's rate), each written when its utterance ends (a
    stopped one holds what was said): one per utterance in `folder`, named
    NNNN_<request id>_<part>.wav, or every utterance into `file` (`uservlm say --out`)."""

    name = "wav"

    def __init__(self, folder: str = "", file: str = "") -> None:
        if not (folder.strip() or file.strip()):
            raise ConfigError("tts.output:=wav needs tts.wav_dir, the folder for the WAV files")
        self.folder = Path(folder or Path(file).parent).expanduser()
        self.file = Path(file).expanduser() if file else None
        self._pieces: list[np.ndarray] = []
        self._rate = 0
        self._count = 0

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"cannot create the folder {self.folder}: {error}") from error
        self._count = len(list(self.folder.glob("*.wav")))  # never overwrite an earlier run

    def play(self, samples: np.ndarray, rate: int, stop: threading.Event) -> None:
        if not stop.is_set():
            self._pieces.append(np.asarray(samples, np.float32))
            self._rate = rate

    def end_utterance(self, utterance: Utterance) -> None:
        pieces, self._pieces = self._pieces, []
        if not pieces:
            return
        self._count += 1
        name = f"{self._count:04d}_{_UNSAFE.sub('_', utterance.request_id)}_{utterance.part}.wav"
        write_wav_file(self.file or self.folder / name, np.concatenate(pieces), self._rate)

    def close(self) -> None:
        self._pieces = []


def write_wav_file(path: Path, samples: np.ndarray, rate: int) -> None:
    """16-bit mono WAV at `rate`; ConfigError (one line) when it cannot be written."""
    import wave

    try:
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(to_int16(samples).astype("<i2").tobytes())
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror or error}") from error


@dataclass(frozen=True)
class SpeakerOptions:
    device: str = setting("", name="tts.device")
    """Output device of tts.output speaker: empty = the default, an index or part of a name"""


@dataclass(frozen=True)
class WavOptions:
    wav_dir: str = setting("", name="tts.wav_dir")
    """Folder of tts.output wav: NNNN_<request id>_<part>.wav per utterance"""


# `tts.output` of the bridge's local backend.
OUTPUTS: Registry[AudioOutput] = Registry("audio output", "")
OUTPUTS.add("speaker", lambda o: SpeakerOutput(o.device), SpeakerOptions, "PortAudio")
OUTPUTS.add(
    "wav", lambda o: WavOutput(o.wav_dir), WavOptions, "a file per utterance in tts.wav_dir"
)


class LocalSpeech:
    """Speech on this computer; connect, speak and close as PepperSpeech (pepper_speech.py)."""

    name = "local"

    def __init__(self, synthesizer: Synthesizer, output: AudioOutput) -> None:
        self.synthesizer = synthesizer
        self.output = output
        self._connected = False
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tts")
        self.description = f"voice {synthesizer.voice.name} -> {output.name}" + (
            f" {output.folder}" if isinstance(output, WavOutput) else ""
        )

    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """Opens the output and starts the voice; RobotUnavailable when either fails."""
        try:
            self.output.open()
            self.synthesizer.start()
        except UservlmError as error:
            raise RobotUnavailable(str(error)) from error
        self._connected = True

    def speak(self, utterance: Utterance) -> None:
        """Says it sentence by sentence, synthesizing the next while one plays. SpeechStopped
        after stop(); RobotUnavailable when the voice fails (the bridge says it again)."""
        self._stop.clear()
        synthesize = self.synthesizer.synthesize
        rate = self.synthesizer.voice.sample_rate
        sentences = split_sentences(utterance.text)
        try:
            ahead = self._pool.submit(synthesize, sentences[0]) if sentences else None
            for following in [*sentences[1:], None]:
                if ahead is None:
                    break
                samples = ahead.result()
                # the next sentence is synthesized while this one plays
                ahead = self._pool.submit(synthesize, following) if following else None
                if self._stop.is_set():
                    break
                self.output.play(samples, rate, self._stop)
        except TtsError as error:
            self._connected = False
            raise RobotUnavailable(f"the voice failed: {error}") from error
        finally:
            self.output.end_utterance(utterance)
        if self._stop.is_set():
            raise SpeechStopped("stopped")

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._connected = False
        self.synthesizer.close()  # first: a sentence being synthesized ends with it
        with contextlib.suppress(RuntimeError):
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.output.close()
