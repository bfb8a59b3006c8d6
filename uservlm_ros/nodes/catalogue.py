"""The one list of uservlm's nodes: each file `nodes/<x>_node.py` is the node `<x>_node`.

Everything that names nodes reads this list: `uservlm params` and the docs check
(`cli.available_nodes`), the deployments (`bringup/graph.py`: which node names a params file may
start) and the container (`nodes/container.py`); `setup.py` and `CMakeLists.txt` glob the same
files for the executables. Adding a node file is all it takes.

A node module that can share a process with others (nodes/container.py) says so by defining
`NODE = <its node class>`; one that must not (speech_node: its `cpu.nice` would lower the
priority of every node in the process) leaves it out.

Finding the names imports nothing (bringup/graph.py stays free of rclpy); `node_module` imports a
node's module, rclpy with it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from uservlm_ros.core.errors import ConfigError

SUFFIX = "_node"


def find_nodes(folder: Path) -> tuple[str, ...]:
    """The node names of a folder of node modules: the stems of its `*_node.py` files, sorted."""
    return tuple(sorted(path.stem for path in folder.glob(f"*{SUFFIX}.py")))


NODES: tuple[str, ...] = find_nodes(Path(__file__).resolve().parent)


def node_module(name: str) -> ModuleType:
    """A node's module (its PARAMS, main, and NODE where it is composable)."""
    if name not in NODES:
        raise ConfigError(f"unknown node {name!r}; known: {', '.join(NODES)}")
    return importlib.import_module(f"{__package__}.{name}")


def is_composable(name: str) -> bool:
    """Whether a container can hold the node: its module defines NODE."""
    return name in NODES and hasattr(node_module(name), "NODE")


def composable() -> tuple[str, ...]:
    """The nodes a container can hold (imports every node module)."""
    return tuple(name for name in NODES if is_composable(name))
