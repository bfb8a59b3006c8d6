"""Nothing silently lost, no node that looks healthy while dead, one clear line per bad input.

Pure tests of the worker and the health verdicts, then the nodes over DDS: bad crops and crowds
into the profiler, bursts of questions and of responses, bad parameters of every node, live
parameter changes and the health levels they cause, the shared Respond client.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from harness import wait_until, within
from perception_graph import NODE, diagnostic_value, subscribe_diagnostics
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import String
from uservlm.msg import Face, FaceArray, Response, SpeechEvent, UserProfile

from uservlm_ros.core import health
from uservlm_ros.core.worker import SlotWorker
from uservlm_ros.ros import topics
from uservlm_ros.ros.conversions import rgb_to_image
from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS, REQUEST_QOS
from uservlm_ros.ros.respond_client import Partial, RespondClient

# ---------------------------------------------------------------- worker and health (pure)


class Dies(BaseException):
    """Escapes the worker's per-item handling, as a thread-killing bug would."""


def test_worker_survives_a_failing_item_and_counts_it():
    handled, errors = [], []

    def handle(item):
        if item == "bad":
            raise ValueError("malformed")
        handled.append(item)

    worker = SlotWorker(handle, "w", lambda item, error: errors.append((item, str(error))))
    worker.start()
    try:
        for item in ("a", "bad", "b"):
            worker.put(item)
            wait_until(lambda: worker.state().processed + worker.state().failed >= 1, 5, "work")
            time.sleep(0.05)
        wait_until(lambda: handled == ["a", "b"], 5, "the items after the bad one")
        assert errors == [("bad", "malformed")]
        state = worker.state()
        assert (state.processed, state.failed, state.alive) == (2, 1, True)
    finally:
        worker.stop()


def test_a_dead_worker_is_error_then_restarted_and_warn(monkeypatch):
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the death is expected

    def handle(item):
        if item == "die":
            raise Dies

    worker = SlotWorker(handle, "w", lambda *_: None)
    limits = health.HealthLimits(max_processing_ms=100, hang_s=5)
    worker.start()
    worker.put("die")
    wait_until(lambda: not worker.state().alive, 5, "the worker thread to die")
    assert health.judge_worker(worker.state(), limits, None).level == health.ERROR
    assert worker.ensure_running() and worker.state().alive and worker.restarts == 1
    verdict = health.judge_worker(worker.state(), limits, restarted_ago_s=1.0)
    assert verdict.level == health.WARN and "restarted 1x" in verdict.message("")
    assert health.judge_worker(worker.state(), limits, restarted_ago_s=61.0).level == health.OK
    worker.put("fine")
    wait_until(lambda: worker.state().processed == 1, 5, "work after the restart")
    worker.stop()


def test_health_verdicts_for_hangs_slowness_and_queues():
    worker = SlotWorker(lambda item: time.sleep(0.3), "slow", lambda *_: None)
    worker.start()
    try:
        worker.put(1)
        wait_until(lambda: worker.state().busy_s > 0.1, 5, "the worker to be busy")
        hung = health.judge_worker(worker.state(), health.HealthLimits(1000, 0.05), None)
        assert hung.level == health.ERROR and "stuck on one item" in hung.problems[0]
        wait_until(lambda: worker.state().processed == 1, 5, "the item to finish")
        slow = health.judge_worker(worker.state(), health.HealthLimits(100, 5), None)
        assert slow.level == health.WARN and "p95" in slow.problems[0]
        fine = health.judge_worker(worker.state(), health.HealthLimits(1000, 5), None)
        assert fine.level == health.OK
        worker.latency_bound = False  # nobody waits for its items: only death and hangs count
        background = health.judge_worker(worker.state(), health.HealthLimits(100, 5), None)
        assert background.level == health.OK
    finally:
        worker.stop()
    assert health.judge_queue("question", 3, 4).level == health.OK
    assert health.judge_queue("question", 4, 4).level == health.WARN
    both = health.combine(
        [health.Verdict(health.WARN, ("a",)), health.Verdict(health.ERROR, ("b",))]
    )
    assert both.level == health.ERROR and both.message("active") == "a; b"


# ---------------------------------------------------------------- profiler: bad crops, crowds


def start_node(processes, name: str, *params: str):
    args = ["-m", NODE.format(name), "--ros-args"]
    for param in params:
        args += ["-p", param]
    return processes.start_python(name, *args)


def crop(height: int = 112, width: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def faces(*specs: tuple[int, np.ndarray, float]) -> FaceArray:
    """A FaceArray of (track id, crop, box side as a fraction of the image) faces."""
    msg = FaceArray(image_width=640, image_height=480)
    msg.header.stamp.sec = int(time.time())
    for track_id, pixels, side in specs:
        msg.faces.append(
            Face(
                track_id=track_id,
                xmin=0.1,
                ymin=0.1,
                xmax=0.1 + side,
                ymax=0.1 + side,
                crop=rgb_to_image(pixels, msg.header),
            )
        )
    return msg


@pytest.fixture
def profiler_node(ros, processes):
    node = start_node(processes, "user_profiler_node", "max_faces:=3")
    node.wait_for_output("user_profiler_node active", timeout=30)
    publisher = ros.publisher(FaceArray, topics.FACES, RELIABLE_QOS)
    ros.wait_for_subscribers(topics.FACES)
    return node, publisher


@pytest.mark.graph
def test_profiler_survives_a_tall_crop_and_keeps_profiling(ros, profiler_node):
    _, publisher = profiler_node
    profiles = ros.subscribe(UserProfile, topics.PROFILE, LATCHED_QOS)
    diagnostics = subscribe_diagnostics(ros)
    publisher.publish(faces((7, crop(100, 5), 0.1)))  # killed the worker before
    for track_id in range(8, 18):  # one at a time: the worker keeps only the newest array
        publisher.publish(faces((track_id, crop(seed=track_id), 0.2)))
        wait_until(
            lambda t=track_id: t in {p.track_id for p in profiles.messages},
            10,
            f"a profile of track {track_id}",
        )
    wait_until(
        lambda: any(
            s.level == b"\x00" and "user_profiler_node" in s.name and s.message == "active"
            for m in diagnostics.messages
            for s in m.status
        ),
        5,
        "OK diagnostics",
    )


@pytest.mark.graph
def test_profiler_bounds_a_crowd_and_rejects_track_zero(ros, profiler_node):
    node, publisher = profiler_node
    profiles = ros.subscribe(UserProfile, topics.PROFILE, LATCHED_QOS)
    diagnostics = subscribe_diagnostics(ros)
    crowd = [(100 + i, crop(64, 64, i), 0.01 + 0.001 * i) for i in range(200)]
    publisher.publish(faces((0, crop(), 0.5), *crowd))
    wait_until(lambda: len(profiles.messages) >= 3, 20, "profiles of the largest faces")
    time.sleep(1.5)  # a second diagnostics message after the frame
    assert {p.track_id for p in profiles.messages} == {299, 298, 297}  # the 3 largest
    assert int(diagnostic_value(diagnostics, "user_profiler_node", "faces_skipped")) == 197
    assert int(diagnostic_value(diagnostics, "user_profiler_node", "faces_rejected")) == 1
    node.wait_for_output("rejected face with track id 0", timeout=5)


# ---------------------------------------------------------------- bursts


@pytest.fixture
def fallback_responder(ros, processes):
    node = start_node(
        processes,
        "vlm_responder_node",
        "responder.backend:=fallback",
        "responder.queue_size:=4",
        "responder.fallback_word_delay_s:=0.01",
    )
    node.wait_for_output("vlm_responder_node active", timeout=60)
    return node


@pytest.mark.graph
def test_a_burst_of_50_questions_gets_50_final_responses(ros, fallback_responder):
    responses = ros.subscribe(Response, topics.RESPONSE, REQUEST_QOS)
    questions = ros.publisher(String, topics.QUESTION, REQUEST_QOS)
    ros.wait_for_subscribers(topics.QUESTION)
    for index in range(50):
        questions.publish(String(data=f"Question number {index}: how are you?"))
    wait_until(lambda: sum(r.final for r in responses.messages) >= 50, 60, "50 final responses")
    time.sleep(0.5)
    finals = [r for r in responses.messages if r.final]
    assert len(finals) == 50 and len({r.request_id for r in finals}) == 50
    answered = [r for r in finals if not r.error]
    refused = [r for r in finals if r.error]
    assert answered and all("queue full" in r.error for r in refused)
    asked = {f"Question number {i}: how are you?" for i in range(50)}
    assert {r.question for r in finals} == asked


@pytest.mark.graph
def test_a_burst_of_50_responses_is_said_or_reported_dropped(ros, processes):
    bridge = start_node(
        processes, "naoqi_bridge_node", "backend:=naoqi_driver", "speech.queue_size:=5"
    )
    bridge.wait_for_output("naoqi_bridge_node ready", timeout=30)
    events = ros.subscribe(SpeechEvent, topics.SPEECH_EVENTS, REQUEST_QOS)
    publisher = ros.publisher(Response, topics.RESPONSE, REQUEST_QOS)
    ros.wait_for_subscribers(topics.RESPONSE)
    for index in range(50):
        publisher.publish(Response(request_id=f"r{index}", text=f"Answer {index}.", final=True))

    def outcomes() -> dict[str, str]:
        decoded = [
            {f: getattr(m, f) for f in ("event", "request_id", "part", "text", "backend", "detail")}
            for m in events.messages
        ]
        return {
            e["request_id"]: e["event"] for e in decoded if e["event"] in ("finished", "dropped")
        }

    wait_until(lambda: len(outcomes()) == 50, 30, "an outcome for each of the 50 responses")
    assert set(outcomes()) == {f"r{i}" for i in range(50)}


# ---------------------------------------------------------------- bad parameters

BAD_PARAMETERS = [
    ("face_crop_node", "crop_size:=5000", "'crop_size' must be <= 1024, got 5000"),
    ("face_crop_node", "detector.name:=yolo", "'detector.name' must be one of"),
    ("user_profiler_node", "threshold.gender:=high", "'threshold.gender' must be float"),
    ("vlm_responder_node", "responder.mode:=chatty", "'responder.mode' must be one of"),
    ("camera_node", "rate_hz:=-3.0", "'rate_hz' must be >="),
    ("naoqi_bridge_node", "robot.password_file:=/no/such/file", "/no/such/file"),
    ("speech_node", "vad.start_threshold:=2.0", "'vad.start_threshold' must be <= 1"),
    ("speech_node", "source:=bluetooth", "'source' must be one of"),
    ("speech_node", "vad.end_threshold:=0.9", "need 0 <= end_threshold <= start_threshold"),
]


@pytest.mark.graph
@pytest.mark.parametrize(("node", "param", "message"), BAD_PARAMETERS)
def test_a_bad_parameter_gives_one_line_and_exit_1(processes, node, param, message):
    process = start_node(processes, node, param)
    assert process.popen.wait(timeout=30) == 1
    output = process.output()
    assert message in output, output
    assert "Traceback" not in output, output
    assert len([line for line in output.splitlines() if line.strip()]) <= 2, output


# ---------------------------------------------------------------- live parameters and health


def set_parameters(ros, node: str, **values):
    client = ros.node.create_client(SetParameters, f"/{node}/set_parameters")
    assert client.wait_for_service(timeout_sec=15)
    request = SetParameters.Request(
        parameters=[
            Parameter(k.replace("__", "."), value=v).to_parameter_msg() for k, v in values.items()
        ]
    )
    future = client.call_async(request)
    wait_until(future.done, 10, f"set_parameters on {node}")
    ros.node.destroy_client(client)
    return future.result().results


@pytest.mark.graph
def test_live_parameters_apply_and_bad_ones_are_rejected(ros, profiler_node):
    node, publisher = profiler_node
    profiles = ros.subscribe(UserProfile, topics.PROFILE, LATCHED_QOS)
    publisher.publish(faces((5, crop(), 0.2)))
    first = profiles.wait_for(1, timeout=20)[0]
    assert first.gender.abstain_reason != "disabled"
    result = set_parameters(ros, "user_profiler_node", enable__gender=False)[0]
    assert result.successful

    def switched_off() -> bool:  # the scheduler profiles a known track again within 1 s
        publisher.publish(faces((5, crop(), 0.2)))
        time.sleep(0.2)
        return profiles.messages[-1].gender.abstain_reason == "disabled"

    wait_until(switched_off, 10, "the gender switched off live")
    rejected = set_parameters(ros, "user_profiler_node", threshold__age_group=1.5)[0]
    assert not rejected.successful and "must be <= 1.0, got 1.5" in rejected.reason
    rejected = set_parameters(ros, "user_profiler_node", enable__age_group="no")[0]
    assert not rejected.successful and "'enable.age_group' must be bool" in rejected.reason
    later = set_parameters(ros, "user_profiler_node", model__threads=2)[0]
    assert later.successful  # a lifecycle node takes it at the next configure
    node.wait_for_output("model.threads := 2 applies at the next configure", timeout=5)


@pytest.mark.graph
def test_health_turns_warn_when_processing_exceeds_its_limit(ros, profiler_node):
    _, publisher = profiler_node
    diagnostics = subscribe_diagnostics(ros)
    assert set_parameters(ros, "user_profiler_node", health__max_processing_ms=1.0)[0].successful
    for index in range(5):
        publisher.publish(faces((40 + index, crop(seed=index), 0.2)))
        time.sleep(0.1)

    def level_and_message():
        for msg in reversed(diagnostics.messages):
            for status in msg.status:
                if "user_profiler_node" in status.name:
                    return status.level, status.message
        return None, ""

    wait_until(lambda: level_and_message()[0] == b"\x01", 10, "WARN diagnostics")
    assert "p95" in level_and_message()[1] and "limit 1 ms" in level_and_message()[1]


@pytest.mark.graph
def test_a_plain_node_rejects_a_start_up_parameter_at_run_time(ros, processes, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((48, 64, 3), np.uint8))
    start_node(processes, "camera_node", "source:=folder", f"path:={tmp_path}", "loop:=true")
    ros.wait_for_publishers(topics.IMAGE)
    result = set_parameters(ros, "camera_node", rate_hz=2.0)[0]
    assert not result.successful and "read at start-up" in result.reason


# ---------------------------------------------------------------- the Respond client


@pytest.mark.graph
def test_respond_client_streams_partials_then_exactly_one_final(ros, fallback_responder):
    client = RespondClient(ros.node)
    assert client.wait_for_server(30)
    call = client.ask("Hello! How are you?", source="test")
    events = list(call.events(timeout_s=30))
    assert all(isinstance(e, Partial) for e in events[:-1]) and len(events) > 2
    final = events[-1]
    assert isinstance(final, Response) and final.final and not final.error
    assert final.request_id == call.request_id
    assert events[-2].text.strip() in final.text


@pytest.mark.graph
def test_respond_client_without_a_responder_gives_an_error_response(ros):
    client = RespondClient(ros.node, "/nobody/respond")
    final = client.ask("Anyone there?").result(timeout_s=5)
    assert final.final and "no responder serves" in final.error


def client_of_a_slow_server(ros, action: str, accept_delay_s: float, **client_options):
    """A RespondClient matched to a Respond server in the test node that acknowledges goals
    `accept_delay_s` late and never answers; returns it and the questions cancelled there."""
    from rclpy.action import ActionServer, CancelResponse, GoalResponse
    from rclpy.callback_groups import ReentrantCallbackGroup
    from uservlm.action import Respond

    cancelled: list[str] = []

    def acknowledge_late(_goal):
        time.sleep(accept_delay_s)
        return GoalResponse.ACCEPT

    async def never_answer(goal_handle):
        while not goal_handle.is_cancel_requested:
            time.sleep(0.05)
        cancelled.append(goal_handle.request.question)
        goal_handle.canceled()
        return Respond.Result()

    ActionServer(
        ros.node,
        Respond,
        action,
        execute_callback=never_answer,
        goal_callback=acknowledge_late,
        cancel_callback=lambda _: CancelResponse.ACCEPT,
        callback_group=ReentrantCallbackGroup(),
    )
    client = RespondClient(ros.node, action, **client_options)
    assert client.wait_for_server(15)
    return client, cancelled


@pytest.mark.graph
def test_goal_safe_action_client_completes_when_the_reply_beats_registration(ros, monkeypatch):
    import rclpy.action.client
    import rclpy.task
    from rclpy.action import ActionClient, ActionServer
    from uservlm.action import Respond

    from uservlm_ros.ros.respond_client import GoalSafeActionClient

    def answer(goal_handle):
        goal_handle.succeed()
        return Respond.Result()

    ActionServer(ros.node, Respond, "/race/respond", execute_callback=answer)

    class SlowFuture(rclpy.task.Future):
        """Widens rclpy's window: its send_goal_async makes a second Future after sending."""

        def __init__(self, *args, **kwargs) -> None:
            time.sleep(0.3)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(rclpy.action.client, "Future", SlowFuture)
    stock = ActionClient(ros.node, Respond, "/race/respond")
    safe = GoalSafeActionClient(ros.node, Respond, "/race/respond")
    assert stock.wait_for_server(15) and safe.wait_for_server(15)
    time.sleep(0.5)  # both clients matched on the server's side too
    stock_reply = stock.send_goal_async(Respond.Goal(question="stock"))
    safe_reply = safe.send_goal_async(Respond.Goal(question="safe"))
    wait_until(safe_reply.done, 5, "the reply to the goal-safe client")
    assert safe_reply.result().accepted
    time.sleep(1.0)
    assert not stock_reply.done()  # the race this client exists for (if rclpy fixes it, drop it)


@pytest.mark.graph
def test_respond_client_ends_an_unacknowledged_question_and_cancels_it_if_acknowledged_late(ros):
    client, cancelled = client_of_a_slow_server(ros, "/slow/respond", 2.0, accept_timeout_s=0.5)
    finals: list[Response] = []
    call = client.ask("Are you there?")
    call.add_done_callback(finals.append)  # no events() loop: the client's own watch ends it
    wait_until(lambda: finals, 5, "the final Response of an unacknowledged question")
    assert finals[0].request_id == call.request_id
    assert "did not acknowledge the question within 0.5 s" in finals[0].error
    # Acknowledged 2 s later: nobody waits for that answer, so the client cancels it.
    wait_until(lambda: cancelled == ["Are you there?"], 10, "the late goal cancelled")
    assert len(finals) == 1


@pytest.mark.graph
def test_respond_client_ends_an_unanswered_question_at_its_timeout_and_cancels_it(ros):
    client, cancelled = client_of_a_slow_server(ros, "/mute/respond", 0.0)
    finals: list[Response] = []
    client.ask("Anything?", timeout_s=1.0).add_done_callback(finals.append)
    wait_until(lambda: finals, 5, "the final Response of an unanswered question")
    assert finals[0].error == "no answer within 1 s"
    wait_until(lambda: cancelled == ["Anything?"], 10, "the unanswered goal cancelled")


@pytest.mark.graph
def test_respond_client_abandons_pending_calls_and_can_ask_again(ros):
    client, cancelled = client_of_a_slow_server(ros, "/stopping/respond", 0.0)
    call = client.ask("Still there?")
    wait_until(lambda: call._goal_handle is not None, 10, "the goal acknowledged")
    client.abandon_pending("the asking node stopped")
    assert call.result(timeout_s=1).error == "the asking node stopped"
    wait_until(lambda: cancelled == ["Still there?"], 10, "the abandoned goal cancelled")
    again = client.ask("And now?", timeout_s=1.0)  # the same client still works
    assert again.result(timeout_s=5).error == "no answer within 1 s"


# ---------------------------------------------------------------- fuzzing every node's inputs


def counters(diagnostics, node: str) -> dict[str, int]:
    for msg in reversed(diagnostics.messages):
        for status in msg.status:
            if node in status.name:
                return {kv.key: int(kv.value) for kv in status.values if kv.value.isdigit()}
    return {}


def books_balance(diagnostics, node: str, *pairs: tuple[str, str]) -> bool:
    """Every input the node's workers received was processed, failed (logged) or dropped
    (counted); `pairs`: (received, dropped) counters, one pair per worker."""
    c = counters(diagnostics, node)
    dropped = sum(c.get(d, 0) for _, d in pairs)
    outcomes = c.get("items_processed", 0) + c.get("items_failed", 0) + dropped
    return sum(c.get(r, 0) for r, _ in pairs) == outcomes and pairs[0][0] in c


def fuzz_graph(
    ros, processes, images: int, face_arrays: int, texts: int, seed: int = 1, on_ready=None
):
    """Malformed images, FaceArrays, questions and responses into a running graph; then every
    node must be alive, serve valid input, and account for every input it received.
    `on_ready(nodes)` runs once the nodes are up, before the first input (bench/soak.py)."""
    from fuzz import Fuzzer
    from perception_images import astronaut

    from uservlm_ros.ros.conversions import rgb_to_image as to_image

    nodes = {
        "face_crop_node": start_node(processes, "face_crop_node", "debug_image:=false"),
        "user_profiler_node": start_node(processes, "user_profiler_node"),
        "vlm_responder_node": start_node(
            processes, "vlm_responder_node", "responder.backend:=fallback"
        ),
        "naoqi_bridge_node": start_node(processes, "naoqi_bridge_node", "backend:=naoqi_driver"),
    }
    for name, node in nodes.items():
        node.wait_for_output(f"{name} ", timeout=60)
    if on_ready is not None:
        on_ready(nodes)
    fuzzer = Fuzzer(seed)
    diagnostics = subscribe_diagnostics(ros)
    image_pub = ros.publisher(Image, topics.IMAGE, RELIABLE_QOS)
    faces_pub = ros.publisher(FaceArray, topics.FACES, RELIABLE_QOS)
    question_pub = ros.publisher(String, topics.QUESTION, REQUEST_QOS)
    response_pub = ros.publisher(Response, topics.RESPONSE, REQUEST_QOS)
    responses = ros.subscribe(Response, topics.RESPONSE, REQUEST_QOS)
    events = ros.subscribe(SpeechEvent, topics.SPEECH_EVENTS, REQUEST_QOS)
    for topic, readers in (
        (topics.IMAGE, ("face_crop_node", "vlm_responder_node")),
        (topics.FACES, ("user_profiler_node",)),
        (topics.QUESTION, ("vlm_responder_node", "naoqi_bridge_node")),
        (topics.RESPONSE, ("naoqi_bridge_node",)),
    ):
        ros.wait_for_subscribers(topic, len(readers), timeout=30, nodes=readers)
    sent = {"images": 0, "face_arrays": 0, "questions": 0, "responses": 0}
    for index in range(max(images, face_arrays, texts)):
        if index < images:
            image_pub.publish(fuzzer.image())
            sent["images"] += 1
        if index < face_arrays:
            faces_pub.publish(fuzzer.face_array())
            sent["face_arrays"] += 1
        if index < texts:
            question_pub.publish(String(data=fuzzer.question()))
            response_pub.publish(fuzzer.response(index))
            sent["questions"] += 1
            sent["responses"] += 1
        time.sleep(0.002)

    # Every question gets exactly one final Response from the responder.
    def finals() -> int:
        return sum(
            r.final and not r.request_id.startswith("fuzz-") and r.request_id != ""
            for r in responses.messages
        )

    if not within(120, lambda: finals() >= sent["questions"]):
        raise AssertionError(
            f"{finals()} of {sent['questions']} questions got a final response in 120 s;"
            f" responder:\n{nodes['vlm_responder_node'].output()[-3000:]}"
        )
    # Valid input is still served.
    scene = astronaut()
    profiles = ros.subscribe(UserProfile, topics.PROFILE, LATCHED_QOS)
    wait_until(
        lambda: (
            (image_pub.publish(to_image(scene, _header())) or True)
            and any(p.observations >= 1 for p in profiles.messages)
        ),
        30,
        "a profile from a real photo after the fuzzing",
    )

    # The books balance and every node is alive. The counters come with each node's
    # diagnostics (1 Hz) and the last inputs may still be in flight (the bridge says its queued
    # utterances, the photo above was sent until a profile came): wait until they balance.
    def unbalanced() -> list[str]:
        problems = []
        if not books_balance(diagnostics, "face_crop_node", ("frames_received", "frames_dropped")):
            problems.append(f"face_crop_node {counters(diagnostics, 'face_crop_node')}")
        profiler_pairs = (
            ("face_arrays_received", "face_arrays_dropped"),
            ("identity_requests", "identity_dropped"),  # the face embeddings' worker
        )
        if not books_balance(diagnostics, "user_profiler_node", *profiler_pairs):
            problems.append(f"user_profiler_node {counters(diagnostics, 'user_profiler_node')}")
        responder = counters(diagnostics, "vlm_responder_node")
        answers = responder.get("answered", 0) + responder.get("answered_with_error", 0)
        if responder.get("questions") != answers:
            problems.append(f"vlm_responder_node {responder}")
        bridge = counters(diagnostics, "naoqi_bridge_node")
        outcomes = [m.event for m in events.messages]
        told = outcomes.count("finished") + outcomes.count("dropped")
        spoken = bridge.get("utterances_said", 0) + bridge.get("utterances_dropped", 0)
        if bridge.get("responses_received", 0) < sent["responses"] or told != spoken:
            problems.append(f"naoqi_bridge_node {bridge}, {told} events finished or dropped")
        return problems

    if not within(30, lambda: not unbalanced()):
        raise AssertionError(f"the books do not balance after 30 s: {unbalanced()}")
    for name, node in nodes.items():
        assert node.popen.poll() is None, f"{name} died:\n{node.output()[-2000:]}"
        assert "Traceback" not in node.output(), f"{name}:\n{node.output()[-3000:]}"
    return sent, {name: counters(diagnostics, name) for name in nodes}


def _header():
    from std_msgs.msg import Header

    from uservlm_ros.ros.conversions import seconds_to_stamp

    return Header(stamp=seconds_to_stamp(time.time()), frame_id="camera")


@pytest.mark.graph
def test_fuzzed_inputs_leave_every_node_alive_serving_and_accounted(ros, processes):
    fuzz_graph(ros, processes, images=300, face_arrays=60, texts=50)


@pytest.mark.graph
def test_a_burst_of_50_goals_gets_50_final_responses(ros, fallback_responder):
    client = RespondClient(ros.node)
    assert client.wait_for_server(30)
    calls = [client.ask(f"Goal {index}: hello!", source="test") for index in range(50)]
    finals = [call.result(timeout_s=60) for call in calls]
    assert [f.request_id for f in finals] == [c.request_id for c in calls]
    assert all(f.final for f in finals)
    refused = [f for f in finals if f.error]
    assert len(finals) - len(refused) >= 5  # the queue's 4 plus the one being answered
    assert all("queue full" in f.error for f in refused)
