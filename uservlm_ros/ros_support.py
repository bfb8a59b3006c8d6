"""rclpy helpers shared by the nodes: parameters, QoS profiles, images, diagnostics, stamps."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from uservlm_ros.core.image import RawImage, from_rgb, to_rgb
from uservlm_ros.errors import UservlmError
from uservlm_ros.parameters import Param, validate_all

# Camera frames: only the newest matters, losing one is better than queueing stale ones.
SENSOR_QOS = qos_profile_sensor_data
# Faces, questions, responses: every message matters.
RELIABLE_QOS = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
)
# Profiles: late subscribers get the current profile of each recent user.
LATCHED_QOS = QoSProfile(
    depth=20,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
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


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> (h, w, 3) uint8 RGB; raises ImageConversionError on bad input."""
    return to_rgb(
        RawImage(
            height=msg.height,
            width=msg.width,
            encoding=msg.encoding,
            step=msg.step,
            data=msg.data,
            is_bigendian=msg.is_bigendian,
        )
    )


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    """(h, w, 3) uint8 RGB -> sensor_msgs/Image (rgb8)."""
    raw = from_rgb(rgb)
    return Image(
        header=header,
        height=raw.height,
        width=raw.width,
        encoding=raw.encoding,
        is_bigendian=0,
        step=raw.step,
        data=raw.data,
    )


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(seconds: float) -> Time:
    sec = int(seconds)
    return Time(sec=sec, nanosec=round((seconds - sec) * 1e9) % 1_000_000_000)


class Diagnostics:
    """A node's health on /diagnostics at 1 Hz: a level, a message and named counters."""

    def __init__(self, node: Node, hardware_id: str = "") -> None:
        self._node = node
        self._hardware_id = hardware_id
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.level = DiagnosticStatus.OK
        self.message = "starting"
        self.values: dict[str, Any] = {}
        self._started = time.monotonic()
        self._timer = node.create_timer(1.0, self.publish)

    def count(self, key: str, amount: int = 1) -> None:
        self.values[key] = self.values.get(key, 0) + amount

    def set_status(self, level: bytes, message: str) -> None:
        self.level, self.message = level, message

    def publish(self) -> None:
        status = DiagnosticStatus(
            level=self.level,
            name=f"uservlm: {self._node.get_fully_qualified_name()}",
            message=self.message,
            hardware_id=self._hardware_id,
            values=[KeyValue(key=k, value=str(v)) for k, v in sorted(self.values.items())],
        )
        status.values.append(
            KeyValue(key="uptime_s", value=f"{time.monotonic() - self._started:.0f}")
        )
        self._publisher.publish(
            DiagnosticArray(
                header=Header(stamp=self._node.get_clock().now().to_msg()), status=[status]
            )
        )

    def destroy(self) -> None:
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._publisher)


AUTOSTART = Param(
    "autostart",
    True,
    "Configure and activate this lifecycle node at start-up; false leaves it unconfigured for a "
    "lifecycle manager to drive.",
)


FASTDDS_PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def use_uservlm_dds_profile() -> None:
    """Give Fast DDS uservlm's transport profile (config/fastdds.xml: a shared-memory segment
    large enough for camera frames), unless the user named a profile file already. Must run
    before rclpy creates its first node."""
    if os.environ.get(FASTDDS_PROFILE_VARIABLE):
        return
    for candidate in _dds_profile_candidates():
        if candidate.is_file():
            os.environ[FASTDDS_PROFILE_VARIABLE] = str(candidate)
            return


def _dds_profile_candidates() -> list[Path]:
    source = Path(__file__).resolve().parents[1] / "config" / "fastdds.xml"
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return [source, *(Path(p) / "share" / "uservlm" / "config" / "fastdds.xml" for p in prefixes)]


def run_node(node_factory, args: list[str] | None = None) -> int:
    """Entry point of every node executable: init, (auto)start, spin, shut down cleanly.

    Returns the process exit code: 1 when a lifecycle node fails to configure or activate, so a
    launcher can report which node did not start.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

    use_uservlm_dds_profile()
    rclpy.init(args=args)
    exit_code = 0
    node = None
    try:
        node = node_factory()
        if isinstance(node, LifecycleNode) and node.get_parameter(AUTOSTART.name).value:
            for transition in (node.trigger_configure, node.trigger_activate):
                if transition() != TransitionCallbackReturn.SUCCESS:
                    node.get_logger().fatal(f"{transition.__name__[8:]} failed; exiting")
                    return 1
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except UservlmError as error:  # a bad parameter or unusable source: say what, no traceback
        print(f"{getattr(node_factory, '__name__', 'node')}: {error}", file=sys.stderr)
        exit_code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return exit_code
