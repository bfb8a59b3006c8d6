"""A node of a tool (`uservlm ask`, `who`, `run`) spun in a background thread on its own context.

Its own rclpy context, so it neither needs nor disturbs one the process may already have (the
demo's, a test's), and without rclpy's signal handlers: Ctrl-C stays the tool's to handle (the
runner stops its children on SIGINT; `ask` and `who` end on KeyboardInterrupt).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


@contextmanager
def spinning_node(name: str) -> Iterator[Node]:
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(name, context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, name=f"{name}_spin", daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        thread.join(timeout=2.0)
        context.try_shutdown()
