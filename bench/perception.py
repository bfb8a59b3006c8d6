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
   eager vs onnxruntime, ratio against torch.
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
    from uservlm_ros.backends.face_detector import create_face_detector
    from uservlm_ros.backends.face_pipeline import FacePipeline
    from uservlm_ros.backends.profiler import create_profiler
    from uservlm_ros.core import labels
    from uservlm_ros.sim.photos import frame_with_faces

    pipeline = FacePipeline(create_face_detector("blazeface_full"))
    profiler = create_profiler("attributes")
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
    from uservlm_ros.backends.face_detector import create_face_detector
    from uservlm_ros.backends.face_pipeline import FacePipeline
    from uservlm_ros.backends.profiler import create_profiler
    from uservlm_ros.core import labels
    from uservlm_ros.core.fusion import FusionConfig, ProfileFusion
    from uservlm_ros.core.profile_schedule import PROFILED, ProfileScheduler, ScheduleConfig

    arrivals = (0.0, 2.0, 4.0)
    pipeline = FacePipeline(create_face_detector("blazeface_full"))
    frames = [
        (stamp, pipeline.process(frame, stamp).faces)
        for stamp, frame in three_person_scene(fps, seconds, arrivals)
    ]
    profiler = create_profiler("attributes")
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


def bench_clip(size: str, repeats: int, threads: int) -> None:
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
    with tempfile.TemporaryDirectory() as folder:
        clip_profiler.export_onnx(model, heads, Path(folder), "bench-clip")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(
            str(Path(folder) / clip_profiler.ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
        onnx_ms = []
        for index in range(repeats + 2):
            start = time.perf_counter()
            session.run(None, {"pixel_values": pixels.numpy()})
            if index >= 2:
                onnx_ms.append((time.perf_counter() - start) * 1e3)
    header(f"3. clip image encoder {size} (random weights) + 4 heads, 1 crop, {threads} thread(s)")
    print(row(f"torch {torch.__version__} eager fp32", torch_ms, baseline=percentile(torch_ms, 50)))
    print(row(f"onnxruntime {ort.__version__} fp32", onnx_ms, baseline=percentile(torch_ms, 50)))


PHASES = ("in-process", "schedule", "dds", "clip")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="in-process frames")
    parser.add_argument(
        "--schedule-seconds", type=float, default=20.0, help="camera seconds of the 3-person scene"
    )
    parser.add_argument("--dds-seconds", type=float, default=20.0, help="seconds per DDS phase")
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
    if "clip" in args.phases:
        bench_clip(args.clip_size, args.clip_repeats, args.threads)


if __name__ == "__main__":
    main()
