"""Console benchmark: what console_node costs on the demo graph, without and with a page open.

    .venv/bin/python bench/console.py                # 60 s per phase (~3 minutes)
    .venv/bin/python bench/console.py --seconds 10   # smoke

The demo deployment runs as node processes (simulated Pepper camera at 10 fps, 640x480, two
people; BlazeFace; the attribute profiler; the fallback responder; the speech bridge;
console_node). CPU time (user + system) of each process is read from /proc over the same
window in three phases: no page connected; one page connected (a WebSocket client that reads
every message, as a browser does; its own CPU is not counted: it runs on the operator's
machine); no page again (the camera subscription must be dropped). Printed: console CPU
seconds per minute, its share of the whole graph's CPU in the same window, and the ratio of
each phase to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """user + system CPU seconds of each process, from /proc/<pid>/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    result = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        result[name] = (int(fields[11]) + int(fields[12])) / tick
    return result


class Page:
    """A WebSocket client in a thread that reads everything the console sends."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames = self.frame_bytes = self.json_messages = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            while not self._stop.is_set():
                try:
                    message = await ws.receive(timeout=0.5)
                except TimeoutError:
                    continue
                if message.type == aiohttp.WSMsgType.BINARY:
                    self.frames += 1
                    self.frame_bytes += len(message.data)
                elif message.type == aiohttp.WSMsgType.TEXT:
                    self.json_messages += 1
                else:
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--warm-up", type=float, default=15.0, help="after both people show up")
    args = parser.parse_args()

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from uservlm_ros.bringup.graph import load_graph
    from uservlm_ros.bringup.runner import GraphRunner
    from uservlm_ros.demo.run import CONSOLE_PORT, free_port
    from uservlm_ros.demo.scene import make_scene
    from uservlm_ros.ros.node_main import use_uservlm_dds_profile
    from uservlm_ros.sim.pepper import SimulatedPepper

    use_uservlm_dds_profile()
    scene = make_scene(45)
    pepper = SimulatedPepper(port=0, frames=[f.rgb for f in scene] + [f.rgb for f in scene[::-1]])
    pepper.start()
    port = free_port(CONSOLE_PORT)
    graph = load_graph(
        "demo",
        {
            "camera_node": {"naoqi.port": pepper.port},
            "naoqi_bridge_node": {"robot.port": pepper.port},
            "console_node": {"port": port},
        },
    )
    log = open(os.devnull, "w")  # noqa: SIM115
    runner = GraphRunner(graph, out=log, colour=False)
    runner.start()
    base = f"http://127.0.0.1:{port}"
    try:
        pids = {c.process.name: c.popen.pid for c in runner.children}
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/api/state", timeout=5) as response:
                    if len(json.load(response)["people"]) >= 2:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the demo graph did not profile two people within 120 s")
            time.sleep(1)
        time.sleep(args.warm_up)

        rows = []
        for phase in ("no page", "one page", "no page again"):
            page = Page(base.replace("http", "ws") + "/ws") if phase == "one page" else None
            time.sleep(2 if page else 0)  # the camera subscription is made on connect
            before, start = cpu_seconds(pids), time.monotonic()
            time.sleep(args.seconds)
            after, elapsed = cpu_seconds(pids), time.monotonic() - start
            if page is not None:
                page.close()
                time.sleep(2)  # and dropped on disconnect
            used = {name: after[name] - before[name] for name in pids}
            rows.append((phase, used, elapsed, page))

        print(f"\nconsole_node CPU on the demo graph ({args.seconds:g} s per phase)\n")
        print(
            "| phase          | console CPU s/min | % of one core | graph CPU s/min "
            "| console share | ratio to 'no page' | page received |"
        )
        print(f"|{'-' * 16}|{'-' * 19}|{'-' * 15}|{'-' * 17}|{'-' * 15}|{'-' * 20}|{'-' * 15}|")
        first = None
        for phase, used, elapsed, page in rows:
            console = used["console_node"] * 60 / elapsed
            total = sum(used.values()) * 60 / elapsed
            first = first or console
            received = (
                f"{page.frames / elapsed:.1f} fps, {page.frame_bytes / elapsed / 1024:.0f} kB/s"
                if page
                else "-"
            )
            print(
                f"| {phase:<14} | {console:17.2f} | {console / 60 * 100:12.1f}% | {total:15.1f} "
                f"| {console / total * 100:12.1f}% | {console / first:17.2f}x | {received:>13} |"
            )
        print("\nper node, CPU s/min in the 'one page' phase:")
        _, used, elapsed, _ = rows[1]
        for name, seconds in sorted(used.items(), key=lambda item: -item[1]):
            print(f"  {name:<20} {seconds * 60 / elapsed:6.1f}")
    finally:
        runner.stop()
        log.close()
        pepper.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
