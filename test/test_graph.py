"""The shared graph description: launch files and `uservlm run` start the same nodes."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from uservlm_ros.bringup.graph import (
    COMPOSITION,
    CONTAINER_EXECUTABLE,
    LAUNCH_ARGUMENTS,
    composition_enabled,
    launch_overrides,
    load_graph,
    parse_launch_arguments,
    parse_overrides,
    yaml_scalar,
)
from uservlm_ros.bringup.runner import GraphRunner
from uservlm_ros.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = ["pepper", "webcam", "replay", "demo", "people"]
LAUNCHED = [
    "pepper",
    "webcam",
    "replay",
    "people",
]  # the demo is started by `make demo`, not ros2 launch


class _Recorded:
    """Stands in for a launch action: keeps the arguments it was built with."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchDescription:
    def __init__(self, entities=()):
        self.entities = list(entities)

    def add_action(self, action):
        self.entities.append(action)


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


@pytest.fixture
def fake_launch(monkeypatch):
    """Minimal `launch` / `launch_ros` modules (no wheels exist for them) that record calls."""
    modules = {
        "launch": {"LaunchDescription": _LaunchDescription},
        "launch.actions": {
            "DeclareLaunchArgument": _Recorded,
            "OpaqueFunction": _Recorded,
            "ExecuteProcess": _Recorded,
        },
        "launch.substitutions": {"LaunchConfiguration": _LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": _Recorded},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)


def run_launch_file(deployment: str, arguments: dict[str, str]) -> list[_Recorded]:
    """Execute launch/<deployment>.launch.py as ros2 launch would; return its Node actions."""
    path = ROOT / "launch" / f"{deployment}.launch.py"
    spec = importlib.util.spec_from_file_location(f"launch_file_{deployment}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {
        a.args[0]: a.kwargs.get("default_value")
        for a in description.entities
        if a.args and isinstance(a.args[0], str)
    }
    context = {**declared, **arguments}
    opaque = [a for a in description.entities if "function" in a.kwargs]
    assert len(opaque) == 1
    return opaque[0].kwargs["function"](context)


@pytest.mark.parametrize("composition", ["true", "false"])
@pytest.mark.parametrize("deployment", LAUNCHED)
def test_launch_file_and_uservlm_run_start_the_same_processes(fake_launch, deployment, composition):
    arguments = {"robot_ip": "10.0.0.7", "device": "cpu", "use_composition": composition}
    launched = run_launch_file(deployment, arguments)
    config = ROOT / "config" / f"{deployment}.yaml"
    graph = load_graph(
        config, launch_overrides(config, arguments), use_composition=composition == "true"
    )
    commands = dict(GraphRunner(graph).commands())

    assert len(launched) == len(graph.processes)
    for action, process in zip(launched, graph.processes, strict=True):
        assert action.kwargs["package"] == "uservlm"
        command = commands[process.name]
        if process.is_container:
            # the same arguments as `uservlm run`'s command line, after the module
            assert action.kwargs["executable"] == CONTAINER_EXECUTABLE
            assert "name" not in action.kwargs  # __node:= would rename every node inside
            # (each load_graph writes its own copy of the overrides file)
            launched_args, run_args = action.kwargs["arguments"], command[3:]
            assert len(launched_args) == len(run_args)
            for launched_arg, run_arg in zip(launched_args, run_args, strict=True):
                if launched_arg.endswith("_overrides.yaml"):
                    assert Path(launched_arg).read_text() == Path(run_arg).read_text()
                else:
                    assert launched_arg == run_arg
            assert command[:3] == [sys.executable, "-m", "uservlm_ros.nodes.container"]
            continue
        spec = process.nodes[0]
        assert action.kwargs["name"] == spec.name
        assert action.kwargs["executable"] == spec.executable
        params_file, overrides = action.kwargs["parameters"]
        assert Path(params_file) == graph.params_file
        assert overrides == spec.overrides
        # uservlm run passes the same file and the same overrides on the command line.
        assert command[command.index("--params-file") + 1] == str(graph.params_file)
        assert command[command.index("-r") + 1] == f"__node:={spec.name}"
        given = {command[i + 1] for i, word in enumerate(command) if word == "-p"}
        assert given == {f"{k}:={yaml_scalar(v)}" for k, v in spec.overrides.items()}


def test_the_perception_nodes_share_a_process_unless_composition_is_off(tmp_path):
    overrides = {"face_crop_node": {"crop_size": 160, "detector.min_confidence": 0.5}}
    graph = load_graph("demo", overrides, namespace="robot1")
    container = graph.processes[0]
    assert container.name == "perception"
    assert container.node_names() == list(COMPOSITION["perception"])
    assert [p.name for p in graph.processes[1:]] == [
        n.name for n in graph.nodes if n.name not in COMPOSITION["perception"]
    ]
    command = container.command(graph.params_file)
    assert command[3:6] == ["camera_node", "face_crop_node", "user_profiler_node"]
    assert "-p" not in command  # it would reach every node of the container
    assert not any(arg.startswith("__node:=") for arg in command)
    assert command[command.index("-r") + 1] == "__ns:=/robot1"
    files = [command[i + 1] for i, word in enumerate(command) if word == "--params-file"]
    assert files == [str(graph.params_file), str(container.overrides_file)]
    # the overrides file holds each node's values, nested and keyed for the namespace
    assert yaml.safe_load(container.overrides_file.read_text()) == {
        "/robot1/face_crop_node": {
            "ros__parameters": {"crop_size": 160, "detector": {"min_confidence": 0.5}}
        }
    }

    separate = load_graph("demo", use_composition=False)
    assert [p.name for p in separate.processes] == [n.name for n in separate.nodes]
    assert not any(p.is_container for p in separate.processes)
    # a bag replay has no camera_node: face_crop_node and user_profiler_node share a process
    replay = load_graph("replay")
    assert replay.processes[0].node_names() == ["face_crop_node", "user_profiler_node"]
    # a deployment with only one node of the group runs it on its own
    single = tmp_path / "profiler_only.yaml"
    single.write_text("user_profiler_node:\n  ros__parameters: {}\n")
    assert [p.is_container for p in load_graph(single).processes] == [False]


def test_use_composition_values():
    assert composition_enabled("true") and composition_enabled("True") and composition_enabled("")
    assert not composition_enabled("false") and not composition_enabled("0")
    with pytest.raises(ConfigError, match="use_composition:='maybe': expected true or false"):
        composition_enabled("maybe")
    # it is not a node parameter: launch_overrides leaves it to load_graph
    assert launch_overrides("demo", {"use_composition": "false"}) == {}


def test_launch_arguments_reach_the_nodes_that_take_them():
    config = ROOT / "config" / "pepper.yaml"
    overrides = launch_overrides(config, {"robot_ip": "10.0.0.7", "device": "", "vlm_model": ""})
    for node, param in LAUNCH_ARGUMENTS["robot_ip"].targets:
        if node in {spec.name for spec in load_graph(config).nodes}:
            assert overrides[node][param] == "10.0.0.7"
    assert all("model.device" not in params for params in overrides.values())  # empty: unset


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_every_shipped_config_loads_and_validates_against_the_node_parameters(deployment):
    from uservlm_ros.cli import available_nodes
    from uservlm_ros.core.parameters import validate_all

    nodes = available_nodes()
    graph = load_graph(deployment)
    for spec in graph.nodes:
        params = {p.name: p for p in nodes[spec.executable].PARAMS}
        unknown = set(spec.parameters) - set(params)
        assert not unknown, f"{deployment}.yaml sets unknown {spec.name} parameters {unknown}"
        values = {name: spec.parameters.get(name, p.default) for name, p in params.items()}
        validate_all(list(params.values()), values)


def test_set_and_launch_argument_syntax():
    assert parse_overrides(["face_crop_node.crop_size=160", "x.a.b=true"]) == {
        "face_crop_node": {"crop_size": 160},
        "x": {"a.b": True},
    }
    assert parse_launch_arguments(["robot_ip:=1.2.3.4"]) == {"robot_ip": "1.2.3.4"}
    with pytest.raises(ConfigError, match=r"NODE\.PARAM=VALUE"):
        parse_overrides(["crop_size=3"])
    with pytest.raises(ConfigError, match="NAME:=VALUE"):
        parse_launch_arguments(["robot_ip=1"])
    with pytest.raises(ConfigError, match="does not start"):
        load_graph("pepper", {"no_such_node": {"a": 1}})
    with pytest.raises(ConfigError, match="not found"):
        load_graph("no_such_deployment")
