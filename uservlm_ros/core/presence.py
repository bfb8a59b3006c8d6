"""Who is here: the persons the profiles describe, and what changed (`uservlm who`, `uservlm run`).

Keyed by person (UserProfile.person_id, core/persons.py), not by face track: a person who comes
back gets a new track but stays the same row, and the anonymous person of a track that is then
identified is replaced by the known one. Profiles are published while a person is seen and not
when they leave, so a person counts as gone after `expiry_s` without a profile (the profiler's
own `fusion.expiry_s`, 5 s by default). Pure Python: the ROS side (ros/presence_watcher.py) feeds
it the profiles it receives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from uservlm_ros.core.engagement import STATE_NAMES
from uservlm_ros.core.persons import anonymous_id, is_anonymous

APPEARS, RETURNS, IDENTIFIED, LEAVES, ENGAGED, DISENGAGED, PROFILED = (
    "appears",
    "returns",
    "identified",
    "leaves",
    "engaged",
    "disengaged",
    "profiled",
)
# A person id as tools and the console accept it: a ROS name token (REP-155), not too long.
_PERSON_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def valid_person_id(text: str) -> bool:
    return _PERSON_ID.fullmatch(text) is not None


def person_id_of(person_id: str, track_id: int) -> str:
    """A profile's person: its person_id, or the track's anonymous person where a profiler
    that predates persons leaves it empty."""
    return person_id or anonymous_id(track_id)


def answer_for(person_id: str, track_id: int, addressee: str = "") -> str:
    """Whom a profile or an answer is for, worded the same by every tool (the demo, `ask`,
    `who`, `run`): `person kqzxt (#3)`, `person kqzxt (#3, engaged)` with how the responder
    chose them, `nobody` for track 0."""
    if not track_id:
        return "nobody"
    how = f", {addressee}" if addressee else ""
    return f"person {person_id_of(person_id, track_id)} (#{track_id}{how})"


@dataclass(frozen=True)
class Person:
    """One person as their latest profile describes them."""

    person_id: str
    visits: int  # times they came into view, this one included
    track_id: int  # their face track now
    profile_text: str
    engagement: float
    state: int  # core.engagement state (the UserProfile ENGAGEMENT_* values)
    engaged: bool
    observations: int
    seen_at: float  # when the profile arrived (the watcher's clock), seconds

    @property
    def anonymous(self) -> bool:
        return is_anonymous(self.person_id)

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state] if 0 <= self.state < len(STATE_NAMES) else str(self.state)

    @property
    def name(self) -> str:
        """How lines name the person: `person <id> (#<track>)` (answer_for)."""
        return answer_for(self.person_id, self.track_id)

    def row(self, now: float) -> str:
        marker = "*" if self.engaged else " "
        kind = "anonymous" if self.anonymous else "known"
        ago = max(0.0, now - self.seen_at)
        seen = "now" if ago < 1.0 else f"{ago:.0f} s ago"
        text = self.profile_text or "(no known attribute yet)"
        return (
            f"{marker} {self.person_id:<20} {kind:<9} visit {self.visits:<3} #{self.track_id:<4} "
            f"seen {seen:<8} engagement {self.engagement:.2f} {self.state_name:<11} {text}"
        )


@dataclass(frozen=True)
class Change:
    kind: str  # APPEARS, RETURNS, IDENTIFIED, LEAVES, ENGAGED, DISENGAGED or PROFILED
    person: Person
    previous: str = ""  # RETURNS, IDENTIFIED: the person id the track had before ("" = none)

    def line(self) -> str:
        p = self.person
        if self.kind == APPEARS:
            return f"{p.name} came: {p.profile_text or '(not profiled yet)'}"
        if self.kind == RETURNS:
            was = f", was {self.previous}" if self.previous else ""
            return f"{p.name} came back (visit {p.visits}{was})"
        if self.kind == IDENTIFIED:
            known = "" if p.anonymous else "known as "  # anonymous: the known one was forgotten
            return f"person {self.previous} (#{p.track_id}) is now {known}{p.person_id}"
        if self.kind == LEAVES:
            return f"{p.name} left"
        if self.kind == ENGAGED:
            return f"{p.name} is engaged (engagement {p.engagement:.2f})"
        if self.kind == DISENGAGED:
            return f"{p.name} is no longer engaged"
        return f"{p.name}: {p.profile_text}"


class Presence:
    def __init__(self, expiry_s: float = 5.0) -> None:
        if expiry_s <= 0:
            raise ValueError("expiry_s must be > 0")
        self.expiry_s = expiry_s
        self._people: dict[str, Person] = {}

    @property
    def people(self) -> list[Person]:
        return sorted(self._people.values(), key=lambda p: (p.track_id, p.person_id))

    def update(self, person: Person) -> list[Change]:
        """A profile arrived; the changes it makes."""
        # Another person on the same track was this face under its old id (the anonymous
        # person before identification): this profile replaces them.
        replaced = [
            p
            for p in self._people.values()
            if p.track_id == person.track_id and p.person_id != person.person_id
        ]
        for old in replaced:
            del self._people[old.person_id]
        previous = replaced[0].person_id if replaced else ""
        before = self._people.get(person.person_id)
        self._people[person.person_id] = person
        changes = []
        if person.visits > (before.visits if before else 1):
            changes.append(Change(RETURNS, person, previous))
        elif previous:
            changes.append(Change(IDENTIFIED, person, previous))
        elif before is None:
            changes.append(Change(APPEARS, person))
        elif person.profile_text != before.profile_text:
            changes.append(Change(PROFILED, person))
        was_engaged = before.engaged if before else any(p.engaged for p in replaced)
        if person.engaged and not was_engaged:
            # The engagement moved: whoever had it (by an older profile) lets go.
            for other in list(self._people.values()):
                if other.person_id != person.person_id and other.engaged:
                    self._people[other.person_id] = replace(other, engaged=False)
                    changes.append(Change(DISENGAGED, self._people[other.person_id]))
            changes.append(Change(ENGAGED, person))
        elif not person.engaged and was_engaged:
            changes.append(Change(DISENGAGED, person))
        return changes

    def expire(self, now: float) -> list[Change]:
        """People without a profile for longer than expiry_s leave."""
        gone = [p for p in self._people.values() if now - p.seen_at > self.expiry_s]
        for person in gone:
            del self._people[person.person_id]
        return [Change(LEAVES, p) for p in sorted(gone, key=lambda p: p.person_id)]

    def table(self, now: float) -> list[str]:
        if not self._people:
            return ["nobody is here"]
        return [p.row(now) for p in self.people]
