"""How the long-running commands (`uservlm demo`, `sim-pepper`) stop on a signal to their PID.

A terminal's Ctrl-C reaches a whole process group; a script, systemd or a container sends
SIGINT or SIGTERM to one PID, and a shell script's background job even starts with SIGINT
ignored. `stop_on_signals` makes both signals raise `Stopped` (a KeyboardInterrupt, so code that
already ends on Ctrl-C ends the same way) in the main thread, once: a second signal while the
command cleans up is ignored, so that the clean-up (stopping the nodes) is not cut short.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The command was asked to stop by a signal; `signal_name` says which (SIGINT, SIGTERM)."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGINT or SIGTERM raises Stopped; later ones are ignored.
    The previous handlers come back at the end. Main thread only (Python's signal rule)."""
    received: list[str] = []

    def handler(number: int, _frame) -> None:
        if received:
            return  # already stopping
        received.append(signal.Signals(number).name)
        raise Stopped(received[0])

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
