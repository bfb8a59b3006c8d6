"""Perception benchmark 1b: the profiler's CPU in a 3-person scene, scheduled or not.

    .venv/bin/python bench/perception_schedule.py               # 20 s of camera time
    .venv/bin/python bench/perception_schedule.py --seconds 5   # smoke

As user_profiler_node runs it (the detector outside the measurement): CPU-seconds per minute,
crops profiled and each person's time to a first profile with profile.* scheduling, against
every crop profiled (the baseline) in the same run.
"""

from __future__ import annotations

import argparse
import time

from perception_common import banner, percentile, three_person_scene


def bench_schedule(seconds: float, fps: float = 15.0) -> None:
    """The profiler's CPU in a 3-person scene with and without profile.* scheduling, as the
    user_profiler_node runs it (detector outside the measurement)."""
    from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions
    from uservlm_ros.backends.face_pipeline import FacePipeline
    from uservlm_ros.backends.profiler import PROFILERS, ProfilerOptions
    from uservlm_ros.core import labels
    from uservlm_ros.core.fusion import FusionConfig, ProfileFusion
    from uservlm_ros.core.profile_schedule import PROFILED, ProfileScheduler, ScheduleConfig

    arrivals = (0.0, 2.0, 4.0)
    pipeline = FacePipeline(DETECTORS.create("blazeface_full", DetectorOptions()))
    frames = [
        (stamp, pipeline.process(frame, stamp).faces)
        for stamp, frame in three_person_scene(fps, seconds, arrivals)
    ]
    profiler = PROFILERS.create("attributes", ProfilerOptions())
    attributes = frozenset(labels.ATTRIBUTES)
    profiler.estimate([frames[-1][1][0].crop.image], attributes)  # warm-up
    thresholds = {"age_group": 0.3, "gender": 0.6, "ethnicity": 0.4, "emotion": 0.4}
    results = {}
    for mode in ("every crop (before)", "scheduled (after)"):
        fusion = ProfileFusion(FusionConfig(thresholds=thresholds), profiler.supported)
        scheduler = ProfileScheduler(ScheduleConfig(enabled=mode.startswith("scheduled")))
        first_seen: dict[int, float] = {}
        first_profile_ms: list[float] = []
        frame_ms, profiled = [], 0
        cpu_start = time.process_time()
        for stamp, faces in frames:
            start = time.perf_counter()
            chosen = []
            for face in faces:
                first_seen.setdefault(face.track_id, stamp)
                size = min(face.detection.box.width, face.detection.box.height)
                reason = scheduler.decide(
                    face.track_id,
                    stamp,
                    fusion,
                    size,
                    face.detection.landmarks,
                    face.crop.roll_deg,
                    face.crop.image,
                )
                if reason in PROFILED:
                    chosen.append(face)
            estimates = profiler.estimate([f.crop.image for f in chosen], attributes)
            for face, estimate in zip(chosen, estimates, strict=True):
                if fusion.current(face.track_id) is None:  # this person's first profile
                    waited = (stamp - first_seen[face.track_id]) * 1e3
                    first_profile_ms.append(waited + (time.perf_counter() - start) * 1e3)
                fusion.update(face.track_id, stamp, estimate)
            profiled += len(chosen)
            frame_ms.append((time.perf_counter() - start) * 1e3)
        cpu = time.process_time() - cpu_start
        results[mode] = (cpu * 60.0 / seconds, profiled, first_profile_ms, frame_ms)
    before = results["every crop (before)"][0]
    print(
        f"\n1b. profiler CPU in a 3-person scene, {fps:g} fps, {seconds:g} s of camera time "
        f"(people appear at {', '.join(f'{a:g}' for a in arrivals)} s; attributes backend)\n"
    )
    print(
        "| mode                  | CPU s / minute | ratio | crops profiled | first profile ms "
        "(per person) | frame p95 ms |"
    )
    print(f"|{'-' * 23}|{'-' * 16}|{'-' * 7}|{'-' * 16}|{'-' * 31}|{'-' * 14}|")
    for mode, (cpu_per_minute, profiled, first, frame_ms) in results.items():
        firsts = ", ".join(f"{ms:.0f}" for ms in first)
        print(
            f"| {mode:<21} | {cpu_per_minute:14.2f} | {cpu_per_minute / before:5.2f} | "
            f"{profiled:14d} | {firsts:<29} | {percentile(frame_ms, 95):12.2f} |"
        )
    print(f"\nof {sum(len(faces) for _, faces in frames)} crops in {len(frames)} frames")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="camera seconds of the 3-person scene"
    )
    parser.add_argument("--fps", type=float, default=15.0, help="camera rate of the scene")
    args = parser.parse_args(argv)
    banner("perception schedule benchmark")
    bench_schedule(args.seconds, args.fps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
