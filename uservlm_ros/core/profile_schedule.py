"""Which face crops are worth profiling: a per-track schedule and a quality gate.

Profiling every crop of every frame spends most of the profiler's CPU on people whose profile
settled long ago. The schedule profiles a new track at once, an unsettled one (too few
observations, or an attribute still below its confidence threshold) at `unsettled_hz`, and a
settled one only at `refresh_hz` (emotion still follows, slowly). A crop that passes the
schedule must also pass the quality gate: a face too small, blurred or turned away would only
add noise to the fused profile. Skipped crops are counted by reason; they still keep the
track alive (the node touches the fusion) so a settled profile does not expire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from uservlm_ros.core.fusion import LOW_CONFIDENCE, FusedProfile, ProfileFusion
from uservlm_ros.core.parameters import setting

# Why a crop was or was not profiled (diagnostic counter names: `crops_<reason>`).
NEW = "new_track"  # first crop of a track: profiled at once
UNSETTLED = "unsettled"  # the fused profile is not yet confident
REFRESH = "refresh"  # a settled profile's periodic refresh
NOT_DUE = "not_due"  # skipped: profiled recently enough
DEFERRED = "deferred"  # skipped: due, but this frame's budget of known tracks is spent
TOO_SMALL = "too_small"  # skipped: face box smaller than min_face_px
BLURRED = "blurred"  # skipped: variance of the Laplacian below min_sharpness
TURNED_AWAY = "turned_away"  # skipped: nose far off the eyes' midline, or rolled over
PROFILED = (NEW, UNSETTLED, REFRESH)
SKIPPED = (NOT_DUE, DEFERRED, TOO_SMALL, BLURRED, TURNED_AWAY)

# The Laplacian is measured on the crop scaled to this side: detail finer than a face of this
# size says nothing about identity attributes, and a fixed size makes the threshold comparable
# between crop_size settings (and cheap: ~0.1 ms).
SHARPNESS_SIDE = 64
# BlazeFace landmark order (uservlm/Face LANDMARK_*).
RIGHT_EYE, LEFT_EYE, NOSE = 0, 1, 2


@dataclass(frozen=True)
class ScheduleConfig:
    enabled: bool = setting(True, name="schedule", live=True)
    """Profile only crops that help (new tracks at once, unsettled ones at
    `profile.unsettled_hz`, settled ones at `profile.refresh_hz`, quality gate); false
    profiles every crop of every frame"""
    refresh_hz: float = setting(1.0, min=0.01, max=1000.0, live=True)
    """Profiles per second of a settled track (enough crops fused, every attribute above its
    threshold)"""
    unsettled_hz: float = setting(5.0, min=0.01, max=1000.0, live=True)
    """Profiles per second of a track whose profile has not settled yet"""
    settle_observations: int = setting(3, min=1, max=1000, live=True)
    """Crops fused before a track's profile can count as settled"""
    # Tracks that became due together (they appeared together) spread over the next frames, so
    # a frame's profile stage holds one crop instead of all of them.
    max_per_frame: int = setting(1, min=1, max=100, live=True)
    """Crops of known tracks (unsettled or refresh) profiled per frame at most; due ones wait for
    the next frame, so refreshes spread out (new tracks: no limit)"""
    # A 40 px face is ~1.5 m from Pepper's 640x480 camera; smaller ones are upscaled >5x for the
    # profiler's 224 px input and their attributes are guesses.
    min_face_px: float = setting(40.0, min=0.0, max=4096.0, live=True)
    """Quality gate: faces with a smaller box side (source pixels) are not profiled"""
    # Variance of the Laplacian at SHARPNESS_SIDE px: the package's sharp face photos score
    # 340-5000 (faces of 26-213 px); a Gaussian blur of sigma 6 px on a 224 px crop (strong
    # motion blur, defocus) brings them to 40-55, sigma 4 to 85-195.
    min_sharpness: float = setting(60.0, min=0.0, max=1e6, live=True)
    """Quality gate: crops with a lower variance of the Laplacian (at 64 px; sharp faces score
    300-5000) are not profiled as blurred"""
    # Nose offset from the eyes' midline, in inter-eye distances: with the nose tip ~half an
    # inter-eye distance in front of the eyes, ~0.3 at 30 degrees of yaw, 0.5 at 45, 0.9 at 60
    # where the far half of the face is hidden.
    max_turn: float = setting(0.5, min=0.0, max=100.0, live=True)
    """Quality gate: nose offset from the eyes' midline in inter-eye distances (0.5 ~ 45 degrees
    of yaw); more is turned away and not profiled"""
    # Lying down or upside down: the attribute models never saw it.
    max_roll_deg: float = setting(60.0, min=0.0, max=180.0, live=True)
    """Quality gate: faces rolled further (lying, upside down) are not profiled"""

    def __post_init__(self) -> None:
        if self.refresh_hz <= 0 or self.unsettled_hz <= 0:
            raise ValueError("refresh_hz and unsettled_hz must be > 0")
        if self.settle_observations < 1 or self.max_per_frame < 1:
            raise ValueError("settle_observations and max_per_frame must be >= 1")


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the crop's grey image at SHARPNESS_SIDE px (higher: sharper)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(small, cv2.CV_32F).var())


def turn_ratio(landmarks: np.ndarray) -> float:
    """|offset of the nose tip from the eyes' midline| / inter-eye distance (0 = frontal), from
    (n, 2) pixel landmarks in BlazeFace order; NaN when the eyes or nose are missing."""
    if landmarks.shape[0] <= NOSE or not np.isfinite(landmarks[: NOSE + 1]).all():
        return math.nan
    right, left, nose = landmarks[RIGHT_EYE], landmarks[LEFT_EYE], landmarks[NOSE]
    axis = left - right
    distance = float(np.hypot(*axis))
    if distance < 1e-6:
        return math.nan
    # Project onto the eye axis: roll does not change the ratio.
    return abs(float(np.dot(nose - (left + right) / 2, axis))) / distance**2


def quality_problem(
    config: ScheduleConfig,
    face_px: float,
    landmarks: np.ndarray,
    roll_deg: float,
    crop: np.ndarray | None = None,
) -> str | None:
    """The reason to skip this crop (TOO_SMALL, TURNED_AWAY, BLURRED), or None if it is fit.

    Checks run cheapest first; `crop` (RGB) is only needed for the sharpness check. What is
    unknown (size NaN, landmarks missing) is not held against the crop.
    """
    if face_px < config.min_face_px:  # NaN (size unknown) passes
        return TOO_SMALL
    turn = turn_ratio(landmarks)
    if (math.isfinite(turn) and turn > config.max_turn) or abs(roll_deg) > config.max_roll_deg:
        return TURNED_AWAY
    if crop is not None and sharpness(crop) < config.min_sharpness:
        return BLURRED
    return None


def is_settled(profile: FusedProfile | None, min_observations: int) -> bool:
    """Enough crops fused and no attribute still below its confidence threshold."""
    return (
        profile is not None
        and profile.observations >= min_observations
        and all(a.abstain_reason != LOW_CONFIDENCE for a in profile.attributes.values())
    )


class ProfileScheduler:
    """Per track: when it was last profiled (camera time), and whether this crop is due."""

    def __init__(self, config: ScheduleConfig | None = None) -> None:
        self.config = config or ScheduleConfig()
        self._last: dict[int, float] = {}  # track id -> camera stamp of its latest profile
        self._frame: tuple[float, int] = (float("nan"), 0)  # (stamp, known tracks profiled)

    def due(self, track_id: int, stamp: float, profile: FusedProfile | None) -> str:
        """NEW, UNSETTLED or REFRESH when this track's crop at `stamp` should be profiled (if
        it passes the quality gate), else NOT_DUE. `profile` is its fused profile, if any."""
        config = self.config
        last = self._last.get(track_id)
        if last is None or profile is None or not config.enabled:
            return NEW if last is None or profile is None else UNSETTLED
        settled = is_settled(profile, config.settle_observations)
        rate = config.refresh_hz if settled else config.unsettled_hz
        # Stamps going back (a replayed bag restarting) make the crop due rather than stuck.
        if stamp < last or stamp - last >= 1.0 / rate - 1e-6:
            return REFRESH if settled else UNSETTLED
        return NOT_DUE

    def decide(
        self,
        track_id: int,
        stamp: float,
        fusion: ProfileFusion,
        face_px: float,
        landmarks: np.ndarray,
        roll_deg: float,
        crop: np.ndarray,
    ) -> str:
        """Schedule and gate one crop: returns a PROFILED reason (the caller profiles it and
        fuses the estimate; the track counts as profiled at `stamp`) or a SKIPPED one (the
        track is touched in `fusion` so its profile stays alive). Crops of one frame share its
        camera stamp, which counts them against `max_per_frame`."""
        if not self.config.enabled:
            return NEW if fusion.current(track_id) is None else UNSETTLED
        reason = self.due(track_id, stamp, fusion.current(track_id))
        if reason in PROFILED:
            reason = quality_problem(self.config, face_px, landmarks, roll_deg, crop) or reason
        if reason in (UNSETTLED, REFRESH):
            frame, used = self._frame if self._frame[0] == stamp else (stamp, 0)
            if used >= self.config.max_per_frame:
                reason = DEFERRED  # due again on the next frame
            self._frame = (frame, used + (reason != DEFERRED))
        if reason in PROFILED:
            self.profiled(track_id, stamp)
        else:
            fusion.touch(track_id, stamp)
        return reason

    def profiled(self, track_id: int, stamp: float) -> None:
        self._last[track_id] = stamp

    def forget(self, track_id: int) -> None:
        self._last.pop(track_id, None)
