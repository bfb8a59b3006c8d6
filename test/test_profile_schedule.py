"""The profiler's schedule and quality gate (core/profile_schedule.py), on real face crops."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from uservlm_ros.core import labels
from uservlm_ros.core.fusion import CropEstimate, FusionConfig, ProfileFusion
from uservlm_ros.core.profile_schedule import (
    BLURRED,
    DEFERRED,
    NEW,
    NOT_DUE,
    REFRESH,
    TOO_SMALL,
    TURNED_AWAY,
    UNSETTLED,
    ProfileScheduler,
    ScheduleConfig,
    is_settled,
    quality_problem,
    sharpness,
    turn_ratio,
)
from uservlm_ros.sim.photos import ASTRONAUT_HEAD, HOPPER_HEAD, astronaut, face_patch, grace_hopper

FRONTAL = np.array([[40, 50], [80, 50], [60, 70], [60, 90]], np.float32)  # eyes, nose, mouth


def confident(emotion: float = 0.9) -> CropEstimate:
    def peaked(name: str, p: float) -> np.ndarray:
        n = len(labels.LABEL_SETS[name])
        probs = np.full(n, (1 - p) / (n - 1))
        probs[0] = p
        return probs

    return CropEstimate({name: peaked(name, emotion) for name in labels.ATTRIBUTES})


def fusion(threshold: float = 0.5) -> ProfileFusion:
    config = FusionConfig(thresholds={a: threshold for a in labels.ATTRIBUTES})
    return ProfileFusion(config, supported=labels.ATTRIBUTES)


def run(scheduler: ProfileScheduler, fused: ProfileFusion, estimate, seconds: float, fps=15.0):
    """Feed one track's crops at `fps`; returns the stamps at which it was profiled, by reason."""
    profiled: dict[str, list[float]] = {}
    for index in range(round(seconds * fps)):
        stamp = index / fps
        reason = scheduler.due(7, stamp, fused.current(7))
        if reason == NOT_DUE:
            fused.touch(7, stamp)
            continue
        scheduler.profiled(7, stamp)
        fused.update(7, stamp, estimate)
        profiled.setdefault(reason, []).append(stamp)
    return profiled


def test_a_new_track_is_profiled_at_once_then_unsettled_fast_then_settled_slowly():
    scheduler = ProfileScheduler(ScheduleConfig(refresh_hz=1.0, unsettled_hz=5.0))
    profiled = run(scheduler, fusion(), confident(), seconds=10.0)
    assert profiled[NEW] == [0.0]  # the first crop, not one later
    # unsettled at 5 Hz (every 3rd frame at 15 fps) until settle_observations (3) are fused
    assert profiled[UNSETTLED] == pytest.approx([0.2, 0.4])
    refresh = profiled[REFRESH]
    assert np.diff(refresh) == pytest.approx([1.0] * (len(refresh) - 1))
    assert refresh[0] == pytest.approx(1.4) and len(refresh) == 9
    assert sum(map(len, profiled.values())) == 12  # of 150 crops


def test_a_profile_below_its_thresholds_stays_unsettled():
    scheduler = ProfileScheduler(ScheduleConfig(refresh_hz=1.0, unsettled_hz=5.0))
    profiled = run(scheduler, fusion(threshold=0.95), confident(0.9), seconds=4.0)
    assert set(profiled) == {NEW, UNSETTLED} and len(profiled[UNSETTLED]) == 19
    profile = fusion(threshold=0.95).update(1, 0.0, confident(0.9))
    assert not is_settled(profile, 1)
    assert is_settled(fusion(threshold=0.5).update(1, 0.0, confident(0.9)), 1)
    assert not is_settled(None, 1)


def test_disabled_schedule_profiles_every_crop_and_stamps_going_back_are_due():
    scheduler = ProfileScheduler(ScheduleConfig(enabled=False))
    profiled = run(scheduler, fusion(), confident(), seconds=2.0)
    assert sum(map(len, profiled.values())) == 30
    scheduler = ProfileScheduler()
    fused = fusion()
    for stamp in (100.0, 100.2, 100.4, 101.4):
        assert scheduler.due(3, stamp, fused.current(3)) != NOT_DUE
        scheduler.profiled(3, stamp)
        fused.update(3, stamp, confident())
    assert scheduler.due(3, 101.5, fused.current(3)) == NOT_DUE
    assert scheduler.due(3, 5.0, fused.current(3)) == REFRESH  # a bag replayed from the start
    scheduler.forget(3)
    assert scheduler.due(3, 101.5, fused.current(3)) == NEW


def test_skipped_crops_keep_a_settled_profile_alive():
    fused = ProfileFusion(FusionConfig(expiry_s=2.0), supported=labels.ATTRIBUTES)
    scheduler = ProfileScheduler(ScheduleConfig(refresh_hz=0.1))  # one refresh per 10 s
    run(scheduler, fused, confident(), seconds=8.0)
    assert fused.expire(now=8.0) == []  # seen until 7.93 s though last profiled long before
    assert fused.current(7).observations == 3  # 0, 0.2 and 0.4 s; the refresh is due at 10.4 s
    assert fused.expire(now=10.0) == [7] and fused.current(7) is None
    fused.touch(7, 11.0)  # touching an unknown track creates nothing
    assert fused.current(7) is None


def real_crop(photo, head) -> np.ndarray:
    return face_patch(photo(), head, 224)


@pytest.mark.parametrize("photo, head", [(astronaut, ASTRONAUT_HEAD), (grace_hopper, HOPPER_HEAD)])
def test_sharpness_passes_real_faces_and_gates_blurred_ones(photo, head):
    config = ScheduleConfig()
    crop = real_crop(photo, head)
    assert sharpness(crop) > 5 * config.min_sharpness
    # the same face 30 px wide, upscaled to the crop size: soft but not blurred
    tiny = cv2.resize(cv2.resize(crop, (30, 30), interpolation=cv2.INTER_AREA), (224, 224))
    assert sharpness(tiny) > 2 * config.min_sharpness
    blurred = cv2.GaussianBlur(crop, (0, 0), 8)
    assert sharpness(blurred) < config.min_sharpness
    assert quality_problem(config, 100.0, FRONTAL, 0.0, blurred) == BLURRED
    assert quality_problem(config, 100.0, FRONTAL, 0.0, crop) is None


def test_turn_ratio_from_landmarks_ignores_roll():
    assert turn_ratio(FRONTAL) == pytest.approx(0.0)
    turned = FRONTAL.copy()
    turned[2, 0] += 24  # nose 0.6 inter-eye distances off the midline
    assert turn_ratio(turned) == pytest.approx(0.6)
    angle = math.radians(35)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    assert turn_ratio(turned @ rotation.T.astype(np.float32)) == pytest.approx(0.6, abs=1e-5)
    missing = FRONTAL.copy()
    missing[2] = np.nan
    assert math.isnan(turn_ratio(missing))
    assert math.isnan(turn_ratio(np.zeros((0, 2), np.float32)))


def test_quality_gate_reasons_in_order_and_unknowns_pass():
    config = ScheduleConfig(min_face_px=40.0, max_turn=0.5, max_roll_deg=60.0)
    turned = FRONTAL.copy()
    turned[2, 0] += 24
    assert quality_problem(config, 39.0, turned, 0.0) == TOO_SMALL
    assert quality_problem(config, 80.0, turned, 0.0) == TURNED_AWAY
    assert quality_problem(config, 80.0, FRONTAL, 90.0) == TURNED_AWAY
    assert quality_problem(config, 80.0, FRONTAL, -30.0) is None
    no_points = np.full((6, 2), np.nan, np.float32)
    assert quality_problem(config, math.nan, no_points, 0.0) is None


def test_config_rejects_rates_that_would_never_profile():
    with pytest.raises(ValueError):
        ScheduleConfig(refresh_hz=0.0)
    with pytest.raises(ValueError):
        ScheduleConfig(settle_observations=0)


def test_decide_gates_then_schedules_and_touches_skipped_tracks():
    fused = fusion()
    scheduler = ProfileScheduler()
    crop = real_crop(astronaut, ASTRONAUT_HEAD)
    blurred = cv2.GaussianBlur(crop, (0, 0), 8)
    assert scheduler.decide(4, 0.0, fused, 100.0, FRONTAL, 0.0, blurred) == BLURRED
    assert scheduler.decide(4, 0.1, fused, 20.0, FRONTAL, 0.0, crop) == TOO_SMALL
    assert scheduler.decide(4, 0.2, fused, 100.0, FRONTAL, 0.0, crop) == NEW  # first fit crop
    fused.update(4, 0.2, confident())
    assert scheduler.decide(4, 0.3, fused, 100.0, FRONTAL, 0.0, crop) == NOT_DUE
    assert fused.expire(now=5.25) == []  # touched at 0.3 s: expires 5 s after that
    assert scheduler.decide(4, 0.4, fused, 100.0, FRONTAL, 0.0, crop) == UNSETTLED
    off = ProfileScheduler(ScheduleConfig(enabled=False))
    assert off.decide(4, 0.41, fused, 1.0, FRONTAL, 170.0, blurred) == UNSETTLED
    assert off.decide(9, 0.41, fused, 1.0, FRONTAL, 170.0, blurred) == NEW


def test_known_tracks_due_together_spread_over_frames_and_new_ones_are_not_held():
    fused, scheduler = fusion(), ProfileScheduler(ScheduleConfig(max_per_frame=1))
    crop = real_crop(astronaut, ASTRONAUT_HEAD)
    per_frame = []
    for index in range(12):
        stamp = index / 15
        tracks = (1, 2, 3) if index < 9 else (1, 2, 3, 4)
        reasons = [scheduler.decide(t, stamp, fused, 100.0, FRONTAL, 0.0, crop) for t in tracks]
        for track, reason in zip(tracks, reasons, strict=False):
            if reason in (NEW, UNSETTLED, REFRESH):
                fused.update(track, stamp, confident())
        per_frame.append(reasons)
    assert per_frame[0] == [NEW, NEW, NEW]  # all at once
    # due together at 0.2 s (frame 3): one per frame, the others wait a frame each
    assert per_frame[3] == [UNSETTLED, DEFERRED, DEFERRED]
    assert per_frame[4] == [NOT_DUE, UNSETTLED, DEFERRED]
    assert per_frame[5] == [NOT_DUE, NOT_DUE, UNSETTLED]
    assert per_frame[6] == [UNSETTLED, NOT_DUE, NOT_DUE]
    assert per_frame[7] == [NOT_DUE, UNSETTLED, NOT_DUE]
    assert per_frame[8] == [NOT_DUE, NOT_DUE, UNSETTLED]  # each now settled (3 observations)
    assert per_frame[9] == [NOT_DUE, NOT_DUE, NOT_DUE, NEW]  # a newcomer is never deferred
    with pytest.raises(ValueError):
        ScheduleConfig(max_per_frame=0)
