"""Test harness: an isolated ROS graph per test session, a spinning test node, node processes.

Used through the fixtures in conftest.py. Everything a fixture starts is stopped at teardown.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
LOCK_DIR = Path(os.environ.get("TMPDIR", "/tmp"))


def claim_domain_id() -> tuple[int, IO[str]]:
    """Pick a ROS_DOMAIN_ID no other test session on this machine holds.

    Each session holds an exclusive lock on a file per id for its whole life, so two pytest runs
    (or a CI run beside a developer's) never see each other's nodes.
    """
    for candidate in random.sample(range(1, 101), 100):
        handle = open(LOCK_DIR / f"uservlm-ros-domain-{candidate}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return candidate, handle
    raise RuntimeError("all ROS domain ids 1..100 are held by other test sessions")


def isolate_ros() -> IO[str]:
    """Before rclpy is imported: a ROS domain of our own, discovery kept on this host, and the
    DDS transports the nodes use (inherited by node processes). Returns the domain's lock,
    held for as long as the caller keeps it. conftest.py and the bench scripts use this."""
    domain_id, lock = claim_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_STATIC_PEERS", None)
    from uservlm_ros.ros.node_main import use_uservlm_dds_profile

    use_uservlm_dds_profile()
    return lock


def within(timeout: float, predicate: Callable[[], bool]) -> bool:
    """Wait up to `timeout` s for `predicate()`; whether it came true (no exception)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    if not within(timeout, predicate):
        raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")


class Collector:
    """Messages received on one subscription, safe to read from the test thread.

    `keep` (optional) decides which messages are stored; the others are only counted in
    `ignored` (probe messages a test sends to learn that a path is matched end to end).
    """

    def __init__(self, topic: str, keep: Callable[[Any], bool] | None = None) -> None:
        self.topic = topic
        self.messages: list[Any] = []
        self.ignored = 0
        self._keep = keep
        self._lock = threading.Lock()

    def __call__(self, msg: Any) -> None:
        with self._lock:
            if self._keep is None or self._keep(msg):
                self.messages.append(msg)
            else:
                self.ignored += 1

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Any]:
        wait_until(
            lambda: len(self.messages) >= count,
            timeout,
            f"{count} message(s) on {self.topic} (got {len(self.messages)})",
        )
        with self._lock:
            return list(self.messages)


class RosTestNode:
    """A node of the test process, spun by its own executor thread.

    Tests leave their action clients to `close()`: destroying one while this thread builds its
    wait set kills the thread ("action client pointer is invalid", rclpy), and every later
    future of the test then times out.
    """

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        from uservlm_ros.ros.spin import SpinThread

        self.node = rclpy.create_node(name)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self._spin = SpinThread(self.executor, f"{name}_spin")

    def subscribe(
        self, msg_type: Any, topic: str, qos: Any = 10, keep: Callable[[Any], bool] | None = None
    ) -> Collector:
        collector = Collector(topic, keep)
        self.node.create_subscription(msg_type, topic, collector, qos)
        return collector

    def publisher(self, msg_type: Any, topic: str, qos: Any = 10) -> Any:
        return self.node.create_publisher(msg_type, topic, qos)

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 15.0) -> None:
        wait_until(
            lambda: self.node.count_publishers(topic) >= count,
            timeout,
            f"{count} publisher(s) on {topic}",
        )

    def wait_for_subscribers(
        self, topic: str, count: int = 1, timeout: float = 15.0, nodes: tuple[str, ...] = ()
    ) -> None:
        """Until `count` subscriptions of other nodes (the test's own do not count), including
        one of each node named in `nodes`, are on `topic`. Name the nodes when several subscribe:
        a count of 1 is met by whichever came first, and a volatile message published before
        the others match is lost to them."""

        def ready() -> bool:
            found = [
                info.node_name
                for info in self.node.get_subscriptions_info_by_topic(
                    self.node.resolve_topic_name(topic)
                )
                if info.node_name != self.node.get_name()
            ]
            return len(found) >= count and all(name in found for name in nodes)

        wanted = f"{count} subscriber(s)" + (f" ({', '.join(nodes)})" if nodes else "")
        wait_until(ready, timeout, f"{wanted} on {topic}")

    def close(self) -> None:
        self._spin.stop()  # before the shutdown: see SpinThread
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


class NodeProcess:
    """A child process (usually one node) with its output captured to a log file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self.popen = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,  # its own process group: stop() reaches its children too
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 15.0) -> None:
        def seen() -> bool:
            if self.popen.poll() is not None and text not in self.output():
                raise AssertionError(
                    f"{self.name} exited with {self.popen.returncode} before "
                    f"printing {text!r}:\n{self.output()}"
                )
            return text in self.output()

        wait_until(seen, timeout, f"{text!r} in the output of {self.name}")

    def stop(self, timeout: float = 5.0) -> int:
        """SIGINT (a node's clean shutdown), then SIGKILL; returns the exit code."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


class ProcessManager:
    """Starts processes for one test and guarantees every one is stopped at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[NodeProcess] = []

    def start_python(self, name: str, *args: str, env: dict[str, str] | None = None) -> NodeProcess:
        """Run `python <args>` with the venv's interpreter and this session's ROS domain."""
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        process = NodeProcess(name, [sys.executable, *args], self.log_dir, full_env)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
