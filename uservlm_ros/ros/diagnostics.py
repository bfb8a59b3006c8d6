"""A node's health on /diagnostics, rate-limited logging of rejected input, the start-up line."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from std_msgs.msg import Header

from uservlm_ros.core import health
from uservlm_ros.core.health import Verdict, combine


class Diagnostics:
    """A node's health on /diagnostics at 1 Hz: a level, a message and named counters.

    `set_status` records the node's state (configured, active, ...); checks added with
    `add_check` judge its health at every publish (core/health.py verdicts): the published level
    is the worst of the two, the message names every problem found.
    """

    def __init__(self, node: Node, hardware_id: str = "") -> None:
        self._node = node
        self._hardware_id = hardware_id
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.level = DiagnosticStatus.OK
        self.message = "starting"
        self.values: dict[str, Any] = {}
        self._checks: list[Callable[[], Verdict]] = []
        self._started = time.monotonic()
        self._timer = node.create_timer(1.0, self.publish)

    def count(self, key: str, amount: int = 1) -> None:
        self.values[key] = self.values.get(key, 0) + amount

    def set_status(self, level: bytes, message: str) -> None:
        self.level, self.message = level, message

    def add_check(self, check: Callable[[], Verdict]) -> None:
        self._checks.append(check)

    def judge(self) -> tuple[bytes, str]:
        """The level and message to publish now."""
        try:
            verdict = combine(check() for check in self._checks)
        except Exception as error:  # a broken check is itself a health problem
            verdict = Verdict(health.ERROR, (f"health check failed: {error}",))
        level = max(ord(self.level), verdict.level)
        return bytes([level]), verdict.message(self.message)

    def publish(self) -> None:
        level, message = self.judge()
        status = DiagnosticStatus(
            level=level,
            name=f"uservlm: {self._node.get_fully_qualified_name()}",
            message=message,
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


def loss_counter(node: Node, key: str, advice: str = "") -> SubscriptionEventCallbacks:
    """QoS event callbacks that count samples DDS reports lost on a subscription under
    diagnostics value `key`, and log once (with `advice`) when the first ones are lost."""
    warned = False

    def on_lost(info) -> None:
        nonlocal warned
        diagnostics = getattr(node, "diagnostics", None)
        if diagnostics is not None:
            diagnostics.count(key, info.total_count_change)
        if not warned:
            warned = True
            node.get_logger().warning(
                f"{info.total_count_change} message(s) lost in transport ({key})"
                + (f": {advice}" if advice else "")
            )

    return SubscriptionEventCallbacks(message_lost=on_lost)


def log_running(node: Node, state: str, flow: str, *names: str, **text: str) -> None:
    """Log that a node runs and where its data goes: `<node> <state>: <flow>`. Each `{}` of
    `flow` is one of `names` (topics, actions) as the node resolves it (namespace, remappings),
    each `{key}` a `text` value (a backend's name and the like), inserted as it is."""
    resolved = [node.resolve_topic_name(name) for name in names]
    node.get_logger().info(f"{node.get_name()} {state}: {flow.format(*resolved, **text)}")
