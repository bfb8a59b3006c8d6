"""Messages handed from node to node inside one process (a container), past DDS.

A container (`nodes/container.py`, `uservlm run` and the launch files with use_composition) runs
several nodes in one process. When one of them publishes a topic through an
`IntraProcessPublisher` and another takes the same resolved topic through
`intra_process_subscription`, the message object itself is handed over: no serialization, no
DDS wake-up, no executor callback, so the two hops of camera -> faces -> profile no longer wait
for a core in another process (docs/benchmarks.md, full demo graph). Other processes still get
the topic over DDS; while only local subscribers exist, a volatile topic is not published to
DDS at all. In a process of one node nothing changes: every subscription is a DDS subscription.

A subscriber created before a publisher of the same topic in its process subscribes over DDS
(the container starts producers first). Local handlers run in the publisher's thread, so they
must be quick (the nodes' handlers put the message into a worker slot), and a message handed
over is shared: nobody modifies it after publishing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile


class _ProcessTopics:
    """Which topics a node of this process publishes, and the local subscribers of each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._publishers: dict[str, int] = {}  # resolved topic -> live IntraProcessPublishers
        self._subscriptions: dict[str, tuple[IntraProcessSubscription, ...]] = {}

    def published_here(self, topic: str) -> bool:
        with self._lock:
            return self._publishers.get(topic, 0) > 0

    def add_publisher(self, topic: str) -> None:
        with self._lock:
            self._publishers[topic] = self._publishers.get(topic, 0) + 1

    def remove_publisher(self, topic: str) -> None:
        with self._lock:
            self._publishers[topic] -= 1

    def add_subscription(self, subscription: IntraProcessSubscription) -> None:
        with self._lock:
            current = self._subscriptions.get(subscription.topic, ())
            self._subscriptions[subscription.topic] = (*current, subscription)

    def remove_subscription(self, subscription: IntraProcessSubscription) -> None:
        with self._lock:
            current = self._subscriptions.get(subscription.topic, ())
            self._subscriptions[subscription.topic] = tuple(
                s for s in current if s is not subscription
            )

    def subscriptions(self, topic: str) -> tuple[IntraProcessSubscription, ...]:
        return self._subscriptions.get(topic, ())  # an immutable tuple: read without the lock


_TOPICS = _ProcessTopics()


class IntraProcessSubscription:
    """A subscription fed by a publisher of the same process (see the module's docstring)."""

    def __init__(self, node: Node, topic: str, callback: Callable[[Any], None]) -> None:
        self.node = node
        self.topic = topic
        self.callback = callback
        self.failures = 0

    def deliver(self, msg: Any) -> None:
        try:
            self.callback(msg)
        except Exception as error:  # the publisher's thread goes on; the subscriber says why
            self.failures += 1
            diagnostics = getattr(self.node, "diagnostics", None)  # uservlm nodes have them
            if diagnostics is not None:
                diagnostics.count("intra_process_errors")
            self.node.get_logger().error(
                f"intra-process message on {self.topic} failed: {type(error).__name__}: {error}",
                throttle_duration_sec=5.0,
            )

    def destroy(self) -> None:
        _TOPICS.remove_subscription(self)


def intra_process_subscription(
    node: Node,
    msg_type: type,
    topic: str,
    callback: Callable[[Any], None],
    qos: QoSProfile,
    **kwargs: Any,
):
    """Subscribe to `topic`: locally when a node of this process publishes it through an
    IntraProcessPublisher, else over DDS (`kwargs` go to create_subscription). Either result
    has a destroy path in ModelNode.on_deactivate."""
    topic_name = node.resolve_topic_name(topic)
    if _TOPICS.published_here(topic_name):
        subscription = IntraProcessSubscription(node, topic_name, callback)
        _TOPICS.add_subscription(subscription)
        node.get_logger().info(f"{topic_name} is taken from a node of this process, not DDS")
        return subscription
    return node.create_subscription(msg_type, topic, callback, qos, **kwargs)


class IntraProcessPublisher:
    """A publisher that hands each message to the subscribers of its own process directly and
    publishes it to DDS for everybody else."""

    def __init__(self, node: Node, msg_type: type, topic: str, qos: QoSProfile) -> None:
        self.node = node
        self.topic = node.resolve_topic_name(topic)
        self.publisher = node.create_publisher(msg_type, topic, qos)
        # Late joiners of a transient-local topic need every message in the DDS history.
        self._always_to_dds = qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
        _TOPICS.add_publisher(self.topic)

    def publish(self, msg: Any) -> None:
        local = _TOPICS.subscriptions(self.topic)
        if not local or self._always_to_dds or self.publisher.get_subscription_count() > 0:
            self.publisher.publish(msg)
        for subscription in local:
            subscription.deliver(msg)

    def get_subscription_count(self) -> int:
        """Subscribers over DDS and in this process."""
        return self.publisher.get_subscription_count() + len(_TOPICS.subscriptions(self.topic))

    def destroy(self) -> None:
        _TOPICS.remove_publisher(self.topic)
        self.node.destroy_publisher(self.publisher)
