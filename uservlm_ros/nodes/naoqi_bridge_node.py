"""naoqi_bridge_node: makes Pepper say each answer on /uservlm/response with a matching gesture.

It speaks an early first sentence (Response.final false) as soon as it arrives, then only the
rest of the final answer. Backends: `libqi` (NAOqi services over qi; reconnects with backoff
and keeps utterances queued while the robot is away) or `naoqi_driver` (the text on /speech).
What it did is published on /uservlm/speech_events (std_msgs/String, one JSON object each):

    {"event": "started" | "finished" | "interrupted" | "dropped",
     "request_id": "...", "part": "early" | "rest" | "full", "text": "...",
     "backend": "libqi" | "naoqi_driver", "detail": "..."}

    python -m uservlm_ros.nodes.naoqi_bridge_node --ros-args -p robot.ip:=10.0.0.2
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import OrderedDict

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import String
from uservlm.msg import Response

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

REMEMBERED_EARLY = 100  # early sentences kept to match their final answers


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
        "How to reach the robot: libqi (NAOqi services over qi) or naoqi_driver (publish the "
        "text on /speech for a running naoqi_driver2)",
        choices=("libqi", "naoqi_driver"),
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
            try:
                self.speech.speak(pending)
            except RobotUnavailable as error:
                self.diagnostics.count("interrupted")
                self.diagnostics.set_status(DiagnosticStatus.WARN, f"robot lost: {error}")
                self.get_logger().warning(f"[{pending.request_id}] {error}; will say it again")
                self._event("interrupted", pending, str(error))
                continue
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
