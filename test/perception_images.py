"""Real face photos shipped in installed packages, and frames built from them."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np


@cache
def astronaut() -> np.ndarray:
    """skimage's astronaut: 512x512 RGB, one adult woman, smiling."""
    import skimage.data

    return skimage.data.astronaut()


@cache
def grace_hopper() -> np.ndarray:
    """matplotlib's Grace Hopper: 600x512 RGB, one elderly woman."""
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def face_patch(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The region (x0, y0, x1, y1) of a photo scaled to size x size."""
    x0, y0, x1, y1 = box
    return cv2.resize(image[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)


# Head-and-shoulders regions of the two photos (faces roughly centred).
ASTRONAUT_HEAD = (120, 20, 330, 230)
HOPPER_HEAD = (110, 70, 420, 380)


def moving_faces_frames(count: int = 30, size: int = 140) -> list[tuple[np.ndarray, list]]:
    """640x480 frames with two faces moving in opposite directions (a few pixels per frame).

    Returns (frame, [(x, y) top-left of each patch]) per frame.
    """
    heads = [
        face_patch(astronaut(), ASTRONAUT_HEAD, size),
        face_patch(grace_hopper(), HOPPER_HEAD, size),
    ]
    frames = []
    for i in range(count):
        frame = np.full((480, 640, 3), 90, np.uint8)
        positions = [(20 + 6 * i, 60 + 2 * i), (470 - 6 * i, 280 - 2 * i)]
        for head, (x, y) in zip(heads, positions, strict=True):
            frame[y : y + size, x : x + size] = head
        frames.append((frame, positions))
    return frames
