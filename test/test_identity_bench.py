"""Smoke test of bench/identity.py: the quick run prints every table with numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "identity.py"


def test_quick_benchmark_prints_all_tables(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_identity", BENCH)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclass looks itself up there
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for title in ("1. calibration", "2. cost per face crop", "3. persons per real person"):
        assert title in out
    assert "chosen: match_distance" in out
    embedding_row = next(line for line in out.splitlines() if "identity embedding" in line)
    p50, p95, ratio = (float(v.strip().rstrip("x")) for v in embedding_row.split("|")[2:5])
    assert 0 < p50 <= p95 and ratio > 0
    # the documented thresholds never give one id to two real people
    assert "ids shared by two real people: 0" in out
