"""Asked before starting a graph: do some of its nodes already run on this ROS domain?

Two uservlm graphs on one domain (a second `uservlm run` or demo beside the first) answer each
other's questions and the robot says every answer twice, so `uservlm run` and `uservlm demo`
refuse to start beside one, naming what they saw.
"""

from __future__ import annotations

import os
import time

from rclpy.node import Node

from uservlm_ros.core.errors import UservlmError


def already_running(
    node: Node, names: list[str], namespace: str = "", discovery_s: float = 1.5
) -> list[str]:
    """Which of `names` (in `namespace`) other processes already run; waits up to
    `discovery_s` for DDS discovery (the node need not spin: discovery fills the graph)."""
    wanted = {(name, namespace or "/") for name in names}
    deadline = time.monotonic() + discovery_s
    while True:
        found = sorted(name for name, ns in wanted & set(node.get_node_names_and_namespaces()))
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def refuse_a_second_graph(node: Node, names: list[str], namespace: str, command: str) -> None:
    """UservlmError naming the nodes that already run, and how to start this graph anyway."""
    running = already_running(node, names, namespace)
    if running:
        where = f"ROS domain {os.environ.get('ROS_DOMAIN_ID', '0')}"
        if namespace:
            where += f", namespace {namespace}"
        raise UservlmError(
            f"{', '.join(running)} already running on {where} (another uservlm graph): two "
            "graphs there would answer each other's questions. Stop it, or give this one a "
            f"domain of its own: ROS_DOMAIN_ID=42 {command}"
        )
