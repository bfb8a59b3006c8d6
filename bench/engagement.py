"""Engagement calibration on real face detections (core/engagement.py).

    .venv/bin/python bench/engagement.py           # the full table (~30 cases, ~1 minute)
    .venv/bin/python bench/engagement.py --quick   # fewer distances (a smoke run)

Package photos pasted into 640x480 frames at the face size of a distance (Pepper's 44.3 degree
vertical field of view), at the centre, left of centre or the frame's edge, frontal or turned
(uservlm_ros/sim/engagement_scenes.py), through BlazeFace, fed to the estimator at 15 fps.
One row per case: the detected face height, the cues, the score and state after 2 s and 10 s,
and when the person became ENGAGED ("never" within 10 s). A distance whose face BlazeFace does not
find shows face px 0 and no cues.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uservlm_ros.core.engagement import EngagementConfig
from uservlm_ros.sim.engagement_scenes import (
    PERSONS,
    calibration_cases,
    run_case,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer distances and poses")
    parser.add_argument("--fps", type=float, default=15.0, help="camera rate fed to the estimator")
    args = parser.parse_args()
    config = EngagementConfig()
    print(
        "| person | distance m | face px | position | pose | proximity | centrality | frontal "
        "| score 2 s | state 2 s | score 10 s | state 10 s | engaged after s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in calibration_cases(args.quick):
        r = run_case(case, config, fps=args.fps)
        cues = r.cues
        factors = (
            f"{cues.proximity:.2f} | {cues.centrality:.2f} | {cues.frontal:.2f}"
            if cues is not None and r.face_px
            else "- | - | -"
        )
        after = f"{r.engaged_after_s:.1f}" if r.engaged_after_s is not None else "never"
        print(
            f"| {PERSONS[case.person]} | {case.distance_m:.2f} | "
            f"{r.face_px:.0f} | {case.position} | {case.pose} | {factors} | "
            f"{r.score_2s:.2f} | {r.state_2s} | {r.score_10s:.2f} | {r.state_10s} | {after} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
