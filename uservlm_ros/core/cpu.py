"""CPU scheduling of a node's process."""

from __future__ import annotations

import os
from pathlib import Path


def set_niceness(value: int) -> int:
    """Give every thread of this process the scheduling niceness `value` (0 normal, 19 lowest).

    Linux keeps niceness per thread and a new thread inherits its creator's, so setting it for
    the calling thread alone (os.setpriority(PRIO_PROCESS, 0, ...)) leaves the threads that
    already run (DDS, thread pools of imported libraries) at the old value. Returns how many
    threads were set; PermissionError when lowering it needs a privilege this process lacks.
    """
    tasks = Path("/proc/self/task")
    thread_ids = [int(p.name) for p in tasks.iterdir()] if tasks.is_dir() else [0]
    done = 0
    for thread_id in thread_ids:
        try:
            os.setpriority(os.PRIO_PROCESS, thread_id, value)
            done += 1
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    return done
