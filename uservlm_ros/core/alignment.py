"""Aligned face crops: the face rotated so the eyes are level, square, with a margin around it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from uservlm_ros.core.faces import LEFT_EYE, RIGHT_EYE, Detection


@dataclass(frozen=True)
class AlignedCrop:
    image: np.ndarray  # (size, size, 3) uint8 RGB
    roll_deg: float  # in-plane rotation removed, degrees, -180..180
    transform: np.ndarray  # (2, 3) affine map from frame pixels to crop pixels


def roll_degrees(detection: Detection) -> float:
    """The face's in-plane rotation from its eye landmarks; 0 without eyes."""
    if not detection.has_eyes():
        return 0.0
    (rx, ry), (lx, ly) = detection.landmarks[RIGHT_EYE], detection.landmarks[LEFT_EYE]
    return math.degrees(math.atan2(float(ly - ry), float(lx - rx)))


def align_face(
    rgb: np.ndarray, detection: Detection, size: int = 224, margin: float = 0.2
) -> AlignedCrop:
    """Crop the face around its box centre, rotated upright, the box's larger side plus `margin`
    of it on each side scaled to `size` pixels (pixels outside the frame are black)."""
    if size < 8:
        raise ValueError(f"crop size {size} is too small")
    roll = roll_degrees(detection)
    box = detection.box
    side = max(box.width, box.height) * (1.0 + 2.0 * margin)
    # Rotating by +roll about the box centre levels the eyes (image y points down).
    transform = cv2.getRotationMatrix2D(box.centre, roll, size / side)
    transform[0, 2] += size / 2 - box.centre[0]
    transform[1, 2] += size / 2 - box.centre[1]
    crop = cv2.warpAffine(
        rgb,
        transform,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return AlignedCrop(image=crop, roll_deg=roll, transform=transform)


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine map to (n, 2) points."""
    return points @ transform[:, :2].T + transform[:, 2]
