"""Engagement: cues, states with hysteresis and dwell, one partner at a time, real two-person
scenes (pure: no ROS graph)."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from uservlm_ros.core import engagement as E
from uservlm_ros.core.alignment import roll_degrees
from uservlm_ros.core.engagement import (
    EngagementConfig,
    EngagementEstimator,
    FaceObservation,
    SharedEngagement,
)
from uservlm_ros.sim.photos import frame_with_people

FPS = 10
ASTRONAUT, HOPPER = 0, 1

# Landmarks (pixels) of a frontal face: eyes level, nose and mouth between them, ears outside.
FRONTAL = np.array(
    [[100, 100], [140, 100], [120, 125], [120, 145], [80, 108], [160, 108]], dtype=np.float64
)


def turned(amount: float) -> np.ndarray:
    """FRONTAL with nose and mouth moved sideways by `amount` eye distances (a head turning)."""
    points = FRONTAL.copy()
    points[[2, 3], 0] += 40 * amount
    return points


def obs(track_id, cx=0.5, height=0.3, landmarks=FRONTAL, roll=0.0) -> FaceObservation:
    width = height * 0.75  # 4:3 image: a square face box
    roi = (cx - width / 2, 0.2, cx + width / 2, 0.2 + height)
    return FaceObservation(track_id, roi, landmarks, roll)


def run(estimator, seconds, faces, start, fps=FPS):
    """Feed the same faces for `seconds` from `start`; returns the time after and the history."""
    history = []
    steps = round(seconds * fps)
    for i in range(steps):
        t = start + i / fps
        history.append((t, estimator.update(t, faces(t) if callable(faces) else faces)))
    return start + steps / fps, history


def partners(history):
    return [(t, [tid for tid, s in statuses.items() if s.engaged]) for t, statuses in history]


def test_states_are_the_user_profile_constants():
    from uservlm.msg import UserProfile

    assert [
        UserProfile.ENGAGEMENT_UNKNOWN,
        UserProfile.ENGAGEMENT_DISENGAGED,
        UserProfile.ENGAGEMENT_ENGAGING,
        UserProfile.ENGAGEMENT_ENGAGED,
        UserProfile.ENGAGEMENT_DISENGAGING,
    ] == [E.UNKNOWN, E.DISENGAGED, E.ENGAGING, E.ENGAGED, E.DISENGAGING]


def test_cues():
    config = EngagementConfig()
    # Within personal distance: 1; then less the farther; nothing at max_distance_m and beyond.
    assert E.distance_m(0.25, 44.3) == pytest.approx(1.08, abs=0.01)
    near, personal, mid, far = (E.proximity(h, config) for h in (0.5, 0.23, 0.12, 0.08))
    assert near == personal == 1.0 > mid > far > 0.0
    assert E.proximity(0.03, config) == 0.0
    assert E.proximity(0.2, EngagementConfig(personal_distance_m=0.5)) < 1.0
    # Near the centre: 1; falling to 0 at the left/right edge.
    assert E.centrality((0.4, 0.2, 0.6, 0.5)) == 1.0
    assert E.centrality((0.25, 0.2, 0.35, 0.5)) == 1.0  # left of centre, still in front
    assert E.centrality((0.0, 0.2, 0.2, 0.5)) == pytest.approx(1 - (0.8 - 0.4) / 0.6)
    assert E.centrality((0.0, 0.2, 0.001, 0.5)) == pytest.approx(0.0, abs=0.01)
    # Frontal: small asymmetries cost nothing, a turned head everything.
    assert E.frontal(FRONTAL, 0.0) == 1.0 and E.frontal(turned(0.1), 0.0) == 1.0
    assert E.frontal(turned(0.2), 0.0) < 0.8 < E.frontal(turned(0.15), 0.0) < 1.0
    assert E.frontal(turned(0.5), 0.0) == 0.0
    assert E.frontal(turned(-0.2), 0.0) == pytest.approx(E.frontal(turned(0.2), 0.0))
    # Roll: a tilted head still listens; lying sideways does not look at the robot.
    assert E.frontal(FRONTAL, 10.0) == 1.0 and E.frontal(FRONTAL, -10.0) == 1.0
    assert E.frontal(FRONTAL, 45.0) == pytest.approx(0.5) and E.frontal(FRONTAL, 90.0) == 0.0
    # No usable landmarks: neither frontal nor turned away.
    assert E.frontal(None, 0.0) == E.FRONTAL_UNKNOWN
    assert E.frontal(np.full((6, 2), np.nan), 0.0) == E.FRONTAL_UNKNOWN
    ears_missing = turned(0.2)
    ears_missing[4:] = np.nan
    assert E.frontal(ears_missing, 0.0) == pytest.approx(1 - (0.2 - 0.12) / (0.3 - 0.12))


def test_one_person_engages_after_the_dwell_and_disengages_after_leaving():
    estimator = EngagementEstimator(EngagementConfig(min_dwell_s=1.0, forget_after_s=3.0))
    t, history = run(estimator, 3.0, [obs(7)], 0.0)
    states = [s[7].state for _, s in history]
    assert states[:2] == [E.UNKNOWN, E.UNKNOWN]  # MIN_OBSERVATIONS frames first
    first_engaged = next(t for t, s in history if s[7].state == E.ENGAGED)
    first_engaging = next(t for t, s in history if s[7].state == E.ENGAGING)
    assert first_engaged - first_engaging == pytest.approx(1.0, abs=0.11)
    assert states[-1] == E.ENGAGED and estimator.partner == 7
    status = history[-1][1][7]
    assert status.engaged and status.visible and status.score > 0.7
    assert status.roi == obs(7).roi and status.state_name == "engaged"

    # Out of view: the score falls, DISENGAGING keeps the partner for the dwell, then DISENGAGED.
    t, history = run(estimator, 2.5, [], t)
    states = [s[7].state for _, s in history]
    assert E.DISENGAGING in states and states[-1] == E.DISENGAGED
    leaving = [s[7] for _, s in history if s[7].state == E.DISENGAGING]
    assert len(leaving) == pytest.approx(10, abs=1) and all(s.engaged for s in leaving)
    assert not history[-1][1][7].visible and estimator.partner is None
    t, history = run(estimator, 1.0, [], t)
    assert 7 not in history[-1][1]  # forgotten after forget_after_s unseen


def test_a_score_around_the_threshold_does_not_flicker():
    estimator = EngagementEstimator()
    t, _ = run(estimator, 3.0, [obs(1)], 0.0)
    assert estimator.partner == 1

    # Looking away every other half second: the score swings, but stays above the disengage
    # threshold, so the state never leaves ENGAGED.
    def glancing(t):
        return [obs(1, landmarks=turned(0.25) if int(t * 2) % 2 else FRONTAL)]

    t, history = run(estimator, 6.0, glancing, t)
    scores = [s[1].score for _, s in history]
    assert max(scores) - min(scores) > 0.2
    assert min(scores) > estimator.config.disengage_threshold
    assert {s[1].state for _, s in history} == {E.ENGAGED}


def test_a_passer_by_at_the_edge_is_not_engaged():
    estimator = EngagementEstimator()
    _, history = run(estimator, 4.0, [obs(3, cx=0.05, height=0.12, landmarks=turned(0.3))], 0.0)
    assert {s[3].state for _, s in history[3:]} == {E.DISENGAGED}
    assert history[-1][1][3].score < 0.3


def test_speech_boosts_the_person_who_spoke():
    estimator = EngagementEstimator()
    side_by_side = [obs(1, cx=0.3, height=0.2), obs(2, cx=0.7, height=0.2)]
    t, _ = run(estimator, 0.5, side_by_side, 0.0)
    estimator.heard_speech(2, t)
    estimator.heard_speech(99, t)  # no such track: ignored
    t, history = run(estimator, 2.0, side_by_side, t)
    assert history[0][1][2].cues.speech == pytest.approx(E.SPEECH_BOOST)
    assert history[-1][1][2].score > history[-1][1][1].score
    assert estimator.partner == 2


def test_speech_is_credited_to_the_partner_else_the_most_engaged_visible_person():
    estimator = EngagementEstimator()
    assert estimator.likely_speaker() is None  # nobody in view
    near_and_far = [obs(1, cx=0.5, height=0.35), obs(2, cx=0.85, height=0.1)]
    t, _ = run(estimator, 0.2, near_and_far, 0.0)
    assert estimator.partner is None and estimator.likely_speaker() == 1
    t, _ = run(estimator, 5.0, near_and_far, t)
    assert estimator.partner == 1 and estimator.likely_speaker() == 1
    t, _ = run(estimator, 0.2, [obs(2, cx=0.85, height=0.1)], t)  # 1 left the picture
    assert estimator.likely_speaker() == (estimator.partner or 2)


def test_at_most_one_partner_and_switching_needs_a_clear_margin_for_the_dwell():
    config = EngagementConfig(switch_margin=0.15, switch_dwell_s=2.0)
    estimator = EngagementEstimator(config)
    # Two people equally central, both beyond personal distance: the first to be ready (the
    # nearer) takes the engagement.
    t, history = run(
        estimator, 3.0, [obs(1, cx=0.45, height=0.15), obs(2, cx=0.55, height=0.13)], 0.0
    )
    assert all(len(engaged) <= 1 for _, engaged in partners(history))
    assert estimator.partner == 1 and history[-1][1][2].state == E.ENGAGING

    # Person 2 a little nearer (better, but by less than the margin): no switch.
    t, history = run(
        estimator, 5.0, [obs(1, cx=0.45, height=0.15), obs(2, cx=0.55, height=0.17)], t
    )
    gap = history[-1][1][2].score - history[-1][1][1].score
    assert 0 < gap < config.switch_margin
    assert {tuple(e) for _, e in partners(history)} == {(1,)}

    # Person 1 steps back and aside: 2 is clearly better, and takes over after the dwell.
    t, history = run(estimator, 5.0, [obs(1, cx=0.15, height=0.15), obs(2, cx=0.5)], t)
    assert all(len(engaged) == 1 for _, engaged in partners(history))
    switch = next(t for t, engaged in partners(history) if engaged == [2])
    clearly_better = next(t for t, s in history if s[2].score > s[1].score + config.switch_margin)
    assert switch - clearly_better == pytest.approx(config.switch_dwell_s, abs=0.11)
    assert history[-1][1][1].state in (E.ENGAGING, E.DISENGAGED)


def test_the_shared_estimator_tells_the_partner_its_change_and_credits_speech():
    shared = SharedEngagement(EngagementConfig(switch_margin=0.15, switch_dwell_s=2.0))
    assert shared.former_partner() is None and shared.status(1) is None
    t, _ = run(shared, 3.0, [obs(1, cx=0.45, height=0.15), obs(2, cx=0.55, height=0.13)], 0.0)
    assert shared.update(t, [obs(1, cx=0.45, height=0.15), obs(2, cx=0.55, height=0.13)]) == 1
    assert shared.former_partner() is None  # a first partner: nobody to publish again
    # 1 steps back and aside, 2 takes over: 1's profile is to be published again, once
    t, _ = run(shared, 5.0, [obs(1, cx=0.15, height=0.15), obs(2, cx=0.5)], t)
    assert shared.status(2).engaged
    assert shared.former_partner() == 1
    assert shared.former_partner() is None
    assert shared.states([1, 2, 99]) == {1: shared.status(1).state, 2: E.ENGAGED}
    shared.heard_speech(t)  # credited to the partner
    shared.update(t, [obs(1, cx=0.15, height=0.15), obs(2, cx=0.5)])
    assert shared.status(2).cues.speech == pytest.approx(E.SPEECH_BOOST)
    assert shared.status(1).cues.speech == 0.0


def test_config_is_checked():
    with pytest.raises(ValueError, match="disengage_threshold < engage_threshold"):
        EngagementConfig(engage_threshold=0.3, disengage_threshold=0.5)
    with pytest.raises(ValueError, match="camera_vfov_deg"):
        EngagementConfig(camera_vfov_deg=0.0)
    with pytest.raises(ValueError, match="smoothing_s must be > 0"):
        EngagementConfig(smoothing_s=0.0)
    with pytest.raises(ValueError, match="personal_distance_m < max_distance_m"):
        EngagementConfig(personal_distance_m=5.0)


def test_stamps_going_back_do_not_break_the_clock():
    estimator = EngagementEstimator()
    run(estimator, 2.0, [obs(1)], 100.0)
    statuses = estimator.update(5.0, [obs(1)])  # a bag starting again
    assert math.isfinite(statuses[1].score) and statuses[1].engaged


# -- two people from real photos, through the face detector


@cache
def _detector():
    from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions

    return DETECTORS.create("blazeface_full", DetectorOptions())


@cache
def _observations(placements: tuple) -> tuple[FaceObservation, ...]:
    """Detect the faces of a frame built from photos; the track id is the photo's person + 1
    (the tracker's job, tested elsewhere)."""
    frame = frame_with_people(list(placements))
    height, width = frame.shape[:2]
    found = []
    for detection in _detector().detect(frame):
        box = detection.box
        cx = box.centre[0]
        person = next(p for p, size, x, _ in placements if x <= cx <= x + size)
        roi = (box.xmin / width, box.ymin / height, box.xmax / width, box.ymax / height)
        found.append(FaceObservation(person + 1, roi, detection.landmarks, roll_degrees(detection)))
    assert sorted(f.track_id for f in found) == sorted(p + 1 for p, *_ in placements)
    return tuple(found)


def test_two_people_in_photos_the_near_central_face_is_engaged_until_the_other_comes_closer():
    estimator = EngagementEstimator()
    # The astronaut near and central, Grace Hopper small (far) at the left.
    scene_1 = ((ASTRONAUT, 220, 210, 120), (HOPPER, 90, 20, 150))
    t, history = run(estimator, 4.0, list(_observations(scene_1)), 0.0)
    assert estimator.partner == ASTRONAUT + 1
    assert history[-1][1][HOPPER + 1].state == E.DISENGAGED
    near, far = history[-1][1][ASTRONAUT + 1], history[-1][1][HOPPER + 1]
    assert near.cues.proximity > far.cues.proximity and near.cues.centrality > far.cues.centrality
    assert near.cues.frontal > 0.8  # a real frontal photo reads as frontal

    # Hopper comes closer, the astronaut steps back a little: Hopper is now a bit more engaged,
    # but not by the switch margin: the engagement stays (hysteresis).
    scene_2 = ((ASTRONAUT, 180, 390, 140), (HOPPER, 200, 60, 120))
    t, history = run(estimator, 4.0, list(_observations(scene_2)), t)
    last = history[-1][1]
    gap = last[HOPPER + 1].score - last[ASTRONAUT + 1].score
    assert 0 < gap < estimator.config.switch_margin
    assert {tuple(e) for _, e in partners(history)} == {(ASTRONAUT + 1,)}

    # Hopper comes closer still: clearly more engaged while the astronaut still attends (stays
    # ENGAGED, not DISENGAGING): the engagement moves to Hopper, once, after the switch dwell.
    scene_3 = ((ASTRONAUT, 140, 450, 150), (HOPPER, 280, 90, 90))
    t, history = run(estimator, 6.0, list(_observations(scene_3)), t)
    engaged = [e for _, e in partners(history)]
    assert all(len(e) == 1 for e in engaged)
    changes = [i for i in range(1, len(engaged)) if engaged[i] != engaged[i - 1]]
    assert len(changes) == 1 and engaged[-1] == [HOPPER + 1]
    before = history[changes[0] - 1][1]
    assert before[ASTRONAUT + 1].state == E.ENGAGED
    assert before[ASTRONAUT + 1].score > estimator.config.disengage_threshold
    assert history[changes[0]][0] - history[0][0] >= estimator.config.switch_dwell_s


# -- user_profiler_node: every profile carries its face box and engagement


def _face_arrays(placements):
    """FaceArray of a photo frame (detected, tracked and aligned as face_crop_node does), with
    the Face ids set to the photo's person + 1; the header stamp is set when sent."""
    from std_msgs.msg import Header
    from uservlm.msg import FaceArray

    from uservlm_ros.backends.face_pipeline import FacePipeline
    from uservlm_ros.ros.conversions import face_to_msg

    frame = frame_with_people(list(placements))
    height, width = frame.shape[:2]
    found = FacePipeline(_detector()).process(frame, 0.0).faces
    faces = []
    for tracked in found:
        face = face_to_msg(tracked, Header(), width, height)
        cx = tracked.detection.box.centre[0]
        face.track_id = next(p for p, size, x, _ in placements if x <= cx <= x + size) + 1
        faces.append(face)
    return FaceArray(image_width=width, image_height=height, faces=faces)


@pytest.mark.graph
def test_profiler_node_publishes_roi_engagement_and_one_engaged_person(ros, processes):
    import time

    from std_msgs.msg import Header
    from uservlm.msg import FaceArray, UserProfile

    from uservlm_ros.ros import topics
    from uservlm_ros.ros.conversions import seconds_to_stamp
    from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS

    node = processes.start_python(
        "user_profiler_node",
        "-m",
        "uservlm_ros.nodes.user_profiler_node",
        "--ros-args",
        "-p",
        "engagement.min_dwell_s:=0.5",
        "-p",
        "publish.max_rate_hz:=3.0",
    )
    node.wait_for_output("user_profiler_node active", timeout=60)
    profiles = ros.subscribe(UserProfile, topics.PROFILE, LATCHED_QOS)
    faces_pub = ros.publisher(FaceArray, topics.FACES, RELIABLE_QOS)
    ros.wait_for_subscribers(topics.FACES)
    scene = _face_arrays(((ASTRONAUT, 220, 210, 120), (HOPPER, 90, 20, 150)))
    expected_roi = {f.track_id: [f.xmin, f.ymin, f.xmax, f.ymax] for f in scene.faces}

    def latest():
        newest = {}
        for profile in list(profiles.messages):
            newest[profile.track_id] = profile
        return newest

    def send_until(predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate():
            scene.header = Header(stamp=seconds_to_stamp(time.time()), frame_id="camera")
            faces_pub.publish(scene)
            time.sleep(0.1)  # a 10 Hz camera
        return predicate()

    def astronaut_engaged():
        newest = latest()
        return ASTRONAUT + 1 in newest and newest[ASTRONAUT + 1].engaged

    assert send_until(astronaut_engaged, 40), f"profiles: {latest()}"
    send_until(lambda: False, 1.0)  # both profiles published again after the switch-on
    newest = latest()
    near, far = newest[ASTRONAUT + 1], newest[HOPPER + 1]
    assert near.engagement_state == UserProfile.ENGAGEMENT_ENGAGED
    assert far.engagement_state == UserProfile.ENGAGEMENT_DISENGAGED and not far.engaged
    assert near.engagement > 0.5 > far.engagement >= 0.0
    for profile in (near, far):
        assert profile.roi.tolist() == pytest.approx(expected_roi[profile.track_id], abs=1e-6)
    # Earlier profiles of the near person went through the states in order.
    states = [p.engagement_state for p in profiles.messages if p.track_id == ASTRONAUT + 1]
    assert states == sorted(states)

    # Nobody in view any more: the engaged person lets go after the dwell, and its profile is
    # published again at once to say so (no new face of it will come).
    def nobody_engaged():
        return not any(p.engaged for p in latest().values())

    empty = FaceArray(image_width=640, image_height=480)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not nobody_engaged():
        empty.header = Header(stamp=seconds_to_stamp(time.time()), frame_id="camera")
        faces_pub.publish(empty)
        time.sleep(0.1)
    assert nobody_engaged()
    assert latest()[ASTRONAUT + 1].engagement_state == UserProfile.ENGAGEMENT_DISENGAGED
    assert node.popen.poll() is None


@pytest.mark.graph
def test_profiler_node_refuses_thresholds_the_wrong_way_round(processes):
    node = processes.start_python(
        "user_profiler_node",
        "-m",
        "uservlm_ros.nodes.user_profiler_node",
        "--ros-args",
        "-p",
        "engagement.engage_threshold:=0.2",
    )
    assert node.popen.wait(timeout=60) == 1
    output = node.output()
    # The node's wording around the config's own message may change; the reason may not.
    assert "need 0 <= disengage_threshold < engage_threshold" in output
    assert "Traceback" not in output


def test_an_empty_or_non_finite_face_box_is_refused():
    with pytest.raises(ValueError, match="face box of track 4 is empty or not finite"):
        FaceObservation(4, (0.5, 0.5, 0.5, 0.6))
    with pytest.raises(ValueError, match="not finite"):
        FaceObservation(4, (math.nan, 0.1, 0.2, 0.3))
