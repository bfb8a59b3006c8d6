"""Where the speech node's audio comes from: Pepper (NAOqi ALAudioDevice), a local microphone
(PortAudio through `sounddevice`) or WAV files.

Every source runs its own thread and hands `AudioBlock`s to `on_block` (which must return
quickly) and its state to `on_status(ok, message)`. A source never raises out of its thread:
a robot that goes away, a missing microphone or a bad file is reported through `on_status` and
retried (robot, microphone) or skipped (file).

Pepper: the source registers a qi service object on its own session (a *remote audio client*),
asks ALAudioDevice for 16 kHz mono from one microphone
(`setClientPreferences(name, 16000, channel, 0)`) and subscribes; NAOqi then calls
`processRemote(channels, samples_per_channel, timestamp, buffer)` with 170 ms of int16 PCM.
The callback only queues the buffer. When the session drops or no audio comes for
`audio_timeout_s`, the source reconnects with a doubling backoff.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uservlm_ros.backends.audio import AudioBlock, AudioError, read_wav
from uservlm_ros.backends.pepper_speech import (
    RobotUnavailable,
    connection_options,
    open_session,
    reconnect_backoff,
)
from uservlm_ros.core.errors import ConfigError, UservlmError
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.registry import Registry

BlockCallback = Callable[[AudioBlock], None]
StatusCallback = Callable[[bool, str], None]  # (healthy, message)

# ALAudioDevice's channel codes for a single-microphone, 16 kHz subscription.
NAOQI_CHANNELS = {"all": 0, "left": 1, "right": 2, "front": 3, "rear": 4}
NAOQI_RATE = 16000


class AudioSource:
    """Base: the thread, stop flag and callbacks every source shares."""

    name = ""
    # True: `on_block` may block until there is room (nothing is captured live, so the source
    # waits for the listener instead of losing audio).
    lossless = False

    def __init__(self) -> None:
        self._on_block: BlockCallback = lambda block: None
        self._on_status: StatusCallback = lambda ok, message: None
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self, on_block: BlockCallback, on_status: StatusCallback) -> None:
        self._on_block, self._on_status = on_block, on_status
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"{self.name}_audio", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._close()

    def _run(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Release the device or the connection (after the thread ended)."""

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._running and time.monotonic() < deadline:
            time.sleep(min(0.05, max(seconds, 0.0)))


# --------------------------------------------------------------------------- Pepper


def _remote_audio_client(source: NaoqiAudioSource) -> Any:
    """The qi service object NAOqi calls with audio (the method name is NAOqi's). Its signature
    is typed so that NAOqi's raw buffer arrives as bytes, not as text."""
    import qi

    class RemoteAudioClient:
        @qi.bind(qi.Void, (qi.Int32, qi.Int32, qi.Dynamic, qi.Buffer))
        def processRemote(self, channels, samples_per_channel, timestamp, buffer):
            source._received(int(channels), int(samples_per_channel), buffer)

    return RemoteAudioClient()


@dataclass(frozen=True)
class NaoqiAudioOptions(connection_options("naoqi")):
    channel: str = setting(
        "front", name="naoqi.channel", choices=tuple(c for c in NAOQI_CHANNELS if c != "all")
    )
    """Which of Pepper's microphones (16 kHz needs a single one)"""
    client_name: str = setting("uservlm_speech", name="naoqi.client_name")
    """Name of the qi service NAOqi sends the audio to (unique per robot)"""
    audio_timeout_s: float = setting(3.0, name="naoqi.audio_timeout_s", min=0.5, max=600.0)
    """Subscribe again when no audio came for this long (NAOqi's audio can stall), s"""


class NaoqiAudioSource(AudioSource):
    """Pepper's microphones over libqi; see the module docstring."""

    name = "naoqi"

    def __init__(self, options: NaoqiAudioOptions) -> None:
        super().__init__()
        if options.channel not in NAOQI_CHANNELS:
            raise ConfigError(
                f"naoqi.channel {options.channel!r}: expected one of {', '.join(NAOQI_CHANNELS)}"
            )
        self.options = options
        self.address = options.address  # reads the password once
        self._session: Any = None
        self._service_id: int | None = None
        self._last_audio = 0.0
        self.connections = 0

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.isConnected()

    def _received(self, channels: int, samples_per_channel: int, buffer: Any) -> None:
        now = time.time()
        self._last_audio = time.monotonic()
        if isinstance(buffer, str):  # an untyped peer sent text: the bytes are code points
            buffer = buffer.encode("latin-1", errors="replace")
        data = np.frombuffer(bytes(buffer), "<i2")
        if channels < 1 or len(data) != channels * samples_per_channel:
            self._on_status(
                True,
                f"ignored a malformed audio buffer from Pepper ({len(data)} samples for "
                f"{channels} x {samples_per_channel})",
            )
            return
        # NAOqi's timestamp counts from the robot's boot; the host clock is what the rest of the
        # graph (speech events, transcripts) uses. The buffer ends about now.
        duration = samples_per_channel / NAOQI_RATE
        self._on_block(AudioBlock(data.copy(), NAOQI_RATE, channels, now - duration))

    def _connect(self) -> None:
        o = self.options
        session = open_session(self.address, o.connect_timeout_s)
        try:
            self._service_id = session.registerService(o.client_name, _remote_audio_client(self))
            device = session.service("ALAudioDevice")
            device.setClientPreferences(o.client_name, NAOQI_RATE, NAOQI_CHANNELS[o.channel], 0)
            device.subscribe(o.client_name)
        except RuntimeError as error:
            with contextlib.suppress(RuntimeError):
                session.close()
            raise RobotUnavailable(
                f"Pepper at {self.address.url}: cannot subscribe to ALAudioDevice: {error}"
            ) from error
        self._session = session
        self._last_audio = time.monotonic()
        self.connections += 1

    def _run(self) -> None:
        o = self.options
        backoff = reconnect_backoff("naoqi", o.reconnect_min_s, o.reconnect_max_s)
        while self._running:
            if not self.connected:
                self._close()
                try:
                    self._connect()
                except RobotUnavailable as error:
                    delay = backoff.next_delay()
                    self._on_status(False, f"{error}; retrying in {delay:.1f} s")
                    self._sleep(delay)
                    continue
                backoff.reset()
                self._on_status(
                    True, f"listening to Pepper's {o.channel} microphone at {self.address.url}"
                )
            silent_for = time.monotonic() - self._last_audio
            if silent_for > o.audio_timeout_s:
                self._on_status(
                    False, f"no audio from Pepper for {silent_for:.1f} s; subscribing again"
                )
                self._close()
                continue
            self._sleep(0.1)

    def _close(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        with contextlib.suppress(RuntimeError):  # the robot may be gone already
            if session.isConnected():
                session.service("ALAudioDevice").unsubscribe(self.options.client_name)
                if self._service_id is not None:
                    session.unregisterService(self._service_id)
        with contextlib.suppress(RuntimeError):
            session.close()
        self._service_id = None


# --------------------------------------------------------------------------- local microphone


def import_sounddevice():
    """The sounddevice module, or a one-line UservlmError where PortAudio is missing."""
    try:
        import sounddevice
    except ImportError as error:
        raise UservlmError(
            "the microphone source needs the sounddevice package (pip install sounddevice)"
        ) from error
    except OSError as error:  # the package is there, the PortAudio library is not
        raise UservlmError(
            f"no microphone support: {error} (install PortAudio, e.g. apt install libportaudio2)"
        ) from error
    return sounddevice


@dataclass(frozen=True)
class MicrophoneOptions:
    device: str = setting("", name="microphone.device")
    """Input device: empty = the system default, a device index, or part of its name"""
    sample_rate: int = setting(16000, name="microphone.sample_rate", min=0, max=384000)
    """Capture rate, Hz (0 = the device's default; other rates are resampled to 16 kHz)"""
    block_ms: int = setting(100, name="microphone.block_ms", min=10, max=1000)
    """Capture block length, ms"""
    retry_s: float = setting(5.0, name="microphone.retry_s", min=0.5, max=3600.0)
    """Where no microphone can be opened, try again after this long, s"""


class MicrophoneSource(AudioSource):
    """A local input device through PortAudio. Where none exists it reports the reason and
    tries again every `retry_s` (a microphone plugged in later is picked up)."""

    name = "microphone"

    def __init__(self, options: MicrophoneOptions) -> None:
        super().__init__()
        self.options = options

    def _device(self) -> int | str | None:
        device = self.options.device.strip()
        if not device:
            return None
        return int(device) if device.isdigit() else device

    def _run(self) -> None:
        o = self.options
        while self._running:
            try:
                sd = import_sounddevice()
                rate = o.sample_rate or int(
                    sd.query_devices(self._device(), "input")["default_samplerate"]
                )
                block = max(int(rate * o.block_ms / 1000), 1)

                def callback(indata, frames, time_info, status, rate=rate) -> None:
                    now = time.time()
                    samples = np.asarray(indata, np.int16).reshape(-1).copy()
                    self._on_block(AudioBlock(samples, rate, 1, now - frames / rate))

                with sd.InputStream(
                    samplerate=rate,
                    blocksize=block,
                    device=self._device(),
                    channels=1,
                    dtype="int16",
                    callback=callback,
                ):
                    self._on_status(True, f"listening to microphone {o.device or '(default)'}")
                    while self._running:
                        time.sleep(0.1)
            except UservlmError as error:
                self._on_status(False, f"{error}; trying again in {o.retry_s:g} s")
            except Exception as error:  # PortAudio errors: no device, busy, bad rate
                self._on_status(
                    False,
                    f"cannot open microphone {o.device or '(default)'}: {error}; trying again "
                    f"in {o.retry_s:g} s",
                )
            self._sleep(o.retry_s)


# --------------------------------------------------------------------------- WAV files


def wav_files(path: str | Path) -> list[Path]:
    """A WAV file, or the *.wav files of a folder in name order; ConfigError if none."""
    if not str(path).strip():
        raise ConfigError("no audio file given: set file.path to a WAV file or a folder of them")
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav")
        if not files:
            raise ConfigError(f"{path} holds no .wav file")
        return files
    if path.is_file():
        return [path]
    raise ConfigError(f"audio file or folder {path} not found")


@dataclass(frozen=True)
class FileOptions:
    path: str = setting("", name="file.path")
    """source file: a WAV file or a folder of them (played in name order)"""
    realtime: bool = setting(True, name="file.realtime")
    """Play files at real speed; false = as fast as the node takes them (the file waits for VAD
    and recognition: no audio is dropped)"""
    loop: bool = setting(False, name="file.loop")
    """Start again after the last file"""
    gap_s: float = setting(1.0, name="file.gap_s", min=0.0, max=60.0)
    """Silence before, between and after the files, s"""
    block_ms: int = 170  # Pepper's buffer length


class FileSource(AudioSource):
    """WAV files played as if heard live (tests, demos, evaluation)."""

    name = "file"

    def __init__(self, options: FileOptions) -> None:
        super().__init__()
        self.options = options
        self.files = wav_files(options.path)
        self.finished = threading.Event()
        self.lossless = not options.realtime

    def _run(self) -> None:
        o = self.options
        clock = _Pacer(o.realtime)
        played = 0
        while self._running:
            for path in self.files:
                self._emit_silence(clock, o.gap_s, 16000)
                damaged: list[str] = []
                try:
                    samples, rate, channels = read_wav(path, damaged.append)
                except AudioError as error:
                    self._on_status(False, f"skipped: {error}")
                    continue
                for warning in damaged:  # logged as a warning, then playing it clears it
                    self._on_status(False, warning)
                self._on_status(True, f"playing {path.name}")
                self._emit(clock, samples, rate, channels)
                played += 1
                if not self._running:
                    return
            if not o.loop or played == 0:
                break
        self._emit_silence(clock, o.gap_s, 16000)
        self._on_status(True, f"finished playing {len(self.files)} file(s)")
        self.finished.set()

    def _emit_silence(self, clock: _Pacer, seconds: float, rate: int) -> None:
        self._emit(clock, np.zeros(int(seconds * rate), np.int16), rate, 1)

    def _emit(self, clock: _Pacer, samples: np.ndarray, rate: int, channels: int) -> None:
        step = max(int(rate * self.options.block_ms / 1000), 1) * channels
        for offset in range(0, len(samples), step):
            if not self._running:
                return
            block = samples[offset : offset + step]
            duration = len(block) / channels / rate
            start = clock.capture(duration)
            self._on_block(AudioBlock(block, rate, channels, start))


class _Pacer:
    """Capture times for consecutive blocks; in real time it also waits until each block would
    have been captured completely, as a device delivers it."""

    def __init__(self, realtime: bool) -> None:
        self.realtime = realtime
        self._next = time.time()

    def capture(self, duration: float) -> float:
        start = self._next
        self._next += duration
        if self.realtime:
            delay = self._next - time.time()
            if delay > 0:
                time.sleep(delay)
        return start


# `source` of speech_node. Adding a source: a class with `_run`, its options, one line here.
SOURCES: Registry[AudioSource] = Registry("audio source", "")
SOURCES.add(
    "naoqi", NaoqiAudioSource, NaoqiAudioOptions, "Pepper's microphones through ALAudioDevice"
)
SOURCES.add(
    "microphone", MicrophoneSource, MicrophoneOptions, "a local input device through PortAudio"
)
SOURCES.add("file", FileSource, FileOptions, "WAV files (file.path)")
