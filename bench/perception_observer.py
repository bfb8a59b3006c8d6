"""The subscriber of bench/perception_graph.py: a process of its own (like any node that uses
the profiles), so that the simulated Pepper's threads in the benchmark process do not delay
what it measures.

    python -m bench.perception_observer      # from the repository root

Prints "ready", then answers commands on stdin: `count` (-> the frames profiled so far),
`start` (measure from now on), `stop` (-> one JSON line of results, then exits).
"""

from __future__ import annotations

import json
import sys
import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from uservlm.msg import Response, UserProfile

from uservlm_ros.ros.conversions import stamp_to_seconds
from uservlm_ros.ros.node_main import use_uservlm_dds_profile
from uservlm_ros.ros.qos import LATCHED_QOS, REQUEST_QOS
from uservlm_ros.ros.topics import PROFILE, RESPONSE

SLOWEST_KEPT = 6  # the slowest frames reported (5 % of them, at most this many)


class Observer:
    def __init__(self, node) -> None:
        self.seen: set[float] = set()
        self.latency: list[float] = []
        self.stages: dict[str, list[float]] = {}
        self.frames: list[tuple[float, dict[str, float]]] = []
        self.answered = 0
        self.measuring = threading.Event()
        node.create_subscription(UserProfile, PROFILE, self.on_profile, LATCHED_QOS)
        node.create_subscription(Response, RESPONSE, self.on_response, REQUEST_QOS)

    def on_profile(self, msg: UserProfile) -> None:
        stamp = stamp_to_seconds(msg.header.stamp)
        if stamp in self.seen:  # only the first profile of a frame
            return
        self.seen.add(stamp)
        if not self.measuring.is_set():
            return
        total = (time.time() - stamp) * 1e3
        self.latency.append(total)
        for timing in msg.timings:
            self.stages.setdefault(timing.stage, []).append(timing.duration_ms)
        # the last hop: profile published -> this subscriber's callback
        hop = total - sum(timing.duration_ms for timing in msg.timings)
        self.stages.setdefault("to subscriber", []).append(hop)
        self.frames.append((total, {t.stage: t.duration_ms for t in msg.timings}))

    def on_response(self, msg: Response) -> None:
        if msg.final and not msg.error and self.measuring.is_set():
            self.answered += 1

    def results(self) -> dict:
        kept = min(len(self.frames) // 20 + 1, SLOWEST_KEPT)
        slowest = sorted(self.frames, key=lambda f: f[0], reverse=True)[:kept]
        return {
            "latency": self.latency,
            "stages": self.stages,
            "answered": self.answered,
            "slowest": slowest,
        }


def main() -> None:
    use_uservlm_dds_profile()  # as the nodes it listens to
    rclpy.init()
    node = rclpy.create_node("bench_observer")
    observer = Observer(node)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinning = threading.Thread(target=executor.spin, daemon=True)
    spinning.start()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                print(len(observer.seen), flush=True)
            elif command == "start":
                observer.measuring.set()
            elif command == "stop":
                observer.measuring.clear()
                print(json.dumps(observer.results()), flush=True)
                break
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown()  # its thread ends before the node goes
        spinning.join(5)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
