"""What the perception benchmarks share: the result tables, percentiles, the 3-person scene and
the helper processes they start (`bench/perception_*.py`)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def banner(name: str) -> None:
    print(f"{name} on {os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.1f}")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def row(name: str, values: list[float], baseline: float | None = None) -> str:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    ratio = f"{p50 / baseline:8.2f}x" if baseline else " " * 9
    return f"| {name:<34} | {p50:9.2f} | {p95:9.2f} | {ratio} | {len(values):5d} |"


def header(title: str, unit: str = "ms") -> None:
    print(f"\n{title}\n")
    print(f"| {'stage':<34} | p50 {unit:<5} | p95 {unit:<5} | ratio     | n     |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 7}|")


def three_person_scene(fps: float, seconds: float, arrivals=(0.0, 2.0, 4.0)) -> list:
    """(stamp, frame) at `fps`: three real faces at fixed places, person i appearing at
    arrivals[i] seconds (640x480, 150 px heads)."""
    from uservlm_ros.sim.photos import heads

    people = [*heads(150), heads(150)[0][:, ::-1]]
    frames = []
    for index in range(round(seconds * fps)):
        stamp = index / fps
        frame = np.full((480, 640, 3), 90, np.uint8)
        for slot, (head, arrival) in enumerate(zip(people, arrivals, strict=True)):
            if stamp >= arrival:
                frame[165:315, 40 + slot * 200 : 190 + slot * 200] = head
        frames.append((stamp, frame))
    return frames


def use_local_domain() -> None:
    """A domain of the benchmark's own (77 unless ROS_DOMAIN_ID says), on this machine only."""
    os.environ.setdefault("ROS_DOMAIN_ID", "77")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def start(args: list[str], **popen) -> subprocess.Popen:
    """`python ARGS` in the repository, in a session of its own (stopped with `stop`)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.STDOUT)
    return subprocess.Popen(
        [sys.executable, *args], text=True, cwd=REPO, start_new_session=True, **popen
    )


def wait_line(process: subprocess.Popen, text: str, timeout: float = 60.0) -> None:
    """Read the process's output until a line has `text`; then keep draining it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if text in line:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return
        if not line and process.poll() is not None:
            break
    raise RuntimeError(f"{process.args} did not print {text!r}")


def stop(process: subprocess.Popen) -> None:
    """SIGINT to its session, as Ctrl-C would; SIGKILL if it is still there after 10 s."""
    try:
        os.killpg(process.pid, 2)
        process.wait(10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
