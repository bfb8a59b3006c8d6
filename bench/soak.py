"""The long robustness run (`make soak`): thousands of malformed inputs into a running graph.

    .venv/bin/python bench/soak.py [--images 5000] [--face-arrays 1000] [--texts 500]

Starts face_crop_node, user_profiler_node, vlm_responder_node (fallback) and naoqi_bridge_node
(naoqi_driver backend), sends fuzzed camera images, FaceArrays (up to 200 faces, NaN boxes,
track id 0, malformed crops), questions and responses (test/fuzz.py), then checks what the fast
test checks (every node alive, valid input still served, every input accounted for, one final
Response per question) and prints each node's counters and resident memory before and after.
Robot restarts are measured by bench/robot_restarts.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--face-arrays", type=int, default=1000)
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from harness import ProcessManager, RosTestNode, isolate_ros

    _lock = isolate_ros()
    import rclpy
    import test_robustness

    rclpy.init()
    ros = RosTestNode("soak")
    processes = ProcessManager(Path(tempfile.mkdtemp(prefix="uservlm-soak-")))
    memory: dict[str, list[float]] = {}  # node -> [pid, MB when up, MB after]

    def on_ready(nodes) -> None:
        for name, node in nodes.items():
            memory[name] = [node.popen.pid, rss_mb(node.popen.pid)]

    started = time.monotonic()
    try:
        sent, counters = test_robustness.fuzz_graph(
            ros, processes, args.images, args.face_arrays, args.texts, args.seed, on_ready
        )
        for values in memory.values():
            values.append(rss_mb(values[0]))
    finally:
        elapsed = time.monotonic() - started
        processes.stop_all()
        ros.close()
        rclpy.shutdown()
    print(f"soak passed in {elapsed:.0f} s: sent {sent}")
    print("| node | resident MB at start | after | counters |")
    print("|---|---|---|---|")
    for name, values in memory.items():
        start_mb = f"{values[1]:.0f}"
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counters[name].items()) if k != "uptime_s")
        print(f"| {name} | {start_mb} | {values[-1]:.0f} | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
