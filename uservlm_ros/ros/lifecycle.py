"""The lifecycle every model-hosting node shares (load on configure, I/O on activate).

A subclass passes its PARAMS to the constructor and implements `_configure` (load the model,
call `start_diagnostics`; parameters are re-read first, so values set while the node was
unconfigured or inactive take effect), creates its publishers and subscriptions in
`on_activate` and lists them in `self._io`, lists its worker threads in `self.workers`, and says
how to drop its model (`_release_model`). Deactivate, cleanup, shutdown and destroy, live
parameter changes (`_apply_live`) and the health of the workers are handled here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.publisher import Publisher
from rclpy.subscription import Subscription

from uservlm_ros.core import health
from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.parameters import Param
from uservlm_ros.core.worker import Worker
from uservlm_ros.ros.diagnostics import Diagnostics
from uservlm_ros.ros.param_declare import node_parameters, read_parameters


class ModelNode(LifecycleNode):
    def __init__(self, name: str, params: Sequence[Param], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        # Set before anything can fail: rclpy destroys a half-built node at shutdown.
        self.diagnostics: Diagnostics | None = None
        self.workers: list[Worker] = []  # subclasses set it last in their constructor
        self._restarted_at: dict[str, float] = {}
        self._io: list = []  # publishers and subscriptions made on activate
        self._param_table = list(params)
        self.params = node_parameters(self, params, self._apply_live, reconfigurable=True)

    # -- for subclasses

    def _configure(self) -> TransitionCallbackReturn:
        """Load the model and call start_diagnostics; FAILURE with a logged reason."""
        raise NotImplementedError

    def _release_model(self) -> None:
        """Drop the loaded model (cleanup)."""

    def _apply_live(self, changed: dict[str, Any]) -> None:
        """Live parameters changed (already stored in self.params): apply them."""

    def _extra_health(self) -> list[health.Verdict]:
        """Node-specific health verdicts, e.g. a queue that is nearly full."""
        return []

    def start_diagnostics(self, hardware_id: str) -> Diagnostics:
        self.diagnostics = Diagnostics(self, hardware_id=hardware_id)
        self.diagnostics.add_check(self._judge_health)
        self.diagnostics.set_status(DiagnosticStatus.OK, "configured")
        return self.diagnostics

    def worker_error_logger(
        self, describe: Callable[[Any], str]
    ) -> Callable[[Any, Exception], None]:
        """An on_error for a Worker: log the failed item (as `describe` names it) and count it."""

        def on_error(item: Any, error: Exception) -> None:
            if not self.context.ok():
                # Ctrl-C shut ROS down under the worker ("publisher's context is invalid"):
                # the items still in flight go with the process, nothing to report.
                return
            what = describe(item) if item is not None else "periodic work"
            self.get_logger().error(f"failed on {what}: {type(error).__name__}: {error}")

        return on_error

    # -- lifecycle

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.params.update(read_parameters(self, self._param_table))
        except ConfigError as error:
            self.get_logger().error(f"cannot configure: {error}")
            return TransitionCallbackReturn.FAILURE
        return self._configure()

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_work()
        for entity in self._io:
            if isinstance(entity, Publisher):
                self.destroy_publisher(entity)
            elif isinstance(entity, Subscription):
                self.destroy_subscription(entity)
            else:  # intra-process publishers and subscriptions (ros/intra_process.py)
                entity.destroy()
        self._io = []
        self.diagnostics.set_status(DiagnosticStatus.OK, "inactive")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release_model()
        if self.diagnostics is not None:
            self.diagnostics.destroy()
            self.diagnostics = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop_work()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        if self.workers:  # empty when the constructor failed (bad parameters)
            self._stop_work()
        super().destroy_node()

    def _stop_work(self) -> None:
        """Stop the worker threads (idempotent); deactivate, shutdown and destroy call it."""
        for worker in self.workers:
            worker.stop()

    def _judge_health(self) -> health.Verdict:
        limits = health.limits_from(self.params)
        states = [worker.state() for worker in self.workers]
        # Every item taken is processed or failed: with the nodes' received/dropped counters
        # these make the books balance (test/test_robustness.py checks they do).
        self.diagnostics.values["items_processed"] = sum(s.processed for s in states)
        self.diagnostics.values["items_failed"] = sum(s.failed for s in states)
        verdicts = []
        now = time.monotonic()
        for worker, state in zip(self.workers, states, strict=True):
            if worker.ensure_running():
                self._restarted_at[worker.name] = now
                self.get_logger().error(
                    f"worker {worker.name} had stopped ({state.last_error or 'no error'}); "
                    "restarted it"
                )
                self.diagnostics.count("worker_restarts")
            restarted = self._restarted_at.get(worker.name)
            verdicts.append(
                health.judge_worker(state, limits, None if restarted is None else now - restarted)
            )
        return health.combine([*verdicts, *self._extra_health()])
