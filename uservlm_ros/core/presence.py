"""Who is here: the people the profiles describe, and what changed (`uservlm who`, `uservlm run`).

Profiles are published while a person is seen and not when they leave, so a person counts as
gone after `expiry_s` without a profile (the profiler's own `fusion.expiry_s`, 5 s by default).
Pure Python: the ROS side (ros/presence.py) feeds it the profiles it receives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from uservlm_ros.core.engagement import STATE_NAMES

APPEARS, LEAVES, ENGAGED, DISENGAGED, PROFILED = (
    "appears",
    "leaves",
    "engaged",
    "disengaged",
    "profiled",
)


@dataclass(frozen=True)
class Person:
    """One tracked person as their latest profile describes them."""

    track_id: int
    profile_text: str
    engagement: float
    state: int  # core.engagement state (the UserProfile ENGAGEMENT_* values)
    engaged: bool
    observations: int
    seen_at: float  # when the profile arrived (the watcher's clock), seconds

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state] if 0 <= self.state < len(STATE_NAMES) else str(self.state)

    def row(self) -> str:
        marker = "*" if self.engaged else " "
        text = self.profile_text or "(no known attribute yet)"
        return (
            f"{marker} #{self.track_id:<4} engagement {self.engagement:.2f} "
            f"{self.state_name:<11} {text}"
        )


@dataclass(frozen=True)
class Change:
    kind: str  # APPEARS, LEAVES, ENGAGED, DISENGAGED or PROFILED (profile text changed)
    person: Person

    def line(self) -> str:
        p = self.person
        if self.kind == APPEARS:
            return f"person #{p.track_id} appears: {p.profile_text or '(not profiled yet)'}"
        if self.kind == LEAVES:
            return f"person #{p.track_id} leaves"
        if self.kind == ENGAGED:
            return f"person #{p.track_id} is engaged (engagement {p.engagement:.2f})"
        if self.kind == DISENGAGED:
            return f"person #{p.track_id} is no longer engaged"
        return f"person #{p.track_id}: {p.profile_text}"


class Presence:
    def __init__(self, expiry_s: float = 5.0) -> None:
        if expiry_s <= 0:
            raise ValueError("expiry_s must be > 0")
        self.expiry_s = expiry_s
        self._people: dict[int, Person] = {}

    @property
    def people(self) -> list[Person]:
        return [self._people[t] for t in sorted(self._people)]

    def update(self, person: Person) -> list[Change]:
        """A profile arrived; the changes it makes."""
        before = self._people.get(person.track_id)
        self._people[person.track_id] = person
        changes = []
        if before is None:
            changes.append(Change(APPEARS, person))
        elif person.profile_text != before.profile_text:
            changes.append(Change(PROFILED, person))
        if person.engaged and (before is None or not before.engaged):
            # The engagement moved: whoever had it (by an older profile) lets go.
            for other in list(self._people.values()):
                if other.track_id != person.track_id and other.engaged:
                    self._people[other.track_id] = replace(other, engaged=False)
                    changes.append(Change(DISENGAGED, self._people[other.track_id]))
            changes.append(Change(ENGAGED, person))
        elif not person.engaged and before is not None and before.engaged:
            changes.append(Change(DISENGAGED, person))
        return changes

    def expire(self, now: float) -> list[Change]:
        """People without a profile for longer than expiry_s leave."""
        gone = [p for p in self._people.values() if now - p.seen_at > self.expiry_s]
        for person in gone:
            del self._people[person.track_id]
        return [Change(LEAVES, p) for p in sorted(gone, key=lambda p: p.track_id)]

    def table(self) -> list[str]:
        if not self._people:
            return ["nobody is here"]
        return [p.row() for p in self.people]
