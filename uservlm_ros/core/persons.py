"""Persons: who a face track belongs to, recognised again when they come back.

REP-155's model: a face track lives while a face is in view; a person persists. A track starts
out with an anonymous person (`anonymous_id`); once a face embedding of it is computed, it is
matched against the known persons' embeddings:

- nearest known person within `match_distance`, the runner-up at least `ambiguity_margin`
  farther, and that person not in view in another track: the track is that person again
  ("returned"; a new visit when they had been out of view for `VISIT_GAP_S`);
- nearest within `match_distance` but not clearly (runner-up too close, or that person is in
  view elsewhere): the track stays anonymous ("ambiguous" / "conflict") and the next embedding
  tries again. Two people are never merged: doubt makes a new person, never a shared one;
- nobody within `match_distance`: a new known person with a random id ("new").

Later embeddings of an identified track that match its person are added to the person's
gallery (at most `max_embeddings`, the oldest replaced) so that they are recognised in other
light and poses. An anonymous person is dropped with its track; a known person is forgotten
`forget_after_s` after they were last seen, or on request (`forget`). Times are camera seconds.
Embeddings stay in this object (and in a database file only where the operator asks for one):
nothing here logs or prints them.
"""

from __future__ import annotations

import json
import math
import os
import random
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.parameters import setting

ANONYMOUS_PREFIX = "anonymous_person_"
ID_LETTERS = 5
# Out of view at least this long before being seen again counts as a new visit (a tracker
# that loses a face for a few frames must not add visits).
VISIT_GAP_S = 1.0
# A new embedding closer than this to one already kept adds nothing to the gallery.
MIN_GALLERY_SPREAD = 0.05
DATABASE_VERSION = 1

NEW, RETURNED, SAME, AMBIGUOUS, CONFLICT = "new", "returned", "same", "ambiguous", "conflict"


def face_id(track_id: int) -> str:
    """REP-155 face id of a track ("f3"; a ROS name token must not start with a digit)."""
    return f"f{track_id}"


def anonymous_id(track_id: int) -> str:
    """The anonymous person of a track that is not (yet) identified."""
    return ANONYMOUS_PREFIX + face_id(track_id)


def is_anonymous(person_id: str) -> bool:
    return person_id.startswith(ANONYMOUS_PREFIX)


@dataclass(frozen=True)
class PersonsConfig:
    # Calibrated on real crops (docs/models.md, bench/identity.py): the nearest two different
    # people were 0.47 apart, the same person's views 0.30 apart (median).
    match_distance: float = setting(0.35, min=0.01, max=2.0, live=True)
    """Embedding distance within which a face is a known person's (calibration: docs/models.md)"""
    ambiguity_margin: float = setting(0.10, min=0.0, max=2.0, live=True)
    """A match counts only when the next-nearest person is this much farther; else the face stays
    anonymous (two people are never merged)"""
    max_embeddings: int = setting(16, min=1, max=256, live=True)
    """Face embeddings kept per person (the oldest are replaced)"""
    # Two hours: a visit to a lab or a museum, someone who steps away and comes back; the robot
    # does not remember people from one day to the next unless the operator opts in (database).
    forget_after_s: float = setting(7200.0, min=1.0, max=31_536_000.0, live=True)
    """A known person not seen for this long is forgotten (embeddings, profile, visits)"""
    max_known: int = setting(500, min=1, max=100_000, live=True)
    """Known persons kept at most; beyond, the one seen least recently is forgotten"""

    def __post_init__(self) -> None:
        if not 0.0 < self.match_distance < 10.0:
            raise ConfigError(f"match_distance must be in (0, 10), got {self.match_distance}")
        if not 0.0 <= self.ambiguity_margin < 10.0:
            raise ConfigError(f"ambiguity_margin must be in [0, 10), got {self.ambiguity_margin}")
        if self.max_embeddings < 1 or self.max_known < 1:
            raise ConfigError("max_embeddings and max_known must be >= 1")
        if not self.forget_after_s > 0:
            raise ConfigError(f"forget_after_s must be > 0, got {self.forget_after_s}")


@dataclass(frozen=True)
class Person:
    """What may be shown of a person (never their embeddings)."""

    person_id: str
    anonymous: bool
    visits: int
    first_seen: float
    last_seen: float
    track_id: int  # the face track showing them now; 0 = not in view


@dataclass(frozen=True)
class Match:
    """The outcome of one embedding of a track."""

    person_id: str  # the track's person after it
    previous: str  # the track's person before it
    outcome: str  # NEW, RETURNED, SAME, AMBIGUOUS or CONFLICT
    distance: float  # to the nearest known person (inf when nobody is known)
    confidence: float  # that the face is person_id, 0..1 (0 for an anonymous person)


@dataclass
class _Person:
    person_id: str
    first_seen: float
    last_seen: float
    visits: int = 1
    track_id: int = 0
    embeddings: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def anonymous(self) -> bool:
        return not self.embeddings

    def distance(self, embedding: np.ndarray) -> float:
        return min(float(np.linalg.norm(e - embedding)) for e in self.embeddings)

    def view(self) -> Person:
        return Person(
            self.person_id,
            self.anonymous,
            self.visits,
            self.first_seen,
            self.last_seen,
            self.track_id,
        )


class PersonRegistry:
    """Tracks -> persons, and the known persons' embeddings (see the module docstring)."""

    def __init__(self, config: PersonsConfig | None = None, rng: random.Random | None = None):
        self.config = config or PersonsConfig()
        self._rng = rng or random.SystemRandom()
        self._persons: dict[str, _Person] = {}
        self._tracks: dict[int, str] = {}  # visible track -> person id

    # -- reading

    def person(self, person_id: str) -> Person | None:
        record = self._persons.get(person_id)
        return record.view() if record is not None else None

    def persons(self) -> list[Person]:
        return [p.view() for p in self._persons.values()]

    def known(self) -> list[str]:
        """Every identified person, in view or not, in the order they were first seen."""
        return [p.person_id for p in self._persons.values() if not p.anonymous]

    def tracked(self) -> dict[int, str]:
        """Track in view -> its person."""
        return dict(self._tracks)

    def track_of(self, person_id: str) -> int:
        record = self._persons.get(person_id)
        return record.track_id if record is not None else 0

    # -- tracks

    def person_of(self, track_id: int, now: float) -> str:
        """The person of a track seen at `now`; a new track gets an anonymous person."""
        person_id = self._tracks.get(track_id)
        if person_id is None:
            person_id = anonymous_id(track_id)
            self._persons[person_id] = _Person(person_id, now, now, track_id=track_id)
            self._tracks[track_id] = person_id
        record = self._persons[person_id]
        record.last_seen = max(record.last_seen, now)
        return person_id

    def track_ended(self, track_id: int) -> None:
        """The track is gone: its anonymous person with it; a known person stays remembered."""
        person_id = self._tracks.pop(track_id, None)
        record = self._persons.get(person_id) if person_id is not None else None
        if record is None:
            return
        record.track_id = 0
        if record.anonymous:
            del self._persons[person_id]

    def identify(self, track_id: int, embedding: np.ndarray, now: float) -> Match:
        """One face embedding of a track (see the module docstring for the outcomes)."""
        embedding = _as_embedding(embedding)
        current = self._persons[self.person_of(track_id, now)]
        if not current.anonymous:
            distance = current.distance(embedding)
            if distance <= self.config.match_distance:
                self._remember(current, embedding)
            return Match(
                current.person_id, current.person_id, SAME, distance, self._confidence(distance)
            )
        ranked = sorted(
            (p.distance(embedding), p.person_id) for p in self._persons.values() if not p.anonymous
        )
        best_distance, best_id = ranked[0] if ranked else (math.inf, "")
        if best_distance > self.config.match_distance:
            return self._replace(current, self._new_person(current, embedding, now), NEW, ranked)
        best = self._persons[best_id]
        runner_up = ranked[1][0] if len(ranked) > 1 else math.inf
        if runner_up - best_distance < self.config.ambiguity_margin:
            outcome = AMBIGUOUS
        elif best.track_id not in (0, track_id):
            outcome = CONFLICT  # that person is in view in another track
        else:
            if now - best.last_seen >= VISIT_GAP_S:
                best.visits += 1
            best.last_seen = max(best.last_seen, now)
            self._remember(best, embedding)
            return self._replace(current, best, RETURNED, ranked)
        return Match(current.person_id, current.person_id, outcome, best_distance, 0.0)

    # -- forgetting

    def expire(self, now: float) -> list[str]:
        """Forget known persons out of view for longer than forget_after_s, and the least
        recently seen beyond max_known; returns their ids."""
        config = self.config
        gone = [
            p.person_id
            for p in self._persons.values()
            if not p.anonymous and p.track_id == 0 and now - p.last_seen > config.forget_after_s
        ]
        for person_id in gone:
            del self._persons[person_id]
        known = sorted(
            (p for p in self._persons.values() if not p.anonymous and p.track_id == 0),
            key=lambda p: p.last_seen,
        )
        excess = len(self.known()) - config.max_known
        for record in known[: max(excess, 0)]:
            del self._persons[record.person_id]
            gone.append(record.person_id)
        return gone

    def forget(self, person_id: str | None = None) -> list[str]:
        """Erase one known person (None: every known person). A forgotten person in view goes
        back to an anonymous person of their track, and gets a new id if identified again."""
        targets = [p for p in self._persons.values() if not p.anonymous]
        if person_id is not None:
            targets = [p for p in targets if p.person_id == person_id]
        for record in targets:
            del self._persons[record.person_id]
            if record.track_id:
                del self._tracks[record.track_id]
                self.person_of(record.track_id, record.last_seen)
        return [p.person_id for p in targets]

    # -- the opt-in database (biometric data: the caller decides whether to use it)

    def save(self, path: Path) -> int:
        """Write every known person to `path` (JSON, created with mode 0600, replaced
        atomically); returns how many."""
        persons = [
            {
                "person_id": p.person_id,
                "first_seen": p.first_seen,
                "last_seen": p.last_seen,
                "visits": p.visits,
                "embeddings": [e.tolist() for e in p.embeddings],
            }
            for p in self._persons.values()
            if not p.anonymous
        ]
        text = json.dumps({"version": DATABASE_VERSION, "persons": persons})
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.chmod(partial, 0o600)  # an existing file keeps its mode through O_CREAT
        os.replace(partial, path)
        return len(persons)

    def load(self, path: Path) -> int:
        """Read known persons from a file written by `save`; returns how many. Raises
        ConfigError naming the file and the problem when it cannot be used."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.get("version") != DATABASE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {DATABASE_VERSION}")
            records = [_record_from_json(item) for item in data["persons"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ConfigError(f"persons database {path}: cannot be read ({error})") from None
        for record in records:
            self._persons.setdefault(record.person_id, record)
        return len(records)

    # -- internals

    def _confidence(self, distance: float) -> float:
        return max(0.0, 1.0 - (distance / self.config.match_distance) ** 2)

    def _remember(self, record: _Person, embedding: np.ndarray) -> None:
        if record.embeddings and record.distance(embedding) < MIN_GALLERY_SPREAD:
            return
        record.embeddings.append(embedding)
        del record.embeddings[: -self.config.max_embeddings]

    def _new_person(self, anonymous: _Person, embedding: np.ndarray, now: float) -> _Person:
        while True:
            person_id = "".join(self._rng.choice(string.ascii_lowercase) for _ in range(ID_LETTERS))
            if person_id not in self._persons:
                break
        record = _Person(person_id, anonymous.first_seen, now, embeddings=[embedding])
        self._persons[person_id] = record
        return record

    def _replace(self, anonymous: _Person, record: _Person, outcome: str, ranked: list) -> Match:
        """`record` takes over the anonymous person's track."""
        track_id = anonymous.track_id
        del self._persons[anonymous.person_id]
        record.track_id = track_id
        self._tracks[track_id] = record.person_id
        distance = ranked[0][0] if ranked else math.inf
        confidence = 1.0 if outcome == NEW else self._confidence(distance)
        return Match(record.person_id, anonymous.person_id, outcome, distance, confidence)


def _as_embedding(embedding: Iterable[float]) -> np.ndarray:
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vector.size == 0 or not np.isfinite(vector).all():
        raise ValueError("a face embedding must be a non-empty vector of finite numbers")
    return vector


def _record_from_json(item: dict) -> _Person:
    person_id = str(item["person_id"])
    if len(person_id) != ID_LETTERS or not all(c in string.ascii_lowercase for c in person_id):
        raise ValueError(f"person id {person_id!r} is not {ID_LETTERS} lowercase letters")
    embeddings = [_as_embedding(e) for e in item["embeddings"]]
    if not embeddings:
        raise ValueError(f"person {person_id} has no embedding")
    return _Person(
        person_id,
        float(item["first_seen"]),
        float(item["last_seen"]),
        visits=int(item["visits"]),
        embeddings=embeddings,
    )


@dataclass(frozen=True)
class EmbeddingConfig:
    retry_s: float = setting(0.5, min=0.05, max=60.0, live=True)
    """While a track's person is anonymous, seconds before its face is embedded again (the wait
    doubles with each try, up to identity.refresh_s)"""
    refresh_s: float = setting(5.0, min=0.1, max=3600.0, live=True)
    """Seconds between embeddings of an identified track's face (each teaches the person another
    view; one costs ~80 ms of a core)"""


class EmbeddingSchedule:
    """Which track's face to embed next. An embedding costs ~80 ms of a core, so one is
    computed when a track starts; while its person stays anonymous (no usable face yet, or a
    doubtful match) it is retried after `retry_s`, the wait doubling with each try up to
    `refresh_s` (a face that never matches must not cost a core); an identified track is
    embedded every `refresh_s` to learn the person's other views. The track waiting longest
    goes first, so no track starves."""

    def __init__(self, config: EmbeddingConfig | None = None) -> None:
        self.config = config or EmbeddingConfig()
        self._attempted: dict[int, tuple[float, int]] = {}  # track -> (latest try, tries)

    def pick(self, candidates: Iterable[tuple[int, bool]], now: float) -> int | None:
        """`candidates`: (track id, person anonymous) of the faces fit for an embedding now."""
        due = []
        for track_id, anonymous in candidates:
            last, tries = self._attempted.get(track_id, (-math.inf, 0))
            retry_s, refresh_s = self.config.retry_s, self.config.refresh_s
            wait = min(retry_s * 2 ** max(tries - 1, 0), refresh_s) if anonymous else refresh_s
            if now - last >= wait or now < last:  # a replayed bag going back: due
                due.append((last, track_id, tries))
        if not due:
            return None
        _, track_id, tries = min(due)
        self._attempted[track_id] = (now, tries + 1)
        return track_id

    def forget(self, track_id: int) -> None:
        self._attempted.pop(track_id, None)
