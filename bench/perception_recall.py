"""Perception benchmark 5: face detection recall by face width, false positives.

    .venv/bin/python bench/perception_recall.py

Group scenes built from the package photos (640x480 and 1280x720): recall per face width for
each detector setting against the detector on the whole frame (the default), false positives on
face-free images and ms per frame.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from perception_common import banner, percentile


def group_scene(face_px: int, shape=(720, 1280), seed: int = 0) -> tuple[np.ndarray, list]:
    """A group photo built from the package photos: as many heads as fit (astronaut, Hopper and
    mirrored copies) with faces about `face_px` wide, on one of skimage's face-free photos;
    returns (frame, [(x0, y0, x1, y1) of each face])."""
    import skimage.data

    from uservlm_ros.sim.photos import heads

    rng = np.random.default_rng(seed)
    background = [skimage.data.coffee(), skimage.data.rocket(), skimage.data.coins()][seed % 3]
    if background.ndim == 2:
        background = np.stack([background] * 3, axis=-1)
    frame = cv2.resize(background, shape[::-1], interpolation=cv2.INTER_AREA)
    side = face_px * 2  # the head patches hold the face in about their central half
    people = [*heads(side), *(h[:, ::-1] for h in heads(side))]
    faces, gap = [], max(side // 4, 4)
    for y in range(gap, shape[0] - side, side + gap):
        for x in range(gap, shape[1] - side, side + gap):
            dx, dy = rng.integers(0, gap // 2 + 1, 2)
            x0, y0 = x + dx, y + dy
            frame[y0 : y0 + side, x0 : x0 + side] = people[len(faces) % len(people)]
            faces.append((x0 + side / 4, y0 + side / 4, x0 + 3 * side / 4, y0 + 3 * side / 4))
            if len(faces) >= 40:
                return frame, faces
    return frame, faces


def face_free_images() -> list[np.ndarray]:
    """skimage photos without faces, and a mosaic of lfw_subset's 100 non-face patches."""
    import skimage.data

    images = [skimage.data.coffee(), skimage.data.rocket(), skimage.data.chelsea()]
    images += [np.stack([skimage.data.coins()] * 3, -1), skimage.data.immunohistochemistry()]
    patches = (skimage.data.lfw_subset()[100:] * 255).astype(np.uint8)
    tiles = [cv2.resize(p, (64, 64), interpolation=cv2.INTER_CUBIC) for p in patches]
    mosaic = np.vstack([np.hstack(tiles[row * 10 : row * 10 + 10]) for row in range(10)])
    return [*images, np.stack([mosaic] * 3, -1)]


# Detector settings compared: (label, DetectorOptions keyword arguments).
DETECTOR_VARIANTS = (
    ("default (whole frame)", {}),
    ("min_confidence 0.5", {"min_confidence": 0.5}),
    ("tiles 2", {"tiles": 2}),
    ("tiles 3", {"tiles": 3}),
)
RECALL_SIZES = (24, 32, 48, 64, 96)


def bench_recall(shape: tuple[int, int]) -> None:
    """Detection recall by face size on group scenes, false positives on face-free images."""
    from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions

    scenes = {size: [group_scene(size, shape, seed) for seed in range(2)] for size in RECALL_SIZES}
    clean = face_free_images()
    print(
        f"\n5. detection recall by face width on {shape[1]}x{shape[0]} group scenes (package "
        f"photos on face-free backgrounds); false positives on {len(clean)} face-free images\n"
    )
    print(
        "| detector            | "
        + " | ".join(f"{s:>3} px" for s in RECALL_SIZES)
        + " | FP | ms/frame |"
    )
    print(f"|{'-' * 21}|" + "|".join("-" * 8 for _ in RECALL_SIZES) + "|----|----------|")
    for label, kwargs in DETECTOR_VARIANTS:
        detector = DETECTORS.create("blazeface_full", DetectorOptions(**kwargs))
        cells, times = [], []
        for size in RECALL_SIZES:
            found = total = 0
            for frame, faces in scenes[size]:
                start = time.perf_counter()
                detections = detector.detect(frame)
                times.append((time.perf_counter() - start) * 1e3)
                total += len(faces)
                found += sum(any(_matches(d.box, face) for d in detections) for face in faces)
            cells.append(f"{found / total:6.2f}")
        false = sum(len(detector.detect(image)) for image in clean)
        print(
            f"| {label:<19} | " + " | ".join(cells) + f" | {false:2d} | "
            f"{percentile(times, 50):8.1f} |"
        )
    counts = ", ".join(f"{s} px: {len(scenes[s][0][1])}" for s in RECALL_SIZES)
    print(f"\nfaces per scene (2 scenes per size): {counts}")


def _matches(box, face: tuple[float, float, float, float]) -> bool:
    """A detection counts for a face if its centre lies in the face and its width is within
    half to twice the face's."""
    cx, cy = box.centre
    x0, y0, x1, y1 = face
    return x0 <= cx <= x1 and y0 <= cy <= y1 and 0.5 <= box.width / (x1 - x0) <= 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=("480x640", "720x1280"),
        default=["480x640", "720x1280"],
        help="frame heights x widths",
    )
    args = parser.parse_args(argv)
    banner("perception recall benchmark")
    for shape in args.shapes:
        height, width = (int(v) for v in shape.split("x"))
        bench_recall((height, width))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
