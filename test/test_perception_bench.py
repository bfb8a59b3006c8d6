"""Smoke tests of the perception benchmarks (bench/perception_*.py): short runs print their
tables with numbers, and the helper processes are real modules run with `python -m`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def _run(*args: str, timeout: float = 240) -> str:
    run = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _rows(out: str) -> dict[str, tuple[float, float, float]]:
    """stage -> (p50, p95, ratio) of the latency tables."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[4].isdigit():
            rows[cells[0]] = (float(cells[1]), float(cells[2]), float(cells[3].rstrip("x")))
    return rows


def test_every_benchmark_is_a_script_of_its_own_with_no_program_in_a_string():
    scripts = sorted(p.name for p in BENCH.glob("perception*.py"))
    assert "perception.py" not in scripts
    for path in BENCH.glob("perception*.py"):
        text = path.read_text()
        assert '"-c"' not in text and ".replace(" not in text, path.name
    for name in ("inprocess", "schedule", "dds", "graph", "recall", "clip"):
        assert f"perception_{name}.py" in scripts
        assert _run(f"bench/perception_{name}.py", "--help").startswith("usage:")


def test_in_process_pipeline_prints_every_stage():
    rows = _rows(_run("bench/perception_inprocess.py", "--frames", "3"))
    assert set(rows) == {"detect", "track", "crop", "profile", "total (serial)"}
    assert rows["total (serial)"][2] == 1.0  # the baseline of the ratios
    assert all(0 <= p50 <= p95 for p50, p95, _ in rows.values())


def test_schedule_profiles_fewer_crops_than_every_crop():
    out = _run("bench/perception_schedule.py", "--seconds", "3")
    table = [line.split("|") for line in out.splitlines() if line.startswith("| ")]
    lines = {cells[1].strip(): cells for cells in table}
    before, after = lines["every crop (before)"], lines["scheduled (after)"]
    assert float(before[3]) == 1.0 and int(after[4]) < int(before[4])


def test_recall_prints_every_detector_setting():
    out = _run("bench/perception_recall.py", "--shapes", "480x640")
    labels = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert labels[1:] == ["default (whole frame)", "min_confidence 0.5", "tiles 2", "tiles 3"]


def test_the_graph_observer_is_a_module_that_answers_on_stdin():
    observer = subprocess.Popen(
        [sys.executable, "-m", "bench.perception_observer"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert observer.stdout.readline().strip() == "ready"
        observer.stdin.write("count\nstart\nstop\n")
        observer.stdin.flush()
        assert observer.stdout.readline().strip() == "0"
        results = json.loads(observer.stdout.readline())
        assert results == {"latency": [], "stages": {}, "answered": 0, "slowest": []}
        assert observer.wait(30) == 0
    finally:
        observer.kill()
        observer.wait()


@pytest.mark.graph
def test_dds_benchmark_measures_the_graph_against_the_raw_relay():
    out = _run("bench/perception_dds.py", "--seconds", "2", "--image-qos", "reliable", timeout=180)
    rows = _rows(out)
    raw = rows["raw rclpy pub/sub, one way"]
    assert raw[2] == 1.0 and not math.isnan(raw[0])
    assert not math.isnan(rows["camera -> profile (graph)"][0])
    assert "echoed by the raw relay" in out
