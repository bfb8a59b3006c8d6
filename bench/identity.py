"""Face identity benchmark: calibration of the match threshold on real crops, cost per face, and
persons per real person in a scene where people leave and come back.

    .venv/bin/python bench/identity.py            # ~1 minute on 2 cores
    .venv/bin/python bench/identity.py --quick    # smoke run (the test runs this)

Tables:
1. calibration: three real people from package photos (skimage's astronaut and cameraman,
   matplotlib's Grace Hopper), each rendered into 640x480 frames as a robot sees them (face
   40..200 px wide, mirrored, blurred, darker / brighter, JPEG, rolled up to 15 degrees, anywhere
   in the frame, the detector box jittered), then the project's own pipeline (BlazeFace full,
   core/alignment.align_face, 224 px crops) and the dlib_resnet backend. Distances of every
   same-person and different-person pair (min / p5 / median / p95 / max), non-face crops'
   distance to the blank embedding, and the chosen match_distance and ambiguity_margin.
2. cost: embedding ms per face (p50 / p95, one thread), ratio against the attribute profiler's
   ms per crop on the same crops.
3. persons per real person: a scripted scene where people leave and come back, tracked and
   identified through core/persons.PersonRegistry with the chosen values.
Embeddings are never printed: only distances and counts.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FRAME_W, FRAME_H = 640, 480
FACE_SIZES = (40, 60, 90, 130, 200)  # face box width in the frame, pixels
# Choice of the thresholds (see choose_thresholds): the match distance stays this far below the
# closest different-person pair measured, and never above dlib's own 0.6.
SAFETY = 0.1
DLIB_THRESHOLD = 0.6
DOCUMENTED = (0.35, 0.10)  # match_distance, ambiguity_margin of docs/models.md (a full run)


@dataclass(frozen=True)
class View:
    """How one person appears in one frame."""

    face_px: int
    centre: tuple[float, float]  # face centre, fraction of the frame
    mirror: bool = False
    blur_sigma: float = 0.0
    brightness: float = 1.0
    jpeg_quality: int = 0  # 0 = not compressed
    roll_deg: float = 0.0
    jitter: tuple[float, float, float] = (0.0, 0.0, 1.0)  # box dx, dy (of its side), scale


def people() -> list[tuple[str, np.ndarray]]:
    """The real people of the package photos, RGB."""
    import skimage.data

    from uservlm_ros.sim.photos import astronaut, grace_hopper

    cameraman = cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2RGB)
    return [("astronaut", astronaut()), ("grace_hopper", grace_hopper()), ("cameraman", cameraman)]


def views(count: int, rng: np.random.Generator) -> list[View]:
    """A plain frontal view, then `count - 1` random combinations, cycling through FACE_SIZES."""
    result = [View(160, (0.5, 0.45))]
    for index in range(1, count):
        result.append(
            View(
                face_px=FACE_SIZES[index % len(FACE_SIZES)],
                centre=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.25, 0.7))),
                mirror=bool(rng.random() < 0.5),
                blur_sigma=float(rng.choice([0.0, 0.0, 1.0, 2.0])),
                brightness=float(rng.choice([0.55, 0.8, 1.0, 1.0, 1.3])),
                jpeg_quality=int(rng.choice([0, 0, 60, 30])),
                roll_deg=float(rng.uniform(-15, 15)),
                jitter=(
                    float(rng.uniform(-0.08, 0.08)),
                    float(rng.uniform(-0.08, 0.08)),
                    float(rng.uniform(0.9, 1.1)),
                ),
            )
        )
    return result


def place(frame: np.ndarray, photo: np.ndarray, face_box, view: View) -> tuple[float, float]:
    """Draw the photo's face into `frame` as `view` says; returns the face centre there."""
    from uservlm_ros.core.faces import Box

    if view.mirror:
        photo = np.ascontiguousarray(photo[:, ::-1])
        width = photo.shape[1]
        face_box = Box(width - face_box.xmax, face_box.ymin, width - face_box.xmin, face_box.ymax)
    height, width = frame.shape[:2]
    target = (view.centre[0] * width, view.centre[1] * height)
    transform = cv2.getRotationMatrix2D(
        face_box.centre, view.roll_deg, view.face_px / face_box.width
    )
    transform[:, 2] += np.subtract(target, face_box.centre)
    # Only the head and shoulders: another person may stand beside.
    mask = np.zeros(photo.shape[:2], np.uint8)
    x0, y0 = face_box.xmin - face_box.width, face_box.ymin - face_box.height
    x1, y1 = face_box.xmax + face_box.width, face_box.ymax + 2 * face_box.height
    mask[max(0, round(y0)) : round(y1), max(0, round(x0)) : round(x1)] = 1
    inside = cv2.warpAffine(mask, transform, (width, height), flags=cv2.INTER_NEAREST) > 0
    warped = cv2.warpAffine(photo, transform, (width, height), flags=cv2.INTER_AREA)
    frame[inside] = warped[inside]
    return target


def degrade(frame: np.ndarray, view: View) -> np.ndarray:
    """The camera's side of `view`: blur, exposure, JPEG."""
    if view.blur_sigma:
        frame = cv2.GaussianBlur(frame, (0, 0), view.blur_sigma)
    if view.brightness != 1.0:
        frame = np.clip(frame.astype(np.float32) * view.brightness, 0, 255).astype(np.uint8)
    if view.jpeg_quality:
        _, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, view.jpeg_quality])
        frame = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return frame


def blank_frame() -> np.ndarray:
    return np.full((FRAME_H, FRAME_W, 3), 90, np.uint8)


def crop_of(detector, frame: np.ndarray, target, view: View) -> np.ndarray | None:
    """The pipeline's aligned crop of the face detected nearest `target` (None if missed)."""
    from uservlm_ros.core.alignment import align_face
    from uservlm_ros.core.faces import Box, Detection

    found = [
        d
        for d in detector.detect(frame)
        if np.hypot(*np.subtract(d.box.centre, target)) < view.face_px / 2
    ]
    if not found:
        return None
    detection = found[0]
    dx, dy, scale = view.jitter
    box = detection.box
    jittered = Box.from_centre(
        box.centre[0] + dx * box.width,
        box.centre[1] + dy * box.height,
        box.width * scale,
        box.height * scale,
    )
    return align_face(frame, Detection(jittered, detection.score, detection.landmarks)).image


def stats_row(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name:<34} | {0:5d} | {'-':>5} | {'-':>5} | {'-':>6} | {'-':>5} | {'-':>5} |"
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return (
        f"| {name:<34} | {len(values):5d} | {min(values):5.3f} | {p5:5.3f} | {median:6.3f} "
        f"| {p95:5.3f} | {max(values):5.3f} |"
    )


def stats_header(title: str) -> None:
    print(f"\n{title}\n")
    print(f"| {'pairs':<34} | n     | min   | p5    | median | p95   | max   |")
    print(f"|{'-' * 36}|{'-' * 7}|{'-' * 7}|{'-' * 7}|{'-' * 8}|{'-' * 7}|{'-' * 7}|")


def distances(a: list[np.ndarray], b: list[np.ndarray] | None = None) -> list[float]:
    """Distances of every pair within `a`, or between `a` and `b`."""
    pairs = itertools.combinations(a, 2) if b is None else itertools.product(a, b)
    return [float(np.linalg.norm(x - y)) for x, y in pairs]


def nearest(embeddings: dict[str, list[tuple[View, np.ndarray]]]):
    """For every view: (person, view, distance to the nearest other view of the same person,
    distance to the nearest view of anyone else), as when the registry compares a face against
    everything seen before."""
    result = []
    for name, own in embeddings.items():
        others = [e for other, items in embeddings.items() if other != name for _, e in items]
        for index, (view, query) in enumerate(own):
            rest = [e for i, (_, e) in enumerate(own) if i != index]
            if rest and others:
                result.append(
                    (name, view, min(distances([query], rest)), min(distances([query], others)))
                )
    return result


def choose_thresholds(different: list[float]) -> tuple[float, float]:
    """match_distance: SAFETY below the closest different-person pair measured, at most dlib's
    0.6; ambiguity_margin: SAFETY too, so a face accepted at match_distance has every other
    person at least as far as the closest two different people ever came."""
    match = min(DLIB_THRESHOLD, min(different) - SAFETY)
    return float(np.floor(match * 100) / 100), SAFETY


def outcome(own: float, other: float, match: float, margin: float) -> str:
    """What the registry's rule makes of one view: recognised, wrongly merged or unresolved."""
    best, runner_up = sorted((own, other))
    if best > match or runner_up - best < margin:
        return "unresolved"
    return "recognised" if own < other else "merged"


def calibrate(identity, detector, per_person: int, seed: int = 7):
    """Every person's embedded views, all crops, and the counts of views missed / rejected."""
    rng = np.random.default_rng(seed)
    embeddings, crops, missed, rejected = {}, [], 0, 0
    for name, photo in people():
        face_box = max(detector.detect(photo), key=lambda d: d.box.area).box
        embeddings[name] = []
        for view in views(per_person, rng):
            frame = blank_frame()
            target = place(frame, photo, face_box, view)
            crop = crop_of(detector, degrade(frame, view), target, view)
            if crop is None:
                missed += 1
                continue
            crops.append(crop)
            embedding = identity.embed(crop)
            if embedding is None:
                rejected += 1
                continue
            embeddings[name].append((view, embedding))
    return embeddings, crops, missed, rejected


def non_face_crops(size: int = 224) -> dict[str, np.ndarray]:
    """Crops without a face: flat, padding, textures, a cat, noise."""
    import skimage.data

    def fit(image: np.ndarray) -> np.ndarray:
        rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        return cv2.resize(rgb[..., :3], (size, size), interpolation=cv2.INTER_AREA)

    return {
        "grey": np.full((size, size, 3), 128, np.uint8),
        "black (frame padding)": np.zeros((size, size, 3), np.uint8),
        "brick": fit(skimage.data.brick()),
        "coffee": fit(skimage.data.coffee()),
        "cat (chelsea)": fit(skimage.data.chelsea()[:300, 100:400]),
        "noise": np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8),
    }


def bench_calibration(identity, detector, per_person: int):
    embeddings, crops, missed, rejected = calibrate(identity, detector, per_person)
    vectors = {name: [e for _, e in items] for name, items in embeddings.items()}
    same = [d for items in vectors.values() for d in distances(items)]
    different = [d for a, b in itertools.combinations(vectors.values(), 2) for d in distances(a, b)]
    views_total = per_person * len(vectors)
    stats_header(
        f"1. calibration: {len(vectors)} real people x {per_person} views "
        f"({missed} not detected, {rejected} rejected as no face)"
    )
    for name, items in vectors.items():
        print(stats_row(f"same person: {name}", distances(items)))
    print(stats_row("same person: all", same))
    for (a, items_a), (b, items_b) in itertools.combinations(vectors.items(), 2):
        print(stats_row(f"different: {a} / {b}", distances(items_a, items_b)))
    print(stats_row("different people: all", different))
    views_seen = nearest(embeddings)
    print(stats_row("per view: nearest own other view", [own for *_, own, _ in views_seen]))
    print(stats_row("per view: nearest other person", [other for *_, other in views_seen]))
    blank = identity.describe(non_face_crops()["grey"])
    faces = [e for items in vectors.values() for e in items]
    print(stats_row("face views to the blank embedding", distances(faces, [blank])))
    for name, crop in non_face_crops().items():
        print(stats_row(f"non-face {name} to blank", distances([identity.describe(crop)], [blank])))

    match, margin = choose_thresholds(different)
    print(
        f"\nchosen: match_distance {match:.2f}, ambiguity_margin {margin:.2f} (closest "
        f"different-person pair {min(different):.3f}; {views_total - missed - rejected} of "
        f"{views_total} views embedded)\n"
    )
    print("| face width px | views | recognised | unresolved | merged |")
    print("|---------------|-------|------------|------------|--------|")
    for size in sorted({view.face_px for _, view, *_ in views_seen}):
        results = [
            outcome(own, other, match, margin)
            for _, view, own, other in views_seen
            if view.face_px == size
        ]
        print(
            f"| {size:13d} | {len(results):5d} | {results.count('recognised'):10d} "
            f"| {results.count('unresolved'):10d} | {results.count('merged'):6d} |"
        )
    return crops, match, margin


def bench_cost(identity, crops: list[np.ndarray], count: int) -> None:
    from uservlm_ros.backends.profiler import PROFILERS, ProfilerOptions
    from uservlm_ros.core import labels

    profiler = PROFILERS.create("attributes", ProfilerOptions())
    attributes = frozenset(labels.ATTRIBUTES)
    sample = (crops * (count // max(1, len(crops)) + 1))[:count]
    identity.embed(sample[0])  # warm-up
    profiler.estimate([sample[0]], attributes)
    embed_ms, profile_ms = [], []
    for crop in sample:
        start = time.perf_counter()
        identity.embed(crop)
        middle = time.perf_counter()
        profiler.estimate([crop], attributes)
        end = time.perf_counter()
        embed_ms.append((middle - start) * 1e3)
        profile_ms.append((end - middle) * 1e3)
    baseline = float(np.percentile(profile_ms, 50))
    print(f"\n2. cost per face crop, one thread ({len(sample)} crops)\n")
    print(f"| {'stage':<34} | p50 ms    | p95 ms    | ratio     |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    for name, values in (
        ("attribute profiler (baseline)", profile_ms),
        ("identity embedding (dlib_resnet)", embed_ms),
    ):
        p50, p95 = np.percentile(values, [50, 95])
        print(f"| {name:<34} | {p50:9.2f} | {p95:9.2f} | {p50 / baseline:8.2f}x |")


def scene(visits: int, rng: np.random.Generator) -> list[list[tuple[int, View]]]:
    """Segments of a scripted scene: who is in view (person index, how) in each; people come
    alone or in pairs, leave, and come back at another size, place and light."""
    segments = []
    for index in range(visits):
        who = [index % 3] if index % 2 == 0 else [index % 3, (index + 1) % 3]
        slots = [0.5] if len(who) == 1 else [0.28, 0.72]
        light = views(2, rng)[1]  # the frame's blur / exposure / JPEG for this visit
        segments.append(
            [
                (
                    person,
                    View(
                        face_px=int(rng.choice([60, 90, 130])),
                        centre=(slot, float(rng.uniform(0.35, 0.5))),
                        mirror=bool(rng.random() < 0.5),
                        blur_sigma=light.blur_sigma,
                        brightness=light.brightness,
                        jpeg_quality=light.jpeg_quality,
                        roll_deg=float(rng.uniform(-10, 10)),
                    ),
                )
                for person, slot in zip(who, slots, strict=True)
            ]
        )
    return segments


def bench_persons(identity, detector, match: float, margin: float, visits: int, frames: int):
    """Persons per real person through FacePipeline + PersonRegistry + EmbeddingSchedule."""
    from uservlm_ros.backends.face_pipeline import FacePipeline
    from uservlm_ros.core import persons

    cast = people()
    boxes = [max(detector.detect(photo), key=lambda d: d.box.area).box for _, photo in cast]
    pipeline = FacePipeline(detector)
    registry = persons.PersonRegistry(
        persons.PersonsConfig(match_distance=match, ambiguity_margin=margin)
    )
    schedule = persons.EmbeddingSchedule()
    fps, now = 5.0, 0.0
    assigned: dict[int, set[str]] = {i: set() for i in range(len(cast))}  # real -> person ids
    outcomes: dict[str, int] = {}
    visible: set[int] = set()
    segments = scene(visits, np.random.default_rng(11))
    for segment in segments:
        for step in range(frames):
            frame, targets = blank_frame(), []
            for person, view in segment:
                walking = View(**{**view.__dict__, "face_px": view.face_px + 4 * step})
                targets.append((person, place(frame, cast[person][1], boxes[person], walking)))
            faces = pipeline.process(degrade(frame, segment[0][1]), now).faces
            real = {}
            for face in faces:
                person, _ = min(
                    targets, key=lambda t: np.hypot(*np.subtract(face.detection.box.centre, t[1]))
                )
                real[face.track_id] = person
                registry.person_of(face.track_id, now)
            for track_id in visible - set(real):
                registry.track_ended(track_id)
                schedule.forget(track_id)
            visible = set(real)
            candidates = [(t, persons.is_anonymous(registry.tracked()[t])) for t in sorted(real)]
            chosen = schedule.pick(candidates, now)
            face = next((f for f in faces if f.track_id == chosen), None)
            embedding = identity.embed(face.crop.image) if face is not None else None
            if embedding is not None:
                match_ = registry.identify(chosen, embedding, now)
                outcomes[match_.outcome] = outcomes.get(match_.outcome, 0) + 1
            for track_id, person in real.items():
                person_id = registry.tracked()[track_id]
                if not persons.is_anonymous(person_id):
                    assigned[person].add(person_id)
            now += 1.0 / fps
        now += 5.0  # out of view longer than the tracker's re-identification timeout
    owners: dict[str, set[int]] = {}
    for person, ids in assigned.items():
        for person_id in ids:
            owners.setdefault(person_id, set()).add(person)
    merged = sum(1 for real in owners.values() if len(real) > 1)
    print(
        f"\n3. persons per real person: {visits} visits of 1-2 people, {frames} frames each at "
        f"{fps:.0f} Hz (match_distance {match:.2f}, ambiguity_margin {margin:.2f})\n"
    )
    print("| real person   | person ids | visits in the scene |")
    print("|---------------|------------|---------------------|")
    for index, (name, _) in enumerate(cast):
        seen = sum(1 for segment in segments for person, _ in segment if person == index)
        print(f"| {name:<13} | {len(assigned[index]):10d} | {seen:19d} |")
    total = sum(len(ids) for ids in assigned.values()) / max(1, len(cast))
    print(
        f"\npersons per real person: {total:.2f} (1.00 = every return recognised); ids shared "
        f"by two real people: {merged}; identify outcomes: "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few views: a smoke run")
    args = parser.parse_args(argv)

    from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions
    from uservlm_ros.backends.face_identity import IDENTITY, IdentityOptions

    cv2.setNumThreads(1)
    identity = IDENTITY.create("dlib_resnet", IdentityOptions())
    detector = DETECTORS.create("blazeface_full", DetectorOptions(threads=1))
    crops, match, margin = bench_calibration(identity, detector, 6 if args.quick else 40)
    bench_cost(identity, crops, 8 if args.quick else 50)
    if args.quick:  # too few views to calibrate: the scene runs with the documented values
        match, margin = DOCUMENTED
    bench_persons(
        identity, detector, match, margin, 4 if args.quick else 12, 4 if args.quick else 12
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
