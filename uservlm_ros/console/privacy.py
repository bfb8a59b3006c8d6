"""The privacy switches: the profiler's `enable.<attribute>` parameters, as the page shows them.

console_node makes the calls (the profiler's SetParameters and GetParameters services) and
hands their outcome here, in plain data; this keeps the page's privacy section right: a switch
is pending until its call is answered, failed when refused or unanswered for ANSWER_S, and the
switches are read again whenever the profiler (re)appears.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from uservlm_ros.console.state import ConsoleState
from uservlm_ros.core import labels

PREFIX = "enable."
ANSWER_S = 5.0  # a call unanswered this long is reported as failed


def switch_parameter(attribute: str) -> str:
    """The profiler's parameter that switches an attribute."""
    return PREFIX + attribute


def attribute_of(name: str) -> str | None:
    """The attribute a profiler parameter switches; None for another parameter."""
    attribute = name.removeprefix(PREFIX)
    return attribute if name.startswith(PREFIX) and attribute in labels.ATTRIBUTES else None


class PrivacySwitches:
    def __init__(
        self, state: ConsoleState, node: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.state, self.node = state, node
        self._clock = clock
        self._known = False  # the switches were read since the profiler (re)appeared
        self._reading = False
        self._pending: dict[str, float] = {}  # attribute -> clock time its call was made
        state.set_privacy_node(node, available=False)

    def unreachable(self, attribute: str) -> str:
        """A switch the profiler cannot be asked to set (its service is not up): why."""
        reason = f"{self.node} does not answer (is it running?)"
        self.state.set_privacy(attribute, error=reason)
        return reason

    def asked(self, attribute: str) -> None:
        """The call setting a switch was made."""
        self.state.set_privacy(attribute, pending=True)
        self._pending[attribute] = self._clock()

    def answered(self, attribute: str, enabled: bool, refused: str) -> None:
        """The call's answer: `refused` says why the switch did not change ("" when it did)."""
        self._pending.pop(attribute, None)
        if refused:
            self.state.set_privacy(attribute, error=f"not changed: {refused}")
        else:
            self.state.set_privacy(attribute, enabled=enabled)

    def watch(self, available: bool) -> bool:
        """Called every second with whether the profiler answers: True when its switches are to
        be read now (it (re)appeared). Calls unanswered for ANSWER_S fail."""
        reason = "" if available else f"waiting for {self.node}"
        self.state.set_privacy_node(self.node, available, reason)
        read = False
        if not available:
            self._known = False
        elif not self._known and not self._reading:
            self._reading = read = True
        now = self._clock()
        for attribute, since in list(self._pending.items()):
            if now - since > ANSWER_S:
                self._pending.pop(attribute, None)
                self.state.set_privacy(attribute, error=f"{self.node} did not answer")
        return read

    def read(self, values: Mapping[str, bool] | None) -> None:
        """The switches as read after `watch` asked for it, by attribute (None: the read
        failed, and is tried again at the next `watch`)."""
        self._reading = False
        if values is None:
            return
        for attribute, enabled in values.items():
            self.state.set_privacy(attribute, enabled=enabled)
        self._known = True
