"""A simulated Pepper: the NAOqi services the bridge and the camera use, over real libqi.

It serves ALTextToSpeech, ALAnimatedSpeech, ALAnimationPlayer, ALMotion, ALRobotPosture,
ALMemory, ALAudioDevice (microphones: `pepper.microphones.play(...)`, and the robot hears its own
voice while it speaks: what it says, synthesized with the bridge's Piper voice; see
sim/audio_device.py) and (when the perception package provides it)
ALVideoDevice on a loopback qi endpoint,
records every call (the `calls` list, and a JSONL file when asked), and can be stopped and
started again on the same port, so tests can make the robot go away and come back. With
`services_delay_s` it behaves like a booting robot: it accepts connections at once and registers
its services that much later.

Library use (tests, `uservlm demo`):

    with SimulatedPepper() as pepper:          # or pepper.start() / pepper.stop()
        url = pepper.url                       # e.g. tcp://127.0.0.1:40123
        ...
        pepper.wait_for_call("ALAnimatedSpeech", "say")

Command: `uservlm sim-pepper [--port 9559] [--log calls.jsonl] [--mic FILE.wav|FOLDER]`.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uservlm_ros.sim.audio_device import (
    RATE,
    RobotVoice,
    SimulatedAudioDevice,
    SimulatedMicrophones,
)


@dataclass(frozen=True)
class Call:
    """One call a client made on the simulated robot."""

    service: str
    method: str
    args: list[Any]
    time: float  # wall clock, seconds


class CallLog:
    """Thread-safe record of calls, optionally appended to a JSONL file as they happen."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._calls: list[Call] = []
        self._condition = threading.Condition()

    def record(self, service: str, method: str, *args: Any) -> None:
        call = Call(service, method, [_plain(a) for a in args], time.time())
        with self._condition:
            self._calls.append(call)
            if self.path is not None:
                with self.path.open("a") as handle:
                    handle.write(json.dumps(asdict(call)) + "\n")
            self._condition.notify_all()

    @property
    def calls(self) -> list[Call]:
        with self._condition:
            return list(self._calls)

    def wait_for(
        self, predicate: Callable[[Call], bool], timeout: float = 10.0, count: int = 1
    ) -> list[Call]:
        """The matching calls once there are `count` of them; raises TimeoutError."""

        def matching() -> list[Call]:
            return [c for c in self._calls if predicate(c)]

        with self._condition:
            if not self._condition.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(
                    f"{count} matching call(s) not seen in {timeout} s; calls so far: "
                    f"{[(c.service, c.method, c.args) for c in self._calls]}"
                )
            return matching()


def _plain(value: Any) -> Any:
    """Arguments as JSON-friendly values (qi hands over lists, dicts, numbers, strings)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


class _Service:
    """Base of the simulated services: every public method call is recorded."""

    name = ""

    def __init__(self, log: CallLog, speech_s_per_word: float = 0.0) -> None:
        self._log = log
        self._speech_s_per_word = speech_s_per_word
        self.voice: Callable[[str], np.ndarray] | None = None  # text -> 16 kHz samples
        self.hear_own_voice: Callable[[np.ndarray], None] | None = None  # microphones' speak()

    def _record(self, method: str, *args: Any) -> None:
        self._log.record(self.name, method, *args)

    def _speak(self, text: str) -> None:
        """Blocks like the real robot while it talks (if a speaking rate is set): at least the
        rate times the words, and as long as its synthesized voice lasts, which goes into its
        own microphones meanwhile."""
        if self._speech_s_per_word:
            plain = _ANNOTATION.sub(" ", text)
            seconds = self._speech_s_per_word * len(plain.split())
            if self.voice is not None:
                samples = self.voice(plain)
                if self.hear_own_voice is not None:
                    self.hear_own_voice(samples)
                seconds = max(seconds, len(samples) / RATE)
            time.sleep(seconds)


_ANNOTATION = re.compile(r"\^\w+\([^)]*\)")  # ALAnimatedSpeech's ^start(...) / ^wait(...)


# Method names are NAOqi's (camelCase), as clients call them.
class SimTextToSpeech(_Service):
    name = "ALTextToSpeech"

    def __init__(self, log: CallLog, speech_s_per_word: float = 0.0) -> None:
        super().__init__(log, speech_s_per_word)
        self._language = "English"
        self._volume = 0.8

    def say(self, text, *rest):
        self._record("say", text, *rest)
        self._speak(text)

    def stopAll(self):
        self._record("stopAll")

    def setLanguage(self, language):
        self._record("setLanguage", language)
        self._language = language

    def getLanguage(self):
        return self._language

    def setVolume(self, volume):
        self._record("setVolume", volume)
        self._volume = float(volume)

    def getVolume(self):
        return self._volume


class SimAnimatedSpeech(_Service):
    name = "ALAnimatedSpeech"

    def __init__(self, log: CallLog, speech_s_per_word: float = 0.0) -> None:
        super().__init__(log, speech_s_per_word)
        self._mode = "contextual"

    def say(self, text, *configuration):
        self._record("say", text, *configuration)
        self._speak(text)

    def setBodyLanguageModeFromStr(self, mode):
        self._record("setBodyLanguageModeFromStr", mode)
        self._mode = mode

    def getBodyLanguageModeToStr(self):
        return self._mode


class SimAnimationPlayer(_Service):
    name = "ALAnimationPlayer"

    def run(self, animation, *rest):
        self._record("run", animation, *rest)

    def runTag(self, tag, *rest):
        self._record("runTag", tag, *rest)


class SimMotion(_Service):
    name = "ALMotion"

    def __init__(self, log: CallLog, speech_s_per_word: float = 0.0) -> None:
        super().__init__(log, speech_s_per_word)
        self._awake = False

    def wakeUp(self):
        self._record("wakeUp")
        self._awake = True

    def rest(self):
        self._record("rest")
        self._awake = False

    def robotIsWakeUp(self):
        return self._awake

    def setStiffnesses(self, names, stiffnesses):
        self._record("setStiffnesses", names, stiffnesses)

    def setBreathEnabled(self, chain, enabled):
        self._record("setBreathEnabled", chain, enabled)


class SimRobotPosture(_Service):
    name = "ALRobotPosture"
    POSTURES = ("Stand", "StandInit", "StandZero", "Crouch")

    def __init__(self, log: CallLog, speech_s_per_word: float = 0.0) -> None:
        super().__init__(log, speech_s_per_word)
        self._posture = "Crouch"

    def goToPosture(self, posture, speed):
        self._record("goToPosture", posture, speed)
        if posture not in self.POSTURES:
            return False
        self._posture = posture
        return True

    def getPosture(self):
        return self._posture

    def getPostureList(self):
        return list(self.POSTURES)


class SimMemory(_Service):
    name = "ALMemory"

    def __init__(self, log: CallLog, speech_s_per_word: float = 0.0) -> None:
        super().__init__(log, speech_s_per_word)
        self._data: dict[str, Any] = {"RobotConfig/Body/Type": "Pepper"}

    def insertData(self, key, value):
        self._record("insertData", key, value)
        self._data[key] = value

    def raiseEvent(self, key, value):
        self._record("raiseEvent", key, value)
        self._data[key] = value

    def getData(self, key, *rest):
        if key not in self._data:
            raise RuntimeError(f"ALMemory: no data for key {key!r}")
        return self._data[key]

    def getDataList(self, prefix):
        return [k for k in self._data if k.startswith(prefix)]


SERVICES = (
    SimTextToSpeech,
    SimAnimatedSpeech,
    SimAnimationPlayer,
    SimMotion,
    SimRobotPosture,
    SimMemory,
)


def _video_device(frames: Sequence[np.ndarray] | None) -> Any | None:
    """ALVideoDevice from the perception package (serving `frames`, default: a photo of a
    person shipped with scikit-image), or None where that module is not available."""
    try:
        from uservlm_ros.sim.video_device import SimulatedVideoDevice
    except ImportError:
        return None
    if frames is None:
        from skimage.data import astronaut

        frames = [astronaut()]
    return SimulatedVideoDevice(frames)


class SimulatedPepper:
    """The simulated robot; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | Path | None = None,
        speech_s_per_word: float = 0.0,
        frames: Sequence[np.ndarray] | None = None,
        services_delay_s: float = 0.0,
        microphones: SimulatedMicrophones | None = None,
        voice: RobotVoice | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.services_delay_s = services_delay_s
        self.services_ready_at: float | None = None  # time.time() the services began registering
        self.frames = frames  # what ALVideoDevice serves (RGB); None = a sample photo
        self.log = CallLog(log_path)
        self.speech_s_per_word = speech_s_per_word
        # A talking robot's voice: the shipped Piper voice unless given (its program starts at
        # the first sentence); ConfigError here when it is not installed.
        self.voice = voice or (RobotVoice() if speech_s_per_word > 0 else None)
        # What ALAudioDevice serves; kept across restarts (queued clips survive them).
        self.microphones = microphones or SimulatedMicrophones()
        self._session: Any = None
        self.services: dict[str, Any] = {}
        self.on_first_audio_subscriber: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def calls(self) -> list[Call]:
        return self.log.calls

    @property
    def running(self) -> bool:
        return self._session is not None

    def start(self) -> str:
        """Listen (on the same port as before after a stop) and serve; returns the URL."""
        import qi

        if self._session is not None:
            return self.url
        session = qi.Session()
        session.listenStandalone(self.url)
        if self.port == 0:
            self.port = int(session.endpoints()[0].rsplit(":", 1)[1])
        self.services = {cls.name: cls(self.log, self.speech_s_per_word) for cls in SERVICES}
        for name in ("ALTextToSpeech", "ALAnimatedSpeech"):
            self.services[name].voice = self.voice
            self.services[name].hear_own_voice = self.microphones.speak
        audio = SimulatedAudioDevice(session, self.microphones, self.log)
        audio.on_first_subscriber = self.on_first_audio_subscriber
        self.services[SimulatedAudioDevice.name] = audio
        video = _video_device(self.frames)
        if video is not None:
            self.services["ALVideoDevice"] = video
        self._session = session
        self.services_ready_at = None
        if self.services_delay_s > 0:
            threading.Thread(
                target=self._register_later, args=(session,), name="sim-pepper-boot", daemon=True
            ).start()
        else:
            self._register(session)
        return self.url

    def _register(self, session: Any) -> None:
        self.services_ready_at = time.time()  # a client may use the first ones at once
        for name, service in self.services.items():
            session.registerService(name, service)

    def _register_later(self, session: Any) -> None:
        time.sleep(self.services_delay_s)
        if self._session is session:  # not stopped (or restarted) meanwhile
            # stopped between the check and the registration: nothing to serve
            with contextlib.suppress(RuntimeError):
                self._register(session)

    def stop(self) -> None:
        """Close the endpoint: connected clients see the robot disappear."""
        if self._session is not None:
            self._session.close()
            self._session = None
            self.services[SimulatedAudioDevice.name].close()
            if self.voice is not None:  # its program starts again at the next sentence
                self.voice.close()

    def restart(self, down_s: float = 0.0) -> str:
        self.stop()
        time.sleep(down_s)
        return self.start()

    def calls_to(self, service: str, method: str | None = None) -> list[Call]:
        return [
            c for c in self.calls if c.service == service and (method is None or c.method == method)
        ]

    def wait_for_call(
        self,
        service: str,
        method: str,
        predicate: Callable[[Call], bool] = lambda _: True,
        timeout: float = 10.0,
        count: int = 1,
    ) -> list[Call]:
        return self.log.wait_for(
            lambda c: c.service == service and c.method == method and predicate(c),
            timeout,
            count,
        )

    def __enter__(self) -> SimulatedPepper:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    log_path: str | None,
    speech_s_per_word: float,
    mic: str | None = None,
    mic_gap_s: float = 2.0,
) -> int:
    """Run the simulated robot until interrupted (the `uservlm sim-pepper` command).

    With `mic` (a WAV file or a folder of them), the microphones play those files once, in name
    order with `mic_gap_s` of silence between them, from when the first audio client subscribes.
    """
    from uservlm_ros.backends.audio import load_speech
    from uservlm_ros.backends.audio_sources import wav_files

    clips = [(path.name, load_speech(path)) for path in wav_files(mic)] if mic else []
    pepper = SimulatedPepper(host, port, log_path, speech_s_per_word)

    def play_clips() -> None:
        for name, samples in clips:
            pepper.microphones.play(np.zeros(int(mic_gap_s * 16000), np.float32))
            pepper.microphones.play(samples, name)
            print(f"microphones: queued {name} ({len(samples) / 16000:.1f} s)", flush=True)

    pepper.on_first_audio_subscriber = play_clips
    url = pepper.start()
    print(
        f"sim-pepper listening on {url} (services: {', '.join(pepper.services)}); "
        f"calls logged to {log_path or 'stdout'}"
        + (f"; microphones will play {len(clips)} file(s) from {mic}" if clips else ""),
        flush=True,
    )
    seen = 0
    try:
        while True:
            time.sleep(0.2)
            calls = pepper.calls
            if log_path is None:
                for call in calls[seen:]:
                    print(f"{call.service}.{call.method}{tuple(call.args)}", flush=True)
            seen = len(calls)
    except KeyboardInterrupt:
        pass
    finally:
        pepper.stop()
    return 0
