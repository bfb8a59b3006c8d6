"""Perception benchmark 4: the full demo graph while spoken questions are answered.

    ROS_DOMAIN_ID=17 .venv/bin/python bench/perception_graph.py               # 30 s per variant
    .venv/bin/python bench/perception_graph.py --variants identity_off composed
    .venv/bin/python bench/perception_graph.py --seconds 10 --variants composed  # smoke

Camera -> profile per stage as a subscriber process (bench/perception_observer.py) sees it, the
slowest frames and CPU per process. Variants: every crop profiled with a process per node (the
baseline of the ratios), the schedule with a process per node, composed with face identity
off, the schedule with the perception nodes composed (the default), composed with ASR at
nice 0; the first variant run is the baseline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from perception_common import (
    banner,
    cpu_seconds,
    header,
    percentile,
    row,
    start,
    stop,
    three_person_scene,
    use_local_domain,
)

# Full-graph variants: (key, label, node parameter overrides on top of config/demo.yaml, whether
# camera, face_crop and profiler share a process). The first is the same-run baseline: every crop
# of every frame profiled, a process per node, as before issue 12.
GRAPH_VARIANTS = (
    (
        "before",
        "before: every crop, per process",
        {"user_profiler_node": {"profile.schedule": False}},
        False,
    ),
    ("separate", "schedule, process per node", {}, False),
    # persons (issue 19): `--variants identity_off composed` measures face identity's cost
    (
        "identity_off",
        "composed, identity off",
        {"user_profiler_node": {"enable.identity": False}},
        True,
    ),
    ("composed", "schedule, composed (default)", {}, True),
    # the default speech_node runs at cpu.nice 10: this is it at normal priority
    ("nice0", "composed, ASR at nice 0", {"speech_node": {"cpu.nice": 0}}, True),
)


SPOKEN_QUESTIONS = ("hello_how_are_you.wav", "what_do_you_see.wav", "tell_me_a_joke.wav")


def bench_graph(
    seconds: float, rate: float, question_period: float, variants: list[str] | None = None
) -> None:
    """The demo graph (config/demo.yaml: camera_node on the simulated Pepper's camera,
    face_crop_node, user_profiler_node, vlm_responder_node (fallback), naoqi_bridge_node,
    speech_node on the simulated Pepper, console_node, and any node added to demo.yaml later)
    with three people in view at `rate` fps while questions are spoken into the microphones,
    transcribed, answered and spoken: camera -> profile latency as a subscriber process sees it,
    and each process's CPU."""
    import qi

    from uservlm_ros.bringup.graph import load_graph
    from uservlm_ros.bringup.runner import GraphRunner
    from uservlm_ros.ros.node_main import use_uservlm_dds_profile
    from uservlm_ros.sim.audio_device import SPEECH_DIR
    from uservlm_ros.sim.pepper import SimulatedPepper

    qi.logging.setLevel(qi.logging.WARNING)
    use_uservlm_dds_profile()
    use_local_domain()  # the graph and the observer inherit both
    scene = [frame for _, frame in three_person_scene(rate, 1.0, arrivals=(0.0, 0.0, 0.0))]
    results = []
    for key, label, variant, composed in GRAPH_VARIANTS:
        if variants and key not in variants:
            continue
        pepper = SimulatedPepper(port=0, frames=scene[:1])
        pepper.start()
        overrides = {
            "camera_node": {"naoqi.port": pepper.port, "rate_hz": rate},
            "naoqi_bridge_node": {"robot.port": pepper.port},
            "speech_node": {"naoqi.port": pepper.port},
            "console_node": {"port": 0},  # any free port: a console may already run here
        }
        for node, params in variant.items():
            overrides.setdefault(node, {}).update(params)
        # every profiled frame published, so each one gives a latency sample
        overrides.setdefault("user_profiler_node", {})["publish.max_rate_hz"] = 1000.0
        graph = load_graph("demo", overrides, use_composition=composed)
        log_path = Path(tempfile.mkdtemp(prefix="bench-graph-")) / "nodes.log"
        log = log_path.open("w")  # closed in the finally below
        runner = GraphRunner(graph, out=log, colour=False)
        observer = start(["-m", "bench.perception_observer"], stdin=subprocess.PIPE, stderr=None)

        def ask(command: str, observer=observer) -> str:
            observer.stdin.write(command + "\n")
            observer.stdin.flush()
            return observer.stdout.readline().strip() if command != "start" else ""

        asked = 0
        try:
            if observer.stdout.readline().strip() != "ready":
                raise RuntimeError("the observer process did not start")
            runner.start()
            deadline = time.monotonic() + 120
            while int(ask("count") or 0) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2.0)  # past start-up: new tracks settled
            cpu_before = {c.process.name: cpu_seconds(c.popen.pid) for c in runner.children}
            cpu_before["observer"] = cpu_seconds(observer.pid)
            bench_cpu = time.process_time()
            ask("start")
            begin = time.monotonic()
            while time.monotonic() - begin < seconds:
                clip = SPOKEN_QUESTIONS[asked % len(SPOKEN_QUESTIONS)]
                pepper.microphones.play_file(SPEECH_DIR / clip).done.wait(30)
                asked += 1
                time.sleep(question_period)
            time.sleep(3.0)  # the last answer
            elapsed = time.monotonic() - begin
            cpu = {
                c.process.name: (cpu_seconds(c.popen.pid) - cpu_before[c.process.name]) / elapsed
                for c in runner.children
            }
            cpu["observer (profile subscriber)"] = (
                cpu_seconds(observer.pid) - cpu_before["observer"]
            ) / elapsed
            cpu["bench (simulated Pepper)"] = (time.process_time() - bench_cpu) / elapsed
            measured = json.loads(ask("stop"))
            failed = [c.process.name for c in runner.children if c.popen.poll() is not None]
            if failed:
                raise RuntimeError(f"{', '.join(failed)} exited; see {log_path}")
            results.append(
                (
                    label,
                    measured["latency"],
                    cpu,
                    asked,
                    measured["answered"],
                    elapsed,
                    measured["stages"],
                    measured["slowest"],
                )
            )
        finally:
            runner.stop()
            log.close()
            stop(observer)
            pepper.stop()
    baseline = percentile(results[0][1], 50)
    header(
        f"4. full demo graph, 3 people at {rate:g} fps, a question every {question_period:g} s, "
        f"{seconds:g} s per variant (ratio: p50 against the first's p50)"
    )
    for label, values, *_, stages, _slowest in results:
        print(row(f"{label}: camera -> profile"[:34], values, baseline=baseline))
        for stage, durations in stages.items():
            print(row(f"  of which {stage}", durations, baseline=baseline))
    print("\nThe slowest frames (5 %, at most 6), ms: total (its two largest stages)\n")
    for label, *_, slowest in results:
        frames = [
            f"{total:.0f} ("
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:2])
            + ")"
            for total, parts in slowest
        ]
        print(f"- {label}: {'; '.join(frames)}")
    print("\nCPU per process, cores (1.0 = one core busy), and questions answered:\n")
    names = list(dict.fromkeys(name for result in results for name in result[2]))
    print("| node " + " " * 30 + "| " + " | ".join(f"{r[0][:28]:<28}" for r in results) + " |")
    print(f"|{'-' * 36}|" + "|".join("-" * 30 for _ in results) + "|")
    for name in [*names, "total"]:
        cells = [
            sum(r[2].values()) if name == "total" else r[2].get(name, float("nan")) for r in results
        ]
        print(f"| {name[:34]:<34} | " + " | ".join(f"{c:28.2f}" for c in cells) + " |")
    cells = [f"{r[4]}/{r[3]} in {r[5]:.0f} s" for r in results]
    print(f"| {'questions answered / asked':<34} | " + " | ".join(f"{c:<28}" for c in cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per variant")
    parser.add_argument("--rate", type=float, default=15.0, help="camera rate, Hz")
    parser.add_argument(
        "--question-period", type=float, default=2.0, help="seconds between questions"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[key for key, *_ in GRAPH_VARIANTS],
        help="run only these variants (default: all); the first run is the baseline of the ratios",
    )
    args = parser.parse_args(argv)
    banner("perception full-graph benchmark")
    bench_graph(args.seconds, args.rate, args.question_period, args.variants)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
