"""A node's `Param` table as ROS parameters: declared with descriptors, validated, changed live.

`declare_parameters` declares and validates the start-up values. `watch_parameters` then
validates every later change against the same table: a change to a `live` parameter is applied
at once (the node's `apply` callback), one to another parameter is accepted only where the node
can reconfigure (lifecycle nodes read it at the next configure) and rejected with the reason
otherwise. A node calls both through `node_parameters`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rcl_interfaces.msg import (
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.parameters import Param, validate_all

AUTOSTART = Param(
    "autostart",
    True,
    "Configure and activate this lifecycle node at start-up; false leaves it unconfigured for a "
    "lifecycle manager to drive.",
)


def declare_parameters(node: Node, params: Sequence[Param]) -> dict[str, Any]:
    """Declare each parameter with a descriptor and return the validated values.

    Raises ConfigError, listing every bad value with what is allowed, when a value from a params
    file or the command line is invalid (checked before rclpy sees it, so the user gets one
    uservlm message instead of rclpy's exception).
    """
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps -p / params-file here
    for param in params:  # `-p margin:=1` means 1.0: spare the user rclpy's type error
        given = overrides.get(param.name)
        if given is not None and isinstance(param.default, float) and type(given.value) is int:
            overrides[param.name] = Parameter(param.name, Parameter.Type.DOUBLE, float(given.value))
    validate_all(
        [param for param in params if param.name in overrides],
        {name: override.value for name, override in overrides.items()},
    )
    for param in params:
        node.declare_parameter(param.name, param.default, _descriptor(param))
    return read_parameters(node, params)


def _descriptor(param: Param) -> ParameterDescriptor:
    # Dynamic typing and no descriptor ranges: the Param table alone validates every value, at
    # start-up and at run time, so every rejection carries uservlm's message (parameter, value,
    # what is allowed) instead of rclpy's "Wrong parameter type, expected '1' got '4'". The
    # description still states the type and range.
    return ParameterDescriptor(description=f"{param.type_name}: {param.doc()}", dynamic_typing=True)


def read_parameters(node: Node, params: Sequence[Param]) -> dict[str, Any]:
    """The current values of declared parameters, validated (for a re-configure)."""
    values = {param.name: node.get_parameter(param.name).value for param in params}
    return validate_all(params, values)


def watch_parameters(
    node: Node,
    params: Sequence[Param],
    values: dict[str, Any],
    apply: Callable[[dict[str, Any]], None] | None = None,
    reconfigurable: bool = False,
) -> None:
    """Validate runtime changes with the Param table; update `values` for live parameters.


    `apply(changed)` runs after live values are stored (e.g. to rebuild a fusion config).
    Non-live parameters: accepted with a log line when `reconfigurable` (read at the next
    configure), else rejected: the node reads them only at start-up.
    """
    by_name = {param.name: param for param in params}

    def on_set(changes: list[Parameter]) -> SetParametersResult:
        live: dict[str, Any] = {}
        for change in changes:
            param = by_name.get(change.name)
            if param is None:
                continue  # rclpy's own parameters, e.g. use_sim_time
            try:
                value = param.validate(change.value)
            except ConfigError as error:
                return SetParametersResult(successful=False, reason=str(error))
            if param.live:
                live[param.name] = value
            elif not reconfigurable:
                return SetParametersResult(
                    successful=False,
                    reason=f"parameter {param.name!r} is read at start-up: restart the node",
                )
            else:
                node.get_logger().info(
                    f"{param.name} := {value!r} applies at the next configure "
                    "(cleanup -> configure)"
                )
        if live:
            values.update(live)
            node.get_logger().info(
                "live parameter change: " + ", ".join(f"{k}={v!r}" for k, v in live.items())
            )
            if apply is not None:
                apply(live)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)


def node_parameters(
    node: Node,
    params: Sequence[Param],
    apply: Callable[[dict[str, Any]], None] | None = None,
    reconfigurable: bool = False,
) -> dict[str, Any]:
    """`declare_parameters` then `watch_parameters`, as every node does: the validated values,
    kept up to date in the returned dict as live parameters change."""
    values = declare_parameters(node, params)
    watch_parameters(node, params, values, apply, reconfigurable)
    return values
