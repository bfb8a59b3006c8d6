"""The node graph, described once for both ways of starting it.

A deployment is a standard ROS 2 parameter file (`config/<deployment>.yaml`): each top-level key
names a node to start (`<node name>: {ros__parameters: {...}}`), one of the nodes of
nodes/catalogue.py; the node runs its executable of the same name. `launch/*.launch.py`
(ros2 launch, on robots) and `uservlm run` (anywhere, without the ros2 CLI) both build their
processes from `load_graph`, so they start the same nodes with the same parameters, grouped
into the same processes (COMPOSITION).

Pure Python: no rclpy, no launch.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.shipped import shipped_dirs
from uservlm_ros.nodes.catalogue import NODES

PACKAGE = "uservlm"


# Nodes that share one process (nodes/container.py) when a deployment starts two or more of
# them: camera frames and faces then pass from node to node without DDS (ros/intra_process.py),
# which takes the two transport hops out of camera -> profile (docs/benchmarks.md).
# `use_composition:=false` starts every node in a process of its own.
COMPOSITION: Mapping[str, tuple[str, ...]] = {
    "perception": ("camera_node", "face_crop_node", "user_profiler_node"),
}
COMPOSITION_ARGUMENT = "use_composition"
# Launch arguments that choose the graph rather than set node parameters: `ros2 launch` and
# `uservlm run` both take them as NAME:=VALUE (`uservlm run` also as --config / --namespace).
GRAPH_ARGUMENTS = ("config", "namespace", COMPOSITION_ARGUMENT)
COMPOSITION_DESCRIPTION = (
    "true: camera_node, face_crop_node and user_profiler_node share one process and hand frames "
    "and faces over directly; false: a process per node"
)


def composition_enabled(value: str) -> bool:
    """The use_composition launch argument's value (true/false, as ros2 launch spells them)."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", ""):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"{COMPOSITION_ARGUMENT}:={value!r}: expected true or false")


@dataclass(frozen=True)
class LaunchArgument:
    """A launch argument (`ros2 launch ... name:=value`, `uservlm run ... name:=value`) and the
    node parameters it sets; nodes the deployment does not start are left out."""

    description: str
    targets: tuple[tuple[str, str], ...]  # (node name, parameter name)


LAUNCH_ARGUMENTS: Mapping[str, LaunchArgument] = {
    "robot_ip": LaunchArgument(
        "Pepper's address (NAOqi); empty keeps the config's value",
        (
            ("naoqi_bridge_node", "robot.ip"),
            ("camera_node", "naoqi.ip"),
            ("speech_node", "naoqi.ip"),
        ),
    ),
    "robot_port": LaunchArgument(
        "NAOqi port (9559; 9503 for TLS on NAOqi 2.9)",
        (
            ("naoqi_bridge_node", "robot.port"),
            ("camera_node", "naoqi.port"),
            ("speech_node", "naoqi.port"),
        ),
    ),
    "device": LaunchArgument(
        "torch device of the models: cpu, cuda, cuda:1",
        (("user_profiler_node", "model.device"), ("vlm_responder_node", "model.device")),
    ),
    "profiler_model": LaunchArgument(
        "profiler model folder or checkpoint", (("user_profiler_node", "model.path"),)
    ),
    "vlm_model": LaunchArgument(
        "User-VLM model folder (or hub id in the local cache)",
        (("vlm_responder_node", "model.path"),),
    ),
}


def parse_launch_arguments(items: list[str]) -> dict[str, str]:
    """`name:=value` strings, as `ros2 launch` takes them, -> {name: value}."""
    values = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ConfigError(f"{item!r}: expected NAME:=VALUE, e.g. robot_ip:=10.0.0.2")
        values[name] = value
    return values


def launch_overrides(config: str | Path, values: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Parameter overrides from launch-argument values; empty values change nothing."""
    started = _node_names(resolve_config(config))
    overrides: dict[str, dict[str, Any]] = {}
    for name, raw in values.items():
        if name in GRAPH_ARGUMENTS:  # which graph, in which namespace, how grouped: load_graph
            continue
        if name not in LAUNCH_ARGUMENTS:
            known = [*GRAPH_ARGUMENTS, *LAUNCH_ARGUMENTS]
            raise ConfigError(f"unknown launch argument {name!r}; known: {', '.join(known)}")
        if raw == "":
            continue
        for node, param in LAUNCH_ARGUMENTS[name].targets:
            if node in started:
                overrides.setdefault(node, {})[param] = yaml.safe_load(raw)
    return overrides


@dataclass(frozen=True)
class NodeSpec:
    """One node process of a deployment."""

    name: str
    parameters: dict[str, Any]  # from the params file, overrides applied (flattened names)
    overrides: dict[str, Any] = field(default_factory=dict)  # the values given on top of it
    namespace: str = ""

    @property
    def executable(self) -> str:
        return self.name  # a node runs under the name of its file (nodes/catalogue.py)

    def module(self) -> str:
        return f"uservlm_ros.nodes.{self.executable}"

    def ros_args(self, params_file: Path) -> list[str]:
        """The standard ROS arguments that start this node as the deployment describes."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        args += ["--params-file", str(params_file)]
        for name, value in sorted(self.overrides.items()):
            args += ["-p", f"{name}:={yaml_scalar(value)}"]
        return args

    def command(self, params_file: Path, python: str = sys.executable) -> list[str]:
        return [python, "-m", self.module(), *self.ros_args(params_file)]


@dataclass(frozen=True)
class Process:
    """One process of a deployment: a node, or a container of several (nodes/container.py)."""

    name: str  # the node's name, or the container's (a key of COMPOSITION)
    nodes: tuple[NodeSpec, ...]
    # A container's per-node overrides as a params file (`-p` would reach all of its nodes).
    overrides_file: Path | None = None

    @property
    def is_container(self) -> bool:
        return len(self.nodes) > 1

    def command(self, params_file: Path, python: str = sys.executable) -> list[str]:
        if not self.is_container:
            return self.nodes[0].command(params_file, python)
        return [python, "-m", CONTAINER_MODULE, *self.node_names(), *self.ros_args(params_file)]

    def node_names(self) -> list[str]:
        return [spec.name for spec in self.nodes]

    def ros_args(self, params_file: Path) -> list[str]:
        """A container's ROS arguments (a single node's are NodeSpec.ros_args): node names stay
        the nodes' own (no `__node:=`), per-node values come in the overrides file."""
        args = ["--ros-args"]
        namespace = self.nodes[0].namespace
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        args += ["--params-file", str(params_file)]
        if self.overrides_file is not None:
            args += ["--params-file", str(self.overrides_file)]
        return args


CONTAINER_MODULE = "uservlm_ros.nodes.container"
CONTAINER_EXECUTABLE = "container"


@dataclass(frozen=True)
class Graph:
    params_file: Path
    nodes: tuple[NodeSpec, ...]
    processes: tuple[Process, ...]  # the same nodes, as they are started
    # Folders of the params files written for this graph (a namespace, a container's
    # overrides): the nodes read them when they start; whoever started them removes them.
    temporary: tuple[Path, ...] = ()

    def remove_temporary_files(self) -> None:
        for folder in self.temporary:
            shutil.rmtree(folder, ignore_errors=True)


def yaml_scalar(value: Any) -> str:
    """A value as ROS `-p name:=value` expects it (YAML syntax)."""
    return (
        yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip().removesuffix("\n...")
    )


def flatten(parameters: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML parameter maps -> dotted ROS parameter names."""
    flat: dict[str, Any] = {}
    for key, value in parameters.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """`node.param=value` strings (the `--set` option) -> {node: {param: value}}."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        node, dot, param = target.partition(".")
        if not sep or not dot or not node or not param:
            raise ConfigError(
                f"--set {item!r}: expected NODE.PARAM=VALUE, e.g. face_crop_node.crop_size=160"
            )
        overrides.setdefault(node, {})[param] = yaml.safe_load(raw) if raw else ""
    return overrides


# Shipped params files that document some nodes' parameters rather than describe a robot
# (docs/running.md): `--config perception` still starts the nodes they name, but they are not
# offered as deployments.
EXAMPLE_PARAMS = ("dialogue", "perception")


def resolve_config(config: str | Path) -> Path:
    """A params file path, or a shipped deployment: `pepper`, `pepper.yaml` or `config/pepper.yaml`
    (found in the checkout or the installed package, whatever the working directory)."""
    path = Path(config)
    if path.is_file():
        return path.resolve()
    folders = shipped_dirs("config")
    parts = path.parts[1:] if path.parts[:1] == ("config",) else path.parts
    if parts and not path.is_absolute():
        name = Path(*parts)
        name = name if name.suffix == ".yaml" else Path(f"{name}.yaml")
        for folder in folders:
            if (folder / name).is_file():
                return (folder / name).resolve()
    shipped = sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
    deployments = [name for name in shipped if name not in EXAMPLE_PARAMS]
    examples = [name for name in shipped if name in EXAMPLE_PARAMS]
    raise ConfigError(
        f"config {config!s} not found (neither a file nor a shipped deployment: "
        f"{', '.join(deployments) or 'none installed'})"
        + (f"; example parameter files: {', '.join(examples)}" if examples else "")
    )


def _read_params_file(path: Path) -> Mapping[str, Any]:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path}: expected a map of node names")
    return document


def _node_names(path: Path) -> set[str]:
    return {name for name in _read_params_file(path) if name != "/**"}


def normalise_namespace(namespace: str) -> str:
    """`robot1` or `/robot1/` -> `/robot1` ("" stays ""); ConfigError for an invalid ROS name."""
    tokens = [token for token in namespace.strip().split("/") if token]
    for token in tokens:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token):
            raise ConfigError(
                f"namespace {namespace!r}: each part must start with a letter or _ and hold only "
                "letters, digits and _ (e.g. robot1 or lab/robot1)"
            )
    return "/" + "/".join(tokens) if tokens else ""


def load_graph(
    config: str | Path,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    namespace: str = "",
    use_composition: bool = True,
) -> Graph:
    """Read a deployment's params file and describe its nodes and their processes."""
    namespace = normalise_namespace(namespace)
    path = resolve_config(config)
    document = _read_params_file(path)
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    unknown = sorted(set(overrides) - set(document))
    if unknown:
        raise ConfigError(
            f"--set names node(s) {unknown} that {path.name} does not start; "
            f"it starts {sorted(document)}"
        )
    nodes = []
    for name, entry in document.items():
        if name == "/**":  # parameters for every node, no process of its own
            continue
        entry = entry or {}
        if not isinstance(entry, Mapping) or "ros__parameters" not in entry:
            raise ConfigError(f"{path}: node {name!r} needs a `ros__parameters` map")
        if name not in NODES:
            raise ConfigError(f"{path}: unknown node {name!r}; known: {', '.join(NODES)}")
        node_overrides = overrides.get(name, {})
        parameters = {**flatten(entry["ros__parameters"] or {}), **node_overrides}
        nodes.append(
            NodeSpec(
                name=name,
                parameters=parameters,
                overrides=node_overrides,
                namespace=namespace,
            )
        )
    if not nodes:
        raise ConfigError(f"{path} starts no node")
    if namespace:
        path = _namespaced_params_file(path, document, namespace)
    processes = _processes(nodes, namespace) if use_composition else None
    processes = processes or tuple(Process(spec.name, (spec,)) for spec in nodes)
    written = [path] if namespace else []
    written += [p.overrides_file for p in processes if p.overrides_file is not None]
    return Graph(
        params_file=path,
        nodes=tuple(nodes),
        processes=processes,
        temporary=tuple(file.parent for file in written),
    )


def _processes(nodes: list[NodeSpec], namespace: str) -> tuple[Process, ...]:
    """Nodes grouped by COMPOSITION: a container where two or more of a group are started (in
    the group's order: producers first), a process of its own for every other node; the
    container takes the place of its first node."""
    by_name = {spec.name: spec for spec in nodes}
    container_of: dict[str, Process] = {}
    for container, members in COMPOSITION.items():
        specs = tuple(by_name[name] for name in members if name in by_name)
        if len(specs) < 2:
            continue
        overrides = {spec.name: spec.overrides for spec in specs if spec.overrides}
        process = Process(container, specs, _overrides_params_file(container, overrides, namespace))
        for spec in specs:
            container_of[spec.name] = process
    processes: list[Process] = []
    for spec in nodes:
        process = container_of.get(spec.name, Process(spec.name, (spec,)))
        if process not in processes:
            processes.append(process)
    return tuple(processes)


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted ROS parameter names -> the nested maps of a params file (inverse of flatten)."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        level = nested
        for part in parents:
            level = level.setdefault(part, {})
        level[leaf] = value
    return nested


def _overrides_params_file(
    container: str, overrides: Mapping[str, Mapping[str, Any]], namespace: str
) -> Path | None:
    """A container's per-node overrides as a params file, loaded after the deployment's."""
    if not overrides:
        return None
    document = {
        f"{namespace}/{node}" if namespace else node: {"ros__parameters": nest(params)}
        for node, params in overrides.items()
    }
    path = Path(tempfile.mkdtemp(prefix="uservlm-params-")) / f"{container}_overrides.yaml"
    path.write_text(
        f"# --set and launch-argument values for the {container} container (written by uservlm)\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    return path


def _namespaced_params_file(path: Path, document: Mapping[str, Any], namespace: str) -> Path:
    """A copy of the params file whose node keys match the nodes inside `namespace` (a key
    `camera_node` only matches /camera_node); written to a temporary folder."""
    keyed = {
        (name if name == "/**" else f"{namespace}/{name}"): entry
        for name, entry in document.items()
    }
    folder = Path(tempfile.mkdtemp(prefix="uservlm-params-"))
    namespaced = folder / path.name
    namespaced.write_text(
        f"# {path} for namespace {namespace} (written by uservlm)\n"
        + yaml.safe_dump(keyed, sort_keys=False)
    )
    return namespaced
