"""camera_node: frames from a webcam, a video file, an image folder or Pepper's camera (NAOqi).

    python -m uservlm_ros.nodes.camera_node --ros-args -p source:=folder -p path:=photos/

Publishes /camera/image_raw (sensor_msgs/Image, rgb8, sensor QoS) and /camera/camera_info
(sensor_msgs/CameraInfo, sensor QoS), stamped with the time each frame was read.
"""

from __future__ import annotations

import math

import cv2
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from uservlm_ros.backends.camera_sources import SOURCES, FrameSource
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.parameters import Param
from uservlm_ros.ros import topics
from uservlm_ros.ros.conversions import rgb_to_image
from uservlm_ros.ros.diagnostics import Diagnostics
from uservlm_ros.ros.intra_process import IntraProcessPublisher
from uservlm_ros.ros.node_main import node_main
from uservlm_ros.ros.param_declare import node_parameters
from uservlm_ros.ros.qos import IMAGE_QOS, SENSOR_QOS

PARAMS = [
    SOURCES.choice_param("source", "webcam", "Where frames come from"),
    *SOURCES.params(),
    Param("rate_hz", 15.0, "Frames published per second (at most)", min=0.1, max=120.0),
    Param("width", 0, "Output width in pixels; 0 keeps the source's", min=0, max=8192),
    Param("height", 0, "Output height in pixels; 0 keeps the source's", min=0, max=8192),
    Param(
        "image_qos",
        "sensor",
        "QoS of /camera/image_raw: `sensor` (best effort) or `reliable` (depth 1; a reliable "
        "publisher also serves best-effort subscribers)",
        choices=("sensor", "reliable"),
    ),
    Param("frame_id", "camera", "header.frame_id of the images"),
    Param(
        "horizontal_fov_deg",
        56.3,
        "Horizontal field of view for camera_info's pinhole model (56.3: Pepper's top camera)",
        min=1.0,
        max=179.0,
    ),
]


class CameraNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("camera_node", **kwargs)
        self.params = p = node_parameters(self, PARAMS)  # read at start-up: changes are refused
        self.diagnostics = Diagnostics(self, hardware_id=p["source"])
        self.source = self._open_source()
        # In a container, face_crop_node takes the frames directly (ros/intra_process.py).
        self._image_pub = IntraProcessPublisher(
            self, Image, topics.IMAGE, IMAGE_QOS[p["image_qos"]]
        )
        self._info_pub = self.create_publisher(CameraInfo, topics.CAMERA_INFO, SENSOR_QOS)
        self._timer = self.create_timer(1.0 / p["rate_hz"], self._tick)
        self.diagnostics.set_status(DiagnosticStatus.OK, f"streaming {self.source.description}")
        self.get_logger().info(
            f"camera_node streaming {self.source.description} to "
            f"{self.resolve_topic_name(topics.IMAGE)}"
        )

    def _open_source(self) -> FrameSource:
        return SOURCES.create(self.params["source"], self.params, self.params["rate_hz"])

    def destroy_node(self) -> None:
        if hasattr(self, "source"):  # absent when the source failed to open in __init__
            self.source.close()
        super().destroy_node()

    def _tick(self) -> None:
        try:
            frame = self.source.read()
        except UservlmError as error:
            self.diagnostics.count("read_errors")
            self.diagnostics.set_status(DiagnosticStatus.WARN, str(error))
            self.get_logger().warning(f"no frame: {error}", throttle_duration_sec=5.0)
            return
        if frame is None:
            self._timer.cancel()
            self.diagnostics.values["end_of_source"] = True
            self.diagnostics.set_status(DiagnosticStatus.WARN, "end of source")
            self.get_logger().warning(
                f"end of {self.source.description} after "
                f"{self.diagnostics.values.get('frames_published', 0)} frames; no more frames"
            )
            return
        width, height = self.params["width"], self.params["height"]
        if width and height and frame.shape[:2] != (height, width):
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.params["frame_id"])
        self._image_pub.publish(rgb_to_image(frame, header))
        self._info_pub.publish(self._camera_info(header, frame.shape[1], frame.shape[0]))
        self.diagnostics.count("frames_published")
        self.diagnostics.set_status(DiagnosticStatus.OK, f"streaming {self.source.description}")

    def _camera_info(self, header: Header, width: int, height: int) -> CameraInfo:
        """An ideal pinhole camera of the configured field of view (uncalibrated)."""
        focal = width / 2 / math.tan(math.radians(self.params["horizontal_fov_deg"]) / 2)
        cx, cy = width / 2, height / 2
        return CameraInfo(
            header=header,
            width=width,
            height=height,
            distortion_model="plumb_bob",
            d=[0.0] * 5,
            k=[focal, 0.0, cx, 0.0, focal, cy, 0.0, 0.0, 1.0],
            r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p=[focal, 0.0, cx, 0.0, 0.0, focal, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
        )


NODE = CameraNode  # what a container (nodes/container.py) builds under this node's name
main = node_main(NODE)

if __name__ == "__main__":
    main()
