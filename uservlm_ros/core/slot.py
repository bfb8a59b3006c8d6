"""A latest-item slot: a producer overwrites, a worker takes; replaced items are counted as dropped.

Camera callbacks only store the newest frame so inference never works on a stale queue.
"""

from __future__ import annotations

import threading
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
