"""naoqi_bridge_node against the simulated Pepper over real libqi, and the naoqi_driver backend.

The simulated robot runs in the test process (uservlm_ros.sim.pepper); the bridge is a node
process receiving uservlm/Response messages over DDS.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from harness import wait_until
from std_msgs.msg import String
from uservlm.msg import Response, SpeechEvent

from uservlm_ros.backends.pepper_speech import RobotAddress, read_password
from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.gestures import PEPPER_ANIMATIONS
from uservlm_ros.ros.qos import RELIABLE_QOS
from uservlm_ros.sim.pepper import SimulatedPepper

NODE = "uservlm_ros.nodes.naoqi_bridge_node"
HEY = PEPPER_ANIMATIONS["hello"]
EXPLAIN = PEPPER_ANIMATIONS["explain"]


@pytest.fixture
def pepper():
    with SimulatedPepper() as robot:
        yield robot


def start_bridge(processes, port: int, *params: str, env: dict | None = None):
    args = [
        "-m",
        NODE,
        "--ros-args",
        "-p",
        f"robot.port:={port}",
        "-p",
        "robot.reconnect_max_s:=0.5",
    ]
    for param in params:
        args += ["-p", param]
    bridge = processes.start_python("naoqi_bridge", *args, env=env)
    bridge.wait_for_output("naoqi_bridge_node ready", timeout=30)
    return bridge


def response(request_id: str, text: str, final: bool = True, gesture: str = "", error: str = ""):
    return Response(
        request_id=request_id,
        question="Hello?",
        text=text,
        final=final,
        gesture=gesture,
        error=error,
        responder="fallback-template",
    )


def connect_graph(ros):
    events = ros.subscribe(SpeechEvent, "/uservlm/speech_events", RELIABLE_QOS)
    publisher = ros.publisher(Response, "/uservlm/response", RELIABLE_QOS)
    ros.wait_for_subscribers("/uservlm/response")
    ros.wait_for_publishers("/uservlm/speech_events")
    return publisher, events


def decoded(events) -> list[dict]:
    return [
        {f: getattr(m, f) for f in ("event", "request_id", "part", "text", "backend", "detail")}
        for m in events.messages
    ]


@pytest.mark.graph
def test_early_sentence_then_rest_become_animated_speech_on_pepper(ros, processes, pepper):
    start_bridge(processes, pepper.port)
    publisher, events = connect_graph(ros)
    publisher.publish(response("r1", "Hello there!", final=False, gesture="hello"))
    publisher.publish(
        response("r1", "Hello there! The room behind you is bright and tidy.", gesture="hello")
    )
    said = pepper.wait_for_call("ALAnimatedSpeech", "say", count=2)
    assert [c.args[0] for c in said] == [
        f"^start({HEY}) Hello there! ^wait({HEY})",
        "The room behind you is bright and tidy.",
    ]
    assert pepper.calls_to("ALMotion", "wakeUp")  # woken up when the bridge connected
    wait_until(lambda: len(decoded(events)) >= 4, 10, "speech events")
    assert [(e["event"], e["part"]) for e in decoded(events)] == [
        ("started", "early"),
        ("finished", "early"),
        ("started", "rest"),
        ("finished", "rest"),
    ]
    assert all(e["request_id"] == "r1" and e["backend"] == "libqi" for e in decoded(events))


@pytest.mark.graph
def test_final_without_early_error_and_replaced_answers(ros, processes, pepper):
    start_bridge(processes, pepper.port)
    publisher, _ = connect_graph(ros)
    publisher.publish(response("e", "", error="request queue full"))  # nothing to say
    publisher.publish(response("r2", "The cup on the table is empty and white.", gesture="explain"))
    publisher.publish(response("r3", "You look Asian.", final=False))
    publisher.publish(response("r3", "I would rather not say."))  # replaced by the guard
    said = pepper.wait_for_call("ALAnimatedSpeech", "say", count=3)
    assert [c.args[0] for c in said] == [
        f"^start({EXPLAIN}) The cup on the table is empty and white. ^wait({EXPLAIN})",
        "You look Asian.",
        "I would rather not say.",
    ]
    time.sleep(0.5)
    assert len(pepper.calls_to("ALAnimatedSpeech", "say")) == 3


@pytest.mark.graph
def test_bridge_survives_a_robot_restart_and_delivers_after_reconnecting(ros, processes, pepper):
    bridge = start_bridge(processes, pepper.port)
    publisher, events = connect_graph(ros)
    publisher.publish(response("before", "First answer before the restart."))
    pepper.wait_for_call("ALAnimatedSpeech", "say")

    pepper.stop()  # the robot goes away ...
    publisher.publish(response("during", "Said once the robot is back."))
    wait_until(lambda: "cannot reach Pepper" in bridge.output(), 15, "a failed reconnection")
    assert not pepper.calls_to("ALAnimatedSpeech", "say")[1:]
    back = time.time()
    pepper.start()  # ... and comes back on the same port
    said = pepper.wait_for_call(
        "ALAnimatedSpeech", "say", lambda c: "robot is back" in c.args[0], timeout=15
    )
    assert said[0].time >= back
    assert len(pepper.calls_to("ALMotion", "wakeUp")) == 2  # connected twice
    wait_until(
        lambda: ("finished", "during") in [(e["event"], e["request_id"]) for e in decoded(events)],
        10,
        "the finished event",
    )


@pytest.mark.graph
def test_utterances_overflowing_the_queue_are_reported_not_silently_lost(ros, processes, pepper):
    pepper.stop()
    bridge = start_bridge(processes, pepper.port, "speech.queue_size:=1")
    publisher, events = connect_graph(ros)
    for index in range(3):
        publisher.publish(response(f"q{index}", f"Answer number {index}."))
    wait_until(
        lambda: (
            [e["request_id"] for e in decoded(events) if e["event"] == "dropped"] == ["q1", "q2"]
        ),
        10,
        "two dropped events",
    )
    assert "not said, speech queue full" in bridge.output()
    pepper.start()
    said = pepper.wait_for_call("ALAnimatedSpeech", "say", timeout=15)
    assert said[0].args[0] == "Answer number 0."


@pytest.mark.graph
def test_text_to_speech_with_animation_player(ros, processes, pepper):
    start_bridge(processes, pepper.port, "speech.animated:=false", "speech.language:=English")
    publisher, _ = connect_graph(ros)
    publisher.publish(response("t", "Hello! Nice to see you.", gesture="hello"))
    said = pepper.wait_for_call("ALTextToSpeech", "say")
    assert said[0].args[0] == "Hello! Nice to see you."
    assert pepper.wait_for_call("ALAnimationPlayer", "run")[0].args[0] == HEY
    assert pepper.calls_to("ALTextToSpeech", "setLanguage")[0].args == ["English"]


@pytest.mark.graph
def test_naoqi_driver_backend_publishes_on_speech(ros, processes):
    speech = ros.subscribe(String, "/speech", RELIABLE_QOS)
    start_bridge(processes, 9559, "backend:=naoqi_driver")
    publisher, events = connect_graph(ros)
    publisher.publish(response("d", "Hello ^run(x) from the driver.", gesture="hello"))
    assert speech.wait_for(1, timeout=10)[0].data == "Hello  run(x) from the driver."
    wait_until(lambda: len(decoded(events)) >= 2, 10, "speech events")
    assert decoded(events)[-1]["backend"] == "naoqi_driver"


@pytest.mark.graph
def test_password_is_never_logged(ros, processes, pepper, tmp_path):
    secret = "s3cr3t-pepper-pass"
    bridge = start_bridge(
        processes,
        pepper.port,
        "robot.tls:=true",
        "robot.user:=nao",
        "robot.connect_timeout_s:=0.5",
        env={"PEPPER_PASSWORD": secret},
    )
    wait_until(lambda: "cannot reach Pepper" in bridge.output(), 15, "a failed TLS connection")
    assert f"tcps://127.0.0.1:{pepper.port} as nao" in bridge.output()
    assert secret not in bridge.output()


def test_password_sources_and_address_repr(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOT_PW", "from-env")
    assert read_password("ROBOT_PW", "") == "from-env"
    (tmp_path / "pw").write_text("from-file\n")
    assert read_password("ROBOT_PW", str(tmp_path / "pw")) == "from-file"
    with pytest.raises(ConfigError, match="password file"):
        read_password("ROBOT_PW", str(tmp_path / "missing"))
    address = RobotAddress("10.0.0.2", 9503, True, "nao", "from-file")
    assert address.url == "tcps://10.0.0.2:9503"
    assert "from-file" not in repr(address)


def test_simulated_pepper_records_calls_and_restarts_on_the_same_port(tmp_path):
    import qi

    log = tmp_path / "calls.jsonl"
    with SimulatedPepper(log_path=log) as robot:
        url = robot.url
        session = qi.Session()
        session.connect(url)
        session.service("ALTextToSpeech").say("one")
        assert session.service("ALRobotPosture").goToPosture("Stand", 0.5) is True
        assert session.service("ALMemory").getData("RobotConfig/Body/Type") == "Pepper"
        robot.stop()
        assert robot.restart() == url
        again = qi.Session()
        again.connect(url)
        again.service("ALAnimationPlayer").run("animations/Stand/Gestures/Hey_1")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c["service"], c["method"]) for c in lines] == [
        ("ALTextToSpeech", "say"),
        ("ALRobotPosture", "goToPosture"),
        ("ALAnimationPlayer", "run"),
    ]
    assert lines[0]["args"] == ["one"]
    assert {"ALTextToSpeech", "ALAnimatedSpeech", "ALMotion", "ALMemory", "ALVideoDevice"} <= set(
        robot.services
    )


def test_example_dialogue_config_sets_every_parameter_with_a_valid_value():
    import yaml

    from uservlm_ros.nodes import naoqi_bridge_node, vlm_responder_node

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/dialogue.yaml").open())

    def flat(values: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in values.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[prefix + key] = value
        return out

    for module in (vlm_responder_node, naoqi_bridge_node):
        name = module.__name__.rsplit(".", 1)[1]
        values = flat(config[name]["ros__parameters"])
        assert set(values) == {param.name for param in module.PARAMS}, name
        for param in module.PARAMS:
            param.validate(values[param.name])


@pytest.mark.graph
def test_back_within_2_s_of_each_restart_of_a_robot_whose_services_register_late(ros, processes):
    """Default reconnection settings; the robot accepts connections 1 s before its services
    exist, like NAOqi booting. Each time: connected within 2 s of the services, the answer sent
    while it was away said afterwards, nothing dropped."""
    with SimulatedPepper(services_delay_s=1.0) as pepper:
        bridge = processes.start_python(
            "naoqi_bridge", "-m", NODE, "--ros-args", "-p", f"robot.port:={pepper.port}"
        )
        bridge.wait_for_output("naoqi_bridge_node ready", timeout=30)
        publisher, events = connect_graph(ros)
        pepper.wait_for_call("ALMotion", "wakeUp", timeout=15)
        for cycle in range(3):
            pepper.stop()
            publisher.publish(response(f"away{cycle}", f"Said after restart {cycle}."))
            time.sleep(2.5)  # long enough for an unbounded backoff to grow past 2 s
            pepper.start()
            wake = pepper.wait_for_call("ALMotion", "wakeUp", timeout=15, count=cycle + 2)[-1]
            wait_until(lambda: pepper.services_ready_at is not None, 5, "services registered")
            assert wake.time - pepper.services_ready_at < 2.0, f"cycle {cycle}"
            pepper.wait_for_call(
                "ALAnimatedSpeech", "say", lambda c, n=cycle: f"restart {n}." in c.args[0]
            )

        def finished() -> set[str]:
            return {e["request_id"] for e in decoded(events) if e["event"] == "finished"}

        wait_until(lambda: {"away0", "away1", "away2"} <= finished(), 10, "finished events")
        assert not [e for e in decoded(events) if e["event"] == "dropped"]
        assert "Cannot find service" not in bridge.output()
