"""The package's layers, as docs/ARCHITECTURE.md's layer table documents them.

The table is read from the docs, so the test and the table cannot drift apart: each layer may
import from itself and from the layers its row names, nothing else (neighbours on one step, such
as backends and console, or bringup, eval and training, do not import each other). Imports are
read from every module: `import`, `from ... import` (relative ones too) and `importlib`'s
`import_module` / `__import__` with a literal name (an f-string's literal start counts). Rows
marked "no rclpy, no messages" import no ROS package. Only nodes/console_node.py imports the
console, and the console takes plain data only.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "uservlm_ros"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
TABLE_HEADER = "| layer | holds | may import"
# The one module that may import the console, relative to the package.
CONSOLE_GATE = Path("nodes/console_node.py")
# ROS packages: rclpy, launch, the generated interfaces (ours: `uservlm`) and ROS's own.
ROS_PACKAGES = {
    "rclpy",
    "uservlm",
    "launch",
    "launch_ros",
    "rosbag2_py",
    "rosidl_runtime_py",
    "ament_index_python",
}
ROS_SUFFIXES = ("_msgs", "_srvs", "_interfaces")


@dataclass(frozen=True)
class Layer:
    name: str
    may_import: frozenset[str]
    ros_free: bool


def documented_layers(text: str) -> dict[str, Layer]:
    """The layer table: `name` -> what its row says it may import."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(TABLE_HEADER))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 3, f"a layer row with {len(cells)} cells: {line[:60]}"
        names = [
            n.removesuffix("/").removesuffix(".py") for n in re.findall(r"`([^`]+)`", cells[0])
        ]
        rows.append((names, cells[2]))
    every = {name for names, _ in rows for name in names}
    layers = {}
    for names, may_import in rows:
        allowed = (
            every
            if may_import.startswith("everything")
            else set(re.findall(r"`([^`/.]+)`", may_import)) & every
        )
        for name in names:
            layers[name] = Layer(name, frozenset(allowed - {name}), "no rclpy" in may_import)
    return layers


def _literal_start(node: ast.expr) -> str | None:
    """The module name a call is given, or the literal start of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def module_imports(path: Path, package: Path) -> list[tuple[int, str]]:
    """(line, module name) for everything `path` imports."""
    relative = path.relative_to(package.parent).with_suffix("")
    parts = list(relative.parts if path.name != "__init__.py" else relative.parts[:-1])
    here = parts if path.name == "__init__.py" else parts[:-1]  # the module's own package
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if "." in base:  # `from pkg.layer import x`: the layer is known
                found.append((node.lineno, base))
            else:  # `from pkg import layer`
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            name = _literal_start(node.args[0])
            if called in ("import_module", "__import__") and name:
                found.append((node.lineno, name.rstrip(".")))
    return found


def _is_ros(module: str) -> bool:
    root = module.split(".")[0]
    return root in ROS_PACKAGES or root.endswith(ROS_SUFFIXES)


def violations(package: Path, layers: Mapping[str, Layer]) -> list[str]:
    """Every import of the package's modules that its layer's row does not allow."""
    found = []
    top = package.name
    layerless = set()
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative == Path("__init__.py"):
            continue
        own = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        layer = layers.get(own)
        if layer is None:
            if own not in layerless:
                layerless.add(own)
                found.append(f"{own}: no row in the layer table")
            continue
        for line, name in module_imports(path, package):
            where = f"{relative}:{line} ({own}) imports {name}"
            parts = name.split(".")
            is_module = len(parts) > 1 and (
                (package / parts[1]).is_dir() or (package / f"{parts[1]}.py").exists()
            )
            if parts[0] == top and is_module:  # not a name of the package's __init__
                target = parts[1]
                if target == own:
                    continue
                if target not in layers:
                    found.append(f"{where}: {target} has no row in the layer table")
                elif target not in layer.may_import:
                    found.append(f"{where}: {own} may import {sorted(layer.may_import)} only")
                elif target == "console" and relative != CONSOLE_GATE:
                    found.append(f"{where}: only {CONSOLE_GATE} imports the console")
            elif layer.ros_free and _is_ros(name):
                found.append(f"{where}: {own} runs without ROS")
    return found


LAYERS = documented_layers(ARCHITECTURE.read_text())


def test_the_table_has_the_documented_layers():
    assert {"core", "backends", "console", "sim", "ros", "nodes", "cli"} <= set(LAYERS)
    assert LAYERS["core"].may_import == frozenset() and LAYERS["core"].ros_free
    # neighbours on one step do not import each other
    assert "console" not in LAYERS["backends"].may_import
    assert "backends" not in LAYERS["console"].may_import
    for a, b in [("bringup", "eval"), ("bringup", "training"), ("eval", "training")]:
        assert a not in LAYERS[b].may_import and b not in LAYERS[a].may_import
    assert {n for n, layer in LAYERS.items() if layer.ros_free} == {
        "core",
        "backends",
        "console",
        "sim",
        "training",
    }


def test_every_subpackage_and_top_level_module_has_a_row():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    missing = (packages | modules) - set(LAYERS)
    assert not missing, f"give {sorted(missing)} a row in docs/ARCHITECTURE.md's layer table"


def test_the_package_keeps_its_layers():
    found = violations(PACKAGE, LAYERS)
    assert not found, "\n".join(found)


# -- the console sees plain Python data only

PLAIN = (str, int, float, bool, type(None), bytes)
CONTAINERS = (tuple, list, dict, set, frozenset, Iterable, Mapping, typing.Union, types.UnionType)


def _plain(hint: object) -> bool:
    """Builtin values, containers of them, and dataclasses of uservlm_ros.core / .console made
    of them: no `Any`, no message type."""
    if hint in PLAIN or hint is Ellipsis:
        return True
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint.__module__.startswith(("uservlm_ros.core.", "uservlm_ros.console.")) and all(
            _plain(h) for h in typing.get_type_hints(hint).values()
        )
    origin = typing.get_origin(hint)
    if origin in CONTAINERS or isinstance(hint, types.UnionType):
        return all(_plain(arg) for arg in typing.get_args(hint))
    return False


def test_the_console_state_takes_plain_data_only():
    """console_node converts each message (ros/message_data.py) before the console sees it."""
    from uservlm_ros.console.state import ConsoleState

    for name, method in inspect.getmembers(ConsoleState, inspect.isfunction):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(method)
        hints.pop("return", None)
        for parameter in inspect.signature(method).parameters:
            if parameter != "self":
                assert parameter in hints, f"ConsoleState.{name}: annotate {parameter}"
                assert _plain(hints[parameter]), f"ConsoleState.{name}({parameter}) is not plain"


def test_plain_means_no_any_and_no_message():
    from uservlm_ros.core.message_data import ProfileData

    assert _plain(ProfileData) and _plain(Iterable[ProfileData]) and _plain(bool | None)
    assert not _plain(typing.Any) and not _plain(list[typing.Any])
    assert not _plain(types.SimpleNamespace)


# -- the layer test itself: a package that breaks a rule fails it

CLEAN = {
    "core/a.py": "import json\n",
    "backends/b.py": "from uservlm_ros.core import a\n",
    "console/c.py": "from uservlm_ros.core.a import x\n",
    "sim/s.py": "from uservlm_ros.backends import b\n",
    "ros/r.py": "import rclpy\nfrom uservlm_ros.sim import s\n",
    "nodes/console_node.py": "from uservlm_ros.console import c\nfrom . import other_node\n",
    "nodes/other_node.py": "from std_msgs.msg import String\n",
    "bringup/g.py": 'import importlib\nimportlib.import_module(f"uservlm_ros.nodes.{x}")\n',
    "eval/e.py": "from uservlm_ros.ros import r\n",
    "training/t.py": "from uservlm_ros.sim import s\n",
    "demo/d.py": "from uservlm_ros.eval import e\n",
    "cli.py": "from uservlm_ros.demo import d\n",
}
BROKEN = {
    "a neighbour": ("backends/b.py", "from uservlm_ros.console import c\n"),
    "the other neighbour": ("console/c.py", "import uservlm_ros.backends.b\n"),
    "a layer above": ("sim/s.py", "from uservlm_ros.ros.r import x\n"),
    "a layer of the same step": ("bringup/g.py", "from uservlm_ros.eval import e\n"),
    "importlib": ("sim/s.py", 'import importlib\nimportlib.import_module("uservlm_ros.nodes.y")\n'),
    "an f-string": (
        "core/a.py",
        'from importlib import import_module\nimport_module(f"uservlm_ros.sim.{n}")\n',
    ),
    "__import__": ("core/a.py", '__import__("uservlm_ros.backends.b")\n'),
    "a relative import": ("backends/b.py", "from ..sim import s\n"),
    "the console elsewhere": ("nodes/other_node.py", "from uservlm_ros.console.c import y\n"),
    "the console from cli": ("cli.py", "import uservlm_ros.console.c\n"),
    "rclpy below ros": ("backends/b.py", "def f():\n    import rclpy\n"),
    "a message below ros": ("console/c.py", "from diagnostic_msgs.msg import DiagnosticStatus\n"),
    "our messages below ros": ("training/t.py", "from uservlm.msg import UserProfile\n"),
    "an undocumented layer": ("extras/x.py", "import json\n"),
}


def _package(root: Path, files: Mapping[str, str]) -> Path:
    package = root / "uservlm_ros"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return package


def test_a_package_that_keeps_the_layers_passes(tmp_path: Path):
    assert violations(_package(tmp_path, CLEAN), LAYERS) == []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_package_that_breaks_a_rule_fails(tmp_path: Path, case: str):
    name, text = BROKEN[case]
    found = violations(_package(tmp_path, {**CLEAN, name: text}), LAYERS)
    assert len(found) == 1 and found[0].startswith((name, name.split("/")[0] + ":")), found
