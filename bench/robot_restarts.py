"""Robot restarts: kill and restart the simulated Pepper N times under naoqi_bridge_node.

    ROS_DOMAIN_ID=14 .venv/bin/python bench/robot_restarts.py            # 20 cycles (~2 min)
    ROS_DOMAIN_ID=14 .venv/bin/python bench/robot_restarts.py --cycles 3 --baseline

Each cycle: the robot goes away for a random 0.5-3 s (then stays up 1-3 s); `--per-cycle`
answers are published on /uservlm/response while it is away; it comes back accepting
connections at once and registering its NAOqi services `--services-delay` s later (like NAOqi
booting). Measured: the time from the services being registered to the bridge's
ALMotion.wakeUp (its connection), and what became of every utterance: said (in the robot's call
log), reported dropped (speech events), lost (neither). `--baseline` first runs the same cycles
with the former settings (backoff up to 10 s) and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FORMER = ["robot.reconnect_min_s:=0.5", "robot.reconnect_max_s:=10.0"]


def _said(pepper) -> set[str]:
    """Request ids the robot said (the texts carry them)."""
    return {
        f"c{c.args[0].split()[-1].rstrip('.')}-{c.args[0].split()[1]}"
        for c in pepper.calls_to("ALAnimatedSpeech", "say")
        if c.args[0].startswith("Answer ")
    }


def _dropped(events: list[dict], lock) -> set[str]:
    with lock:
        return {e["request_id"] for e in events if e["event"] == "dropped"}


def run(cycles: int, per_cycle: int, services_delay: float, params: list[str], seed: int) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from uservlm.msg import Response, SpeechEvent

    from uservlm_ros.ros.qos import RELIABLE_QOS
    from uservlm_ros.sim.pepper import SimulatedPepper

    rng = random.Random(seed)
    events: list[dict] = []
    lock = threading.Lock()

    def on_event(msg) -> None:
        with lock:
            events.append({"event": msg.event, "request_id": msg.request_id, "part": msg.part})

    node = rclpy.create_node("bench_robot_restarts")
    deep = QoSProfile(depth=1000, reliability=RELIABLE_QOS.reliability)  # the bench loses nothing
    node.create_subscription(SpeechEvent, "/uservlm/speech_events", on_event, deep)
    publisher = node.create_publisher(Response, "/uservlm/response", deep)
    executor = SingleThreadedExecutor()  # one per run: the global one spins only once
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    pepper = SimulatedPepper(services_delay_s=services_delay)
    pepper.start()
    args = ["--ros-args", "-p", f"robot.port:={pepper.port}"]
    for param in params:
        args += ["-p", param]
    bridge = subprocess.Popen(
        [sys.executable, "-m", "uservlm_ros.nodes.naoqi_bridge_node", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    reconnect_s: list[float] = []
    missed = 0  # cycles where the bridge was not back within 30 s
    sent: list[str] = []
    try:
        pepper.wait_for_call("ALMotion", "wakeUp", timeout=60)
        while publisher.get_subscription_count() == 0:
            time.sleep(0.05)
        for cycle in range(cycles):
            pepper.stop()
            for index in range(per_cycle):
                request_id = f"c{cycle}-{index}"
                sent.append(request_id)
                publisher.publish(
                    Response(
                        request_id=request_id, text=f"Answer {index} of cycle {cycle}.", final=True
                    )
                )
            time.sleep(rng.uniform(0.5, 3.0))
            pepper.start()
            try:
                wake = pepper.wait_for_call("ALMotion", "wakeUp", timeout=30, count=cycle + 2)[-1]
                reconnect_s.append(wake.time - pepper.services_ready_at)
            except TimeoutError:
                missed += 1
            last = reconnect_s[-1] if reconnect_s else float("nan")
            print(f"cycle {cycle + 1}/{cycles}: back after {last:.2f} s", file=sys.stderr)
            time.sleep(rng.uniform(1.0, 3.0))  # up for a while before the next kill
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # let the queue drain
            if set(sent) <= _said(pepper) | _dropped(events, lock):
                break
            time.sleep(0.2)
    finally:
        bridge.terminate()
        bridge.wait(timeout=15)
        pepper.stop()
        executor.shutdown()
        node.destroy_node()
    said, dropped = _said(pepper), _dropped(events, lock)
    dropped -= said
    return {
        "reconnect_s": reconnect_s,
        "missed": missed,
        "sent": len(sent),
        "said": len(said & set(sent)),
        "dropped": len(dropped & set(sent)),
        "lost": len(set(sent) - said - dropped),
    }


def report(name: str, result: dict, baseline: dict | None) -> None:
    times = result["reconnect_s"] or [float("nan")]
    p50, worst = statistics.median(times), max(times)
    ratio = f"{p50 / statistics.median(baseline['reconnect_s']):.2f}x" if baseline else "-"
    within = sum(t < 2.0 for t in result["reconnect_s"])
    cycles = len(result["reconnect_s"]) + result["missed"]
    print(
        f"| {name:<22} | {p50:6.2f} | {worst:6.2f} | {within:3d}/{cycles:<3d}"
        f" | {ratio:>7} | {result['sent']:4d} | {result['said']:4d} | {result['dropped']:7d} "
        f"| {result['lost']:4d} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--per-cycle", type=int, default=10, help="answers sent while away")
    parser.add_argument("--services-delay", type=float, default=0.5, metavar="S")
    parser.add_argument("--baseline", action="store_true", help="also run the former settings")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()

    import rclpy

    from uservlm_ros.ros.node_main import use_uservlm_dds_profile

    use_uservlm_dds_profile()
    rclpy.init()
    try:
        baseline = None
        if args.baseline:
            baseline = run(args.cycles, args.per_cycle, args.services_delay, FORMER, args.seed)
        current = run(args.cycles, args.per_cycle, args.services_delay, [], args.seed)
    finally:
        rclpy.try_shutdown()
    print(
        f"\n{args.cycles} restarts, services registered {args.services_delay} s after the robot "
        f"accepts connections, {args.per_cycle} answers sent per outage\n"
    )
    print(
        "| settings               | p50 s  | max s  | <2 s    | vs base | sent | said | dropped "
        "| lost |"
    )
    print("|" + "|".join("-" * w for w in (24, 8, 8, 9, 9, 6, 6, 9, 6)) + "|")
    if baseline is not None:
        report("former (10 s, no wait)", baseline, None)
    report("default", current, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
