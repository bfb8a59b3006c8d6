"""Long-running commands and node processes stop on a signal to their own PID (issue 22 items 1
and 18): not only a terminal's Ctrl-C to the whole group, but SIGINT or SIGTERM from a script,
systemd, a container or `ros2 launch` (which forwards SIGINT to each node), also when the
command was started with SIGINT ignored (a shell script's background job)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from harness import REPO, wait_until

from uservlm_ros.sim.photos import frame_with_people

pytestmark = pytest.mark.graph

SPEECH = REPO / "uservlm_ros" / "sim" / "speech"


class Command:
    """A command in a session of its own (so a signal reaches it alone), output to a file."""

    def __init__(self, tmp_path: Path, *args: str, ignore_sigint: bool = False) -> None:
        self.log = tmp_path / f"{args[0]}.log"
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            # `cmd &` in a script: the job starts with SIGINT ignored
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
            if ignore_sigint
            else None,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            assert self.popen.poll() is None, f"exited early:\n{self.output()}"
            return text in self.output()

        wait_until(seen, timeout, f"{text!r} in:\n{self.output()}")

    def descendants(self) -> list[int]:
        found, todo = [], [self.popen.pid]
        while todo:
            pid = todo.pop()
            children = Path(f"/proc/{pid}/task/{pid}/children")
            kids = [int(k) for k in children.read_text().split()] if children.exists() else []
            found += kids
            todo += kids
        return found

    def stop_with(self, sig: signal.Signals, within_s: float) -> tuple[int, float]:
        """Send `sig` to the command's PID only; its exit code and how long it took."""
        started = time.monotonic()
        self.popen.send_signal(sig)
        try:
            code = self.popen.wait(within_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
            raise AssertionError(
                f"still running {within_s} s after {sig.name}:\n{self.output()}"
            ) from None
        return code, time.monotonic() - started

    def kill(self, children: list[int] | None = None) -> None:
        """Teardown: the command and `children` (in sessions of their own), if still there."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        for pid in children or []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def gone(pids: list[int], timeout: float = 3.0) -> bool:
    def all_gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in pids)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all_gone():
        time.sleep(0.05)
    return all_gone()


@pytest.fixture
def faces_folder(tmp_path):
    """Camera frames with two faces: the profiler has work to do while the signal comes."""
    folder = tmp_path / "faces"
    folder.mkdir()
    frame = frame_with_people([(0, 220, 210, 120), (1, 90, 20, 150)])
    for index in range(3):
        cv2.imwrite(str(folder / f"{index:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


@pytest.mark.parametrize(
    ("sig", "ignore_sigint"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigint", "sigterm", "sigint-in-a-background-job"],
)
def test_uservlm_run_stops_its_graph_on_a_signal_to_its_pid(
    tmp_path, faces_folder, sig, ignore_sigint
):
    run = Command(
        tmp_path,
        "-m",
        "uservlm_ros.cli",
        "run",
        "--config",
        "perception",
        "--set",
        "camera_node.source=folder",
        f"camera_node.path={faces_folder}",
        ignore_sigint=ignore_sigint,
    )
    children: list[int] = []
    try:
        run.wait_for("user_profiler_node active", 90)
        children += run.descendants()
        assert children
        code, took = run.stop_with(sig, 10)
        left = [pid for pid in children if not gone([pid])]
    finally:
        run.kill(children)
    output = run.output()
    assert code == 0, output
    assert f"{sig.name}: stopping every node" in output
    assert "exited" not in output  # its own shutdown is no node failure
    assert took < 5, f"took {took:.1f} s"
    assert not left, "a node process outlived uservlm run"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
@pytest.mark.parametrize(
    ("command", "ready"),
    [("sim-pepper", "sim-pepper listening on"), ("console", "console at http")],
)
def test_a_server_command_stops_on_a_signal_even_with_sigint_ignored(tmp_path, sig, command, ready):
    server = Command(tmp_path, "-m", "uservlm_ros.cli", command, "--port", "0", ignore_sigint=True)
    try:
        server.wait_for(ready, 30)
        code, _ = server.stop_with(sig, 5)
    finally:
        server.kill()
    assert code == 0, server.output()
    assert "Traceback" not in server.output()


def test_demo_stops_its_graph_on_sigterm_to_its_pid(tmp_path):
    """Before the demo's scripted questions are done (the signal comes while the graph starts):
    the graph stops, nothing is left running, and it says why (no "exited" failure)."""
    demo = Command(
        tmp_path, "-m", "uservlm_ros.cli", "demo", "--console", "--out", str(tmp_path / "out")
    )
    children: list[int] = []
    try:
        demo.wait_for("operator console:", 90)
        time.sleep(2)  # the node processes are loading their models
        children += demo.descendants()
        code, _ = demo.stop_with(signal.SIGTERM, 20)
        left = [pid for pid in children if not gone([pid])]
    finally:
        demo.kill(children)
    output = demo.output()
    assert code == 130, output
    assert "uservlm demo: stopped by SIGTERM" in output
    assert "exited" not in output
    assert not left, "a node process outlived uservlm demo"


@pytest.mark.parametrize(
    "node",
    ["perception container", "speech_node"],
)
def test_a_node_process_stops_on_one_sigint_while_busy(tmp_path, faces_folder, node):
    """`ros2 launch` sends each node one SIGINT and escalates to SIGTERM after 5 s: a node must
    be gone well before, also while its worker is busy (the profiler on two faces per frame,
    the recogniser on a looping file)."""
    if node == "speech_node":
        args = [
            "-m",
            "uservlm_ros.nodes.speech_node",
            "--ros-args",
            "-p",
            "source:=file",
            "-p",
            f"file.path:={SPEECH}",
            "-p",
            "file.loop:=true",
            "-p",
            "file.gap_s:=0.1",
        ]
        busy = "playing"
    else:
        args = [
            "-m",
            "uservlm_ros.nodes.container",
            "camera_node",
            "face_crop_node",
            "user_profiler_node",
            "--ros-args",
            "--params-file",
            str(REPO / "config" / "perception.yaml"),
            "-p",
            "source:=folder",
            "-p",
            f"path:={faces_folder}",
        ]
        busy = "user_profiler_node active"
    process = Command(tmp_path, *args)
    try:
        process.wait_for(busy, 90)
        time.sleep(3)  # working
        code, took = process.stop_with(signal.SIGINT, 5)
    finally:
        process.kill()
    assert code == 0, process.output()
    assert took < 2.5, f"took {took:.1f} s after SIGINT"
