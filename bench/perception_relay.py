"""The raw baseline of bench/perception_dds.py: echoes /bench/image on /bench/echo with plain
rclpy, subscribing with the image QoS face_crop_node uses.

    python -m bench.perception_relay --image-qos reliable    # from the repository root
"""

from __future__ import annotations

import argparse

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image

from uservlm_ros.ros.node_main import use_uservlm_dds_profile
from uservlm_ros.ros.qos import IMAGE_QOS, RELIABLE_QOS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-qos", choices=sorted(IMAGE_QOS), default="reliable")
    args = parser.parse_args()
    use_uservlm_dds_profile()  # as the nodes it is compared with
    rclpy.init()
    node = Node("bench_relay")
    out = node.create_publisher(Image, "/bench/echo", RELIABLE_QOS)
    node.create_subscription(Image, "/bench/image", out.publish, IMAGE_QOS[args.image_qos])
    print("relay ready", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:  # SIGINT from the benchmark: a clean stop
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
