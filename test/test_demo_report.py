"""The demo report's persons and identity check (demo/persons_seen.py) on hand-made profile
sequences: the scene's two people, the second leaving and coming back."""

from __future__ import annotations

import pytest
from uservlm.msg import UserProfile

from uservlm_ros.core.persons import anonymous_id
from uservlm_ros.demo.persons_seen import (
    Sighting,
    identity_errors,
    persons_section,
    persons_seen,
    real_person,
    scene_faces,
)
from uservlm_ros.demo.scene import make_scene

WIDTH, HEIGHT = 640, 480


@pytest.fixture(scope="module")
def scene():
    return make_scene(45)


@pytest.fixture(scope="module")
def faces(scene):
    return scene_faces(scene, WIDTH, HEIGHT)


def roi(scene, index: int, person: str) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = next(f.box for f in scene[index].faces if f.person == person)
    return (x0 / WIDTH, y0 / HEIGHT, x1 / WIDTH, y1 / HEIGHT)


def visit(scene, person: str, track: int, ids: list[str], frames, start: float, visits: int = 1):
    """Sightings of one track, a frame apart (0.1 s): ids[k] at the k-th (the last one after)."""
    return [
        Sighting(
            start + k / 10,
            track,
            ids[min(k, len(ids) - 1)],
            visits if ids[min(k, len(ids) - 1)] else 0,
            roi(scene, index, person),
        )
        for k, index in enumerate(frames)
    ]


def the_demo(scene, returning_id: str = "abcde", person_ids: bool = True) -> list[Sighting]:
    """The astronaut throughout (track 1); Grace Hopper on track 2, away, back on track 5."""

    def ids(known: str) -> list[str]:
        return ["", known] if person_ids else [""]

    return [
        *visit(scene, "astronaut", 1, ids("kqzxt"), range(0, 44, 2), 0.0),
        *visit(scene, "grace_hopper", 2, ids("abcde"), range(16, 44, 2), 1.6),
        *visit(scene, "grace_hopper", 5, ids(returning_id), range(16, 30, 2), 9.0, visits=2),
    ]


def test_a_roi_belongs_to_the_scene_person_it_overlaps(scene, faces):
    assert real_person(roi(scene, 40, "grace_hopper"), faces) == "grace_hopper"
    assert real_person(roi(scene, 3, "astronaut"), faces) == "astronaut"
    assert real_person((0.0, 0.9, 0.05, 1.0), faces) is None  # a false face: nobody's


def test_two_persons_and_the_returning_one_has_two_visits(scene, faces):
    sightings = the_demo(scene)
    latest = {1: UserProfile(track_id=1, profile_text="The person appears to be a Female.")}
    persons = persons_seen(sightings, latest)
    # The tracks' anonymous persons were identified: they are no persons of their own.
    assert [(p.person_id, p.visits, p.tracks) for p in persons] == [
        ("kqzxt", 1, [1]),
        ("abcde", 2, [2, 5]),
    ]
    # From the track's first (still anonymous) sighting to the last sighting of the return.
    assert (persons[1].first_seen, persons[1].last_seen) == pytest.approx((1.6, 9.6))
    assert identity_errors(sightings, faces) == []
    text = "\n".join(persons_section(persons, []))
    assert "| kqzxt | 1 | 0.0 s | 2.1 s | #1 | The person appears to be a Female. -- " in text
    assert "| abcde | 2 | 1.6 s | 9.6 s | #2, #5 | - |" in text
    assert "Identity check passed" in text


def test_a_person_who_comes_back_under_a_new_id_fails_the_check(scene, faces):
    sightings = the_demo(scene, returning_id="fghij")
    errors = identity_errors(sightings, faces)
    assert errors == ["grace_hopper got 2 person ids (abcde, fghij)"]
    persons = persons_seen(sightings)
    assert [p.person_id for p in persons] == ["kqzxt", "abcde", "fghij"]
    assert "Identity check FAILED: grace_hopper got 2 person ids (abcde, fghij)." in (
        persons_section(persons, errors)
    )


def test_two_people_under_one_id_fail_the_check(scene, faces):
    sightings = [
        *visit(scene, "astronaut", 1, ["kqzxt"], range(20, 30), 0.0),
        *visit(scene, "grace_hopper", 2, ["kqzxt"], range(20, 30), 0.0),
    ]
    assert identity_errors(sightings, faces) == [
        "person id kqzxt was given to astronaut and grace_hopper"
    ]


def test_without_person_ids_each_track_is_a_person_and_nothing_fails(scene, faces):
    sightings = the_demo(scene, person_ids=False)
    persons = persons_seen(sightings)
    assert [(p.person_id, p.visits) for p in persons] == [
        (anonymous_id(1), 1),
        (anonymous_id(2), 1),
        (anonymous_id(5), 1),
    ]
    assert identity_errors(sightings, faces) == []
    assert "No person was identified" in "\n".join(persons_section(persons, []))
    assert persons_section([], []) == ["## Who was seen", "", "Nobody was profiled.", ""]


def test_the_transcript_names_the_person():
    # the wording `uservlm ask` and `who` use too (core.presence.answer_for)
    from uservlm_ros.demo.run import answer_for

    assert answer_for("kqzxt", 3) == "person kqzxt (#3)"
    assert answer_for("kqzxt", 3, "engaged") == "person kqzxt (#3, engaged)"
    assert answer_for("", 3) == f"person {anonymous_id(3)} (#3)"
    assert answer_for("", 0) == "nobody"
