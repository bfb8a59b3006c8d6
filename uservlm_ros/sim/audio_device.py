"""The simulated Pepper's microphones: a simulated ALAudioDevice serving remote audio clients.

A client registers its own qi service, calls `setClientPreferences(name, 16000, channel, 0)` and
`subscribe(name)`; the device then calls that service's `processRemote(1, 2720, [s, us], buffer)`
every 170 ms in real time, as NAOqi does, with what the microphones hear:

- the clips queued with `SimulatedMicrophones.play` (users speaking), one after the other;
- the robot's own voice while it speaks (the simulated ALTextToSpeech / ALAnimatedSpeech call
  `speak(samples)`): what it says, synthesized by `RobotVoice` with the Piper voice the bridge's
  `local` backend uses (backends/tts.py), mixed in as a real robot hears itself;
- silence (or a little noise) otherwise.

Only the 16 kHz single-channel format exists here (what uservlm asks for); other preferences
are recorded but served the same way.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uservlm_ros.backends.audio import load_speech, resample, to_int16
from uservlm_ros.backends.tts import SYNTHESIZERS, Synthesizer, TtsOptions

RATE = 16000
BLOCK_SAMPLES = 2720  # 170 ms at 16 kHz, NAOqi's buffer length
SPEECH_DIR = Path(__file__).resolve().parent / "speech"  # users' questions only
SPEECH_LEVEL = 0.01  # an absolute sample value above this counts as speech (for speech_end)


@dataclass
class Played:
    """A clip queued on the microphones and, once it played, when (host clock, s)."""

    samples: np.ndarray  # float32 mono 16 kHz
    label: str = ""
    start: float | None = None  # capture time of its first sample
    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def speech_offset_s(self) -> float:
        """Where the speech in the clip ends (its last sample louder than SPEECH_LEVEL)."""
        loud = np.flatnonzero(np.abs(self.samples) > SPEECH_LEVEL)
        return (loud[-1] + 1) / RATE if len(loud) else 0.0

    @property
    def speech_end(self) -> float | None:
        """Capture time of the end of the speech in the clip."""
        return None if self.start is None else self.start + self.speech_offset_s


class SimulatedMicrophones:
    """What the microphones hear; see the module docstring. Thread-safe."""

    def __init__(self, noise_level: float = 0.0, own_voice_gain: float = 0.6) -> None:
        self.noise_level = noise_level
        self.own_voice_gain = own_voice_gain
        self._own_voice = np.zeros(0, np.float32)  # what the robot says, still to be heard
        self._queue: deque[Played] = deque()
        self._current: tuple[Played, int] | None = None  # clip and samples already played
        self._voice_pos = 0  # samples of _own_voice already heard
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(0)
        self.history: list[Played] = []
        self.own_speech_s = 0.0  # how much of its own voice the robot fed its microphones

    def play(self, samples: np.ndarray, label: str = "") -> Played:
        """Queue a clip (16 kHz mono float32 in [-1, 1]); it plays after those before it."""
        played = Played(np.asarray(samples, np.float32), label)
        with self._lock:
            self._queue.append(played)
            self.history.append(played)
        return played

    def play_file(self, path: str | Path) -> Played:
        return self.play(load_speech(path), Path(path).name)

    def speak(self, samples: np.ndarray) -> None:
        """The robot says `samples` (16 kHz mono float32): its voice goes into its microphones,
        after what it is still saying."""
        with self._lock:
            rest = self._own_voice[self._voice_pos :]
            self._own_voice = np.concatenate([rest, np.asarray(samples, np.float32)])
            self._voice_pos = 0
            self.own_speech_s += len(samples) / RATE

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._current is None and not self._queue

    def next_block(self, start: float, n: int = BLOCK_SAMPLES) -> np.ndarray:
        """The int16 block captured from `start` (host clock) for `n` samples."""
        block = np.zeros(n, np.float32)
        if self.noise_level:
            block += self._rng.normal(0.0, self.noise_level, n).astype(np.float32)
        with self._lock:
            filled = 0
            while filled < n:
                if self._current is None:
                    if not self._queue:
                        break
                    clip = self._queue.popleft()
                    clip.start = start + filled / RATE
                    clip.started.set()
                    self._current = (clip, 0)
                clip, position = self._current
                take = min(n - filled, len(clip.samples) - position)
                block[filled : filled + take] += clip.samples[position : position + take]
                filled += take
                position += take
                if position >= len(clip.samples):
                    clip.done.set()
                    self._current = None
                else:
                    self._current = (clip, position)
            voice = self._own_voice[self._voice_pos : self._voice_pos + n]
            block[: len(voice)] += self.own_voice_gain * voice
            self._voice_pos += len(voice)
        return to_int16(block)


class RobotVoice:
    """What the simulated robot's text sounds like: synthesized, at 16 kHz (the microphones'
    rate). The synthesizer program starts at the first sentence and stops with `close`."""

    def __init__(self, synthesizer: Synthesizer | None = None) -> None:
        self.synthesizer = synthesizer or SYNTHESIZERS.create("piper", TtsOptions())

    def __call__(self, text: str) -> np.ndarray:
        samples = self.synthesizer.synthesize(text)
        return resample(samples, self.synthesizer.voice.sample_rate, RATE)

    def close(self) -> None:
        self.synthesizer.close()


class SimulatedAudioDevice:
    """ALAudioDevice for remote clients over qi; see the module docstring."""

    name = "ALAudioDevice"

    def __init__(self, session: Any, microphones: SimulatedMicrophones, log: Any) -> None:
        self._session = session
        self._microphones = microphones
        self._log = log
        self._clients: dict[str, Any] = {}
        self._preferences: dict[str, tuple] = {}
        self._lock = threading.Lock()
        self._running = True
        self._thread: threading.Thread | None = None
        self.on_first_subscriber = None  # called once, when a client first subscribes

    def setClientPreferences(self, name, sample_rate, channels, deinterleaved):
        self._log.record(
            self.name, "setClientPreferences", name, sample_rate, channels, deinterleaved
        )
        self._preferences[name] = (sample_rate, channels, deinterleaved)

    def subscribe(self, name):
        self._log.record(self.name, "subscribe", name)
        proxy = self._session.service(name)  # the client's own service: RuntimeError if absent
        with self._lock:
            self._clients[name] = proxy
            first = self._thread is None
            if first:
                self._thread = threading.Thread(target=self._feed, name="sim_mics", daemon=True)
                self._thread.start()
        if first and self.on_first_subscriber is not None:
            self.on_first_subscriber()

    def unsubscribe(self, name):
        self._log.record(self.name, "unsubscribe", name)
        with self._lock:
            self._clients.pop(name, None)

    def getSubscribers(self):
        with self._lock:
            return list(self._clients)

    @property
    def subscribers(self) -> list[str]:
        return self.getSubscribers()

    def close(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _feed(self) -> None:
        period = BLOCK_SAMPLES / RATE
        start = time.time()
        while self._running:
            block = self._microphones.next_block(start)
            start += period
            delay = start - time.time()  # delivered once captured completely, as NAOqi does
            if delay > 0:
                time.sleep(delay)
            seconds = int(start)
            stamp = [seconds, int((start - seconds) * 1e6)]
            payload = block.astype("<i2").tobytes()
            with self._lock:
                clients = list(self._clients.items())
            for name, proxy in clients:
                try:
                    proxy.processRemote(1, BLOCK_SAMPLES, stamp, payload)
                except RuntimeError:  # the client went away without unsubscribing
                    with self._lock, contextlib.suppress(KeyError):
                        del self._clients[name]
