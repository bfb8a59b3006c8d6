"""core/persons.py: tracks -> persons, recognition of a returning face, forgetting, the database."""

from __future__ import annotations

import math
import random
import stat

import numpy as np
import pytest

from uservlm_ros.core import persons
from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.persons import PersonRegistry, PersonsConfig


def face(seed: int, noise: float = 0.0, noise_seed: int = 0) -> np.ndarray:
    """A unit 128-D 'embedding' per person (different seeds ~1.4 apart), with some noise."""
    vector = np.random.default_rng(seed).normal(size=128)
    vector /= np.linalg.norm(vector)
    jitter = np.random.default_rng(1000 + noise_seed).normal(size=128)
    return (vector + noise * jitter / np.linalg.norm(jitter)).astype(np.float32)


def registry(**config) -> PersonRegistry:
    return PersonRegistry(PersonsConfig(**config), rng=random.Random(7))


def test_a_new_track_is_anonymous_until_identified():
    reg = registry()
    assert reg.person_of(1, 0.0) == "anonymous_person_f1" == persons.anonymous_id(1)
    assert reg.person(persons.anonymous_id(1)).anonymous
    assert reg.known() == []
    match = reg.identify(1, face(1), 0.1)
    assert match.outcome == persons.NEW and match.previous == "anonymous_person_f1"
    assert len(match.person_id) == 5 and match.person_id.isalpha()
    assert reg.person_of(1, 0.2) == match.person_id
    assert reg.person("anonymous_person_f1") is None  # replaced, not piled up
    assert reg.known() == [match.person_id]
    assert reg.tracked() == {1: match.person_id}


def test_a_returning_person_keeps_their_id_and_counts_visits():
    reg = registry()
    alice = reg.identify(1, face(1), 0.0).person_id
    reg.track_ended(1)
    assert reg.person(alice).track_id == 0 and alice in reg.known()
    match = reg.identify(2, face(1, noise=0.2), 5.0)
    assert (match.outcome, match.person_id, match.previous) == (
        persons.RETURNED,
        alice,
        "anonymous_person_f2",
    )
    assert 0.0 < match.confidence < 1.0
    assert reg.person(alice).visits == 2 and reg.person(alice).track_id == 2
    # a tracker glitch (out of view for less than VISIT_GAP_S) is not a visit
    reg.track_ended(2)
    reg.identify(3, face(1, noise=0.1), 5.0 + persons.VISIT_GAP_S / 2)
    assert reg.person(alice).visits == 2


def test_two_people_are_never_merged():
    reg = registry()
    alice = reg.identify(1, face(1), 0.0).person_id
    bob = reg.identify(2, face(2), 0.0)
    assert bob.outcome == persons.NEW and bob.person_id != alice
    # alice is in view in track 1: a second track with her face is not her
    twin = reg.identify(3, face(1, noise=0.1), 1.0)
    assert twin.outcome == persons.CONFLICT and persons.is_anonymous(twin.person_id)
    assert reg.person(alice).track_id == 1


def test_an_ambiguous_face_stays_anonymous():
    reg = registry(match_distance=0.9, ambiguity_margin=0.3)
    a, b = face(1), face(1, noise=0.4)  # two persons who look alike
    first = reg.identify(1, a, 0.0)
    reg.track_ended(1)
    second = reg.identify(2, face(2), 0.0)
    reg._persons[second.person_id].embeddings = [b]
    reg.track_ended(2)
    match = reg.identify(3, (a + b) / 2, 2.0)  # as close to one as to the other
    assert match.outcome == persons.AMBIGUOUS and persons.is_anonymous(match.person_id)
    assert reg.person(first.person_id).visits == 1 == reg.person(second.person_id).visits


def test_the_gallery_grows_with_distinct_views_and_is_bounded():
    reg = registry(max_embeddings=3)
    alice = reg.identify(1, face(1), 0.0).person_id
    for i in range(10):
        assert reg.identify(1, face(1, noise=0.15, noise_seed=i), i).outcome == persons.SAME
    assert len(reg._persons[alice].embeddings) == 3
    # a far embedding of the same track (a tracker switch?) is not learned
    reg.identify(1, face(5), 11.0)
    assert all(np.linalg.norm(e - face(5)) > 0.5 for e in reg._persons[alice].embeddings)


def test_forgetting_after_a_while_on_request_and_beyond_the_cap():
    reg = registry(forget_after_s=60.0, max_known=2)
    alice = reg.identify(1, face(1), 0.0).person_id
    reg.track_ended(1)
    bob = reg.identify(2, face(2), 30.0).person_id
    assert reg.expire(61.0) == [alice]  # bob is in view
    reg.track_ended(2)
    carol = reg.identify(3, face(3), 62.0).person_id
    dave = reg.identify(4, face(4), 63.0).person_id
    assert reg.expire(64.0) == [bob]  # cap of 2: the one seen least recently goes
    assert set(reg.known()) == {carol, dave}
    assert reg.forget("nosuch") == []
    assert reg.forget(carol) == [carol]
    assert reg.person_of(3, 65.0) == persons.anonymous_id(3)  # in view, now anonymous
    assert reg.forget() == [dave] and reg.known() == []
    again = reg.identify(4, face(4), 66.0)
    assert again.outcome == persons.NEW and again.person_id != dave


def test_anonymous_persons_go_with_their_track():
    reg = registry()
    for track in range(1, 200):
        reg.person_of(track, float(track))
        reg.track_ended(track)
    assert reg.persons() == [] and reg.tracked() == {}


def test_database_round_trip_with_mode_0600(tmp_path):
    reg = registry()
    alice = reg.identify(1, face(1), 0.0).person_id
    reg.identify(2, face(2), 0.0)
    reg.person_of(3, 0.0)  # anonymous: not saved
    path = tmp_path / "persons.json"
    path.write_text("{}")
    path.chmod(0o644)
    assert reg.save(path) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = registry()
    assert fresh.load(path) == 2
    assert fresh.identify(7, face(1, noise=0.1), 100.0).person_id == alice
    assert "embeddings" not in repr(fresh.person(alice))


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"version": 9, "persons": []}',
        '{"version": 1, "persons": [{"person_id": 1}]}',
        '{"version": 1, "persons": [{"person_id": "../x", "embeddings": [[1]], "first_seen": 0, '
        '"last_seen": 0, "visits": 1}]}',
    ],
)
def test_a_bad_database_is_one_clear_error(tmp_path, content):
    path = tmp_path / "db.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=str(path)):
        registry().load(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        registry().load(tmp_path / "missing.json")


def test_bad_config_and_embeddings_are_refused():
    with pytest.raises(ConfigError):
        PersonsConfig(match_distance=0)
    with pytest.raises(ConfigError):
        PersonsConfig(forget_after_s=math.nan)
    with pytest.raises(ValueError, match="finite"):
        registry().identify(1, np.array([np.nan, 1.0]), 0.0)


def test_embedding_schedule_backs_off_refreshes_known_and_takes_turns():
    schedule = persons.EmbeddingSchedule(persons.EmbeddingConfig(retry_s=0.5, refresh_s=5.0))
    assert schedule.pick([(1, True), (2, True)], 0.0) == 1
    assert schedule.pick([(1, True), (2, True)], 0.1) == 2  # the other one's turn
    assert schedule.pick([(1, True), (2, True)], 0.2) is None
    assert schedule.pick([(1, True), (2, False)], 0.6) == 1  # anonymous: retried after 0.5 s
    assert schedule.pick([(1, True)], 1.2) is None  # then after 1 s (backing off)
    assert schedule.pick([(1, True)], 1.7) == 1
    tries = [t / 8 for t in range(14, 320) if schedule.pick([(1, True)], t / 8) == 1]
    assert tries[:3] == [3.75, 7.75, 12.75]  # 2 s, 4 s, then every refresh_s (5 s)
    assert schedule.pick([(1, False), (2, False)], 40.0) == 2  # known: refresh only
    assert schedule.pick([(2, False)], 41.0) is None
    assert schedule.pick([(2, False)], 0.3) == 2  # time went back (a bag replayed again)
    schedule.forget(2)
    assert schedule.pick([(2, False)], 0.4) == 2
