"""bench/responder.py runs (tiny model, CPU) and prints one row per mode and decoder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_responder_benchmark_prints_both_modes_and_both_decoders():
    run = subprocess.run(
        [sys.executable, "bench/responder.py", "--tiny", "--repeats", "1", "--new-tokens", "14"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and "ms" not in line]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| user_aware", "model.generate"],
        ["| user_aware", "static cache (eager)"],
        ["| profile_prompt", "model.generate"],
        ["| profile_prompt", "static cache (eager)"],
    ]
    assert all(row.rstrip(" |").endswith("yes") for row in rows)  # same greedy tokens
