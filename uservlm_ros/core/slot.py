"""A latest-item slot: a producer overwrites, a worker takes; replaced items are counted as dropped.

Camera callbacks only store the newest frame so inference never works on a stale queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class LatestSlot(Generic[Item]):
    def __init__(self) -> None:
        self._item: Item | None = None
        self._condition = threading.Condition()
        self.dropped = 0
        self.received = 0

    def put(self, item: Item) -> bool:
        """Store the item; returns True when it replaced one that was never taken (a drop)."""
        with self._condition:
            replaced = self._item is not None
            self.dropped += replaced
            self.received += 1
            self._item = item
            self._condition.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Item | None:
        """The newest item (and empty the slot), or None after `timeout` seconds without one."""
        with self._condition:
            if self._item is None:
                self._condition.wait(timeout)
            item, self._item = self._item, None
            return item

    def wake(self) -> None:
        """Release a worker blocked in take() (e.g. at shutdown)."""
        with self._condition:
            self._condition.notify_all()


class SlotWorker(Generic[Item]):
    """A LatestSlot and the one thread that works through it.

    `step` gets each newest item, or None when `poll_s` passes without one (for periodic work
    such as expiring old tracks). Nodes put from their subscription callbacks, start the worker
    on activate and stop it on deactivate, shutdown and destroy.
    """

    def __init__(self, step: Callable[[Item | None], None], name: str, poll_s: float = 0.2) -> None:
        self.slot: LatestSlot[Item] = LatestSlot()
        self._step = step
        self._name = name
        self._poll_s = poll_s
        self._thread: threading.Thread | None = None
        self._running = False

    def put(self, item: Item) -> bool:
        """Hand over an item; True when it replaced one never worked on (a drop)."""
        return self.slot.put(item)

    def start(self) -> None:
        if self._thread is None:
            self._running = True
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._running = False
        self.slot.wake()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def _run(self) -> None:
        while self._running:
            self._step(self.slot.take(timeout=self._poll_s))
