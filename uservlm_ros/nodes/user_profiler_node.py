"""user_profiler_node: tracked face crops -> one fused profile per user (uservlm/UserProfile).

    python -m uservlm_ros.nodes.user_profiler_node --ros-args -p backend:=attributes

Subscribes /uservlm/faces (uservlm/FaceArray, reliable); publishes /uservlm/user_profile
(uservlm/UserProfile, reliable + transient-local, at most `publish.max_rate_hz` per track).
Face crops are processed in memory only; nothing is written to disk.

Every FaceArray also feeds the engagement estimator (core/engagement.py), also those the profiler
skips while busy; each profile carries its track's face box, engagement score and state.
"""

from __future__ import annotations

import math
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from uservlm.msg import FaceArray, Transcript, UserProfile

from uservlm_ros.backends.profiler import PROFILERS, ProfilerOptions, create_profiler
from uservlm_ros.core import labels
from uservlm_ros.core.engagement import EngagementConfig, EngagementEstimator
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.fusion import FusionConfig, ProfileFusion
from uservlm_ros.core.health import health_params
from uservlm_ros.core.parameters import Param
from uservlm_ros.core.profile_schedule import PROFILED, ProfileScheduler, ScheduleConfig
from uservlm_ros.core.worker import SlotWorker
from uservlm_ros.ros import topics
from uservlm_ros.ros.conversions import (
    face_to_observation,
    image_to_rgb,
    profile_to_msg,
    set_engagement,
    stage_timings,
    stamp_to_seconds,
)
from uservlm_ros.ros.diagnostics import log_rejection
from uservlm_ros.ros.intra_process import intra_process_subscription
from uservlm_ros.ros.lifecycle import ModelNode
from uservlm_ros.ros.node_main import run_node
from uservlm_ros.ros.parameters import AUTOSTART
from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS

DEFAULT_THRESHOLDS = {"age_group": 0.3, "gender": 0.6, "ethnicity": 0.4, "emotion": 0.4}


def _device_problem(value: str) -> str | None:
    if value == "cpu" or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        return None
    return f"expected cpu, cuda or cuda:N, got {value!r}"


_ENGAGEMENT = EngagementConfig()  # the defaults
ENGAGEMENT_PARAMS = [
    Param(
        "engagement.max_distance_m",
        _ENGAGEMENT.max_distance_m,
        "Distance (estimated from the face size) at which the proximity cue reaches 0, metres",
        min=0.5,
        max=20.0,
    ),
    Param(
        "engagement.camera_vfov_deg",
        _ENGAGEMENT.camera_vfov_deg,
        "Camera's vertical field of view, degrees, to turn face size into distance (Pepper's "
        "top camera: 44.3)",
        min=10.0,
        max=170.0,
    ),
    Param(
        "engagement.smoothing_s",
        _ENGAGEMENT.smoothing_s,
        "Time constant of the engagement score's smoothing, seconds of camera time",
        min=0.05,
        max=30.0,
    ),
    Param(
        "engagement.time_in_view_s",
        _ENGAGEMENT.time_in_view_s,
        "A new face counts half; its full weight after this long in view, seconds",
        min=0.01,
        max=60.0,
    ),
    Param(
        "engagement.engage_threshold",
        _ENGAGEMENT.engage_threshold,
        "Score at or above which a person becomes ENGAGING (or an ENGAGED/DISENGAGING one "
        "ENGAGED again); must exceed engagement.disengage_threshold",
        min=0.0,
        max=1.0,
    ),
    Param(
        "engagement.disengage_threshold",
        _ENGAGEMENT.disengage_threshold,
        "Score below which an ENGAGING person becomes DISENGAGED and the engaged one DISENGAGING",
        min=0.0,
        max=1.0,
    ),
    Param(
        "engagement.min_dwell_s",
        _ENGAGEMENT.min_dwell_s,
        "Time ENGAGING before becoming engaged, and DISENGAGING before letting go, seconds",
        min=0.0,
        max=60.0,
    ),
    Param(
        "engagement.switch_margin",
        _ENGAGEMENT.switch_margin,
        "How much higher another person's score must be to take over the engagement",
        min=0.0,
        max=1.0,
    ),
    Param(
        "engagement.switch_dwell_s",
        _ENGAGEMENT.switch_dwell_s,
        "How long the other person must stay that much higher before the engagement switches, "
        "seconds",
        min=0.0,
        max=60.0,
    ),
]

PARAMS = [
    AUTOSTART,
    Param(
        "backend",
        "attributes",
        "Profiler: `attributes` (shipped age/gender/emotion models, no ethnicity) or `clip` "
        "(CLIP/FaRL zero-shot over FairFace prompts, needs model.path)",
        choices=PROFILERS,
    ),
    Param(
        "model.path",
        "",
        "attributes: folder with age-v1.onnx, gender-v1.onnx, emotion_model_quantized.tflite "
        '("" = the installed packages\' files); clip: HF CLIP folder, OpenAI/FaRL state dict '
        "(.pt/.pth), or an exported models/<name>/ folder (ONNX + manifest)",
    ),
    Param(
        "model.tokenizer_path",
        "",
        "clip with a .pt/.pth state dict: folder of a CLIP tokenizer (BPE vocab and merges)",
    ),
    Param(
        "model.device", "cpu", "clip: torch device, or CUDA for onnxruntime", check=_device_problem
    ),
    Param("model.dtype", "fp32", "clip (torch): weight dtype", choices=("fp32", "fp16", "bf16")),
    Param("model.threads", 1, "CPU threads of the profiler models", min=1, max=64),
    *[
        Param(
            f"enable.{name}",
            True,
            f"Estimate {name}; false reports it unknown (disabled)",
            live=True,
        )
        for name in labels.ATTRIBUTES
    ],
    *[
        Param(
            f"threshold.{name}",
            DEFAULT_THRESHOLDS[name],
            f"Minimum fused confidence of {name}; below it the label is unknown",
            min=0.0,
            max=1.0,
            live=True,
        )
        for name in labels.ATTRIBUTES
    ],
    Param(
        "fusion.half_life_s",
        1.0,
        "An observation's weight in the fused profile halves every this many seconds",
        min=0.01,
        max=3600.0,
        live=True,
    ),
    Param(
        "fusion.expiry_s",
        5.0,
        "A track's profile is forgotten after this long without a face",
        min=0.1,
        max=86400.0,
        live=True,
    ),
    Param(
        "publish.max_rate_hz",
        5.0,
        "Most profiles per second per track",
        min=0.01,
        max=1000.0,
        live=True,
    ),
    Param(
        "max_faces",
        10,
        "Faces profiled per FaceArray at most: the largest ones; the rest are skipped and "
        "counted (bounds time and memory in a crowd)",
        min=1,
        max=100,
        live=True,
    ),
    *[
        Param(
            f"profile.{name}",
            default,
            description,
            live=True,
            **limits,
        )
        for name, default, description, limits in (
            (
                "schedule",
                True,
                "Profile only crops that help (new tracks at once, unsettled ones at "
                "`profile.unsettled_hz`, settled ones at `profile.refresh_hz`, quality gate); "
                "false profiles every crop of every frame",
                {},
            ),
            (
                "refresh_hz",
                1.0,
                "Profiles per second of a settled track (enough crops fused, every attribute "
                "above its threshold)",
                {"min": 0.01, "max": 1000.0},
            ),
            (
                "unsettled_hz",
                5.0,
                "Profiles per second of a track whose profile has not settled yet",
                {"min": 0.01, "max": 1000.0},
            ),
            (
                "settle_observations",
                3,
                "Crops fused before a track's profile can count as settled",
                {"min": 1, "max": 1000},
            ),
            (
                "max_per_frame",
                1,
                "Crops of known tracks (unsettled or refresh) profiled per frame at most; due "
                "ones wait for the next frame, so refreshes spread out (new tracks: no limit)",
                {"min": 1, "max": 100},
            ),
            (
                "min_face_px",
                40.0,
                "Quality gate: faces with a smaller box side (source pixels) are not profiled",
                {"min": 0.0, "max": 4096.0},
            ),
            (
                "min_sharpness",
                60.0,
                "Quality gate: crops with a lower variance of the Laplacian (at 64 px; sharp "
                "faces score 300-5000) are not profiled as blurred",
                {"min": 0.0, "max": 1e6},
            ),
            (
                "max_turn",
                0.5,
                "Quality gate: nose offset from the eyes' midline in inter-eye distances "
                "(0.5 ~ 45 degrees of yaw); more is turned away and not profiled",
                {"min": 0.0, "max": 100.0},
            ),
            (
                "max_roll_deg",
                60.0,
                "Quality gate: faces rolled further (lying, upside down) are not profiled",
                {"min": 0.0, "max": 180.0},
            ),
        )
    ],
    # One crop takes ~10 ms with the shipped models on 2 cores; a frame of 10 faces ~100 ms.
    *health_params(max_processing_ms=250.0, hang_s=10.0),
    *ENGAGEMENT_PARAMS,
]


class UserProfilerNode(ModelNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("user_profiler_node", PARAMS, **kwargs)
        self.profiler = None
        self.fusion: ProfileFusion | None = None
        self.scheduler = ProfileScheduler()
        self._worker: SlotWorker[tuple[FaceArray, float]] = SlotWorker(
            lambda item: self._process(*item),
            "profiler_worker",
            self.worker_error_logger(
                lambda item: (
                    f"FaceArray {item[0].header.stamp} "
                    f"(tracks {[face.track_id for face in item[0].faces][:10]})"
                )
            ),
            idle=self._expire,
        )
        self.workers = [self._worker]
        self._last_published: dict[int, float] = {}
        self._rejections: dict[str, float] = {}
        self._publisher = None
        self._last_camera: tuple[float, float] | None = None  # (camera stamp, wall arrival)
        self.engagement: EngagementEstimator | None = None
        self._engagement_lock = threading.Lock()  # fed by the executor, read by the worker
        self._partner: int | None = None  # the engaged track of the latest published profiles
        self._last_profiles: dict[int, UserProfile] = {}

    @property
    def enabled(self) -> frozenset[str]:
        return frozenset(a for a in labels.ATTRIBUTES if self.params[f"enable.{a}"])

    def _configure(self) -> TransitionCallbackReturn:
        p = self.params
        options = ProfilerOptions(
            path=p["model.path"],
            device=p["model.device"],
            dtype=p["model.dtype"],
            threads=p["model.threads"],
            tokenizer_path=p["model.tokenizer_path"],
        )
        try:
            self.profiler = create_profiler(p["backend"], options)
        except UservlmError as error:
            self.get_logger().error(f"cannot load the {p['backend']} profiler: {error}")
            return TransitionCallbackReturn.FAILURE
        self.fusion = ProfileFusion(self._fusion_config(), supported=self.profiler.supported)
        try:
            self.engagement = EngagementEstimator(self._engagement_config())
        except ValueError as error:
            self.get_logger().error(f"bad engagement parameters: {error}")
            return TransitionCallbackReturn.FAILURE
        self.scheduler = ProfileScheduler(self._schedule_config())
        self.start_diagnostics(self.profiler.model_id)
        estimated = ", ".join(sorted(self.enabled & self.profiler.supported)) or "nothing"
        self.get_logger().info(f"profiler {self.profiler.model_id} loaded; estimating {estimated}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._publisher = self.create_publisher(UserProfile, topics.PROFILE, LATCHED_QOS)
        self._io = [
            self._publisher,
            # in a container, straight from face_crop_node (ros/intra_process.py)
            intra_process_subscription(self, FaceArray, topics.FACES, self._on_faces, RELIABLE_QOS),
            self.create_subscription(
                Transcript, topics.TRANSCRIPT, self._on_transcript, RELIABLE_QOS
            ),
        ]
        self._worker.start()
        self.diagnostics.set_status(DiagnosticStatus.OK, "active")
        self.get_logger().info(
            f"user_profiler_node active: {self.resolve_topic_name(topics.FACES)} -> "
            f"{self.resolve_topic_name(topics.PROFILE)}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _fusion_config(self) -> FusionConfig:
        p = self.params
        return FusionConfig(
            half_life_s=p["fusion.half_life_s"],
            expiry_s=p["fusion.expiry_s"],
            thresholds={a: p[f"threshold.{a}"] for a in labels.ATTRIBUTES},
            enabled=self.enabled,
        )

    def _schedule_config(self) -> ScheduleConfig:
        p = self.params
        return ScheduleConfig(
            enabled=p["profile.schedule"],
            refresh_hz=p["profile.refresh_hz"],
            unsettled_hz=p["profile.unsettled_hz"],
            settle_observations=p["profile.settle_observations"],
            max_per_frame=p["profile.max_per_frame"],
            min_face_px=p["profile.min_face_px"],
            min_sharpness=p["profile.min_sharpness"],
            max_turn=p["profile.max_turn"],
            max_roll_deg=p["profile.max_roll_deg"],
        )

    def _apply_live(self, changed: dict) -> None:
        if self.fusion is not None:  # thresholds, privacy switches, fusion: from the next crop on
            self.fusion.config = self._fusion_config()
        self.scheduler.config = self._schedule_config()

    def _release_model(self) -> None:
        self.profiler = self.fusion = self.engagement = None

    def _on_faces(self, msg: FaceArray) -> None:
        self._feed_engagement(msg)
        if self._worker.put((msg, time.time())):
            self.diagnostics.count("face_arrays_dropped")
        self.diagnostics.count("face_arrays_received")

    def _expire(self) -> None:
        self._republish_former_partner()
        for track_id in self.fusion.expire(self._camera_now()):
            self._last_published.pop(track_id, None)
            self._last_profiles.pop(track_id, None)
            self.scheduler.forget(track_id)
            self.diagnostics.count("tracks_expired")
        self.diagnostics.values["tracks"] = len(self.fusion.track_ids)

    def _camera_now(self) -> float:
        """Now on the camera's clock: the latest camera stamp plus the wall time since it came.
        Live this is wall time; on a replayed bag (old stamps) tracks still expire only after
        `fusion.expiry_s` of the recording without the face."""
        if self._last_camera is None:
            return 0.0
        stamp, arrived = self._last_camera
        return stamp + (time.time() - arrived)

    def _faces_to_profile(self, msg: FaceArray) -> list:
        """The `max_faces` largest faces with a valid, distinct track id (0 is never a face)."""
        valid, seen = [], set()
        for face in msg.faces:
            if face.track_id == 0 or face.track_id in seen:
                self.diagnostics.count("faces_rejected")
                log_rejection(
                    self,
                    self._rejections,
                    f"rejected face with track id {face.track_id}: ids must be >= 1 and "
                    "distinct within a FaceArray",
                )
                continue
            seen.add(face.track_id)
            valid.append(face)
        limit = self.params["max_faces"]
        if len(valid) > limit:
            self.diagnostics.count("faces_skipped", len(valid) - limit)
            valid.sort(key=_face_area, reverse=True)
            valid = valid[:limit]
        return valid

    def _scheduled(self, msg: FaceArray, face, crop, camera: float) -> bool:
        """Whether this crop is profiled now (profile.* schedule and quality gate); a skipped
        crop is counted by reason and still keeps its track's profile alive."""
        if not self.scheduler.config.enabled:
            return True
        landmarks = np.array([(p.x, p.y) for p in face.landmarks], np.float32).reshape(-1, 2)
        reason = self.scheduler.decide(
            face.track_id,
            camera,
            self.fusion,
            _face_px(face, msg.image_width, msg.image_height),
            landmarks,
            face.roll_deg,
            crop,
        )
        self.diagnostics.count(f"crops_{reason}")
        return reason in PROFILED

    def _process(self, msg: FaceArray, received: float) -> None:
        taken = time.time()
        # Frames without a stamp count as seen on arrival.
        camera = stamp_to_seconds(msg.header.stamp) or received
        self._last_camera = (camera, received)
        faces, crops = [], []
        for face in self._faces_to_profile(msg):
            try:
                crop = image_to_rgb(face.crop)
            except UservlmError as error:
                self.diagnostics.count("crops_rejected")
                log_rejection(
                    self, self._rejections, f"rejected crop of track {face.track_id}: {error}"
                )
                continue
            if self._scheduled(msg, face, crop, camera):
                crops.append(crop)
                faces.append(face)
        if not faces:
            return
        estimates = self.profiler.estimate(crops, self.enabled)
        profiled = time.time()
        upstream = sum(t.duration_ms for t in msg.timings)
        timings = {
            "faces_transport": max((received - camera) * 1e3 - upstream, 0.0),
            "profile_queue": (taken - received) * 1e3,
            "profile": (profiled - taken) * 1e3,
        }
        min_interval = 1.0 / self.params["publish.max_rate_hz"]
        for face, estimate in zip(faces, estimates, strict=True):
            fused = self.fusion.update(face.track_id, camera, estimate)
            self.diagnostics.count("crops_profiled")
            now = time.time()
            if now - self._last_published.get(face.track_id, -1e9) < min_interval:
                continue
            self._last_published[face.track_id] = now
            timings["fuse"] = (now - profiled) * 1e3
            self._publisher.publish(
                self._with_engagement(
                    profile_to_msg(
                        fused,
                        msg.header,
                        self.profiler.model_id,
                        [*msg.timings, *stage_timings(timings)],
                    )
                )
            )
            self.diagnostics.count("profiles_published")

    # -- engagement (core/engagement.py): fed per FaceArray, read when a profile is published

    def _engagement_config(self) -> EngagementConfig:
        p = self.params
        names = [q.name.split(".", 1)[1] for q in ENGAGEMENT_PARAMS]
        return EngagementConfig(
            **{name: p[f"engagement.{name}"] for name in names},
            forget_after_s=p["fusion.expiry_s"],
        )

    def _feed_engagement(self, msg: FaceArray) -> None:
        # Frames without a stamp count as seen on arrival (as for fusion).
        stamp = stamp_to_seconds(msg.header.stamp) or time.time()
        observations = []
        for face in msg.faces:
            try:
                if face.track_id == 0:  # rejected (and logged) by _faces_to_profile as well
                    continue
                observations.append(face_to_observation(face))
            except ValueError as error:
                self.diagnostics.count("faces_rejected")
                log_rejection(self, self._rejections, f"rejected face: {error}")
        with self._engagement_lock:
            self.engagement.update(stamp, observations)
            partner = self.engagement.partner
        self.diagnostics.values["engaged_track"] = partner if partner is not None else "none"

    def _on_transcript(self, msg: Transcript) -> None:
        """Someone spoke to the robot (not the robot itself): the engagement speech cue."""
        if msg.dropped in ("", "noise", "low_confidence") and msg.text.strip():
            with self._engagement_lock:
                speaker = self.engagement.likely_speaker()
                if speaker is not None:
                    self.engagement.heard_speech(speaker, self._camera_now())
            self.diagnostics.count("speech_cues")

    def _with_engagement(self, profile: UserProfile) -> UserProfile:
        with self._engagement_lock:
            status = self.engagement.status(profile.track_id)
        self._last_profiles[profile.track_id] = profile
        return set_engagement(profile, status)

    def _republish_former_partner(self) -> None:
        """When the engagement moved, publish the former partner's profile at once (not after
        its rate limit) so that subscribers never hold two engaged profiles for long."""
        with self._engagement_lock:
            partner = self.engagement.partner
        former, self._partner = self._partner, partner
        if former is None or former == partner or former not in self._last_profiles:
            return
        self._publisher.publish(self._with_engagement(self._last_profiles[former]))
        self.diagnostics.count("profiles_published")


def _face_px(face, image_width: int, image_height: int) -> float:
    """Side of the face box in source pixels (roi, else the normalised box); NaN if unknown."""
    if face.roi.width > 0 and face.roi.height > 0:
        return float(min(face.roi.width, face.roi.height))
    side = min((face.xmax - face.xmin) * image_width, (face.ymax - face.ymin) * image_height)
    return float(side) if side > 0 else math.nan


def _face_area(face) -> float:
    area = (face.xmax - face.xmin) * (face.ymax - face.ymin)
    return area if math.isfinite(area) else 0.0


# What a container (nodes/container.py) builds under this node's name.
NODE = UserProfilerNode


def main(args=None):
    sys.exit(run_node(UserProfilerNode, args))


if __name__ == "__main__":
    main()
