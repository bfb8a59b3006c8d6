"""The package's layers (docs/ARCHITECTURE.md): no module imports from a layer above its own.

core < backends, sim, console < ros < nodes < bringup, eval, training < demo < cli

The console (web server and page state) is pure Python below ros/, so console_node can serve it;
no other node imports it (aiohttp stays a need of the console alone).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "uservlm_ros"
LAYERS = {
    "core": 0,
    "backends": 1,
    "sim": 1,
    "ros": 2,
    "nodes": 3,
    "bringup": 4,
    "eval": 4,
    "training": 4,
    "console": 1,
    "demo": 5,
    "cli": 6,
}
# Layers that run without ROS: they must not import rclpy or generated message types.
ROS_FREE = {"core", "backends", "sim", "training", "console"}


def _layer_of(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "uservlm_ros"
    return parts[1] if len(parts) > 1 else "cli"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_every_subpackage_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), f"give {sorted(packages - set(LAYERS))} a layer"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_higher_layer(path: Path):
    relative = path.relative_to(PACKAGE)
    own = relative.parts[0] if len(relative.parts) > 1 else relative.stem
    own_level = LAYERS.get(own, LAYERS["cli"])
    for name in _imports(path):
        if name.startswith("uservlm_ros."):
            target = name.split(".")[1]
            if target in LAYERS:
                assert LAYERS[target] <= own_level, f"{relative} imports {name} (a higher layer)"
        if own in ROS_FREE:
            root = name.split(".")[0]
            assert root not in {"rclpy", "uservlm"}, f"{relative} ({own}) must not import {name}"


def test_only_the_console_node_imports_the_console():
    for path in sorted((PACKAGE / "nodes").glob("*.py")):
        if path.stem != "console_node":
            imported = [n for n in _imports(path) if n.startswith("uservlm_ros.console")]
            assert not imported, f"nodes/{path.name} imports {imported}"
