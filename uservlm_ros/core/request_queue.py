"""A bounded FIFO of pending requests that refuses explicitly when full.

The responder answers one question at a time, in arrival order. A request that does not fit is
rejected at once with a reason (the caller turns it into an error Response), never dropped.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

from uservlm_ros.core.errors import UservlmError

T = TypeVar("T")


class QueueFull(UservlmError):
    """The request queue holds its maximum number of pending requests."""


class QueueClosed(UservlmError):
    """The queue was closed (the node is shutting down or deactivating)."""


class RequestQueue(Generic[T]):
    """Thread-safe bounded FIFO: `put` raises instead of blocking, `get` waits."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._condition = threading.Condition()
        self._closed = False

    def put(self, item: T) -> int:
        """Append; returns how many requests wait ahead of this one."""
        with self._condition:
            if self._closed:
                raise QueueClosed("the responder is not accepting requests")
            if len(self._items) >= self.capacity:
                raise QueueFull(
                    f"request queue full ({self.capacity} waiting); try again when the robot "
                    "has answered"
                )
            self._items.append(item)
            self._condition.notify()
            return len(self._items) - 1

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest request, waiting up to `timeout` s; None on timeout or when closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._items or self._closed, timeout)
            return self._items.popleft() if self._items else None

    def drain(self) -> list[T]:
        """Remove and return every pending request (to answer them with an error)."""
        with self._condition:
            items = list(self._items)
            self._items.clear()
            return items

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def reopen(self) -> None:
        with self._condition:
            self._closed = False

    def __len__(self) -> int:
        with self._condition:
            return len(self._items)
