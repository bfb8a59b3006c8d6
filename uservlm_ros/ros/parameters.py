"""Declaring a node's `Param` table as ROS parameters with descriptors, validated in one go."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from uservlm_ros.core.parameters import Param, validate_all

AUTOSTART = Param(
    "autostart",
    True,
    "Configure and activate this lifecycle node at start-up; false leaves it unconfigured for a "
    "lifecycle manager to drive.",
)


def declare_parameters(node: Node, params: Sequence[Param]) -> dict[str, Any]:
    """Declare each parameter with a descriptor and return the validated values.

    Raises ConfigError (listing every bad value) when a value from a params file or the command
    line is invalid.
    """
    for param in params:
        descriptor = ParameterDescriptor(description=param.doc(), read_only=param.read_only)
        if isinstance(param.default, list):
            # An empty list default would fix the type to a byte array and reject the string
            # lists given on the command line; Param.validate checks the value instead.
            descriptor.dynamic_typing = True
        if isinstance(param.default, float) and (param.min is not None or param.max is not None):
            descriptor.floating_point_range = [
                FloatingPointRange(
                    from_value=float(param.min if param.min is not None else -1e308),
                    to_value=float(param.max if param.max is not None else 1e308),
                )
            ]
        elif (
            isinstance(param.default, int)
            and not isinstance(param.default, bool)
            and (param.min is not None or param.max is not None)
        ):
            descriptor.integer_range = [
                IntegerRange(
                    from_value=int(param.min if param.min is not None else -(2**63)),
                    to_value=int(param.max if param.max is not None else 2**63 - 1),
                )
            ]
        node.declare_parameter(param.name, param.default, descriptor)
    values = {param.name: node.get_parameter(param.name).value for param in params}
    return validate_all(params, values)
