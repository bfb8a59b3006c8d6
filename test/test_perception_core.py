"""Pure perception logic: boxes, tracking, alignment, fusion, the latest-frame slot."""

from __future__ import annotations

import math
import threading

import cv2
import numpy as np
import pytest

from uservlm_ros.core import labels
from uservlm_ros.core.alignment import align_face, transform_points
from uservlm_ros.core.faces import LEFT_EYE, RIGHT_EYE, Box, Detection, iou, no_landmarks
from uservlm_ros.core.fusion import CropEstimate, FusionConfig, ProfileFusion
from uservlm_ros.core.slot import LatestSlot
from uservlm_ros.core.tracking import Tracker, TrackerConfig


def det(cx: float, cy: float, size: float = 60.0, score: float = 0.9) -> Detection:
    return Detection(Box.from_centre(cx, cy, size, size), score)


def test_box_validation_iou_and_clamping():
    a, b = Box(0, 0, 10, 10), Box(5, 0, 15, 10)
    assert iou(a, b) == pytest.approx(50 / 150)
    assert iou(a, Box(20, 20, 30, 30)) == 0.0
    assert Box(-5, -5, 5, 5).clamped(100, 100) == Box(0, 0, 5, 5)
    assert Box(200, 200, 300, 300).clamped(100, 100) is None
    with pytest.raises(ValueError, match="empty"):
        Box(10, 0, 10, 5)
    with pytest.raises(ValueError, match="non-finite"):
        Box(math.nan, 0, 10, 5)
    with pytest.raises(ValueError, match="score"):
        Detection(a, 1.5)


def test_tracker_keeps_ids_of_two_people_crossing_with_motion():
    tracker = Tracker()
    ids_seen = set()
    for frame in range(30):
        t = frame / 15
        # They pass each other vertically offset: the boxes never overlap much.
        left = det(100 + 10 * frame, 100)
        right = det(400 - 10 * frame, 220)
        tracked = tracker.update([right, left] if frame % 2 else [left, right], t)
        by_x = {round(item.detection.box.centre[1]): item.track_id for item in tracked}
        ids_seen.update(by_x.values())
        assert by_x == {100: 1, 220: 2}
    assert ids_seen == {1, 2}


def test_tracker_motion_prediction_bridges_fast_motion_with_low_overlap():
    config = TrackerConfig(iou_threshold=0.3)
    tracker = Tracker(config)
    # 30 px per frame on a 60 px box: IoU between consecutive boxes is 1/3 only, but the
    # constant-velocity prediction makes it near 1 after two frames.
    for frame in range(10):
        (item,) = tracker.update([det(100 + 30 * frame, 200)], frame * 0.1)
        assert item.track_id == 1
    assert tracker.tracks[1].velocity[0] == pytest.approx(300, rel=0.05)


def test_reidentification_within_timeout_and_new_id_after_it():
    tracker = Tracker(TrackerConfig(reid_timeout_s=2.0))
    assert tracker.update([det(200, 200)], 0.0)[0].track_id == 1
    assert tracker.update([], 0.5) == []
    # Back after 1.5 s, a little to the side: same person.
    assert tracker.update([det(230, 205)], 1.5)[0].track_id == 1
    # Someone else far away gets a new id.
    assert tracker.update([det(230, 205), det(600, 400)], 1.6)[1].track_id == 2
    # After the timeout the old id is gone for good.
    assert tracker.update([], 2.0) == []
    assert tracker.update([det(230, 205)], 5.0)[0].track_id == 3
    # A very different size does not re-identify.
    tracker.update([], 5.1)
    assert tracker.update([det(230, 205, size=200)], 5.2)[0].track_id == 4


def eyes_detection(right_eye, left_eye, box) -> Detection:
    landmarks = no_landmarks()
    landmarks[RIGHT_EYE], landmarks[LEFT_EYE] = right_eye, left_eye
    return Detection(Box(*box), 0.9, landmarks)


def test_alignment_levels_the_eyes_and_reports_the_roll():
    frame = np.zeros((300, 300, 3), np.uint8)
    right_eye, left_eye = (120.0, 120.0), (180.0, 150.0)  # tilted clockwise on screen
    for x, y in (right_eye, left_eye):
        cv2.circle(frame, (int(x), int(y)), 4, (255, 255, 255), -1)
    detection = eyes_detection(right_eye, left_eye, (100, 90, 200, 210))
    crop = align_face(frame, detection, size=112, margin=0.2)
    assert crop.image.shape == (112, 112, 3) and crop.image.dtype == np.uint8
    assert crop.roll_deg == pytest.approx(math.degrees(math.atan2(30, 60)))
    eyes = transform_points(crop.transform, np.array([right_eye, left_eye]))
    assert eyes[0, 1] == pytest.approx(eyes[1, 1], abs=1e-6)  # level
    assert eyes[0, 0] < eyes[1, 0]  # right eye stays on the image left
    # The white dots really are where the transform puts them.
    for x, y in eyes:
        assert crop.image[round(float(y)), round(float(x))].max() > 100


def test_alignment_without_landmarks_is_an_upright_square_crop():
    frame = np.random.default_rng(0).integers(0, 256, (200, 300, 3), np.uint8)
    crop = align_face(frame, Detection(Box(100, 50, 160, 110), 0.8), size=60, margin=0.0)
    assert crop.roll_deg == 0.0
    np.testing.assert_allclose(crop.image.astype(int), frame[50:110, 100:160].astype(int), atol=1)


def probs(attribute: str, best: int, peak: float) -> np.ndarray:
    count = len(labels.LABEL_SETS[attribute])
    values = np.full(count, (1 - peak) / (count - 1))
    values[best] = peak
    return values


def estimate(gender_best=0, emotion_best=3, peak=0.8, age=34.0) -> CropEstimate:
    return CropEstimate(
        {
            "age_group": probs("age_group", 4, peak),
            "gender": probs("gender", gender_best, peak),
            "emotion": probs("emotion", emotion_best, peak),
        },
        age_years=age,
    )


def test_fusion_averages_with_a_half_life_and_abstains_on_ethnicity():
    fusion = ProfileFusion(
        FusionConfig(half_life_s=1.0), supported={"age_group", "gender", "emotion"}
    )
    first = fusion.update(7, 10.0, estimate(emotion_best=3))
    assert first.attributes["emotion"].label == "happy"
    # One half-life later an equally confident "sad": old evidence weighs 0.5, new 1.
    second = fusion.update(7, 11.0, estimate(emotion_best=4))
    emotion = second.attributes["emotion"]
    assert emotion.label == "sad"
    sad, happy = emotion.probabilities[4], emotion.probabilities[3]
    other = 0.2 / 6
    assert sad == pytest.approx((0.5 * other + 0.8) / 1.5)
    assert happy == pytest.approx((0.5 * 0.8 + other) / 1.5)
    assert sum(emotion.probabilities) == pytest.approx(1.0)
    ethnicity = second.attributes["ethnicity"]
    assert (ethnicity.label, ethnicity.known, ethnicity.abstain_reason) == (
        "unknown",
        False,
        "not_supported",
    )
    assert ethnicity.probabilities == ()
    assert second.observations == 2
    assert second.seconds_since_first_seen == pytest.approx(1.0)
    assert second.age_years == pytest.approx(34.0)
    assert second.profile_text == (
        "The person appears to be a Male, approximately 30 to 39 years old. They look sad."
    )


def test_fusion_thresholds_disabled_attributes_and_expiry():
    config = FusionConfig(
        thresholds={"gender": 0.9}, enabled=frozenset({"gender", "emotion"}), expiry_s=2.0
    )
    fusion = ProfileFusion(config, supported=labels.ATTRIBUTES)
    profile = fusion.update(1, 0.0, estimate(peak=0.8))
    gender, age = profile.attributes["gender"], profile.attributes["age_group"]
    assert (gender.label, gender.known, gender.abstain_reason) == (
        "unknown",
        False,
        "low_confidence",
    )
    assert gender.confidence == pytest.approx(0.8) and len(gender.probabilities) == 2
    assert (age.label, age.abstain_reason, age.probabilities, age.confidence) == (
        "unknown",
        "disabled",
        (),
        0.0,
    )
    assert math.isnan(profile.age_years)
    assert profile.profile_text == "They look happy."
    fusion.update(2, 1.5, estimate())
    assert fusion.expire(2.5) == [1]
    assert fusion.keys == [2]


def test_crop_estimate_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="sum"):
        CropEstimate({"gender": np.array([0.5, 0.6])})
    with pytest.raises(ValueError, match="expected 2"):
        CropEstimate({"gender": np.array([1.0])})


def test_latest_slot_keeps_the_newest_and_counts_drops():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.take(0.01) == 2
    assert slot.take(0.01) is None
    assert (slot.received, slot.dropped) == (2, 1)
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    worker.start()
    slot.put(3)
    worker.join(5.0)
    assert got == [3]


def test_fusion_merges_an_anonymous_persons_evidence_into_the_known_one():
    fusion = ProfileFusion(FusionConfig(half_life_s=1.0), supported=labels.ATTRIBUTES)
    fusion.update("alice", 0.0, estimate())
    fusion.update("alice", 1.0, estimate())
    fusion.update("anonymous_person_f7", 10.0, estimate(peak=0.8))
    fusion.merge("anonymous_person_f7", "alice")
    merged = fusion.current("alice")
    assert fusion.keys == ["alice"] and merged.key == "alice"
    assert merged.observations == 3
    assert merged.seconds_since_first_seen == pytest.approx(10.0)  # across both visits
    # the 9 s old evidence weighs 2^-9 against the new crop: the newest estimate dominates
    assert merged.attributes["gender"].confidence == pytest.approx(0.8, abs=0.01)
    fusion.merge("nosuch", "alice")
    fusion.merge("alice", "bob")  # into nobody yet: renamed
    assert fusion.keys == ["bob"] and fusion.current("bob").observations == 3
    fusion.forget("bob")
    assert fusion.keys == []
