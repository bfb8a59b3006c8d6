"""Installing and running outside the checkout, and what the repository ignores.

Generated outputs (README worked examples, benchmarks, demos) must neither show up in git nor
break the lint; shipped configs must resolve from any working directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"
OUTPUT_DIRS = ("data", "runs", "sample", "sessions", "demo_output", "bench_output")


def _ignored(path: str) -> bool:
    result = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", path], cwd=ROOT, check=False
    )
    return result.returncode == 0


@pytest.mark.parametrize(
    "path", [f"{d}/x/out.json" for d in OUTPUT_DIRS] + ["models/dpo/manifest.json"]
)
def test_generated_outputs_are_ignored_by_git(path):
    assert _ignored(path)


@pytest.mark.parametrize("path", ["models/README.md", "uservlm_ros/cli.py", "config/webcam.yaml"])
def test_sources_are_not_ignored(path):
    assert not _ignored(path)


def test_ruff_lints_only_sources(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "ok.py").write_text('"""Fine."""\n\nVALUE = 1\n')
    badly_formatted = "import os,sys\nx=[1,\n2]\n"  # both a lint error and unformatted
    for folder in (*OUTPUT_DIRS, "models/dpo"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "generated.py").write_text(badly_formatted)
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [str(RUFF), *args], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
