"""A short camera sequence with real faces, built from photos that ship inside packages.

Two people: the astronaut of `skimage.data.astronaut()` (Eileen Collins, 1992) and Grace Hopper
(matplotlib's `grace_hopper.jpg`, 1984). Each portrait is scaled and moved across a 640x480 frame;
the second person walks in a third of the way through. The face boxes and attributes are hand
annotations of the source photos, carried into frame coordinates, so the sequence doubles as
labelled evaluation data.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Portrait:
    name: str
    face_box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in the source photo
    attributes: dict[str, str]  # ground truth: age_group, gender, ethnicity, emotion


PORTRAITS = {
    "astronaut": Portrait(
        "astronaut",
        (178, 68, 280, 178),
        {"age_group": "30-39", "gender": "Female", "ethnicity": "White", "emotion": "happy"},
    ),
    "grace_hopper": Portrait(
        "grace_hopper",
        (170, 125, 370, 330),
        {"age_group": "70+", "gender": "Female", "ethnicity": "White", "emotion": "neutral"},
    ),
}


def load_photo(name: str) -> np.ndarray:
    """The source photo as (h, w, 3) uint8 RGB."""
    from uservlm_ros.sim import photos

    return {"astronaut": photos.astronaut, "grace_hopper": photos.grace_hopper}[name]()


@dataclass(frozen=True)
class SceneFace:
    person: str
    box: tuple[float, float, float, float]  # in frame pixels
    attributes: dict[str, str]


@dataclass(frozen=True)
class Frame:
    index: int
    rgb: np.ndarray
    faces: list[SceneFace]


# (person, scale, x at start, x at end, y, first frame as a fraction of the sequence)
_CAST = (
    ("astronaut", 0.62, 10, 60, 60, 0.0),
    ("grace_hopper", 0.52, 390, 330, 80, 1 / 3),
)


def _background(width: int, height: int) -> np.ndarray:
    ramp = np.linspace(90, 170, width, dtype=np.float32)
    rows = np.linspace(0.85, 1.0, height, dtype=np.float32)[:, None]
    grey = (ramp[None, :] * rows).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def make_scene(frames: int = 45, width: int = 640, height: int = 480) -> list[Frame]:
    """The labelled sequence, deterministic."""
    photos = {name: load_photo(name) for name in PORTRAITS}
    scene = []
    for index in range(frames):
        t = index / max(frames - 1, 1)
        canvas = _background(width, height)
        faces = []
        for person, scale, x0, x1, y, first in _CAST:
            if t < first:
                continue
            photo = cv2.resize(
                photos[person], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
            )
            x = round(x0 + (x1 - x0) * t)
            h = min(photo.shape[0], height - y)
            w = min(photo.shape[1], width - x)
            canvas[y : y + h, x : x + w] = photo[:h, :w]
            box = PORTRAITS[person].face_box
            faces.append(
                SceneFace(
                    person,
                    (
                        x + box[0] * scale,
                        y + box[1] * scale,
                        x + box[2] * scale,
                        y + box[3] * scale,
                    ),
                    dict(PORTRAITS[person].attributes),
                )
            )
        scene.append(Frame(index, canvas, faces))
    return scene


def scene_labels(scene: list[Frame], every: int = 1):
    """Ground truth of the sequence in `uservlm eval`'s labels format (every n-th frame)."""
    from uservlm_ros.core.faces import Box
    from uservlm_ros.eval.labels_file import LabelledFace, Labels

    return Labels(
        frames={
            frame.index: [
                LabelledFace(Box(*face.box), dict(face.attributes), face.person)
                for face in frame.faces
            ]
            for frame in scene[::every]
        }
    )
