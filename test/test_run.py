"""`uservlm run`: brings a deployment's graph up over DDS and takes it down cleanly."""

from __future__ import annotations

import os
import re
import signal
import sys
import time

import cv2
import numpy as np
import pytest
from harness import wait_until, within

from uservlm_ros.bringup.graph import load_graph

NODES = [
    "camera_node",
    "face_crop_node",
    "user_profiler_node",
    "vlm_responder_node",
    "naoqi_bridge_node",
    "speech_node",
    "console_node",
]


@pytest.fixture
def frames_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"{index:03d}.png"), np.full((120, 160, 3), 40 * index, np.uint8))
    return folder


def run_uservlm(processes, *args):
    return processes.start_python("uservlm_run", "-m", "uservlm_ros.cli", "run", *args)


@pytest.mark.graph
def test_uservlm_run_brings_up_every_node_and_stops_them_on_sigint(ros, processes, frames_folder):
    runner = run_uservlm(
        processes,
        "--config",
        "demo",
        "--set=camera_node.source=folder",
        f"--set=camera_node.path={frames_folder}",
        "--set=camera_node.loop=true",
        "--set=naoqi_bridge_node.backend=naoqi_driver",
        "--set=console_node.port=0",  # any free port: tests may run side by side
    )
    wait_until(
        lambda: set(NODES) <= set(ros.node.get_node_names()),
        90,
        f"all nodes of the demo graph (have {ros.node.get_node_names()})",
    )
    ros.wait_for_publishers("/uservlm/user_profile")
    # A node's name is in the graph before its first line (speech_node then loads Whisper).
    wait_until(
        lambda: all(f"[{name}" in runner.output() for name in NODES), 90, "every node's output"
    )
    output = runner.output()
    # camera, face_crop and profiler share the perception container; the others run alone
    assert "started perception (camera_node, face_crop_node, user_profiler_node) (pid" in output
    for name in NODES[3:]:
        assert f"started {name} (pid" in output
    for name in NODES:
        assert f"[{name}" in output  # each node's log lines carry its name
    children = [
        int(line.rsplit("pid ", 1)[1].rstrip(")"))
        for line in output.splitlines()
        if "[uservlm run] started" in line
    ]
    assert len(children) == len(NODES) - 2

    os.killpg(runner.popen.pid, signal.SIGINT)
    assert runner.popen.wait(30) == 0
    assert "stopping every node" in runner.output()
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.graph
def test_uservlm_run_reports_a_node_that_fails_to_start(processes, frames_folder, tmp_path):
    # VLM weights that do not load (a model folder whose files are broken: the checks before
    # starting pass): the responder refuses to configure (no fallback for a configured path);
    # the run must say so and fail.
    model = tmp_path / "user-vlm"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"not weights")
    runner = run_uservlm(
        processes,
        "--config",
        "demo",
        "--set=camera_node.source=folder",
        f"--set=camera_node.path={frames_folder}",
        "--set=vlm_responder_node.responder.backend=paligemma",
        f"--set=vlm_responder_node.model.path={model}",
        "--set=naoqi_bridge_node.backend=naoqi_driver",
        "--set=console_node.port=0",
    )
    assert runner.popen.wait(120) == 1
    output = runner.output()
    assert "vlm_responder_node exited (exit code 1)" in output
    assert "stopping the other nodes" in output
    assert str(model) in output  # the node's own message names what failed


def test_dry_run_prints_one_command_per_process(capsys):
    from uservlm_ros.cli import main

    assert main(["run", "--config", "pepper", "robot_ip:=10.1.2.3", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(
        f"{sys.executable} -m uservlm_ros.nodes.container "
        "camera_node face_crop_node user_profiler_node --ros-args "
    )
    assert (
        main(
            [
                "run",
                "--config",
                "pepper",
                "robot_ip:=10.1.2.3",
                "--dry-run",
                "use_composition:=false",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    graph = load_graph("pepper")
    assert len(lines) == len(graph.nodes)
    for line, spec in zip(lines, graph.nodes, strict=True):
        assert line.startswith(f"{sys.executable} -m uservlm_ros.nodes.{spec.executable} ")
        assert f"__node:={spec.name}" in line
    assert (
        "-p robot.ip:=10.1.2.3" in lines[[s.name for s in graph.nodes].index("naoqi_bridge_node")]
    )


def test_unknown_config_is_a_clear_error(capsys):
    from uservlm_ros.cli import main

    assert main(["run", "--config", "nowhere"]) == 2
    assert "config nowhere not found" in capsys.readouterr().err


@pytest.mark.graph
def test_uservlm_run_with_the_pepper_config_against_the_simulated_pepper(ros, processes):
    """The robot deployment end to end: Pepper's camera over NAOqi -> profiles; a question ->
    an answer said on the robot. Only the responder is switched to the labelled fallback (no
    VLM weights here). The whole graph runs in a namespace, moved there by one argument."""
    from std_msgs.msg import String
    from uservlm.msg import Response, UserProfile

    from uservlm_ros.demo.scene import make_scene
    from uservlm_ros.ros import topics
    from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS
    from uservlm_ros.sim.pepper import SimulatedPepper

    pepper = SimulatedPepper(port=0, frames=[f.rgb for f in make_scene(20)])
    pepper.start()
    try:
        run_uservlm(
            processes,
            "--config",
            "pepper",
            "robot_ip:=127.0.0.1",
            f"robot_port:={pepper.port}",
            "--set=vlm_responder_node.responder.backend=fallback",
            "--namespace",
            "robot1",
        )
        profiles = ros.subscribe(
            UserProfile, topics.absolute(topics.PROFILE, "robot1"), LATCHED_QOS
        )
        root_profiles = ros.subscribe(UserProfile, topics.absolute(topics.PROFILE), LATCHED_QOS)
        responses = ros.subscribe(
            Response, topics.absolute(topics.RESPONSE, "robot1"), RELIABLE_QOS
        )
        assert profiles.wait_for(1, timeout=90)[0].profile_text
        assert root_profiles.messages == []  # nothing outside the namespace
        question_topic = topics.absolute(topics.QUESTION, "robot1")
        questions = ros.publisher(String, question_topic, RELIABLE_QOS)
        ros.wait_for_subscribers(
            question_topic, 2, timeout=60, nodes=("vlm_responder_node", "naoqi_bridge_node")
        )
        # The bridge too must hear the answer: responses are not latched (a restarted bridge
        # must not repeat old answers), so ask only once its subscription has matched.
        response_topic = topics.absolute(topics.RESPONSE, "robot1")
        ros.wait_for_subscribers(response_topic, timeout=60, nodes=("naoqi_bridge_node",))
        # Discovery is pairwise: that this test sees the bridge's subscription does not mean the
        # responder has matched it yet, and responses are not latched. So the question is asked
        # again (at most 3 times) if the answer was not said within 10 s.
        # The same for the responder's question subscription: a question published before it
        # matched this test's writer is lost, so it is asked again when no answer came.
        said = None
        for _ in range(3):
            questions.publish(String(data="Hello! How are you?"))
            if not within(15, lambda: any(r.final for r in responses.messages)):
                continue
            final = next(r for r in responses.messages if r.final)
            assert not final.error and final.responder == "fallback-template"
            try:
                said = pepper.wait_for_call("ALAnimatedSpeech", "say", timeout=10)
                break
            except TimeoutError:
                continue
        assert any(r.final for r in responses.messages), "no final answer to 3 questions"
        assert said and "Hello" in said[0].args[0]
    finally:
        pepper.stop()


def test_a_graph_already_running_on_the_domain_is_seen(ros):
    import rclpy

    from uservlm_ros.core.errors import UservlmError
    from uservlm_ros.ros.graph_probe import already_running, refuse_a_second_graph

    probe = ros.node
    # nothing of the graph runs yet; then a node of that name appears (as another graph's)
    assert already_running(probe, ["vlm_responder_node"], discovery_s=0.3) == []
    impostor = rclpy.create_node("vlm_responder_node")
    try:
        names = ["vlm_responder_node", "speech_node"]
        assert already_running(probe, names) == ["vlm_responder_node"]
        with pytest.raises(UservlmError, match="vlm_responder_node already running on ROS domain"):
            refuse_a_second_graph(probe, names, "", "make demo")
        # the same names in another namespace are another graph
        assert already_running(probe, names, "/robot2", discovery_s=0.3) == []
    finally:
        impostor.destroy_node()


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        (
            "face_crop_node.nosuch_param=1",
            "uservlm run: face_crop_node has no parameter 'nosuch_param' "
            "(all of them: `uservlm params face_crop_node`)",
        ),
        (
            "face_crop_node.crop_siz=160",
            "uservlm run: face_crop_node has no parameter 'crop_siz'; closest: crop_size, "
            "crop_margin (all of them: `uservlm params face_crop_node`)",
        ),
        (
            "face_crop_node.crop_size=abc",
            "uservlm run: face_crop_node: parameter 'crop_size' must be int, got 'abc'",
        ),
        (
            "face_crop_node.crop_size=99999",
            "uservlm run: face_crop_node: parameter 'crop_size' must be <= 1024, got 99999",
        ),
    ],
)
def test_set_names_and_values_are_checked_before_anything_starts(capsys, setting, line):
    from uservlm_ros.cli import main

    assert main(["run", "--config", "perception", "--set", setting, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no command printed
    assert captured.err.splitlines() == [line]


def test_launch_spellings_of_config_and_namespace(capsys):
    """`config:=` and `namespace:=`, as ros2 launch takes them, work for uservlm run too."""
    from uservlm_ros.cli import main

    assert main(["run", "config:=perception", "namespace:=robot1", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1  # perception: one container
    assert "-r __ns:=/robot1" in lines[0] and "/perception.yaml" in lines[0]
    assert main(["run", "--config", "pepper", "config:=perception", "--dry-run"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "uservlm run: --config pepper and config:=perception disagree; give one"
    ]
    assert main(["run", "--config", "perception", "nosuch:=1", "--dry-run"]) == 2
    assert "known: config, namespace, use_composition, robot_ip" in capsys.readouterr().err


def test_no_params_folder_is_left_behind(tmp_path, monkeypatch, capsys):
    """A namespace and a container's overrides are written to temporary params files: removed
    when uservlm run ends, --dry-run included."""
    import tempfile

    from uservlm_ros.cli import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args = ["run", "--config", "pepper", "namespace:=robot1", "robot_ip:=10.0.0.2", "--dry-run"]
    assert main(args) == 0
    assert "/uservlm-params-" in capsys.readouterr().out  # they were written...
    assert list(tmp_path.glob("uservlm-params-*")) == []  # ...and removed
    graph = load_graph("pepper", {"face_crop_node": {"crop_size": 160}}, namespace="robot1")
    assert len(graph.temporary) == 2 and all(folder.is_dir() for folder in graph.temporary)
    graph.remove_temporary_files()
    assert list(tmp_path.glob("uservlm-params-*")) == []


def test_a_vlm_model_that_is_not_there_is_refused_before_anything_starts(
    tmp_path, monkeypatch, capsys
):
    from uservlm_ros.bringup.preflight import check_vlm_model
    from uservlm_ros.cli import main
    from uservlm_ros.core.errors import ConfigError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "config_only").mkdir()
    (tmp_path / "config_only" / "config.json").write_text("{}")
    (tmp_path / "a_file").write_text("")
    refused = {
        "/no/such": "VLM model folder /no/such does not exist",
        str(tmp_path / "empty"): f"VLM model folder {tmp_path / 'empty'}: no config.json",
        str(tmp_path / "config_only"): "no weights (*.safetensors or pytorch_model*.bin)",
        str(tmp_path / "a_file"): "is a file; give the model's folder",
        "org/user-vlm": "VLM model org/user-vlm: no such folder, and not in the local Hugging "
        f"Face cache ({tmp_path / 'hub'})",
    }
    for path, reason in refused.items():
        with pytest.raises(ConfigError, match=re.escape(reason)):
            check_vlm_model(path)
    # a model folder, and the same as a hub id in the local cache
    snapshot = tmp_path / "hub" / "models--org--user-vlm" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")
    check_vlm_model(str(snapshot))
    check_vlm_model("org/user-vlm")

    started = time.monotonic()
    assert main(["demo", "--vlm-model", "/no/such", "--out", str(tmp_path / "out")]) == 2
    assert time.monotonic() - started < 5
    assert capsys.readouterr().err.splitlines() == [
        "uservlm demo: VLM model folder /no/such does not exist"
    ]
    assert not (tmp_path / "out").exists()  # nothing started, no report folder
    args = ["run", "--config", "dialogue", "vlm_model:=/no/such", "--dry-run"]
    args += ["--set", "vlm_responder_node.responder.backend=paligemma"]
    assert main(args) == 2
    assert capsys.readouterr().err.splitlines() == [
        "uservlm run: VLM model folder /no/such does not exist"
    ]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--served-model", "m"], "--served-model and --api-key-file are options of --server"),
        (["--server", ""], "--server needs the server's URL"),
        (["--server", "localhost:8000"], "server.url 'localhost:8000' must start with http://"),
        (["--server", "http://127.0.0.1:9/v1"], "server http://127.0.0.1:9/v1: cannot connect"),
        (["--server", "http://127.0.0.1:9/v1", "--vlm-model", "/m"], "not both"),
        (["--server", "http://127.0.0.1:9/v1", "--api-key-file", "/no/key"], "/no/key"),
    ],
)
def test_the_demo_refuses_a_bad_server_in_one_line_before_starting(args, error, tmp_path, capsys):
    from uservlm_ros.cli import main

    assert main(["demo", *args, "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("uservlm demo: ") and error in lines[0]
    assert not (tmp_path / "out").exists()
