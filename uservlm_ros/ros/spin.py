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
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


class SpinThread:
    """An executor spun in a daemon thread until `stop()`.

    `stop()` returns once the thread has left the executor; only then may the executor be shut
    down and its nodes destroyed: rclpy's `Executor.shutdown` destroys the executor's guard
    conditions, and a thread still inside `spin()` then dies with "cannot use Destroyable because
    destruction was requested" and prints its traceback.
    """

    def __init__(self, executor: Executor, name: str) -> None:
        self._executor = executor
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=name, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            while not self._stopping.is_set() and self._executor.context.ok():
                self._executor.spin_once(timeout_sec=0.1)
        except ExternalShutdownException:
            pass  # the context was shut down (Ctrl-C in a node process)

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)


@contextmanager
def spinning_node(name: str) -> Iterator[Node]:
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(name, context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    spin = SpinThread(executor, f"{name}_spin")
    try:
        yield node
    finally:
        spin.stop()
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        context.try_shutdown()
