"""Fixtures shared by every test: see harness.py for the pieces."""

from __future__ import annotations

import os

import pytest
from harness import ProcessManager, RosTestNode, isolate_ros

_DOMAIN_LOCK = None


def pytest_configure(config: pytest.Config) -> None:
    global _DOMAIN_LOCK
    _DOMAIN_LOCK = isolate_ros()


def pytest_report_header(config: pytest.Config) -> str:
    return f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} (isolated for this session)"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A run that executed nothing must not look green (e.g. every test skipped or deselected).
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if exitstatus == 0 and passed == 0:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED


# Tests that talk to node processes or to a node over DDS get one rerun (pytest-rerunfailures):
# discovery is pairwise and, on a loaded 2-core host (CI), its timing is not deterministic
# (docs/testing.md, "Writing a test over DDS"). A test that fails twice fails; a rerun shows in
# the summary ("R"), so a flaky test stays visible.
DDS_FIXTURES = {"ros", "processes", "module_processes"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("graph") or DDS_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))


@pytest.fixture(scope="session")
def rclpy_session():
    """rclpy initialised once for the test process, shut down at the end."""
    import rclpy

    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture
def ros(rclpy_session, request):
    """A spinning node of the test process: subscribe, publish, wait for peers."""
    node = RosTestNode(
        f"test_{request.node.name}".replace("[", "_").replace("]", "")[:60].replace("-", "_")
    )
    yield node
    node.close()


@pytest.fixture
def processes(tmp_path, request):
    """Start node processes; all are stopped at teardown and their logs shown on failure."""
    manager = ProcessManager(tmp_path)
    yield manager
    manager.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for process in manager.processes:
            print(f"----- output of {process.name} -----\n{process.output()}")


@pytest.fixture(scope="module")
def module_processes(tmp_path_factory, request):
    """`processes` for nodes a whole test module shares. Their logs are printed at the end of
    the module if any of its tests failed (a module fixture's output is not part of a test's
    report, so without this a CI failure would not show what the node said)."""
    manager = ProcessManager(tmp_path_factory.mktemp("logs"))
    failed_before = request.session.testsfailed
    yield manager
    manager.stop_all()
    if request.session.testsfailed > failed_before:
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            for process in manager.processes:
                print(f"\n----- output of {process.name} (shared by the module) -----")
                print(process.output())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
