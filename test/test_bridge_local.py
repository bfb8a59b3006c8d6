"""naoqi_bridge_node with backend:=local writing WAV files (a machine without a sound card):
answers said sentence by sentence with the same speech events as Pepper's backends, a cancelled
goal or a new question stops the speech, and the webcam deployment's spoken conversation (WAV
question in, WAV answer out)."""

from __future__ import annotations

import uuid

import pytest
import yaml
from action_msgs.msg import GoalInfo, GoalStatus, GoalStatusArray
from harness import wait_until
from rclpy.qos import qos_profile_action_status_default
from std_msgs.msg import String
from uservlm.msg import Response, SpeechEvent

from uservlm_ros.backends.asr import AsrOptions
from uservlm_ros.core.utterances import word_error_rate
from uservlm_ros.eval.speech import Recogniser
from uservlm_ros.ros import topics
from uservlm_ros.ros.qos import RELIABLE_QOS
from uservlm_ros.ros.respond_client import request_id_of
from uservlm_ros.sim.audio_device import SPEECH_DIR

BRIDGE = "uservlm_ros.nodes.naoqi_bridge_node"
LONG = " ".join(["This is one more sentence of a very long answer."] * 10)


def start_local_bridge(processes, wav_dir, *params: str):
    args = ["-m", BRIDGE, "--ros-args", "-p", "backend:=local", "-p", "tts.output:=wav"]
    for param in (f"tts.wav_dir:={wav_dir}", *params):
        args += ["-p", param]
    bridge = processes.start_python("bridge_local", *args)
    bridge.wait_for_output("naoqi_bridge_node ready", timeout=60)
    return bridge


def events_of(events) -> list[dict]:
    return [
        {f: getattr(m, f) for f in ("event", "request_id", "part", "text", "backend", "detail")}
        for m in events.messages
    ]


def kinds(events, request_id: str) -> list[str]:
    return [e["event"] for e in events_of(events) if e["request_id"] == request_id]


@pytest.fixture(scope="module")
def recogniser():
    return Recogniser(AsrOptions(threads=2))


@pytest.mark.graph
def test_early_and_rest_are_said_into_wav_files_with_speech_events(
    ros, processes, tmp_path, recogniser
):
    start_local_bridge(processes, tmp_path)
    events = ros.subscribe(SpeechEvent, topics.SPEECH_EVENTS, RELIABLE_QOS)
    answers = ros.publisher(Response, topics.RESPONSE, RELIABLE_QOS)
    ros.wait_for_subscribers(topics.RESPONSE)
    ros.wait_for_publishers(topics.SPEECH_EVENTS)
    answers.publish(Response(request_id="r1", text="Hello, I am Pepper.", final=False))
    answers.publish(
        Response(request_id="r1", text="Hello, I am Pepper. You look happy today.", final=True)
    )
    wait_until(lambda: kinds(events, "r1").count("finished") == 2, 60, "both parts said")
    assert kinds(events, "r1") == ["started", "finished", "started", "finished"]
    assert {e["backend"] for e in events_of(events)} == {"local"}
    early, rest = sorted(tmp_path.glob("*.wav"))
    assert early.name.endswith("_r1_early.wav") and rest.name.endswith("_r1_rest.wav")
    assert word_error_rate(["You look happy today."], [recogniser.transcribe_file(rest).text]) == 0


@pytest.mark.graph
def test_a_cancelled_goal_and_a_new_question_stop_the_speech(ros, processes, tmp_path):
    start_local_bridge(processes, tmp_path)
    events = ros.subscribe(SpeechEvent, topics.SPEECH_EVENTS, RELIABLE_QOS)
    answers = ros.publisher(Response, topics.RESPONSE, RELIABLE_QOS)
    status = ros.publisher(
        GoalStatusArray,
        topics.RESPOND_ACTION + "/_action/status",
        qos_profile_action_status_default,
    )
    questions = ros.publisher(String, topics.QUESTION, RELIABLE_QOS)
    ros.wait_for_subscribers(topics.RESPONSE)
    ros.wait_for_publishers(topics.SPEECH_EVENTS)

    goal = uuid.uuid4().bytes
    request_id = request_id_of(goal)
    answers.publish(Response(request_id=request_id, text=LONG, final=True))
    answers.publish(Response(request_id="queued", text="Never said.", final=True))
    wait_until(lambda: "started" in kinds(events, request_id), 60, "the long answer to start")
    info = GoalInfo()
    info.goal_id.uuid = list(goal)
    status.publish(GoalStatusArray(status_list=[GoalStatus(goal_info=info, status=5)]))
    wait_until(lambda: "dropped" in kinds(events, request_id), 30, "the cancelled answer dropped")
    assert kinds(events, request_id) == ["started", "interrupted", "dropped"]
    stopped = next(e for e in events_of(events) if e["event"] == "dropped")
    assert stopped["detail"] == "stopped: goal cancelled"

    # the queued answer of another question is said; a new question on the topic stops it
    wait_until(lambda: "started" in kinds(events, "queued"), 30, "the next answer")
    answers.publish(Response(request_id="later", text=LONG, final=True))
    wait_until(lambda: "started" in kinds(events, "later"), 60, "the second long answer")
    questions.publish(String(data="What do you see?"))
    wait_until(lambda: "dropped" in kinds(events, "later"), 30, "the answer stopped")
    assert [e["detail"] for e in events_of(events) if e["request_id"] == "later"][-1] == (
        "stopped: a new question"
    )


@pytest.mark.graph
def test_the_webcam_deployment_holds_a_spoken_conversation_with_wav_in_and_out(
    ros, processes, tmp_path, recogniser
):
    # The webcam deployment's bridge and speech settings, with WAV files for the sound card.
    config = yaml.safe_load((SPEECH_DIR.parents[2] / "config" / "webcam.yaml").read_text())
    bridge = config["naoqi_bridge_node"]["ros__parameters"]
    assert bridge["backend"] == "local" and bridge["tts"]["output"] == "speaker"
    start_local_bridge(processes, tmp_path / "said")
    responder = processes.start_python(
        "responder",
        "-m",
        "uservlm_ros.nodes.vlm_responder_node",
        "--ros-args",
        "-p",
        "responder.backend:=fallback",
    )
    responder.wait_for_output("vlm_responder_node active", timeout=90)
    events = ros.subscribe(SpeechEvent, topics.SPEECH_EVENTS, RELIABLE_QOS)
    responses = ros.subscribe(Response, topics.RESPONSE, RELIABLE_QOS)
    ros.wait_for_publishers(topics.SPEECH_EVENTS)
    speech = processes.start_python(
        "speech",
        "-m",
        "uservlm_ros.nodes.speech_node",
        "--ros-args",
        "-p",
        "source:=file",
        "-p",
        f"file.path:={SPEECH_DIR / 'hello_how_are_you.wav'}",
    )
    speech.wait_for_output("speech_node active", timeout=120)
    wait_until(lambda: any(r.final for r in responses.messages), 90, "the answer")
    answer = next(r for r in responses.messages if r.final)
    assert (
        not answer.error and word_error_rate(["Hello, how are you today?"], [answer.question]) == 0
    )
    wait_until(
        lambda: any(
            e["event"] == "finished" and e["part"] in ("rest", "full") for e in events_of(events)
        ),
        90,
        "the answer said",
    )
    said = sorted((tmp_path / "said").glob("*.wav"))
    heard = " ".join(recogniser.transcribe_file(path).text for path in said)
    assert word_error_rate([answer.text], [heard]) <= 0.1, (answer.text, heard)
