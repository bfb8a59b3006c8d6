"""Scenes for calibrating engagement (core/engagement.py) on real face detections.

A package photo's head (sim/photos.py) is pasted into a 640x480 camera frame so that BlazeFace's
face box has the height a face at a given distance would have (pinhole camera with Pepper's
vertical field of view, the same model as engagement.distance_m), at a given horizontal position,
frontal or with a synthetic head turn. The frame goes through the project's face detector and
the detection's box and landmarks are fed to an EngagementEstimator at the camera's rate.

The head turn: a turned head shows the face's near half wider and its far half narrower, and
the nose (in front of the face plane) moves sideways more than the eyes. `turn_head` imitates
this by stretching the patch on one side of the nose and compressing it on the other (a
piecewise-linear horizontal warp); a shift of `amount` patch widths moves the nose by about
`amount` eye distances from the eyes' midpoint. BlazeFace reads 0.2 as a head turned about 30
degrees and 0.3 as about 45 degrees (nose offset 0.2-0.3, ear asymmetry 0.5-0.7); from 0.4 on it
mostly finds no face at all, as with a profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions
from uservlm_ros.core.alignment import roll_degrees
from uservlm_ros.core.engagement import (
    FACE_HEIGHT_M,
    STATE_NAMES,
    Cues,
    EngagementConfig,
    EngagementEstimator,
    FaceObservation,
)
from uservlm_ros.sim.photos import heads

WIDTH, HEIGHT = 640, 480
PERSONS = ("astronaut", "hopper")
# Where the face centre is, as a fraction of the image width: "edge" puts the face box against
# the frame's left border (a person beside the robot, at the edge of its view).
POSITIONS = {"centre": 0.5, "off-centre": 0.3, "edge": None}
# Head turns (`turn_head` amounts): frontal, looking aside (~30 degrees), turned away (~45).
POSES = {"frontal": 0.0, "aside": 0.2, "away": 0.3}
# Faces sit in the upper half of the frame, as standing adults seen by Pepper's head camera.
FACE_CENTRE_Y = 0.4
# The size at which each photo's face-box-to-patch ratio is measured.
REFERENCE_PATCH = 300


@dataclass(frozen=True)
class Case:
    person: int  # 0 astronaut, 1 Grace Hopper
    distance_m: float
    position: str  # a POSITIONS key
    pose: str  # a POSES key


@dataclass(frozen=True)
class Result:
    case: Case
    face_px: float  # detected face box height, pixels (0 = not detected)
    cues: Cues | None  # of the last frame
    score_2s: float
    state_2s: str
    score_10s: float
    state_10s: str
    engaged_after_s: float | None  # first time ENGAGED, camera seconds; None = never


@cache
def detector():
    return DETECTORS.create("blazeface_full", DetectorOptions())


def face_height_px(distance_m: float, config: EngagementConfig) -> float:
    """Face box height of a face at `distance_m` (engagement.distance_m inverted)."""
    visible = 2.0 * math.tan(math.radians(config.camera_vfov_deg) / 2.0) * distance_m
    return HEIGHT * FACE_HEIGHT_M / visible


def turn_head(patch: np.ndarray, amount: float, nose_x: float) -> np.ndarray:
    """The patch with the nose at `nose_x` (pixels) moved right by `amount` patch widths: the
    left part stretched, the right part compressed (see the module doc)."""
    if amount == 0.0:
        return patch
    height, width = patch.shape[:2]
    moved = min(nose_x + amount * width, width - 2.0)
    x = np.arange(width, dtype=np.float32)
    source = np.where(
        x < moved,
        x * nose_x / moved,
        nose_x + (x - moved) * (width - 1 - nose_x) / (width - 1 - moved),
    ).astype(np.float32)
    map_x = np.tile(source, (height, 1))
    map_y = np.tile(np.arange(height, dtype=np.float32)[:, None], (1, width))
    return cv2.remap(patch, map_x, map_y, cv2.INTER_LINEAR)


@cache
def _reference(person: int) -> tuple[float, float, float, float, float]:
    """The face box (x0, y0, x1, y1) of a photo's head patch and its nose x, as fractions of
    the patch, from a detection at REFERENCE_PATCH pixels."""
    patch = heads(REFERENCE_PATCH)[person]
    frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    frame[:REFERENCE_PATCH, :REFERENCE_PATCH] = patch
    face = max(detector().detect(frame), key=lambda d: d.score)
    box = face.box
    return (
        box.xmin / REFERENCE_PATCH,
        box.ymin / REFERENCE_PATCH,
        box.xmax / REFERENCE_PATCH,
        box.ymax / REFERENCE_PATCH,
        float(face.landmarks[2][0]) / REFERENCE_PATCH,
    )


@cache
def _patch_size(person: int, face_px: float) -> int:
    """The head patch size whose frontal face box is `face_px` high: from the reference ratio,
    corrected once by a detection (BlazeFace's box is relatively smaller on small faces)."""
    _, y0, _, y1, _ = _reference(person)
    size = round(face_px / (y1 - y0))
    face = observe(_paste(heads(size)[person], size, person, 0.5))
    if face is not None:
        size = round(size * face_px / ((face.roi[3] - face.roi[1]) * HEIGHT))
    return size


def _paste(patch: np.ndarray, size: int, person: int, centre: float | None) -> np.ndarray:
    """A frame with the patch placed so that its face centre is at `centre` of the width (None:
    the face box's left side on the frame's border), clipped to the frame."""
    x0, y0, x1, y1, _ = _reference(person)
    left = -round(x0 * size) if centre is None else round(centre * WIDTH - (x0 + x1) / 2 * size)
    top = round(FACE_CENTRE_Y * HEIGHT - (y0 + y1) / 2 * size)
    frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    fx0, fy0 = max(left, 0), max(top, 0)
    fx1, fy1 = min(left + size, WIDTH), min(top + size, HEIGHT)
    frame[fy0:fy1, fx0:fx1] = patch[fy0 - top : fy1 - top, fx0 - left : fx1 - left]
    return frame


def frame_of(case: Case, config: EngagementConfig) -> np.ndarray:
    """The camera frame of a case: grey background, the person's head pasted so that the face
    box has the height of the case's distance, at the case's position, turned by its pose."""
    size = _patch_size(case.person, round(face_height_px(case.distance_m, config), 1))
    nose = _reference(case.person)[4]
    patch = turn_head(heads(size)[case.person], POSES[case.pose], nose * size)
    return _paste(patch, size, case.person, POSITIONS[case.position])


def observe(frame: np.ndarray, track_id: int = 1) -> FaceObservation | None:
    """The most confident face BlazeFace finds in a frame, as the estimator gets it."""
    found = detector().detect(frame)
    if not found:
        return None
    face = max(found, key=lambda d: d.score)
    box = face.box
    roi = (box.xmin / WIDTH, box.ymin / HEIGHT, box.xmax / WIDTH, box.ymax / HEIGHT)
    return FaceObservation(track_id, roi, face.landmarks, roll_degrees(face))


def run_case(case: Case, config: EngagementConfig, seconds: float = 10.0, fps: float = 15.0):
    """Detect the case's face once (a still scene) and feed it for `seconds` at `fps`."""
    face = observe(frame_of(case, config))
    estimator = EngagementEstimator(config)
    at: dict[float, tuple[float, str]] = {}
    engaged_after = None
    for i in range(round(seconds * fps) + 1):
        t = i / fps
        status = estimator.update(t, [face] if face is not None else []).get(1)
        score, state = (status.score, status.state_name) if status else (0.0, STATE_NAMES[0])
        if engaged_after is None and state == "engaged":
            engaged_after = t
        at[round(t, 3)] = (score, state)
    last = estimator.status(1)
    score_2s, state_2s = at[2.0]
    score_end, state_end = at[round(seconds, 3)]
    return Result(
        case=case,
        face_px=(face.roi[3] - face.roi[1]) * HEIGHT if face is not None else 0.0,
        cues=last.cues if last is not None else None,
        score_2s=score_2s,
        state_2s=state_2s,
        score_10s=score_end,
        state_10s=state_end,
        engaged_after_s=engaged_after,
    )


def calibration_cases(quick: bool = False) -> list[Case]:
    """Distances frontal at the centre, positions and poses at conversation distances."""
    distances = (1.0, 1.5, 3.0) if quick else (0.8, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5)
    # 0.87 m: a face box 150 px high, the reported case (left of centre, never engaged before).
    near = (0.87,) if quick else (0.87, 1.0, 1.5)
    cases = []
    for person in range(len(PERSONS)):
        cases += [Case(person, d, "centre", "frontal") for d in distances]
        cases += [Case(person, d, p, "frontal") for d in near for p in ("off-centre", "edge")]
        cases += [Case(person, d, "centre", pose) for d in near for pose in ("aside", "away")]
    return cases
