"""Perception benchmark 1: per-stage latency of the perception pipeline in one process.

    .venv/bin/python bench/perception_inprocess.py              # 150 frames
    .venv/bin/python bench/perception_inprocess.py --frames 20  # smoke

640x480 frames with 1-3 real faces: detect / track / crop / profile (attributes backend) p50 and
p95 per frame against the whole serial pipeline's p50, and the pipeline's sustained fps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from perception_common import banner, header, percentile, row


def bench_in_process(frames: int) -> dict[str, list[float]]:
    from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions
    from uservlm_ros.backends.face_pipeline import FacePipeline
    from uservlm_ros.backends.profiler import PROFILERS, ProfilerOptions
    from uservlm_ros.core import labels
    from uservlm_ros.sim.photos import frame_with_faces

    pipeline = FacePipeline(DETECTORS.create("blazeface_full", DetectorOptions()))
    profiler = PROFILERS.create("attributes", ProfilerOptions())
    images = [frame_with_faces(count) for count in (1, 2, 3)]
    stages: dict[str, list[float]] = {k: [] for k in ("detect", "track", "crop", "profile")}
    totals, faces_found = [], []
    for index in range(frames + 3):  # 3 warm-up frames
        start = time.perf_counter()
        result = pipeline.process(images[index % 3], stamp=index / 15)
        profile_start = time.perf_counter()
        profiler.estimate([f.crop.image for f in result.faces], frozenset(labels.ATTRIBUTES))
        end = time.perf_counter()
        if index < 3:
            continue
        for stage, ms in result.timings_ms.items():
            stages[stage].append(ms)
        stages["profile"].append((end - profile_start) * 1e3)
        totals.append((end - start) * 1e3)
        faces_found.append(len(result.faces))
    stages["total (serial)"] = totals
    header(f"1. in-process, 640x480, 1-3 faces (found {np.mean(faces_found):.2f} per frame)")
    for stage, values in stages.items():
        print(row(stage, values, baseline=percentile(totals, 50)))
    fps = 1000.0 / statistics.mean(totals)
    print(f"\nsustained serial pipeline: {fps:.1f} fps (frames of 1-3 faces, detector + profiler)")
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames measured")
    args = parser.parse_args(argv)
    banner("perception in-process benchmark")
    bench_in_process(args.frames)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
