"""Bag size: `uservlm record` of the simulated camera (VGA, 15 Hz) with raw and JPEG frames.

    ROS_DOMAIN_ID=14 .venv/bin/python bench/bag_size.py               # 15 s each way
    ROS_DOMAIN_ID=14 .venv/bin/python bench/bag_size.py --seconds 5   # smoke

camera_node (source folder: rendered 640x480 frames with faces) publishes at --rate; the
recorder records /camera/image_raw and /camera/camera_info for --seconds with --images raw
(the baseline), then jpeg. Printed: frames, MB, KB per frame, MB per minute at the rate and
the ratio against raw.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=15.0)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()

    import cv2
    import rclpy

    from uservlm_ros.eval.bags import iter_bag, record
    from uservlm_ros.ros.node_main import use_uservlm_dds_profile
    from uservlm_ros.sim.photos import moving_faces_frames

    use_uservlm_dds_profile()
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames"
        frames.mkdir()
        for index, (rgb, _) in enumerate(moving_faces_frames(30)):
            cv2.imwrite(str(frames / f"{index:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        camera = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uservlm_ros.nodes.camera_node",
                "--ros-args",
                "-p",
                "source:=folder",
                "-p",
                f"path:={frames}",
                "-p",
                f"rate_hz:={args.rate}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        rclpy.init()
        results = {}
        try:
            for images in ("raw", "jpeg"):
                bag = Path(tmp) / images
                record(
                    bag,
                    topics=["/camera/image_raw", "/camera/camera_info"],
                    duration_s=args.seconds,
                    progress=None,
                    images=images,
                    jpeg_quality=args.quality,
                )
                size = sum(f.stat().st_size for f in bag.rglob("*") if f.is_file())
                count = sum(1 for m in iter_bag(bag) if "image_raw" in m.topic)
                results[images] = (count, size)
        finally:
            camera.terminate()
            camera.wait(15)
            rclpy.try_shutdown()
    raw_per_frame = results["raw"][1] / max(results["raw"][0], 1)
    print(
        f"\n{args.seconds:g} s of the simulated camera, 640x480 at {args.rate:g} Hz "
        f"(JPEG quality {args.quality}); MB/min at the nominal rate = size per frame x "
        f"{args.rate:g} Hz x 60 (a busy machine records fewer raw frames than sent)\n"
    )
    print("| images | frames | MB     | KB/frame | MB/min at rate | vs raw |")
    print("|--------|--------|--------|----------|----------------|--------|")
    for images, (count, size) in results.items():
        per_frame = size / max(count, 1)
        print(
            f"| {images:<6} | {count:6d} | {size / 1e6:6.1f} | {per_frame / 1e3:8.1f} | "
            f"{per_frame * args.rate * 60 / 1e6:14.1f} | {per_frame / raw_per_frame:5.3f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
