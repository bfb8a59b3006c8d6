"""Smoke test of bench/training.py: the tiny CPU run prints every row with numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "training.py"


def test_tiny_benchmark_prints_all_rows(capsys):
    spec = importlib.util.spec_from_file_location("bench_training", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--size", "tiny", "--steps", "1", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith(("profiler ", "vlm "))]
    steps = ["forward, no grad (baseline)", "FLYP step", "FLYP + MIM step", "LoRA sft step"]
    for step in [*steps, "MoLE sft step"]:
        assert any(step in row for row in rows), step
    for row in rows:
        rate, ratio, memory = (float(v) for v in row.split()[-3:])
        assert rate > 0 and ratio > 0 and memory > 0
