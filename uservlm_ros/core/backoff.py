"""The waits of a reconnect loop: short after the first failure, doubling up to a ceiling.

A robot that restarts comes back within seconds to a minute: retrying fast at first finds it
soon, and the doubling keeps a robot that stays away from being asked several times a second.

    backoff = Backoff(first_s=0.5, max_s=10.0)
    while running:
        try:
            connect()
        except RobotUnavailable as error:
            delay = backoff.next_delay()
            log(f"{error}; retrying in {delay:.1f} s")
            sleep(delay)
            continue
        backoff.reset()  # connected: the next outage starts from first_s again

Pure Python: the caller sleeps (in slices, to stop promptly), logs and counts.
"""

from __future__ import annotations

import math

from uservlm_ros.core.errors import ConfigError


class Backoff:
    """Delays `first_s`, `first_s * factor`, ... capped at `max_s`, until `reset()`."""

    def __init__(self, first_s: float, max_s: float, factor: float = 2.0) -> None:
        if not (math.isfinite(first_s) and math.isfinite(max_s) and 0 < first_s <= max_s):
            raise ConfigError(
                f"backoff: need 0 < first delay <= longest delay, got {first_s:g} s and {max_s:g} s"
            )
        if not (math.isfinite(factor) and factor >= 1):
            raise ConfigError(f"backoff: the growth factor must be >= 1, got {factor:g}")
        self.first_s = first_s
        self.max_s = max_s
        self.factor = factor
        self._next = first_s

    def next_delay(self) -> float:
        """The wait after one more failure (the first: `first_s`)."""
        delay = self._next
        self._next = min(delay * self.factor, self.max_s)
        return delay

    def reset(self) -> None:
        """After a success: the next failure waits `first_s` again."""
        self._next = self.first_s
