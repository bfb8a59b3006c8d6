"""Now on the camera's clock: the newest camera stamp plus the wall time since it arrived.

Ages of observations (a profile's, a track's) are measured against this rather than the wall
clock: live it is wall time, and on a replayed bag (old stamps) a person still counts as in view
for the recording's seconds, not for however long ago the bag was made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# For a clock fed by one camera's frames: a stamp this much older than the newest is not a frame
# out of order but a source that started again (a replayed bag looping), which the clock follows.
RESTART_S = 1.0


class CameraClock:
    def __init__(
        self, wall: Callable[[], float] = time.time, restart_s: float | None = None
    ) -> None:
        """`restart_s`: an older stamp by more than this restarts the clock (None: never; a
        clock also fed by profiles, which may be old, must not restart)."""
        self._wall = wall
        self._restart_s = restart_s
        self._lock = threading.Lock()  # fed by subscription callbacks, read by workers
        self._newest: tuple[float, float] | None = None  # (camera stamp, wall arrival)

    def seen(self, stamp: float, arrival: float | None = None) -> float:
        """Note a camera stamp (seconds; 0 = unstamped, counted as seen on arrival) that arrived
        at wall time `arrival` (default: now); returns the stamp as counted. An older stamp than
        the newest (messages out of order) leaves the clock alone, unless older by more than
        `restart_s`."""
        arrival = self._wall() if arrival is None else arrival
        stamp = stamp or arrival
        with self._lock:
            newest = self._newest
            restarted = (
                self._restart_s is not None
                and newest is not None
                and (stamp < newest[0] - self._restart_s)
            )
            if newest is None or stamp > newest[0] or restarted:
                self._newest = (stamp, arrival)
        return stamp

    def now(self) -> float:
        """Camera time now; the wall time until a first stamp is seen."""
        with self._lock:
            newest = self._newest
        if newest is None:
            return self._wall()
        stamp, arrived = newest
        return stamp + (self._wall() - arrived)
