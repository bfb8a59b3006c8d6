"""Node parameters described once: declaration, validation and the README tables use this.

Pure Python (no rclpy): `uservlm_ros.ros.parameters.declare_parameters` turns a list of `Param` into
declared ROS parameters with descriptors; tests and docs read the same lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from uservlm_ros.core.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One node parameter: name (dotted for groups, e.g. `model.path`), default and meaning."""

    name: str
    default: Any
    description: str
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error text, or None if valid
    # True: a new value is applied at once while the node runs (thresholds, privacy switches,
    # rates). False: read when the node (re)configures, e.g. anything that loads a model.
    live: bool = False

    def validate(self, value: Any) -> Any:
        """Return the value if valid, else raise ConfigError naming the parameter."""
        expected = type(self.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"parameter {self.name!r} must be {expected.__name__}, got {value!r}")
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"parameter {self.name!r} must not be NaN")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"parameter {self.name!r} must be one of {list(self.choices)}, got {value!r}"
            )
        if self.min is not None and value < self.min:
            raise ConfigError(f"parameter {self.name!r} must be >= {self.min}, got {value!r}")
        if self.max is not None and value > self.max:
            raise ConfigError(f"parameter {self.name!r} must be <= {self.max}, got {value!r}")
        if self.check is not None and (problem := self.check(value)):
            raise ConfigError(f"parameter {self.name!r}: {problem}")
        return value

    @property
    def type_name(self) -> str:
        return {bool: "bool", int: "int", float: "double", str: "string", list: "string[]"}.get(
            type(self.default), type(self.default).__name__
        )

    def doc(self) -> str:
        """The description plus its constraints, as the README and the descriptor show it."""
        extra = []
        if self.choices is not None:
            extra.append("one of " + ", ".join(f"`{c}`" for c in self.choices))
        if self.min is not None or self.max is not None:
            low = "-inf" if self.min is None else f"{self.min:g}"
            high = "inf" if self.max is None else f"{self.max:g}"
            extra.append(f"range {low}..{high}")
        if self.live:
            extra.append("live")
        return self.description + (f" ({'; '.join(extra)})" if extra else "")


def validate_all(params: Sequence[Param], values: dict[str, Any]) -> dict[str, Any]:
    """Validate every value; one ConfigError lists every bad parameter."""
    problems, valid = [], {}
    for param in params:
        try:
            valid[param.name] = param.validate(values[param.name])
        except ConfigError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("; ".join(problems))
    return valid


def markdown_table(params: Iterable[Param]) -> str:
    """The README's table of a node's parameters."""
    rows = ["| parameter | type | default | meaning |", "|---|---|---|---|"]
    for param in params:
        default = param.default if param.default != "" else '""'
        rows.append(f"| `{param.name}` | {param.type_name} | `{default}` | {param.doc()} |")
    return "\n".join(rows)
