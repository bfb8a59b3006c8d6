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
import yaml

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


# ---------------------------------------------------------------- installing and running

# Makes every ROS module unimportable, as in a venv where only `pip install .` ran.
WITHOUT_ROS = """
import sys
from uservlm_ros.cli import ROS_MODULES, main

class NoRos:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ROS_MODULES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoRos())
sys.exit(main(sys.argv[1:]))
"""


def _python(*args: str, cwd: Path, env: dict | None = None, **kwargs):
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=120,
        **kwargs,
    )


def _env(pythonpath: Path) -> dict:
    import os

    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    return env


def test_without_ros_help_works_and_ros_commands_say_what_is_missing(tmp_path):
    script = tmp_path / "without_ros.py"
    script.write_text(WITHOUT_ROS)
    env = _env(ROOT)
    assert _python(str(script), "--help", cwd=tmp_path, env=env).returncode == 0
    for command in (["params"], ["record", "out"]):
        result = _python(str(script), *command, cwd=tmp_path, env=env)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "ROS 2 not found" in lines[0] and "make setup" in lines[0]


def test_params_into_a_closed_pipe_ends_without_traceback(tmp_path):
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` having exited already
    try:
        result = _python(
            "-m", "uservlm_ros.cli", "params", cwd=tmp_path, env=_env(ROOT), stdout=write_end
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 1


def test_run_takes_several_set_overrides_and_launch_arguments_after_them(tmp_path, monkeypatch):
    args = [
        "run",
        "--config",
        "webcam",
        "--dry-run",
        "--set",
        "face_crop_node.crop_size=160",
        "user_profiler_node.backend=attributes",
        "robot_ip:=10.1.2.3",
    ]
    result = _python("-m", "uservlm_ros.cli", *args, cwd=tmp_path, env=_env(ROOT))
    assert result.returncode == 0, result.stderr
    container, *others = result.stdout.splitlines()
    # the perception container takes its nodes' values in a params file of its own, which
    # --dry-run removes when it ends (test_run.py): read it from the same run in this process
    assert container.split("--params-file ")[-1].endswith("/perception_overrides.yaml")
    from uservlm_ros.bringup.graph import Graph
    from uservlm_ros.cli import main

    written = []
    monkeypatch.setattr(Graph, "remove_temporary_files", lambda graph: written.append(graph))
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    (graph,) = written
    overrides = graph.processes[0].overrides_file
    assert overrides.name == "perception_overrides.yaml"
    assert yaml.safe_load(overrides.read_text()) == {
        "camera_node": {"ros__parameters": {"naoqi": {"ip": "10.1.2.3"}}},
        "face_crop_node": {"ros__parameters": {"crop_size": 160}},
        "user_profiler_node": {"ros__parameters": {"backend": "attributes"}},
    }
    lines = {line.split("__node:=")[1].split()[0]: line for line in others}
    assert "-p robot.ip:=10.1.2.3" in lines["naoqi_bridge_node"]
    monkeypatch.undo()
    graph.remove_temporary_files()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """uservlm_ros installed from a wheel into a bare folder, as `pip install .` would."""
    wheels = tmp_path_factory.mktemp("wheels")
    site = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("source")
    # Build from a copy: the wheel build writes build/ and *.egg-info next to setup.py.
    for name in ("setup.py", "pyproject.toml", "README.md", "uservlm_ros", "config", "msg"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, build / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, build / name)
    pip = ["-m", "pip", "--disable-pip-version-check", "-q"]
    built = _python(
        *pip, "wheel", str(build), "--no-deps", "--no-build-isolation", "-w", str(wheels), cwd=build
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("*.whl")
    done = _python(*pip, "install", "--no-deps", "--target", str(site), str(wheel), cwd=build)
    assert done.returncode == 0, done.stderr
    return site


def test_an_installed_package_resolves_its_shipped_files_from_any_directory(installed, tmp_path):
    env = _env(installed)
    share = installed / "uservlm_ros" / "share"
    for config in ("webcam", "config/webcam.yaml"):
        result = _python(
            "-m", "uservlm_ros.cli", "run", "--config", config, "--dry-run", cwd=tmp_path, env=env
        )
        assert result.returncode == 0, result.stderr
        assert f"--params-file {share / 'config' / 'webcam.yaml'}" in result.stdout
    probe = (
        "import os\n"
        "from uservlm_ros.ros.node_main import use_uservlm_dds_profile\n"
        "from uservlm_ros.eval.bag_types import _msg_dirs, typestore\n"
        "use_uservlm_dds_profile()\n"
        "print(os.environ['FASTDDS_DEFAULT_PROFILES_FILE'])\n"
        "print(_msg_dirs()[0])\n"
        "print('uservlm/msg/Response' in typestore().fielddefs)\n"
    )
    result = _python("-c", probe, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        str(share / "config" / "fastdds.xml"),
        str(share / "msg"),
        "True",
    ]


def test_an_unknown_config_names_the_shipped_ones(tmp_path):
    result = _python(
        "-m",
        "uservlm_ros.cli",
        "run",
        "--config",
        "nowhere",
        "--dry-run",
        cwd=tmp_path,
        env=_env(ROOT),
    )
    assert result.returncode == 2
    assert "config nowhere not found" in result.stderr and "webcam" in result.stderr
    assert "Traceback" not in result.stderr
