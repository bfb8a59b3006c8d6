"""naoqi_bridge_node: says each answer on /uservlm/response, on Pepper or on this computer.

It speaks an early first sentence (Response.final false) as soon as it arrives, then only the
rest of the final answer. Backends: `libqi` (NAOqi services over qi; reconnects with backoff
and keeps utterances queued while the robot is away), `naoqi_driver` (the text on /speech) or
`local` (a Piper voice synthesized here, sentence by sentence, to the speakers or WAV files;
backends/local_speech.py). A cancelled Respond goal, and (with speech.stop_on_new_question) a
new question, stop what is being said and drop what is queued of the earlier answers; the
`local` backend falls silent at once, Pepper finishes its current utterance.
What it did with each utterance is published on /uservlm/speech_events (uservlm/SpeechEvent:
started, finished, interrupted or dropped). An utterance stopped while it is said gets
"interrupted" (it ended now) then "dropped" (it will not be said again).

    python -m uservlm_ros.nodes.naoqi_bridge_node --ros-args -p robot.ip:=10.0.0.2
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from action_msgs.msg import GoalStatus, GoalStatusArray
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import qos_profile_action_status_default
from std_msgs.msg import Header, String
from uservlm.msg import Response, SpeechEvent

from uservlm_ros.backends.local_speech import OUTPUTS, SpeechStopped
from uservlm_ros.backends.pepper_speech import (
    EARLY,
    FULL,
    REST,
    RobotUnavailable,
    Utterance,
    reconnect_backoff,
)
from uservlm_ros.backends.speech_outputs import SPEECH_OUTPUTS, OutputContext
from uservlm_ros.backends.tts import SYNTHESIZERS
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.parameters import Param
from uservlm_ros.core.request_queue import QueueFull, RequestQueue
from uservlm_ros.core.sentences import remainder
from uservlm_ros.ros import topics
from uservlm_ros.ros.conversions import seconds_to_stamp
from uservlm_ros.ros.diagnostics import Diagnostics, log_running, loss_counter
from uservlm_ros.ros.node_main import node_main
from uservlm_ros.ros.param_declare import node_parameters
from uservlm_ros.ros.qos import RELIABLE_QOS, REQUEST_QOS
from uservlm_ros.ros.respond_client import request_id_of

REMEMBERED_EARLY = 100  # early sentences kept to match their final answers
REMEMBERED_GOALS = 1000  # Respond goals seen on the action's status topic
CANCELLED = (GoalStatus.STATUS_CANCELING, GoalStatus.STATUS_CANCELED)


PARAMS: list[Param] = [
    SPEECH_OUTPUTS.choice_param("backend", "libqi", "How to speak"),
    *SPEECH_OUTPUTS.params(),
    *SYNTHESIZERS.params(),
    *OUTPUTS.params(),
    Param(
        "speech.queue_size",
        10,
        "Utterances kept while the robot talks or is away; more are dropped and reported",
        min=1,
        max=1000,
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
]


class NaoqiBridgeNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("naoqi_bridge_node", **kwargs)
        self.params = p = node_parameters(self, PARAMS)  # read at start-up: changes are refused
        self.diagnostics = Diagnostics(self, hardware_id=p["backend"])
        self._backoff = reconnect_backoff(
            "robot", p["robot.reconnect_min_s"], p["robot.reconnect_max_s"]
        )
        self.queue: RequestQueue[Utterance] = RequestQueue(p["speech.queue_size"])
        self._early: OrderedDict[str, str] = OrderedDict()  # request id -> sentence said early
        self._events = self.create_publisher(SpeechEvent, topics.SPEECH_EVENTS, REQUEST_QOS)
        self.speech = SPEECH_OUTPUTS.create(
            p["backend"], p, OutputContext(p, self._open_text_topic, self.get_logger().info)
        )
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
        speech = f"{self.speech.name} ({self.speech.description})"
        flow = "{} -> {speech}; events on {}"
        log_running(self, "ready", flow, topics.RESPONSE, topics.SPEECH_EVENTS, speech=speech)

    def _open_text_topic(self):
        """The naoqi_driver backend's /speech, advertised only for it."""
        publisher = self.create_publisher(String, topics.SPEECH, RELIABLE_QOS)
        return lambda text: publisher.publish(String(data=text))

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
                self._event(SpeechEvent.DROPPED, utterance, str(error))

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
        backoff = self._backoff
        pending: Utterance | None = None  # taken from the queue, not yet said completely
        while self._running:
            if not self.speech.connected:
                try:
                    self.speech.connect()
                    self.diagnostics.count("connections")
                    self.diagnostics.set_status(DiagnosticStatus.OK, "connected")
                    backoff.reset()
                except UservlmError as error:
                    delay = backoff.next_delay()
                    self.diagnostics.set_status(DiagnosticStatus.WARN, f"not connected: {error}")
                    self.get_logger().warning(
                        f"{error}; retrying in {delay:.1f} s", throttle_duration_sec=10.0
                    )
                    self._sleep(delay)
                    continue
            if pending is None:
                pending = self.queue.get(timeout=0.2)
                if pending is None:
                    continue
            started = time.time()
            self._event(SpeechEvent.STARTED, pending, started=started)
            with self._speaking_lock:
                self._speaking = pending
            try:
                self.speech.speak(pending)
            except SpeechStopped:
                self.diagnostics.count("interrupted")
                self._event(
                    SpeechEvent.INTERRUPTED, pending, f"stopped: {self._stop_reason}", started
                )
                self._drop(pending, f"stopped: {self._stop_reason}")
                pending = None
                continue
            except RobotUnavailable as error:
                self.diagnostics.count("interrupted")
                self.diagnostics.set_status(DiagnosticStatus.WARN, f"robot lost: {error}")
                self.get_logger().warning(f"[{pending.request_id}] {error}; will say it again")
                self._event(SpeechEvent.INTERRUPTED, pending, str(error), started)
                continue
            finally:
                with self._speaking_lock:
                    self._speaking = None
            self.diagnostics.count("utterances_said")
            self._event(SpeechEvent.FINISHED, pending, started=started)
            pending = None
        if pending is not None:  # shutting down while the robot was away: report, not lose it
            self._drop(pending, "shutting down")

    def _drop(self, utterance: Utterance, why: str) -> None:
        self.diagnostics.count("utterances_dropped")
        self.get_logger().warning(f"[{utterance.request_id}] not said ({why}): {utterance.text!r}")
        self._event(SpeechEvent.DROPPED, utterance, why)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._running and time.monotonic() < deadline:
            time.sleep(min(0.05, seconds))

    def _event(
        self, event: str, utterance: Utterance, detail: str = "", started: float = 0.0
    ) -> None:
        """`started`: when saying it began (time.time()), 0 when it never began."""
        now = time.time()
        self._events.publish(
            SpeechEvent(
                header=Header(stamp=seconds_to_stamp(now)),
                event=event,
                request_id=utterance.request_id,
                part=utterance.part,
                text=utterance.text,
                backend=self.speech.name,
                started=seconds_to_stamp(started),
                duration_ms=(now - started) * 1e3
                if started and event != SpeechEvent.STARTED
                else 0.0,
                detail=detail,
            )
        )

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


NODE = NaoqiBridgeNode  # what a container (nodes/container.py) builds under this node's name
main = node_main(NODE)

if __name__ == "__main__":
    main()
