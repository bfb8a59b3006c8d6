"""Judging a node's health from its workers and queues (the diagnostics level and message).

Levels follow diagnostic_msgs/DiagnosticStatus: OK 0, WARN 1, ERROR 2. A node is ERROR when a
worker died or hangs on one item, WARN when work is slower than its documented limit or a queue
is nearly full, else OK. Pure logic: ros/diagnostics.py publishes the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from uservlm_ros.core.parameters import Param
from uservlm_ros.core.worker import WorkerState

OK, WARN, ERROR = 0, 1, 2
# A queue this full (fraction of its capacity) is a warning: requests are about to be refused.
QUEUE_WARN_FRACTION = 0.8
# After a worker restart the node stays WARN this long, so a monitor sampling at 1 Hz sees it.
RESTART_MEMORY_S = 60.0


@dataclass(frozen=True)
class HealthLimits:
    max_processing_ms: float  # WARN when the p95 item duration exceeds this
    hang_s: float  # ERROR when one item takes longer than this


@dataclass(frozen=True)
class Verdict:
    level: int
    problems: tuple[str, ...] = ()

    def message(self, healthy_text: str) -> str:
        return healthy_text if not self.problems else "; ".join(self.problems)


def judge_worker(
    state: WorkerState, limits: HealthLimits, restarted_ago_s: float | None
) -> Verdict:
    if state.running and not state.alive:
        return Verdict(ERROR, (f"worker {state.name} died ({state.last_error or 'no error'})",))
    if state.busy_s > limits.hang_s:
        return Verdict(ERROR, (f"worker {state.name} stuck on one item for {state.busy_s:.0f} s",))
    problems, level = [], OK
    if restarted_ago_s is not None and restarted_ago_s < RESTART_MEMORY_S:
        level = WARN
        problems.append(
            f"worker {state.name} restarted {state.restarts}x, {restarted_ago_s:.0f} s ago"
        )
    if state.latency_bound and state.p95_ms > limits.max_processing_ms:
        level = WARN
        problems.append(
            f"{state.name} p95 {state.p95_ms:.0f} ms > limit {limits.max_processing_ms:.0f} ms"
        )
    return Verdict(level, tuple(problems))


def judge_queue(name: str, length: int, capacity: int) -> Verdict:
    if capacity > 0 and length >= QUEUE_WARN_FRACTION * capacity:
        return Verdict(WARN, (f"{name} queue {length}/{capacity}",))
    return Verdict(OK)


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    verdicts = list(verdicts)
    level = max((v.level for v in verdicts), default=OK)
    return Verdict(level, tuple(p for v in verdicts for p in v.problems))


def health_params(max_processing_ms: float, hang_s: float) -> list[Param]:
    """The `health.*` parameters of a node with a worker, with that node's defaults."""
    return [
        Param(
            "health.max_processing_ms",
            max_processing_ms,
            "Diagnostics turn WARN when the 95th percentile of the worker's time per item "
            "exceeds this, ms",
            min=1.0,
            max=1e6,
            live=True,
        ),
        Param(
            "health.hang_s",
            hang_s,
            "Diagnostics turn ERROR when the worker spends longer than this on one item, s",
            min=0.1,
            max=3600.0,
            live=True,
        ),
    ]


def limits_from(values: dict) -> HealthLimits:
    return HealthLimits(values["health.max_processing_ms"], values["health.hang_s"])
