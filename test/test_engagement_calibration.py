"""Engagement calibrated on real detections: package photos pasted at the face size of a
distance and at a position, frontal or turned, through BlazeFace, fed at 15 fps for 10 s
(uservlm_ros/sim/engagement_scenes.py; the whole table: bench/engagement.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from uservlm_ros.core.engagement import EngagementConfig
from uservlm_ros.sim.engagement_scenes import PERSONS, Case, frame_of, observe, run_case

CONFIG = EngagementConfig()
BOTH = range(len(PERSONS))


def _result(person, distance, position="centre", pose="frontal"):
    result = run_case(Case(person, distance, position, pose), CONFIG)
    assert result.face_px > 0, f"{result.case}: no face detected"
    return result


@pytest.mark.parametrize("person", BOTH)
@pytest.mark.parametrize("distance", [0.8, 1.0, 1.5])
@pytest.mark.parametrize("position", ["centre", "off-centre"])
def test_a_frontal_person_within_1_5_m_in_front_is_engaged_after_2_s(person, distance, position):
    result = _result(person, distance, position)
    assert result.state_2s == "engaged" and result.state_10s == "engaged", result


@pytest.mark.parametrize("person", BOTH)
def test_the_reported_case_150_px_left_of_centre_is_engaged(person):
    result = _result(person, 0.87, "off-centre")
    assert result.face_px == pytest.approx(150, abs=10)
    assert result.engaged_after_s is not None and result.engaged_after_s <= 1.5
    assert result.score_10s > 0.9


@pytest.mark.parametrize("person", BOTH)
@pytest.mark.parametrize("distance", [0.8, 1.0, 1.5])
def test_a_person_at_the_edge_of_the_frame_is_never_engaged(person, distance):
    result = _result(person, distance, "edge")
    assert result.cues.frontal == 1.0  # attending, but beside the robot
    assert result.engaged_after_s is None and result.score_10s < CONFIG.engage_threshold


@pytest.mark.parametrize("person", BOTH)
@pytest.mark.parametrize("distance", [0.87, 1.0, 1.5])
def test_a_person_turned_away_is_never_engaged(person, distance):
    result = _result(person, distance, pose="away")
    assert result.engaged_after_s is None and result.score_10s < CONFIG.disengage_threshold


@pytest.mark.parametrize("person", BOTH)
def test_far_away_is_not_engaged(person):
    result = run_case(Case(person, 3.0, "centre", "frontal"), CONFIG)
    assert result.engaged_after_s is None and result.score_10s < CONFIG.engage_threshold


def test_frames_have_the_face_size_of_the_distance_and_frontal_faces_read_frontal():
    for person in BOTH:
        for distance, pixels in ((1.0, 130), (2.0, 65)):
            face = observe(frame_of(Case(person, distance, "centre", "frontal"), CONFIG))
            assert (face.roi[3] - face.roi[1]) * 480 == pytest.approx(pixels, rel=0.1)
            assert (face.roi[0] + face.roi[2]) / 2 == pytest.approx(0.5, abs=0.02)
        edge = observe(frame_of(Case(person, 1.0, "edge", "frontal"), CONFIG))
        assert edge.roi[0] < 0.02


def test_the_benchmark_prints_the_table():
    run = subprocess.run(
        [sys.executable, "bench/engagement.py", "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("| astronaut")]
    assert len(rows) >= 6 and any("| engaged |" in row for row in rows)
