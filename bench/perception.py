"""Perception benchmark: per-stage latency, sustained fps, camera->profile latency over DDS.

    .venv/bin/python bench/perception.py                 # full run (~2-3 minutes on 2 cores)
    .venv/bin/python bench/perception.py --frames 20 --dds-seconds 4 --clip-size tiny  # smoke

Tables:
1. in-process, 640x480 frames with 1-3 real faces: detect / track / crop / profile (attributes
   backend) p50 and p95 per frame, and the sustained fps of the serial pipeline.
2. over real DDS: face_crop_node + user_profiler_node as processes, frames published at
   --rate; camera->profile latency p50/p95 and profiled fps, against a raw rclpy pub/sub of the
   same images (a relay process echoing them back; one way = half the round trip).
3. the clip backend's image encoder (ViT-B/16-sized, random weights) per crop on CPU: torch
   eager vs onnxruntime fp32 and int8 (`uservlm export profiler --quantize int8`), one crop and
   a frame of 3 crops batched, ratio against torch; the int8 graph's fidelity to fp32 on real
   face crops (embedding cosine, top-1 agreement per attribute).
4. the full demo graph with spoken questions (`--phases graph`): camera -> profile per stage as
   a subscriber process sees it, the slowest frames, CPU per process; variants: every crop
   profiled with a process per node (the baseline), the schedule with a process per node, the
   schedule with the perception nodes composed (the default), composed with ASR at nice 0.
5. detection recall by face width on group scenes built from package photos (`--phases recall`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RELAY = """
import rclpy, sys
from rclpy.node import Node
from sensor_msgs.msg import Image
from uservlm_ros.ros.qos import IMAGE_QOS
from uservlm_ros.ros.qos import RELIABLE_QOS
rclpy.init()
node = Node("bench_relay")
out = node.create_publisher(Image, "/bench/echo", RELIABLE_QOS)
node.create_subscription(Image, "/bench/image", out.publish, SENSOR_QOS)  # as face_crop_node
print("relay ready", flush=True)
rclpy.spin(node)
"""


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def row(name: str, values: list[float], baseline: float | None = None) -> str:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    ratio = f"{p50 / baseline:8.2f}x" if baseline else " " * 9
    return f"| {name:<34} | {p50:9.2f} | {p95:9.2f} | {ratio} | {len(values):5d} |"


def header(title: str, unit: str = "ms") -> None:
    print(f"\n{title}\n")
    print(f"| {'stage':<34} | p50 {unit:<5} | p95 {unit:<5} | ratio     | n     |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 7}|")


def bench_in_process(frames: int) -> dict[str, list[float]]:
    from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions
    from uservlm_ros.backends.face_pipeline import FacePipeline
    from uservlm_ros.backends.profiler import PROFILERS, ProfilerOptions
    from uservlm_ros.core import labels
    from uservlm_ros.sim.photos import frame_with_faces

    pipeline = FacePipeline(DETECTORS.create("blazeface_full", DetectorOptions()))
    profiler = PROFILERS.create("attributes", ProfilerOptions())
    images = [frame_with_faces(count) for count in (1, 2, 3)]
    stages: dict[str, list[float]] = {k: [] for k in ("detect", "track", "crop", "profile")}
    totals, faces_found = [], []
    for index in range(frames + 3):  # 3 warm-up frames
        start = time.perf_counter()
        result = pipeline.process(images[index % 3], stamp=index / 15)
        profile_start = time.perf_counter()
        profiler.estimate([f.crop.image for f in result.faces], frozenset(labels.ATTRIBUTES))
        end = time.perf_counter()
        if index < 3:
            continue
        for stage, ms in result.timings_ms.items():
            stages[stage].append(ms)
        stages["profile"].append((end - profile_start) * 1e3)
        totals.append((end - start) * 1e3)
        faces_found.append(len(result.faces))
    stages["total (serial)"] = totals
    header(f"1. in-process, 640x480, 1-3 faces (found {np.mean(faces_found):.2f} per frame)")
    for stage, values in stages.items():
        print(row(stage, values, baseline=percentile(totals, 50)))
    fps = 1000.0 / statistics.mean(totals)
    print(f"\nsustained serial pipeline: {fps:.1f} fps (frames of 1-3 faces, detector + profiler)")
    return stages


def three_person_scene(fps: float, seconds: float, arrivals=(0.0, 2.0, 4.0)) -> list:
    """(stamp, frame) at `fps`: three real faces at fixed places, person i appearing at
    arrivals[i] seconds (640x480, 150 px heads)."""
    from uservlm_ros.sim.photos import heads

    people = [*heads(150), heads(150)[0][:, ::-1]]
    frames = []
    for index in range(round(seconds * fps)):
        stamp = index / fps
        frame = np.full((480, 640, 3), 90, np.uint8)
        for slot, (head, arrival) in enumerate(zip(people, arrivals, strict=True)):
            if stamp >= arrival:
                frame[165:315, 40 + slot * 200 : 190 + slot * 200] = head
        frames.append((stamp, frame))
    return frames


def bench_schedule(seconds: float, fps: float = 15.0) -> None:
    """The profiler's CPU in a 3-person scene with and without profile.* scheduling, as the
    user_profiler_node runs it (detector outside the measurement)."""
    from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions
    from uservlm_ros.backends.face_pipeline import FacePipeline
    from uservlm_ros.backends.profiler import PROFILERS, ProfilerOptions
    from uservlm_ros.core import labels
    from uservlm_ros.core.fusion import FusionConfig, ProfileFusion
    from uservlm_ros.core.profile_schedule import PROFILED, ProfileScheduler, ScheduleConfig

    arrivals = (0.0, 2.0, 4.0)
    pipeline = FacePipeline(DETECTORS.create("blazeface_full", DetectorOptions()))
    frames = [
        (stamp, pipeline.process(frame, stamp).faces)
        for stamp, frame in three_person_scene(fps, seconds, arrivals)
    ]
    profiler = PROFILERS.create("attributes", ProfilerOptions())
    attributes = frozenset(labels.ATTRIBUTES)
    profiler.estimate([frames[-1][1][0].crop.image], attributes)  # warm-up
    thresholds = {"age_group": 0.3, "gender": 0.6, "ethnicity": 0.4, "emotion": 0.4}
    results = {}
    for mode in ("every crop (before)", "scheduled (after)"):
        fusion = ProfileFusion(FusionConfig(thresholds=thresholds), profiler.supported)
        scheduler = ProfileScheduler(ScheduleConfig(enabled=mode.startswith("scheduled")))
        first_seen: dict[int, float] = {}
        first_profile_ms: list[float] = []
        frame_ms, profiled = [], 0
        cpu_start = time.process_time()
        for stamp, faces in frames:
            start = time.perf_counter()
            chosen = []
            for face in faces:
                first_seen.setdefault(face.track_id, stamp)
                size = min(face.detection.box.width, face.detection.box.height)
                reason = scheduler.decide(
                    face.track_id,
                    stamp,
                    fusion,
                    size,
                    face.detection.landmarks,
                    face.crop.roll_deg,
                    face.crop.image,
                )
                if reason in PROFILED:
                    chosen.append(face)
            estimates = profiler.estimate([f.crop.image for f in chosen], attributes)
            for face, estimate in zip(chosen, estimates, strict=True):
                if fusion.current(face.track_id) is None:  # this person's first profile
                    waited = (stamp - first_seen[face.track_id]) * 1e3
                    first_profile_ms.append(waited + (time.perf_counter() - start) * 1e3)
                fusion.update(face.track_id, stamp, estimate)
            profiled += len(chosen)
            frame_ms.append((time.perf_counter() - start) * 1e3)
        cpu = time.process_time() - cpu_start
        results[mode] = (cpu * 60.0 / seconds, profiled, first_profile_ms, frame_ms)
    before = results["every crop (before)"][0]
    print(
        f"\n1b. profiler CPU in a 3-person scene, {fps:g} fps, {seconds:g} s of camera time "
        f"(people appear at {', '.join(f'{a:g}' for a in arrivals)} s; attributes backend)\n"
    )
    print(
        "| mode                  | CPU s / minute | ratio | crops profiled | first profile ms "
        "(per person) | frame p95 ms |"
    )
    print(f"|{'-' * 23}|{'-' * 16}|{'-' * 7}|{'-' * 16}|{'-' * 31}|{'-' * 14}|")
    for mode, (cpu_per_minute, profiled, first, frame_ms) in results.items():
        firsts = ", ".join(f"{ms:.0f}" for ms in first)
        print(
            f"| {mode:<21} | {cpu_per_minute:14.2f} | {cpu_per_minute / before:5.2f} | "
            f"{profiled:14d} | {firsts:<29} | {percentile(frame_ms, 95):12.2f} |"
        )
    print(f"\nof {sum(len(faces) for _, faces in frames)} crops in {len(frames)} frames")


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )


def wait_line(process: subprocess.Popen, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if text in line:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return
        if not line and process.poll() is not None:
            break
    raise RuntimeError(f"{process.args} did not print {text!r}")


def bench_dds(seconds: float, rate: float, image_qos: str) -> None:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from uservlm.msg import FaceArray, UserProfile

    from uservlm_ros.ros.conversions import rgb_to_image, stamp_to_seconds
    from uservlm_ros.ros.node_main import use_uservlm_dds_profile
    from uservlm_ros.ros.qos import IMAGE_QOS, LATCHED_QOS, RELIABLE_QOS
    from uservlm_ros.sim.photos import frame_with_faces

    use_uservlm_dds_profile()  # as every uservlm process: frames fit the shared-memory segment
    env = {**os.environ, "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", "77")}
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.update(env)
    relay = RELAY.replace("SENSOR_QOS)  #", f"IMAGE_QOS[{image_qos!r}])  #")
    processes = [
        start(
            ["-m", "uservlm_ros.nodes.face_crop_node", "--ros-args", "-p", "debug_image:=false"],
            env,
        ),
        start(
            [
                "-m",
                "uservlm_ros.nodes.user_profiler_node",
                "--ros-args",
                "-p",
                "publish.max_rate_hz:=1000.0",
            ],
            env,
        ),
        start(["-c", relay], env),
    ]
    try:
        wait_line(processes[0], "face_crop_node active")
        wait_line(processes[1], "user_profiler_node active")
        wait_line(processes[2], "relay ready")
        rclpy.init()
        node = rclpy.create_node("bench_perception")
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()
        latency, echo, profiled_stamps, face_arrays = [], [], set(), []
        stages: dict[str, list[float]] = {}

        def on_profile(msg: UserProfile) -> None:
            stamp = stamp_to_seconds(msg.header.stamp)
            if stamp not in profiled_stamps:  # the first profile of a frame
                profiled_stamps.add(stamp)
                latency.append((time.time() - stamp) * 1e3)
                for timing in msg.timings:
                    stages.setdefault(timing.stage, []).append(timing.duration_ms)

        def on_echo(msg: Image) -> None:
            echo.append((time.time() - stamp_to_seconds(msg.header.stamp)) * 1e3 / 2)

        node.create_subscription(UserProfile, "/uservlm/user_profile", on_profile, LATCHED_QOS)
        node.create_subscription(FaceArray, "/uservlm/faces", face_arrays.append, RELIABLE_QOS)
        node.create_subscription(Image, "/bench/echo", on_echo, RELIABLE_QOS)
        camera = node.create_publisher(Image, "/camera/image_raw", IMAGE_QOS[image_qos])
        raw = node.create_publisher(Image, "/bench/image", IMAGE_QOS[image_qos])
        deadline = time.monotonic() + 30
        while (
            node.count_subscribers("/camera/image_raw") < 1
            or node.count_subscribers("/bench/image") < 1
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the nodes never subscribed")
            time.sleep(0.1)
        time.sleep(1.0)
        images = [frame_with_faces(count) for count in (1, 2, 3)]
        sent, period = 0, 1.0 / rate
        begin = time.monotonic()
        for phase, publisher in (("graph", camera), ("raw", raw)):
            phase_end = time.monotonic() + seconds
            next_tick = time.monotonic()
            while time.monotonic() < phase_end:
                header_msg = Header(frame_id="camera")
                header_msg.stamp = node.get_clock().now().to_msg()
                publisher.publish(rgb_to_image(images[sent % 3], header_msg))
                sent += 1
                next_tick += period
                time.sleep(max(0.0, next_tick - time.monotonic()))
            if phase == "graph":
                time.sleep(1.0)  # the last profiles arrive
                graph_seconds = time.monotonic() - begin - 1.0
                graph_sent = sent
        time.sleep(0.5)
        header(f"2. over DDS, image QoS {image_qos}, {rate:g} Hz for {seconds:g} s per phase")
        print(row("camera -> profile (graph)", latency, baseline=percentile(echo, 50)))
        print(row("raw rclpy pub/sub, one way", echo, baseline=percentile(echo, 50)))
        for stage, values in stages.items():
            print(row(f"  of which {stage}", values, baseline=percentile(echo, 50)))
        overhead = percentile(latency, 50) - percentile(echo, 50)
        print(
            f"\nof {graph_sent} frames sent per phase: {len(face_arrays)} face arrays, "
            f"{len(profiled_stamps)} profiled, {len(echo)} echoed by the raw relay; "
            f"{len(profiled_stamps) / graph_seconds:.1f} fps sustained through the graph; "
            f"graph p50 minus raw one-way p50 = {overhead:.1f} ms"
        )
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, 2)
                process.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, 9)


def group_scene(face_px: int, shape=(720, 1280), seed: int = 0) -> tuple[np.ndarray, list]:
    """A group photo built from the package photos: as many heads as fit (astronaut, Hopper and
    mirrored copies) with faces about `face_px` wide, on one of skimage's face-free photos;
    returns (frame, [(x0, y0, x1, y1) of each face])."""
    import skimage.data

    from uservlm_ros.sim.photos import heads

    rng = np.random.default_rng(seed)
    background = [skimage.data.coffee(), skimage.data.rocket(), skimage.data.coins()][seed % 3]
    if background.ndim == 2:
        background = np.stack([background] * 3, axis=-1)
    frame = cv2.resize(background, shape[::-1], interpolation=cv2.INTER_AREA)
    side = face_px * 2  # the head patches hold the face in about their central half
    people = [*heads(side), *(h[:, ::-1] for h in heads(side))]
    faces, gap = [], max(side // 4, 4)
    for y in range(gap, shape[0] - side, side + gap):
        for x in range(gap, shape[1] - side, side + gap):
            dx, dy = rng.integers(0, gap // 2 + 1, 2)
            x0, y0 = x + dx, y + dy
            frame[y0 : y0 + side, x0 : x0 + side] = people[len(faces) % len(people)]
            faces.append((x0 + side / 4, y0 + side / 4, x0 + 3 * side / 4, y0 + 3 * side / 4))
            if len(faces) >= 40:
                return frame, faces
    return frame, faces


def face_free_images() -> list[np.ndarray]:
    """skimage photos without faces, and a mosaic of lfw_subset's 100 non-face patches."""
    import skimage.data

    images = [skimage.data.coffee(), skimage.data.rocket(), skimage.data.chelsea()]
    images += [np.stack([skimage.data.coins()] * 3, -1), skimage.data.immunohistochemistry()]
    patches = (skimage.data.lfw_subset()[100:] * 255).astype(np.uint8)
    tiles = [cv2.resize(p, (64, 64), interpolation=cv2.INTER_CUBIC) for p in patches]
    mosaic = np.vstack([np.hstack(tiles[row * 10 : row * 10 + 10]) for row in range(10)])
    return [*images, np.stack([mosaic] * 3, -1)]


# Detector settings compared: (label, DetectorOptions keyword arguments).
DETECTOR_VARIANTS = (
    ("default (whole frame)", {}),
    ("min_score 0.5", {"min_score": 0.5}),
    ("tiles 2", {"tiles": 2}),
    ("tiles 3", {"tiles": 3}),
)
RECALL_SIZES = (24, 32, 48, 64, 96)


def bench_recall(shape: tuple[int, int]) -> None:
    """Detection recall by face size on group scenes, false positives on face-free images."""
    from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions

    scenes = {size: [group_scene(size, shape, seed) for seed in range(2)] for size in RECALL_SIZES}
    clean = face_free_images()
    print(
        f"\n5. detection recall by face width on {shape[1]}x{shape[0]} group scenes (package "
        f"photos on face-free backgrounds); false positives on {len(clean)} face-free images\n"
    )
    print(
        "| detector            | "
        + " | ".join(f"{s:>3} px" for s in RECALL_SIZES)
        + " | FP | ms/frame |"
    )
    print(f"|{'-' * 21}|" + "|".join("-" * 8 for _ in RECALL_SIZES) + "|----|----------|")
    for label, kwargs in DETECTOR_VARIANTS:
        detector = DETECTORS.create("blazeface_full", DetectorOptions(**kwargs))
        cells, times = [], []
        for size in RECALL_SIZES:
            found = total = 0
            for frame, faces in scenes[size]:
                start = time.perf_counter()
                detections = detector.detect(frame)
                times.append((time.perf_counter() - start) * 1e3)
                total += len(faces)
                found += sum(any(_matches(d.box, face) for d in detections) for face in faces)
            cells.append(f"{found / total:6.2f}")
        false = sum(len(detector.detect(image)) for image in clean)
        print(
            f"| {label:<19} | " + " | ".join(cells) + f" | {false:2d} | "
            f"{percentile(times, 50):8.1f} |"
        )
    counts = ", ".join(f"{s} px: {len(scenes[s][0][1])}" for s in RECALL_SIZES)
    print(f"\nfaces per scene (2 scenes per size): {counts}")


def _matches(box, face: tuple[float, float, float, float]) -> bool:
    """A detection counts for a face if its centre lies in the face and its width is within
    half to twice the face's."""
    cx, cy = box.centre
    x0, y0, x1, y1 = face
    return x0 <= cx <= x1 and y0 <= cy <= y1 and 0.5 <= box.width / (x1 - x0) <= 2.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    # persons (issue 19): `--graph-variants identity_off composed` measures face identity's cost
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

# The full graph's subscriber, a process of its own (like any node that uses the profiles), so
# that the simulated Pepper's threads in the benchmark process do not delay what it measures.
# stdin: `count` (-> frames profiled so far), `start`, `stop` (-> one JSON line of results).
OBSERVER = """
import json, sys, threading, time
import rclpy
from rclpy.executors import SingleThreadedExecutor
from uservlm.msg import Response, UserProfile
from uservlm_ros.ros.conversions import stamp_to_seconds
from uservlm_ros.ros.qos import LATCHED_QOS, REQUEST_QOS
rclpy.init()
node = rclpy.create_node("bench_observer")
seen, latency, stages, frames, answered = set(), [], {}, [], [0]
measuring = threading.Event()
def on_profile(msg):
    stamp = stamp_to_seconds(msg.header.stamp)
    if stamp in seen:  # only the first profile of a frame
        return
    seen.add(stamp)
    if measuring.is_set():
        total = (time.time() - stamp) * 1e3
        latency.append(total)
        for timing in msg.timings:
            stages.setdefault(timing.stage, []).append(timing.duration_ms)
        # the last hop: profile published -> this subscriber's callback
        stages.setdefault("to subscriber", []).append(
            total - sum(timing.duration_ms for timing in msg.timings))
        frames.append((total, {t.stage: t.duration_ms for t in msg.timings}))
def on_response(msg):
    if msg.final and not msg.error and measuring.is_set():
        answered[0] += 1
node.create_subscription(UserProfile, "/uservlm/user_profile", on_profile, LATCHED_QOS)
node.create_subscription(Response, "/uservlm/response", on_response, REQUEST_QOS)
executor = SingleThreadedExecutor()
executor.add_node(node)
threading.Thread(target=executor.spin, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "count":
        print(len(seen), flush=True)
    elif command == "start":
        measuring.set()
    elif command == "stop":
        measuring.clear()
        slowest = sorted(frames, key=lambda f: f[0], reverse=True)[:min(len(frames) // 20 + 1, 6)]
        print(json.dumps({"latency": latency, "stages": stages, "answered": answered[0],
                          "slowest": slowest}), flush=True)
        break
"""


def bench_graph(
    seconds: float, rate: float, question_period: float, variants: list[str] | None = None
) -> None:
    """The demo graph (config/demo.yaml: camera_node on the simulated Pepper's camera,
    face_crop_node, user_profiler_node, vlm_responder_node (fallback), naoqi_bridge_node,
    speech_node on the simulated Pepper, console_node, and any node added to demo.yaml later)
    with three people in view at `rate` fps while questions are spoken into the microphones,
    transcribed, answered and spoken: camera -> profile latency as a subscriber process sees it,
    and each process's CPU."""
    import json

    import qi

    from uservlm_ros.bringup.graph import load_graph
    from uservlm_ros.bringup.runner import GraphRunner
    from uservlm_ros.ros.node_main import use_uservlm_dds_profile
    from uservlm_ros.sim.audio_device import SPEECH_DIR
    from uservlm_ros.sim.pepper import SimulatedPepper

    qi.logging.setLevel(qi.logging.WARNING)
    use_uservlm_dds_profile()
    os.environ.setdefault("ROS_DOMAIN_ID", "77")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
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
        }
        for node, params in variant.items():
            overrides.setdefault(node, {}).update(params)
        # every profiled frame published, so each one gives a latency sample
        overrides.setdefault("user_profiler_node", {})["publish.max_rate_hz"] = 1000.0
        graph = load_graph("demo", overrides, use_composition=composed)
        log_path = Path(tempfile.mkdtemp(prefix="bench-graph-")) / "nodes.log"
        log = log_path.open("w")  # closed in the finally below
        runner = GraphRunner(graph, out=log, colour=False)
        observer = subprocess.Popen(
            [sys.executable, "-c", OBSERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

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
            cpu_before = {c.process.name: _cpu_seconds(c.popen.pid) for c in runner.children}
            cpu_before["observer"] = _cpu_seconds(observer.pid)
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
                c.process.name: (_cpu_seconds(c.popen.pid) - cpu_before[c.process.name]) / elapsed
                for c in runner.children
            }
            cpu["observer (profile subscriber)"] = (
                _cpu_seconds(observer.pid) - cpu_before["observer"]
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
            observer.kill()
            observer.wait()
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


def bench_clip(size: str, repeats: int, threads: int, fidelity_faces: int = 40) -> None:
    import onnxruntime as ort
    import torch
    from transformers import CLIPConfig, CLIPModel

    from uservlm_ros.backends import clip_profiler
    from uservlm_ros.core import labels

    vision = (
        {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 224,
            "patch_size": 16,
        }
        if size == "vit-b16"
        else {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 16,
        }
    )
    config = CLIPConfig(
        vision_config={**vision, "hidden_act": "quick_gelu"},
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 1,
            "vocab_size": 100,
        },
        projection_dim=512,
    )
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = CLIPModel(config).eval()
    heads = {
        name: torch.nn.functional.normalize(torch.randn(len(classes), 512), dim=-1)
        for name, classes in labels.LABEL_SETS.items()
    }
    crop = [np.random.default_rng(0).integers(0, 256, (224, 224, 3), np.uint8)]
    pixels = clip_profiler.preprocess_crops(crop)
    torch_ms = []
    with torch.no_grad():
        for index in range(repeats + 2):
            start = time.perf_counter()
            clip_profiler.attribute_logits(model, pixels, heads)
            if index >= 2:
                torch_ms.append((time.perf_counter() - start) * 1e3)
    from uservlm_ros.sim.photos import face_crops
    from uservlm_ros.training.export import int8_fidelity, quantize_int8

    frame = [face_crops(lfw_faces=0)[index] for index in (0, 6, 1)]  # one frame of 3 people
    frame_pixels = clip_profiler.preprocess_crops(frame).numpy()

    def timed(session, pixels: np.ndarray) -> list[float]:
        values = []
        for index in range(repeats + 2):
            start = time.perf_counter()
            session.run(["gender"], {"pixel_values": pixels})
            if index >= 2:
                values.append((time.perf_counter() - start) * 1e3 / len(pixels))
        return values

    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = Path(folder) / clip_profiler.ONNX_FILE, Path(folder) / "int8.onnx"
        clip_profiler.export_onnx(model, heads, Path(folder), "bench-clip")
        quantize_int8(fp32, int8)
        rows = []
        for path, name in ((fp32, "fp32"), (int8, "int8")):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            rows.append((f"onnxruntime {name}", timed(session, pixels.numpy())))
            rows.append((f"  {name}, 3 crops batched, per crop", timed(session, frame_pixels)))
        fidelity = int8_fidelity(fp32, int8, face_crops(lfw_faces=fidelity_faces))
    header(
        f"3. clip image encoder {size} (RANDOM weights) + 4 heads, per crop, {threads} thread(s)"
    )
    baseline = percentile(torch_ms, 50)
    print(row(f"torch {torch.__version__} eager fp32", torch_ms, baseline=baseline))
    for name, values in rows:
        print(row(name, values, baseline=baseline))
    agreement = ", ".join(f"{k} {v:.3f}" for k, v in fidelity["top1_agreement"].items())
    print(
        f"\nint8 vs fp32 on {fidelity['crops']} real face crops (random weights): embedding "
        f"cosine min {fidelity['embedding_cosine_min']:.4f}, mean "
        f"{fidelity['embedding_cosine_mean']:.4f}; top-1 agreement {agreement}"
    )


PHASES = ("in-process", "schedule", "dds", "graph", "recall", "clip")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="in-process frames")
    parser.add_argument(
        "--schedule-seconds", type=float, default=20.0, help="camera seconds of the 3-person scene"
    )
    parser.add_argument("--dds-seconds", type=float, default=20.0, help="seconds per DDS phase")
    parser.add_argument(
        "--graph-seconds", type=float, default=30.0, help="seconds per full-graph variant"
    )
    parser.add_argument(
        "--question-period", type=float, default=2.0, help="full graph: seconds between questions"
    )
    parser.add_argument(
        "--graph-variants",
        nargs="+",
        choices=[key for key, *_ in GRAPH_VARIANTS],
        help="full graph: run only these variants (default: all); the first run is the "
        "baseline of the ratios",
    )
    parser.add_argument("--rate", type=float, default=15.0, help="camera rate over DDS, Hz")
    parser.add_argument(
        "--image-qos", nargs="+", choices=("sensor", "reliable"), default=["reliable", "sensor"]
    )
    parser.add_argument("--clip-size", choices=("vit-b16", "tiny"), default="vit-b16")
    parser.add_argument("--clip-repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch / onnxruntime threads")
    parser.add_argument(
        "--phases", nargs="+", choices=PHASES, default=list(PHASES), help="tables to measure"
    )
    args = parser.parse_args()
    print(f"perception benchmark on {os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.1f}")
    if "in-process" in args.phases:
        bench_in_process(args.frames)
    if "schedule" in args.phases:
        bench_schedule(args.schedule_seconds)
    if "dds" in args.phases:
        for image_qos in args.image_qos:
            bench_dds(args.dds_seconds, args.rate, image_qos)
    if "graph" in args.phases:
        bench_graph(args.graph_seconds, args.rate, args.question_period, args.graph_variants)
    if "recall" in args.phases:
        bench_recall((480, 640))
        bench_recall((720, 1280))
    if "clip" in args.phases:
        bench_clip(args.clip_size, args.clip_repeats, args.threads)


if __name__ == "__main__":
    main()
