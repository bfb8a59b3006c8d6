"""Perception benchmark 2: camera -> profile latency over real DDS, against raw rclpy.

    .venv/bin/python bench/perception_dds.py                          # 20 s per phase, both QoS
    .venv/bin/python bench/perception_dds.py --seconds 4 --image-qos reliable  # smoke

face_crop_node and user_profiler_node run as processes; frames are published at --rate:
camera -> profile latency p50/p95 and profiled fps, against a raw rclpy pub/sub of the same
images (bench/perception_relay.py, a process echoing them back; one way = half the round trip).
"""

from __future__ import annotations

import argparse
import threading
import time

from perception_common import (
    banner,
    header,
    percentile,
    row,
    start,
    stop,
    use_local_domain,
    wait_line,
)


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
    use_local_domain()  # the processes below inherit both
    processes = [
        start(["-m", "uservlm_ros.nodes.face_crop_node", "--ros-args", "-p", "debug_image:=false"]),
        start(
            [
                "-m",
                "uservlm_ros.nodes.user_profiler_node",
                "--ros-args",
                "-p",
                "publish.max_rate_hz:=1000.0",
            ]
        ),
        start(["-m", "bench.perception_relay", "--image-qos", image_qos]),
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
            stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--rate", type=float, default=15.0, help="camera rate, Hz")
    parser.add_argument(
        "--image-qos", nargs="+", choices=("sensor", "reliable"), default=["reliable", "sensor"]
    )
    args = parser.parse_args(argv)
    banner("perception DDS benchmark")
    for image_qos in args.image_qos:
        bench_dds(args.seconds, args.rate, image_qos)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
