"""The profiler's memory of people: persons (core/persons.py) with their fused profiles.

user_profiler_node runs this from two threads: the profile worker (every FaceArray: which person
a track is, profile fusion and scheduling under the person's id) and the identity worker (face
embeddings). Everything here happens under one lock, which neither holds while a model runs.

Profiles are kept per person, so a returning person's profile continues (its observations
accumulate over visits) and the profile schedule treats them as settled at once. An anonymous
person identified as a known one hands its evidence over (`ProfileFusion.merge`). A track unseen
for `track_expiry_s` has ended: its anonymous person and that person's profile go with it, a
known person stays until `PersonsConfig.forget_after_s` or `forget`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np

from uservlm_ros.core.fusion import ProfileFusion
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.persons import EmbeddingSchedule, Match, Person, PersonRegistry
from uservlm_ros.core.profile_schedule import ProfileScheduler


class PersonProfiles:
    def __init__(
        self,
        registry: PersonRegistry,
        fusion: ProfileFusion,
        scheduler: ProfileScheduler,
        embeddings: EmbeddingSchedule,
        track_expiry_s: float,
    ) -> None:
        self.registry, self.fusion, self.scheduler = registry, fusion, scheduler
        self.embeddings = embeddings
        self.track_expiry_s = track_expiry_s
        self.lock = threading.RLock()
        self._track_seen: dict[int, float] = {}  # visible track -> camera time last seen
        self.confidence: dict[int, float] = {}  # track -> confidence of its person match

    def observe(self, track_id: int, now: float) -> str:
        """A face of `track_id` seen at camera time `now`: its person's id."""
        with self.lock:
            self._track_seen[track_id] = max(self._track_seen.get(track_id, now), now)
            return self.registry.person_of(track_id, now)

    def person(self, person_id: str) -> Person | None:
        with self.lock:
            return self.registry.person(person_id)

    def in_view(self) -> tuple[dict[int, str], list[str], dict[int, float]]:
        """At one moment: each track in view -> its person, the known persons, each track ->
        the confidence of its person match."""
        with self.lock:
            return self.registry.tracked(), self.registry.known(), dict(self.confidence)

    def identified(self, track_id: int, embedding: np.ndarray, now: float) -> Match | None:
        """An embedding of the track's face; None when the track ended meanwhile."""
        with self.lock:
            if track_id not in self._track_seen:
                return None
            match = self.registry.identify(track_id, embedding, now)
            self.confidence[track_id] = match.confidence
            if match.previous != match.person_id:
                self.fusion.merge(match.previous, match.person_id)
                self._drop_forgotten()
            return match

    def due_for_embedding(self, candidates: Iterable[int], now: float) -> int | None:
        """The track (of `candidates`, faces fit for an embedding) to embed now, if any."""
        with self.lock:
            tracked = self.registry.tracked()
            return self.embeddings.pick(
                [
                    (t, self.registry.person(tracked[t]).anonymous)
                    for t in candidates
                    if t in tracked
                ],
                now,
            )

    def expire(self, now: float) -> tuple[list[int], list[str]]:
        """End tracks unseen for track_expiry_s and forget persons past their time; returns
        (ended tracks, forgotten known persons)."""
        with self.lock:
            ended = [t for t, seen in self._track_seen.items() if now - seen > self.track_expiry_s]
            for track_id in ended:
                del self._track_seen[track_id]
                self.confidence.pop(track_id, None)
                self.embeddings.forget(track_id)
                self.registry.track_ended(track_id)
            forgotten = self.registry.expire(now)
            self._drop_forgotten()
            return ended, forgotten

    def forget(self, person_id: str | None) -> list[str]:
        with self.lock:
            forgotten = self.registry.forget(person_id)
            self._drop_forgotten()
            return forgotten

    def _drop_forgotten(self) -> None:
        """Profiles and schedules of persons the registry no longer has."""
        for key in self.fusion.keys:
            if self.registry.person(key) is None:
                self.fusion.forget(key)
                self.scheduler.forget(key)


@dataclass(frozen=True)
class PublishConfig:
    max_rate_hz: float = setting(5.0, min=0.01, max=1000.0, live=True)
    """Most profiles per second per person"""


class PublishRate:
    """When each person's profile was last published: at most `max_rate_hz` a person."""

    def __init__(self, config: PublishConfig) -> None:
        self.config = config
        self._last: dict[str, float] = {}  # person -> time of their last profile

    def due(self, person_id: str, now: float) -> bool:
        """Whether the person's profile may go out at `now`; if so, it counts as published."""
        if now - self._last.get(person_id, -math.inf) < 1.0 / self.config.max_rate_hz:
            return False
        self._last[person_id] = now
        return True

    def keep(self, person_ids: Collection[str]) -> None:
        """Forget the others (their profiles are gone)."""
        for person_id in [p for p in self._last if p not in person_ids]:
            del self._last[person_id]
