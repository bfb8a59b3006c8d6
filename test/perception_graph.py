"""Helpers of the perception graph tests: image messages, publishing until heard, diagnostics."""

from __future__ import annotations

import time

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from harness import wait_until
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from uservlm_ros.ros.conversions import rgb_to_image, seconds_to_stamp
from uservlm_ros.ros.qos import SENSOR_QOS

NODE = "uservlm_ros.nodes.{}"


def image_msg(rgb: np.ndarray, stamp: Time | None = None, frame_id: str = "camera") -> Image:
    return rgb_to_image(
        rgb, Header(stamp=stamp or seconds_to_stamp(time.time()), frame_id=frame_id)
    )


def publish_until(
    publisher, make_msg, collector, count: int = 1, timeout: float = 20.0, period=0.3
):
    """Publish (best effort may lose some) until `collector` holds `count` messages."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(make_msg())
        try:
            return collector.wait_for(count, timeout=period)
        except TimeoutError:
            continue
    return collector.wait_for(count, timeout=0.1)


def camera_publisher(ros, topic: str = "/camera/image_raw"):
    return ros.publisher(Image, topic, SENSOR_QOS)


def diagnostic_value(collector, node_name: str, key: str) -> str | None:
    """The latest value of one counter of one node on /diagnostics, if published yet."""
    for msg in reversed(collector.messages):
        for status in msg.status:
            if node_name in status.name:
                values = {kv.key: kv.value for kv in status.values}
                if key in values:
                    return values[key]
    return None


def wait_for_counter(collector, node_name: str, key: str, at_least: int, timeout=10.0) -> int:
    wait_until(
        lambda: int(diagnostic_value(collector, node_name, key) or 0) >= at_least,
        timeout,
        f"{key} >= {at_least} in the diagnostics of {node_name}",
    )
    return int(diagnostic_value(collector, node_name, key))


def subscribe_diagnostics(ros):
    return ros.subscribe(DiagnosticArray, "/diagnostics")
