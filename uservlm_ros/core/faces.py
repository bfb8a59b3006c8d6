"""Face detections and boxes: the data passed from a detector to the tracker and the aligner."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Landmark order of uservlm/Face (BlazeFace's): right eye, left eye, nose tip, mouth, right ear,
# left ear. "Right" is the subject's right, i.e. image left for a frontal face.
RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH, RIGHT_EAR, LEFT_EAR = range(6)
NUM_LANDMARKS = 6


def no_landmarks() -> np.ndarray:
    return np.full((NUM_LANDMARKS, 2), np.nan, dtype=np.float32)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels, xmin < xmax and ymin < ymax."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    def __post_init__(self) -> None:
        values = (self.xmin, self.ymin, self.xmax, self.ymax)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"box with a non-finite coordinate: {values}")
        if self.xmax <= self.xmin or self.ymax <= self.ymin:
            raise ValueError(f"empty box: {values}")

    @classmethod
    def from_centre(cls, cx: float, cy: float, width: float, height: float) -> Box:
        return cls(cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin

    @property
    def centre(self) -> tuple[float, float]:
        return (self.xmin + self.xmax) / 2, (self.ymin + self.ymax) / 2

    @property
    def area(self) -> float:
        return self.width * self.height

    def clamped(self, width: int, height: int) -> Box | None:
        """The part of the box inside a width x height image, or None if nothing is."""
        xmin, ymin = max(self.xmin, 0.0), max(self.ymin, 0.0)
        xmax, ymax = min(self.xmax, float(width)), min(self.ymax, float(height))
        if xmax <= xmin or ymax <= ymin:
            return None
        return Box(xmin, ymin, xmax, ymax)

    def shifted(self, dx: float, dy: float) -> Box:
        return Box(self.xmin + dx, self.ymin + dy, self.xmax + dx, self.ymax + dy)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, 0..1."""
    width = min(a.xmax, b.xmax) - max(a.xmin, b.xmin)
    height = min(a.ymax, b.ymax) - max(a.ymin, b.ymin)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (a.area + b.area - inter)


@dataclass(frozen=True)
class Detection:
    """One face found by a detector: box and landmarks in pixels of the frame, score 0..1."""

    box: Box
    score: float
    landmarks: np.ndarray = field(default_factory=no_landmarks)  # (6, 2), NaN = no such point

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"detection score {self.score} outside 0..1")
        if self.landmarks.shape != (NUM_LANDMARKS, 2):
            raise ValueError(f"landmarks must be ({NUM_LANDMARKS}, 2), got {self.landmarks.shape}")

    def has_eyes(self) -> bool:
        return bool(np.isfinite(self.landmarks[[RIGHT_EYE, LEFT_EYE]]).all())
