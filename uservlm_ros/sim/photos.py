"""Real face photos shipped in installed packages, and camera-like frames built from them.

For tests, benchmarks and the demo where no camera is at hand (skimage and matplotlib ship them).
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

# Head-and-shoulders regions (x0, y0, x1, y1) of the two photos, faces roughly centred.
ASTRONAUT_HEAD = (120, 20, 330, 230)
HOPPER_HEAD = (110, 70, 420, 380)


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


def heads(size: int) -> list[np.ndarray]:
    """The two head patches, size x size each (mirrored copies give more people)."""
    return [
        face_patch(astronaut(), ASTRONAUT_HEAD, size),
        face_patch(grace_hopper(), HOPPER_HEAD, size),
    ]


def frame_with_faces(count: int, size: int = 150, shape=(480, 640)) -> np.ndarray:
    """A frame with 1-3 real faces side by side on a grey background."""
    people = [*heads(size), heads(size)[0][:, ::-1]][:count]
    frame = np.full((*shape, 3), 90, np.uint8)
    gap = (shape[1] - count * size) // (count + 1)
    for index, head in enumerate(people):
        x = gap + index * (size + gap)
        y = (shape[0] - size) // 2
        frame[y : y + size, x : x + size] = head
    return frame


def moving_faces_frames(count: int = 30, size: int = 140) -> list[tuple[np.ndarray, list]]:
    """640x480 frames with two faces moving in opposite directions (a few pixels per frame).

    Returns (frame, [(x, y) top-left of each patch]) per frame.
    """
    patches = heads(size)
    frames = []
    for i in range(count):
        frame = np.full((480, 640, 3), 90, np.uint8)
        positions = [(20 + 6 * i, 60 + 2 * i), (470 - 6 * i, 280 - 2 * i)]
        for head, (x, y) in zip(patches, positions, strict=True):
            frame[y : y + size, x : x + size] = head
        frames.append((frame, positions))
    return frames


def frame_with_people(placements: list[tuple[int, int, int, int]], shape=(480, 640)) -> np.ndarray:
    """A frame with real faces where you want them: (person 0/1, size, x, y) per face, the
    head patch's top-left at (x, y); a bigger patch reads as a nearer person."""
    frame = np.full((*shape, 3), 90, np.uint8)
    for person, size, x, y in placements:
        head = heads(size)[person]
        frame[y : y + size, x : x + size] = head
    return frame


def face_crops(size: int = 224, lfw_faces: int = 40) -> list[np.ndarray]:
    """Real face crops, size x size RGB, for calibrating and checking models: the two photos'
    heads (as cut, zoomed in, shifted and mirrored) and the first `lfw_faces` faces of
    skimage's lfw_subset (25x25 grey Labeled Faces in the Wild crops, upscaled)."""
    import skimage.data

    crops = []
    for photo, (x0, y0, x1, y1) in ((astronaut(), ASTRONAUT_HEAD), (grace_hopper(), HOPPER_HEAD)):
        side = x1 - x0
        for box in (
            (x0, y0, x1, y1),
            (x0 + side // 8, y0 + side // 8, x1 - side // 8, y1 - side // 8),
            (x0 + side // 10, y0, x1 + side // 10, y1),
        ):
            crop = face_patch(photo, box, size)
            crops += [crop, np.ascontiguousarray(crop[:, ::-1])]
    faces = skimage.data.lfw_subset()[: min(lfw_faces, 100)]  # the first 100 are faces
    for face in faces:
        grey = cv2.resize(
            (face * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC
        )
        crops.append(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))
    return crops
