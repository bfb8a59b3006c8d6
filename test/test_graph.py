"""The shared graph description: launch files and `uservlm run` start the same nodes."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from uservlm_ros.bringup.graph import (
    LAUNCH_ARGUMENTS,
    launch_overrides,
    load_graph,
    parse_launch_arguments,
    parse_overrides,
    yaml_scalar,
)
from uservlm_ros.bringup.runner import GraphRunner
from uservlm_ros.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = ["pepper", "webcam", "replay", "demo"]
LAUNCHED = ["pepper", "webcam", "replay"]  # the demo is started by `make demo`, not ros2 launch


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


@pytest.mark.parametrize("deployment", LAUNCHED)
def test_launch_file_and_uservlm_run_start_the_same_nodes(fake_launch, deployment):
    arguments = {"robot_ip": "10.0.0.7", "device": "cpu"}
    launched = run_launch_file(deployment, arguments)
    config = ROOT / "config" / f"{deployment}.yaml"
    graph = load_graph(config, launch_overrides(config, arguments))
    commands = dict(GraphRunner(graph).commands())

    assert [n.kwargs["name"] for n in launched] == [spec.name for spec in graph.nodes]
    for node, spec in zip(launched, graph.nodes, strict=True):
        assert node.kwargs["package"] == "uservlm"
        assert node.kwargs["executable"] == spec.executable
        params_file, overrides = node.kwargs["parameters"]
        assert Path(params_file) == graph.params_file
        assert overrides == spec.overrides
        assert node.kwargs["remappings"] == list(spec.remappings)
        # uservlm run passes the same file and the same overrides on the command line.
        command = commands[spec.name]
        assert command[command.index("--params-file") + 1] == str(graph.params_file)
        assert command[command.index("-r") + 1] == f"__node:={spec.name}"
        given = {command[i + 1] for i, word in enumerate(command) if word == "-p"}
        assert given == {f"{k}:={yaml_scalar(v)}" for k, v in spec.overrides.items()}


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
