"""The lifecycle every model-hosting node shares (DESIGN: load on configure, I/O on activate).

A subclass declares its PARAMS through the constructor, loads its model and creates
`self.diagnostics` in `on_configure`, creates its publishers and subscriptions in `on_activate`
and lists them in `self._io`, and says how to stop its work (`_stop_work`) and drop its model
(`_release_model`). Deactivate, cleanup, shutdown and destroy are handled here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.publisher import Publisher

from uservlm_ros.core.parameters import Param
from uservlm_ros.ros.diagnostics import Diagnostics
from uservlm_ros.ros.parameters import declare_parameters


class ModelNode(LifecycleNode):
    def __init__(self, name: str, params: Sequence[Param], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.params = declare_parameters(self, params)
        self.diagnostics: Diagnostics | None = None
        self._io: list = []  # publishers and subscriptions made on activate

    def _stop_work(self) -> None:
        """Stop the worker thread (idempotent); called on deactivate, shutdown and destroy."""

    def _release_model(self) -> None:
        """Drop the loaded model (cleanup)."""

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_work()
        for entity in self._io:
            if isinstance(entity, Publisher):
                self.destroy_publisher(entity)
            else:
                self.destroy_subscription(entity)
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
        self._stop_work()
        super().destroy_node()
