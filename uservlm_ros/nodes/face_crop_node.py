"""face_crop_node: camera frames -> tracked faces with aligned crops (uservlm/FaceArray).

    python -m uservlm_ros.nodes.face_crop_node --ros-args -p detector.name:=blazeface_full

Subscribes /camera/image_raw (sensor_msgs/Image, sensor QoS) and /uservlm/user_profile (for the
debug image's labels); publishes /uservlm/faces (uservlm/FaceArray, reliable) and, only while
someone subscribes, /uservlm/debug_image (sensor_msgs/Image, rgb8).
"""

from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import Image
from uservlm.msg import FaceArray, UserProfile

from uservlm_ros.backends.face_detector import DETECTORS
from uservlm_ros.backends.face_pipeline import FacePipeline, FrameFaces, PipelineConfig
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.health import health_params
from uservlm_ros.core.overlay import Person, draw_people
from uservlm_ros.core.parameters import Param, config_of, params_of
from uservlm_ros.core.tracking import TrackerConfig
from uservlm_ros.core.worker import SlotWorker
from uservlm_ros.ros import topics
from uservlm_ros.ros.conversions import (
    face_to_msg,
    image_to_rgb,
    profile_label_lines,
    rgb_to_image,
    stage_timings,
    stamp_to_seconds,
)
from uservlm_ros.ros.diagnostics import log_rejection, log_running, loss_counter
from uservlm_ros.ros.intra_process import IntraProcessPublisher, intra_process_subscription
from uservlm_ros.ros.lifecycle import ModelNode
from uservlm_ros.ros.node_main import node_main
from uservlm_ros.ros.param_declare import AUTOSTART
from uservlm_ros.ros.qos import IMAGE_QOS, LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS

# Said once when DDS reports camera frames lost before they reached this node.
FRAME_LOSS_ADVICE = (
    "large camera frames exceed Fast DDS's default shared-memory segment; start the camera "
    "driver with FASTDDS_DEFAULT_PROFILES_FILE=<uservlm share>/config/fastdds.xml (as every "
    "uservlm process does), or use image_qos:=reliable with a reliable camera publisher"
)

PARAMS = [
    AUTOSTART,
    DETECTORS.choice_param("detector.name", "blazeface_full", "Face detector"),
    *DETECTORS.params(),
    *params_of(PipelineConfig, ""),
    *params_of(TrackerConfig, "tracker"),
    Param(
        "image_qos",
        "sensor",
        "QoS of /camera/image_raw: `sensor` (best effort) or `reliable` (depth 1; repairs lost "
        "fragments of large frames, needs a reliable publisher on the other side)",
        choices=("sensor", "reliable"),
    ),
    Param(
        "debug_image",
        True,
        "Offer /uservlm/debug_image (boxes, ids, profile labels); drawn only while subscribed",
    ),
    # A frame takes 5-20 ms on 2 cores; 100 ms means the node cannot keep up with 10 fps.
    *health_params(max_processing_ms=100.0, hang_s=5.0),
]


class FaceCropNode(ModelNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("face_crop_node", PARAMS, **kwargs)
        self.pipeline: FacePipeline | None = None
        self._worker: SlotWorker[tuple[Image, float]] = SlotWorker(
            lambda item: self._process(*item),
            "face_crop_worker",
            self.worker_error_logger(lambda item: f"frame {item[0].header.stamp}"),
        )
        self.workers = [self._worker]
        self._rejections: dict[str, float] = {}  # log text -> when last logged
        # track id -> (label lines, engaged) of its latest profile, for the debug image
        self._labels: dict[int, tuple[list[str], bool]] = {}

    def _configure(self) -> TransitionCallbackReturn:
        p = self.params
        try:
            detector = DETECTORS.create(p["detector.name"], p)
        except UservlmError as error:
            self.get_logger().error(f"cannot load the face detector: {error}")
            return TransitionCallbackReturn.FAILURE
        self.pipeline = FacePipeline(
            detector,
            config_of(
                PipelineConfig,
                "",
                p,
                min_confidence=p["detector.min_confidence"],
                tracker=config_of(TrackerConfig, "tracker", p),
            ),
        )
        self.start_diagnostics(detector.name)
        self.get_logger().info(f"face detector {detector.name} loaded from {detector.model_path}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        # In a container, frames come from camera_node and faces go to user_profiler_node
        # directly (ros/intra_process.py).
        self._faces_pub = IntraProcessPublisher(self, FaceArray, topics.FACES, RELIABLE_QOS)
        self._io = [
            self._faces_pub,
            intra_process_subscription(
                self,
                Image,
                topics.IMAGE,
                self._on_image,
                IMAGE_QOS[self.params["image_qos"]],
                event_callbacks=loss_counter(self, "frames_lost_in_transport", FRAME_LOSS_ADVICE),
            ),
        ]
        self._debug_pub = None
        if self.params["debug_image"]:
            self._debug_pub = self.create_publisher(Image, topics.DEBUG_IMAGE, SENSOR_QOS)
            self._io += [
                self._debug_pub,
                self.create_subscription(
                    UserProfile, topics.PROFILE, self._on_profile, LATCHED_QOS
                ),
            ]
        self._worker.start()
        self.diagnostics.set_status(DiagnosticStatus.OK, "active")
        log_running(self, "active", "{} -> {}", topics.IMAGE, topics.FACES)
        return TransitionCallbackReturn.SUCCESS

    def _release_model(self) -> None:
        self.pipeline = None

    def _on_image(self, msg: Image) -> None:
        if self._worker.put((msg, time.time())):
            self.diagnostics.count("frames_dropped")
        self.diagnostics.count("frames_received")

    def _on_profile(self, msg: UserProfile) -> None:
        self._labels[msg.track_id] = (profile_label_lines(msg), bool(msg.engaged))

    def _process(self, msg: Image, received: float) -> None:
        taken = time.time()
        try:
            rgb = image_to_rgb(msg)
        except UservlmError as error:
            self.diagnostics.count("images_rejected")
            log_rejection(
                self, self._rejections, f"rejected image ({msg.header.frame_id}): {error}"
            )
            return
        frame = self.pipeline.process(rgb, stamp_to_seconds(msg.header.stamp))
        camera = stamp_to_seconds(msg.header.stamp)
        timings = {"camera_transport": (received - camera) * 1e3} if camera > 0 else {}
        timings["queue"] = (taken - received) * 1e3
        timings.update(frame.timings_ms)
        height, width = rgb.shape[:2]
        self._faces_pub.publish(
            FaceArray(
                header=msg.header,
                image_width=width,
                image_height=height,
                faces=[face_to_msg(f, msg.header, width, height) for f in frame.faces],
                timings=stage_timings(timings),
            )
        )
        self.diagnostics.count("frames_processed")
        self.diagnostics.count("faces_published", len(frame.faces))
        self.diagnostics.values["tracks"] = len(self.pipeline.tracker.tracks)
        if self._debug_pub is not None and self._debug_pub.get_subscription_count() > 0:
            self._debug_pub.publish(rgb_to_image(self._draw(rgb, frame), msg.header))

    def _draw(self, rgb: np.ndarray, frame: FrameFaces) -> np.ndarray:
        people = []
        for face in frame.faces:
            box = face.detection.box
            lines, engaged = self._labels.get(face.track_id, ((), False))
            people.append(
                Person(
                    (box.xmin, box.ymin, box.xmax, box.ymax),
                    face.track_id,
                    lines,
                    engaged,
                    face.detection.landmarks,
                )
            )
        return draw_people(rgb, people)


NODE = FaceCropNode  # what a container (nodes/container.py) builds under this node's name
main = node_main(NODE)

if __name__ == "__main__":
    main()
