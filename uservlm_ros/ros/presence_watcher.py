"""Who is here, from the profiles on the graph: feeds core/presence.py from /uservlm/user_profile;
and the client of the profiler's ForgetPersons service (`uservlm forget`).

A person's time is the camera's (the profile's header stamp), as for the profiler's own expiry,
so profiles of people who left long ago that a latched topic hands a late joiner are not shown
as present.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rclpy.node import Node
from uservlm.msg import UserProfile
from uservlm.srv import ForgetPersons

from uservlm_ros.core.presence import Change, Person, Presence, person_id_of
from uservlm_ros.ros import topics
from uservlm_ros.ros.conversions import stamp_to_seconds
from uservlm_ros.ros.qos import LATCHED_QOS

OnChanges = Callable[[list[Change], Presence], None]


def person_of(msg: UserProfile, stamp: float) -> Person:
    return Person(
        person_id=person_id_of(msg.person_id, msg.track_id),
        visits=max(1, int(msg.visits)),  # 0 from a profiler that does not count visits
        track_id=msg.track_id,
        profile_text=msg.profile_text,
        engagement=float(msg.engagement),
        state=int(msg.engagement_state),
        engaged=bool(msg.engaged),
        observations=int(msg.observations),
        seen_at=stamp,
    )


class PresenceWatcher:
    """Calls `on_changes(changes, presence)` (from the executor's thread) when persons come,
    come back, are identified, leave, become engaged or no longer engaged, or their profile text
    changes."""

    def __init__(
        self, node: Node, on_changes: OnChanges, expiry_s: float = 5.0, poll_s: float = 0.25
    ) -> None:
        self.presence = Presence(expiry_s)
        self._on_changes = on_changes
        self._lock = threading.Lock()
        self._clock: tuple[float, float] | None = None  # (newest camera stamp, wall arrival)
        self.profiles = 0
        self._subscription = node.create_subscription(
            UserProfile, topics.PROFILE, self._on_profile, LATCHED_QOS
        )
        self._timer = node.create_timer(poll_s, self._expire)

    def now(self) -> float:
        """Now on the camera's clock: the newest profile stamp plus the time since it came."""
        if self._clock is None:
            return time.time()
        stamp, arrived = self._clock
        return stamp + (time.time() - arrived)

    def _on_profile(self, msg: UserProfile) -> None:
        arrived = time.time()
        stamp = stamp_to_seconds(msg.header.stamp) or arrived
        with self._lock:
            self.profiles += 1
            if self._clock is None or stamp > self._clock[0]:
                self._clock = (stamp, arrived)
            if self.now() - stamp > self.presence.expiry_s:
                return  # an old profile from the latched history: that person has gone
            changes = self.presence.update(person_of(msg, stamp))
            changes += self.presence.expire(self.now())
            if changes:
                self._on_changes(changes, self.presence)

    def report(self) -> None:
        """Call on_changes now, with whatever changed (maybe nothing): a first full table."""
        with self._lock:
            self._on_changes(self.presence.expire(self.now()), self.presence)

    def _expire(self) -> None:
        with self._lock:
            changes = self.presence.expire(self.now())
            if changes:
                self._on_changes(changes, self.presence)


def forget_persons(
    node: Node, person_id: str, wait_s: float, timeout_s: float = 10.0
) -> ForgetPersons.Response:
    """Ask the profiler to forget one person ("" = everyone); the node must be spun elsewhere.

    Raises TimeoutError with the reason when no profiler serves the service within `wait_s`, or
    it does not answer within `timeout_s`.
    """
    # The client stays with the node (destroying it while the executor spins is not safe).
    client = node.create_client(ForgetPersons, topics.FORGET_PERSONS)
    if not client.wait_for_service(timeout_sec=wait_s):
        name = node.resolve_service_name(topics.FORGET_PERSONS)
        raise TimeoutError(
            f"no profiler serves {name} within {wait_s:g} s (is the graph running? `uservlm run`)"
        )
    done = threading.Event()
    future = client.call_async(ForgetPersons.Request(person_id=person_id))
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout_s):
        raise TimeoutError(f"the profiler did not answer within {timeout_s:g} s")
    return future.result()
