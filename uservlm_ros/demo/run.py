"""`uservlm demo` (`make demo`): the whole system on the embedded default, then a report.

A simulated Pepper on loopback serves the two-person camera sequence (ALVideoDevice) and records
what the robot is asked to say and do. The deployment `config/demo.yaml` runs as node processes
over DDS: camera_node (Pepper's camera over NAOqi), face_crop_node (BlazeFace), user_profiler_node
(attributes), vlm_responder_node (the clearly labelled fallback template responder, or the VLM
with --vlm-model) and naoqi_bridge_node (speech and gestures on the simulated Pepper). This
driver waits for both users' profiles, asks scripted questions through the Respond action, and
prints a transcript; the report (Markdown with annotated frames and a latency chart) goes to a
folder it names.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.metrics import percentiles
from uservlm_ros.ros import topics


@dataclass(frozen=True)
class ScriptedQuestion:
    user: int  # 0 = the first user seen, 1 = the second
    question: str
    mode: str = "user_aware"


MIN_OBSERVATIONS = 10  # frames fused into a profile before the questions start

QUESTIONS = (
    ScriptedQuestion(0, "Hello! How are you today?"),
    ScriptedQuestion(1, "What do you see in front of you?"),
    ScriptedQuestion(0, "Can you tell me a joke?", "profile_prompt"),
    ScriptedQuestion(1, "How are you?", "profile_prompt"),
    ScriptedQuestion(0, "   "),  # an empty question: answered with an explicit error
)


@dataclass
class Exchange:
    user: int
    track_id: int
    question: str
    mode: str
    sent: float
    response: object = None  # uservlm/Response (final)
    first_sentence_at: float | None = None
    speech_started_at: float | None = None
    speech_finished: bool = False
    feedback_messages: int = 0


class _Observer:
    """The demo's own node: listens to the graph and drives the questions."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import MultiThreadedExecutor
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from uservlm.action import Respond
        from uservlm.msg import FaceArray, Response, UserProfile

        from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS

        self.node = rclpy.create_node("uservlm_demo")
        self.lock = threading.Lock()
        self.profiles: dict[int, UserProfile] = {}
        self.profile_latency_ms: list[float] = []
        self.stage_ms: dict[str, list[float]] = {}
        # face count -> (camera Image, its FaceArray): the latest frame with that many faces
        self.frames_with: dict[int, tuple[object, object]] = {}
        self.images: dict[tuple[int, int], object] = {}  # camera stamp -> the recent frames
        self.responses: dict[str, object] = {}
        self.early: dict[str, float] = {}
        self.speech: list[tuple[float, dict]] = []
        self.node.create_subscription(UserProfile, topics.PROFILE, self._on_profile, LATCHED_QOS)
        self.node.create_subscription(FaceArray, topics.FACES, self._on_faces, RELIABLE_QOS)
        self.node.create_subscription(Image, topics.IMAGE, self._on_image, SENSOR_QOS)
        self.node.create_subscription(Response, topics.RESPONSE, self._on_response, RELIABLE_QOS)
        self.node.create_subscription(String, topics.SPEECH_EVENTS, self._on_speech, RELIABLE_QOS)
        self.respond = ActionClient(self.node, Respond, topics.RESPOND_ACTION)
        self.goal_type = Respond.Goal
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _add_timings(self, prefix: str, timings) -> None:
        for timing in timings:
            self.stage_ms.setdefault(f"{prefix}/{timing.stage}", []).append(timing.duration_ms)

    def _on_profile(self, msg) -> None:
        from uservlm_ros.ros.conversions import stamp_to_seconds

        with self.lock:
            self.profiles[msg.track_id] = msg
            self.profile_latency_ms.append((time.time() - stamp_to_seconds(msg.header.stamp)) * 1e3)
            self._add_timings("profile", msg.timings)

    def _on_faces(self, msg) -> None:
        with self.lock:
            self._add_timings("faces", msg.timings)
            image = self.images.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
            if msg.faces and image is not None:
                self.frames_with[len(msg.faces)] = (image, msg)

    def _on_image(self, msg) -> None:
        with self.lock:
            self.images[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
            while len(self.images) > 30:  # the faces of a frame come within a few frames
                del self.images[next(iter(self.images))]

    def _on_response(self, msg) -> None:
        with self.lock:
            if msg.final:
                self.responses[msg.request_id] = msg
                self._add_timings("response", msg.timings)
            else:
                self.early.setdefault(msg.request_id, time.monotonic())

    def _on_speech(self, msg) -> None:
        with self.lock:
            self.speech.append((time.monotonic(), json.loads(msg.data)))

    def known_users(self) -> list[int]:
        """Tracks whose profile has a known gender or age, in order of first profile."""
        with self.lock:
            return [t for t, p in self.profiles.items() if p.gender.known or p.age_group.known]

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()


def _wait(predicate, timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def _describe(profile) -> str:
    parts = []
    for estimate in (profile.age_group, profile.gender, profile.ethnicity, profile.emotion):
        if estimate.known:
            parts.append(f"{estimate.name} {estimate.label} ({estimate.confidence:.2f})")
        else:
            parts.append(f"{estimate.name} unknown ({estimate.abstain_reason})")
    return ", ".join(parts) + f"; {profile.observations} observations fused"


def run_demo(
    out_root: Path = Path("demo_output"),
    vlm_model: str = "",
    out: TextIO | None = None,
    profile_timeout_s: float = 60.0,
) -> int:
    """Run the demo; returns 0 when every question got its answer (or explicit error)."""
    import sys

    import rclpy

    from uservlm_ros.bringup.graph import load_graph
    from uservlm_ros.bringup.runner import GraphRunner
    from uservlm_ros.demo.scene import make_scene
    from uservlm_ros.sim.pepper import SimulatedPepper

    out = out or sys.stdout
    started = time.monotonic()
    folder = Path(out_root) / datetime.now().strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        out.write(f"[{time.monotonic() - started:5.1f} s] {text}\n")
        out.flush()

    responder = (
        "the User-VLM at " + vlm_model
        if vlm_model
        else (
            "the FALLBACK TEMPLATE responder (no VLM weights here: answers are templates, not VLM "
            "output)"
        )
    )
    say(f"uservlm demo: no robot, no internet; answers come from {responder}")
    import qi

    qi.logging.setLevel(qi.logging.WARNING)  # the simulated robot's service chatter
    scene = make_scene(45)
    frames = [f.rgb for f in scene] + [f.rgb for f in reversed(scene)]  # walks in, then out
    pepper = SimulatedPepper(port=0, frames=frames)
    url = pepper.start()
    say(f"simulated Pepper listening at {url} (camera: {len(frames)} frames, two people)")

    overrides = {
        "camera_node": {"naoqi.port": pepper.port},
        "naoqi_bridge_node": {"robot.port": pepper.port},
    }
    if vlm_model:
        overrides["vlm_responder_node"] = {
            "responder.backend": "paligemma",
            "model.path": vlm_model,
        }
    graph = load_graph("demo", overrides)
    node_log = (folder / "nodes.log").open("w")
    runner = GraphRunner(graph, out=node_log, colour=False)
    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    observer = None
    exchanges: list[Exchange] = []
    try:
        runner.start()
        say(
            f"started {len(graph.nodes)} nodes ({', '.join(s.name for s in graph.nodes)}); "
            f"their output: {folder / 'nodes.log'}"
        )
        observer = _Observer()
        if not observer.respond.wait_for_server(timeout_sec=90):
            raise UservlmError("the responder did not come up; see nodes.log")

        def failed_node() -> str | None:
            return next((c.spec.name for c in runner.children if c.popen.poll() is not None), None)

        def settled() -> bool:  # two users, each profile fused over several frames
            users = observer.known_users()
            return len(users) >= 2 and all(
                observer.profiles[t].observations >= MIN_OBSERVATIONS for t in users[:2]
            )

        if not _wait(lambda: settled() or failed_node(), profile_timeout_s):
            say("warning: fewer than two users were profiled in time")
        if failed_node():
            raise UservlmError(f"{failed_node()} exited; see {folder / 'nodes.log'}")
        users = observer.known_users()
        if not users:
            raise UservlmError("nobody was profiled; see nodes.log")
        for index, track in enumerate(users[:2]):
            say(
                f"user #{track} ({'first' if index == 0 else 'second'} person): "
                f"{observer.profiles[track].profile_text or '(no known attribute yet)'}"
            )
            say(f"    {_describe(observer.profiles[track])}")

        for item in QUESTIONS:
            track = users[min(item.user, len(users) - 1)]
            exchanges.append(_ask(observer, item, track, say))
        _wait(
            lambda: all(
                e.speech_finished or e.response is None or e.response.error for e in exchanges
            ),
            20,
        )
    finally:
        runner.stop()
        node_log.close()
        if observer is not None:
            observer.close()
        if own_context:
            rclpy.try_shutdown()
        pepper.stop()

    _print_pepper_calls(pepper, say)
    report = write_demo_report(folder, observer, exchanges, pepper)
    answered = sum(e.response is not None for e in exchanges)
    say(f"{answered}/{len(exchanges)} questions answered (errors included); report: {report}")
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0 if answered == len(exchanges) else 1


def _ask(observer: _Observer, item: ScriptedQuestion, track: int, say) -> Exchange:
    goal = observer.goal_type(question=item.question, track_id=track, mode=item.mode)
    exchange = Exchange(item.user, track, item.question, item.mode, time.monotonic())
    say(f"user #{track} asks ({item.mode}): {item.question!r}")

    def on_feedback(_):
        exchange.feedback_messages += 1

    future = observer.respond.send_goal_async(goal, feedback_callback=on_feedback)
    if not _wait(future.done, 30):
        say("    no answer to the goal request within 30 s")
        return exchange
    handle = future.result()
    if not handle.accepted:
        say("    the responder rejected the goal")
        return exchange
    result = handle.get_result_async()
    if not _wait(result.done, 60):
        say("    no result within 60 s")
        return exchange
    response = result.result().result.response
    exchange.response = response
    with observer.lock:
        exchange.first_sentence_at = observer.early.get(response.request_id)
    if response.error:
        say(f"    robot: explicit error: {response.error}")
        return exchange
    say(
        f"    robot ({response.responder}, gesture {response.gesture or 'none'}, "
        f"{exchange.feedback_messages} streamed updates): {response.text!r}"
    )

    def spoken() -> bool:
        with observer.lock:
            events = [
                (t, e) for t, e in observer.speech if e.get("request_id") == response.request_id
            ]
        if events and exchange.speech_started_at is None:
            exchange.speech_started_at = (
                min(t for t, e in events if e["event"] == "started")
                if any(e["event"] == "started" for _, e in events)
                else None
            )
        exchange.speech_finished = any(
            e["event"] == "finished" and e.get("part") in ("rest", "full") for _, e in events
        )
        return exchange.speech_finished

    _wait(spoken, 15)
    return exchange


def _print_pepper_calls(pepper, say) -> None:
    say("what Pepper did (calls recorded by the simulated robot):")
    for call in pepper.calls:
        if call.service in (
            "ALAnimatedSpeech",
            "ALTextToSpeech",
            "ALAnimationPlayer",
            "ALRobotPosture",
            "ALMotion",
        ):
            args = ", ".join(repr(a) for a in call.args)
            say(f"    {call.service}.{call.method}({args})")


def write_demo_report(
    folder: Path, observer: _Observer | None, exchanges: list[Exchange], pepper
) -> Path:
    """report.md with annotated frames, the transcript and a latency chart; returns its path."""
    import cv2

    from uservlm_ros.core.overlay import draw_people
    from uservlm_ros.eval.report import latency_chart, latency_table
    from uservlm_ros.ros.conversions import faces_to_people, image_to_rgb

    lines = [
        "# uservlm demo report",
        "",
        "The whole system ran on this machine: simulated Pepper (camera, speech, gestures) "
        "over NAOqi's qi protocol, the node graph over DDS, the real BlazeFace detector and "
        "attribute profiler. Answers from `fallback-template` are template text, not VLM "
        "output.",
        "",
    ]
    if observer is not None:
        lines += ["## Who was seen", ""]
        for track, profile in sorted(observer.profiles.items()):
            lines.append(
                f"- **user #{track}**: {profile.profile_text or '(nothing known)'} "
                f"-- {_describe(profile)}; model `{profile.model_id}`"
            )
        lines.append("")
        for count, (image, faces) in sorted(observer.frames_with.items()):
            # Drawn with the final profiles (the live debug image shows the ones of its time).
            drawn = draw_people(image_to_rgb(image), faces_to_people(faces, observer.profiles))
            path = folder / f"frame_{count}_faces.png"
            cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            lines.append(f"![frame with {count} face(s)]({path.name})")
        lines.append("")
    lines += [
        "## Conversation",
        "",
        "| user | mode | question | answer | responder | gesture | "
        "question -> first sentence | question -> speech |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in exchanges:
        r = e.response
        answer = "(no answer)" if r is None else (f"error: {r.error}" if r.error else r.text)
        first = f"{(e.first_sentence_at - e.sent) * 1e3:.0f} ms" if e.first_sentence_at else "-"
        speech = f"{(e.speech_started_at - e.sent) * 1e3:.0f} ms" if e.speech_started_at else "-"
        lines.append(
            f"| #{e.track_id} | {e.mode} | {e.question.strip() or '(empty)'} | {answer} "
            f"| {r.responder if r else '-'} | {r.gesture if r else '-'} | {first} | "
            f"{speech} |"
        )
    lines += ["", "## What Pepper did", ""]
    lines += [
        f"- `{c.service}.{c.method}({', '.join(repr(a) for a in c.args)})`" for c in pepper.calls
    ]
    if observer is not None:
        stages = {name: percentiles(values) for name, values in sorted(observer.stage_ms.items())}
        stages["camera -> profile (end to end)"] = percentiles(observer.profile_latency_ms)
        answers = [(e.first_sentence_at - e.sent) * 1e3 for e in exchanges if e.first_sentence_at]
        speech = [(e.speech_started_at - e.sent) * 1e3 for e in exchanges if e.speech_started_at]
        stages["question -> first sentence"] = percentiles(answers)
        stages["question -> speech start"] = percentiles(speech)
        chart = latency_chart(stages, folder / "latency.png", "per-stage latency (demo run)")
        lines += ["", "## Latency", "", *latency_table(stages), "", f"![latency]({chart.name})"]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
