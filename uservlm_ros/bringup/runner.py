"""`uservlm run`: start a deployment's nodes as processes, without the ros2 CLI.

One process per node, or per container of nodes (graph.COMPOSITION), with standard
`--ros-args --params-file`, output prefixed with the process name (coloured on a terminal), and
every child stopped cleanly on Ctrl-C, on SIGTERM, or as soon as one process dies -- which is
reported with its exit code and last output lines.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from uservlm_ros.bringup.graph import Graph, Process

_COLOURS = ("36", "32", "33", "35", "34", "31")  # cyan, green, yellow, magenta, blue, red
_TAIL_LINES = 15


@dataclass
class _Child:
    process: Process
    popen: subprocess.Popen
    prefix: str
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=_TAIL_LINES))
    reader: threading.Thread | None = None


class GraphRunner:
    """Runs the processes of a Graph and supervises them."""

    def __init__(
        self,
        graph: Graph,
        out: TextIO | None = None,
        python: str = sys.executable,
        colour: bool | None = None,
    ) -> None:
        self.graph = graph
        self.out = out or sys.stdout  # at call time: sys.stdout may be replaced after import
        self.python = python
        self.colour = self.out.isatty() if colour is None else colour
        self.children: list[_Child] = []
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._stop_signal = ""

    def commands(self) -> list[tuple[str, list[str]]]:
        return [
            (process.name, process.command(self.graph.params_file, self.python))
            for process in self.graph.processes
        ]

    def _print(self, prefix: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{prefix} {line}\n")
            self.out.flush()

    def announce(self, line: str, prefix: str = "[uservlm run]") -> None:
        """One line of the runner's own among the nodes' output (thread-safe)."""
        self._print(prefix, line)

    def _pump(self, child: _Child) -> None:
        for line in child.popen.stdout:
            line = line.rstrip("\n")
            child.tail.append(line)
            self._print(child.prefix, line)

    def start(self) -> None:
        width = max(len(process.name) for process in self.graph.processes)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.colour:
            env.setdefault("RCUTILS_COLORIZED_OUTPUT", "1")
        for index, process in enumerate(self.graph.processes):
            name = process.name
            command = process.command(self.graph.params_file, self.python)
            prefix = f"[{name:<{width}}]"
            if self.colour:
                prefix = f"\033[{_COLOURS[index % len(_COLOURS)]}m{prefix}\033[0m"
            popen = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                env=env,
                start_new_session=True,
            )  # Ctrl-C reaches us, not them
            child = _Child(process=process, popen=popen, prefix=prefix)
            child.reader = threading.Thread(target=self._pump, args=(child,), daemon=True)
            child.reader.start()
            self.children.append(child)
            held = f" ({', '.join(process.node_names())})" if process.is_container else ""
            self._print("[uservlm run]", f"started {name}{held} (pid {popen.pid})")

    def request_stop(self, number: int = signal.SIGTERM, *_: object) -> None:
        if not self._stop_requested.is_set():
            self._stop_signal = signal.Signals(number).name
        self._stop_requested.set()

    def wait(self, poll_s: float = 0.1) -> int:
        """Until Ctrl-C/SIGTERM (-> 0) or a node exits (-> 1 unless it exited cleanly)."""
        while not self._stop_requested.is_set():
            for child in self.children:
                code = child.popen.poll()
                if code is not None:
                    child.reader.join(timeout=2)
                    self._report_exit(child, code)
                    self.stop()
                    return 0 if code == 0 else 1
            self._stop_requested.wait(poll_s)
        self._print("[uservlm run]", f"{self._stop_signal}: stopping every node")
        self.stop()
        return 0

    def _report_exit(self, child: _Child, code: int) -> None:
        why = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self._print("[uservlm run]", f"{child.process.name} exited ({why}); last output:")
        for line in child.tail:
            self._print("[uservlm run]", f"  | {line}")
        self._print("[uservlm run]", "stopping the other nodes")

    def stop(self, timeout_s: float = 10.0, sigterm_after_s: float = 3.0) -> None:
        """SIGINT to every running node (their clean shutdown); SIGTERM to those still running
        after `sigterm_after_s` (rclpy shuts down on either; a process that missed the SIGINT,
        one started with it ignored as in a background job, still stops cleanly); SIGKILL after
        `timeout_s`."""
        running = [c for c in self.children if c.popen.poll() is None]
        for child in running:
            _signal_group(child.popen, signal.SIGINT)
        started = time.monotonic()
        for child in running:
            try:
                child.popen.wait(max(0.0, started + sigterm_after_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.popen, signal.SIGTERM)
        for child in running:
            try:
                child.popen.wait(max(0.0, started + timeout_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._print(
                    "[uservlm run]", f"{child.process.name} ignored SIGINT and SIGTERM; killing it"
                )
                _signal_group(child.popen, signal.SIGKILL)
                child.popen.wait()
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=2)

    def run(self) -> int:
        """Start, supervise, stop: the whole `uservlm run`."""
        previous = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.start()
            return self.wait()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _signal_group(popen: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, sig)
