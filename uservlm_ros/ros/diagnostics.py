"""A node's health on /diagnostics, and rate-limited logging of rejected input."""

from __future__ import annotations

import math
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from std_msgs.msg import Header


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


def log_rejection(node, last_logged: dict[str, float], text: str, every_s: float = 5.0) -> None:
    """Log each distinct bad-input message at once, repeats at most every `every_s` seconds."""
    now = time.monotonic()
    if len(last_logged) > 100:  # many distinct texts (sizes vary): forget, stay bounded
        last_logged.clear()
    if now - last_logged.get(text, -math.inf) >= every_s:
        last_logged[text] = now
        node.get_logger().warning(text)
