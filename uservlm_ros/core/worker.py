"""The one worker thread of a node: takes items from a source, survives bad items, reports health.

A node's subscription callbacks only hand items over (a LatestSlot for camera-rate data, a
RequestQueue for questions); one `Worker` thread does the work. An exception on one item is
passed to `on_error` (which logs it with the item and counts it) and the worker goes on. If the
thread ever ends anyway (a BaseException escaped), `ensure_running` sees it and starts a new
one; the node's diagnostics report it (core/health.py).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from uservlm_ros.core.slot import LatestSlot

Item = TypeVar("Item")

# Processing durations kept for the health percentile: about the last minute at camera rate.
DURATION_WINDOW = 300


@dataclass(frozen=True)
class WorkerState:
    """A snapshot of a worker for health checks."""

    name: str
    running: bool  # started and not stopped
    alive: bool  # the thread exists and runs
    busy_s: float  # how long the current item has been worked on; 0 when idle
    processed: int
    failed: int
    restarts: int
    p95_ms: float  # 95th percentile of recent item durations; 0 before the first item
    last_error: str
    latency_bound: bool = True  # whether a slow item makes the node's health WARN


class Worker(Generic[Item]):
    def __init__(
        self,
        take: Callable[[float], Item | None],
        handle: Callable[[Item], None],
        name: str,
        on_error: Callable[[Item | None, Exception], None],
        wake: Callable[[], None] = lambda: None,
        idle: Callable[[], None] | None = None,
        poll_s: float = 0.2,
        latency_bound: bool = True,
    ) -> None:
        """`take(timeout)` returns the next item or None; `idle()` runs after every take
        (periodic work such as expiring tracks); `wake()` releases a blocked `take`. A worker
        whose items nobody waits for is not `latency_bound`: its health ignores its speed."""
        self._take, self._handle, self._wake, self._idle = take, handle, wake, idle
        self.latency_bound = latency_bound
        self._on_error = on_error
        self.name = name
        self._poll_s = poll_s
        self._thread: threading.Thread | None = None
        self._running = False
        self._lock = threading.Lock()
        self._busy_since: float | None = None
        self._durations: deque[float] = deque(maxlen=DURATION_WINDOW)
        self.processed = 0
        self.failed = 0
        self.restarts = 0
        self.last_error = ""

    def start(self) -> None:
        with self._lock:
            self._running = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._running = False
            thread, self._thread = self._thread, None
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout_s)

    def ensure_running(self) -> bool:
        """Start a new thread if the worker should run but its thread died; True if it did."""
        with self._lock:
            dead = self._running and (self._thread is None or not self._thread.is_alive())
        if dead:
            self.restarts += 1
            self.start()
        return dead

    def state(self) -> WorkerState:
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            busy_since = self._busy_since
            durations = sorted(self._durations)
        p95 = durations[min(int(len(durations) * 0.95), len(durations) - 1)] if durations else 0.0
        return WorkerState(
            name=self.name,
            running=self._running,
            alive=alive,
            busy_s=0.0 if busy_since is None else time.monotonic() - busy_since,
            processed=self.processed,
            failed=self.failed,
            restarts=self.restarts,
            p95_ms=p95,
            last_error=self.last_error,
            latency_bound=self.latency_bound,
        )

    def _run(self) -> None:
        while self._running:
            item = self._take(self._poll_s)
            if item is not None:
                self._work_on(item)
            if self._idle is not None and self._running:
                self._guarded(None, self._idle)

    def _work_on(self, item: Item) -> None:
        started = time.monotonic()
        with self._lock:
            self._busy_since = started
        ok = self._guarded(item, lambda: self._handle(item))
        finished = time.monotonic()
        with self._lock:
            self._busy_since = None
            self._durations.append((finished - started) * 1e3)
        self.processed += ok
        self.failed += not ok

    def _guarded(self, item: Item | None, work: Callable[[], None]) -> bool:
        try:
            work()
            return True
        except Exception as error:  # one bad item must not end the worker
            self.last_error = f"{type(error).__name__}: {error}"
            # A failing error reporter must not end the worker either.
            with contextlib.suppress(Exception):
                self._on_error(item, error)
            return False


class SlotWorker(Worker[Item]):
    """A Worker over a LatestSlot: producers overwrite, the worker takes the newest item."""

    def __init__(
        self,
        handle: Callable[[Item], None],
        name: str,
        on_error: Callable[[Item | None, Exception], None],
        idle: Callable[[], None] | None = None,
        poll_s: float = 0.2,
        latency_bound: bool = True,
    ) -> None:
        self.slot: LatestSlot[Item] = LatestSlot()
        super().__init__(
            self.slot.take, handle, name, on_error, self.slot.wake, idle, poll_s, latency_bound
        )

    def put(self, item: Item) -> bool:
        """Hand over an item; True when it replaced one never worked on (a drop)."""
        return self.slot.put(item)
