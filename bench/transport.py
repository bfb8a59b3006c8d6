"""Camera frames from a publisher outside uservlm: how many reach face_crop_node, per QoS.

    .venv/bin/python bench/transport.py [--seconds 10] [--width 1280 --height 886]

A camera driver that does not load uservlm's Fast DDS profile (config/fastdds.xml) sends large
frames as UDP fragments. This runs such a publisher (a separate process with Fast DDS's
defaults) at 15 Hz against face_crop_node for each combination of the publisher's QoS and the
node's `image_qos`, and once with the profile loaded by the publisher too, and prints frames
received / published, the frames DDS reported lost, and whether the pair connects at all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

PUBLISHER = """
import sys, time
import numpy as np, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
qos_name, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seconds = float(sys.argv[4])
qos = qos_profile_sensor_data if qos_name == "sensor" else QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
rclpy.init()
node = rclpy.create_node("external_camera")
pub = node.create_publisher(Image, "/camera/image_raw", qos)
while pub.get_subscription_count() < 1:
    time.sleep(0.05)
time.sleep(1.0)
pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes()
sent, start = 0, time.monotonic()
while time.monotonic() - start < seconds:
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=pixels)
    msg.header.stamp = node.get_clock().now().to_msg()
    pub.publish(msg)
    sent += 1
    time.sleep(max(0.0, start + sent / 15.0 - time.monotonic()))
print("SENT", sent, flush=True)
time.sleep(1.5)
"""


def run_phase(ros, processes, publisher_qos: str, image_qos: str, profile: bool, args) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from test_robustness import counters, start_node

    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    node = start_node(processes, "face_crop_node", f"image_qos:={image_qos}", "debug_image:=false")
    node.wait_for_output("face_crop_node active", timeout=60)
    env = {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]
    command = [sys.executable, "-c", PUBLISHER, publisher_qos]
    command += [str(args.width), str(args.height), str(args.seconds)]
    try:
        camera = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=args.seconds + 30
        )
        output = camera.stdout + camera.stderr
    except subprocess.TimeoutExpired as timeout:  # never matched: incompatible QoS
        output = f"{timeout.stdout or ''}{timeout.stderr or ''}"
    sent = int(output.split("SENT", 1)[1].split()[0]) if "SENT" in output else 0
    time.sleep(1.5)
    values = counters(diagnostics, "face_crop_node")
    node.stop()
    return {
        "publisher": f"{publisher_qos}{' + uservlm profile' if profile else ''}",
        "image_qos": image_qos,
        "sent": sent,
        "received": values.get("frames_received", 0),
        "reported_lost": values.get("frames_lost_in_transport", 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=886)
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()

    from harness import ProcessManager, RosTestNode, isolate_ros

    _lock = isolate_ros()
    import rclpy

    rclpy.init()
    ros = RosTestNode("transport_bench")
    phases = [
        ("sensor", "sensor", False),
        ("reliable", "sensor", False),
        ("reliable", "reliable", False),
        ("sensor", "reliable", False),
        ("sensor", "sensor", True),
    ]
    rows = []
    try:
        for publisher_qos, image_qos, profile in phases:
            processes = ProcessManager(Path(tempfile.mkdtemp(prefix="uservlm-transport-")))
            try:
                rows.append(run_phase(ros, processes, publisher_qos, image_qos, profile, args))
            finally:
                processes.stop_all()
    finally:
        ros.close()
        rclpy.shutdown()
    print(f"\n{args.width}x{args.height} rgb8 at 15 Hz for {args.seconds:g} s per phase\n")
    print("| camera publisher QoS | face_crop image_qos | sent | received | share | lost (DDS) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        share = r["received"] / r["sent"] if r["sent"] else float("nan")
        print(
            f"| {r['publisher']} | {r['image_qos']} | {r['sent']} | {r['received']} | "
            f"{share:.0%} | {r['reported_lost']} |"
        )
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
