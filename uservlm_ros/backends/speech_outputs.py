"""How naoqi_bridge_node speaks (its `backend` parameter): the registry of speech outputs.

Every output has `name`, `description`, `connected`, `connect()`, `speak(utterance)` and
`close()`, and may have `stop()` (cut the utterance being said short: `speak` raises
SpeechStopped). `speak` raises RobotUnavailable when the robot went away (the bridge reconnects
and says the utterance again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from uservlm_ros.backends.local_speech import OUTPUTS, LocalSpeech
from uservlm_ros.backends.pepper_speech import LibqiSpeech, NaoqiDriverSpeech, connection_options
from uservlm_ros.backends.tts import SYNTHESIZERS
from uservlm_ros.core.gestures import parse_animation_map
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.registry import Registry


@dataclass(frozen=True)
class OutputContext:
    """What a speech output may take from the node besides its options."""

    values: Mapping[str, Any]  # every parameter of the node (the local backend's tts.*)
    open_text_topic: Callable[[], Callable[[str], None]]  # advertises /speech; returns publish
    log: Callable[[str], None]


def _check_animations(value: list) -> str | None:
    try:
        parse_animation_map(value)
    except (ValueError, AttributeError) as error:
        return str(error)
    return None


@dataclass(frozen=True)
class LibqiOptions(connection_options("robot")):
    services_timeout_s: float = setting(30.0, name="robot.services_timeout_s", min=0.1, max=600)
    """After connecting, wait this long for the NAOqi services the bridge uses to be registered
    (a restarting robot starts them over seconds), then retry, s"""
    wake_up: bool = setting(True, name="robot.wake_up")
    """ALMotion.wakeUp() after connecting (stiff, standing posture)"""
    animated: bool = setting(True, name="speech.animated")
    """Use ALAnimatedSpeech (gesture embedded in the text); false = ALTextToSpeech.say with
    ALAnimationPlayer.run for the gesture"""
    animations: list = setting(  # noqa: RUF009 (each instance gets its own list)
        [], name="speech.animations", check=_check_animations
    )
    """Gesture tag -> Pepper animation overrides, TAG=PATH each, e.g.
    [happy=animations/Stand/Emotions/Positive/Happy_4]"""
    language: str = setting("", name="speech.language")
    """ALTextToSpeech.setLanguage at connect (e.g. English); empty keeps"""


@dataclass(frozen=True)
class NaoqiDriverOptions:
    pass


@dataclass(frozen=True)
class LocalOptions:
    synthesizer: str = setting("piper", name="tts.backend", choices=SYNTHESIZERS.names)
    """Speech synthesizer of the local backend: piper (the piper program in its own process)"""
    output: str = setting("speaker", name="tts.output", choices=OUTPUTS.names)
    """Where the local backend speaks: speaker (PortAudio) or wav (a file per utterance in
    tts.wav_dir)"""


def _libqi(o: LibqiOptions, context: OutputContext) -> LibqiSpeech:
    return LibqiSpeech(
        o.address,
        parse_animation_map(o.animations),
        animated=o.animated,
        language=o.language,
        wake_up=o.wake_up,
        connect_timeout_s=o.connect_timeout_s,
        services_timeout_s=o.services_timeout_s,
        log=context.log,
    )


def _local(o: LocalOptions, context: OutputContext) -> LocalSpeech:
    synthesizer = SYNTHESIZERS.create(o.synthesizer, context.values)
    return LocalSpeech(synthesizer, OUTPUTS.create(o.output, context.values))


# Adding a way to speak: a class as in the module docstring, its options, one line here.
SPEECH_OUTPUTS: Registry[Any] = Registry("speech output", "")
SPEECH_OUTPUTS.add("libqi", _libqi, LibqiOptions, "Pepper's NAOqi services over qi")
SPEECH_OUTPUTS.add(
    "naoqi_driver",
    lambda o, context: NaoqiDriverSpeech(context.open_text_topic()),
    NaoqiDriverOptions,
    "publish the text on /speech for a running naoqi_driver2",
)
SPEECH_OUTPUTS.add(
    "local",
    _local,
    LocalOptions,
    "a voice synthesized on this computer, to its speakers or WAV files (tts.*)",
)
