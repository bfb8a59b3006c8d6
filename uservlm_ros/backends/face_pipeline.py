"""Detect, track and align faces in one frame: what face_crop_node, the demo and eval share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from uservlm_ros.backends.face_detector import FaceDetector
from uservlm_ros.core.alignment import AlignedCrop, align_face
from uservlm_ros.core.faces import Detection
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.tracking import Tracker, TrackerConfig


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline keeps of the detections and how it crops them (face_crop_node's
    parameters of the same names)."""

    min_face_size: int = setting(24, min=1, max=4096)
    """Smaller faces (box side, pixels) are ignored"""
    crop_size: int = setting(224, min=16, max=1024)
    """Side of the aligned face crops, pixels"""
    crop_margin: float = setting(0.2, min=0.0, max=2.0)
    """Margin around the face box in the crop, as a fraction of the box on each side"""
    min_confidence: float = 0.6  # detections scoring less are ignored: detector.min_confidence
    tracker: TrackerConfig = field(default_factory=TrackerConfig)


@dataclass(frozen=True)
class TrackedFace:
    track_id: int
    detection: Detection
    crop: AlignedCrop


@dataclass(frozen=True)
class FrameFaces:
    faces: list[TrackedFace]
    timings_ms: dict[str, float]  # stage -> milliseconds: detect, track, crop


class FacePipeline:
    def __init__(self, detector: FaceDetector, config: PipelineConfig | None = None) -> None:
        self.detector = detector
        self.config = config or PipelineConfig()
        self.tracker = Tracker(self.config.tracker)

    def process(self, rgb: np.ndarray, stamp: float) -> FrameFaces:
        """Faces of one (h, w, 3) uint8 RGB frame taken at `stamp` (seconds)."""
        config = self.config
        start = time.perf_counter()
        detections = [
            det
            for det in self.detector.detect(rgb)
            if det.score >= config.min_confidence
            and min(det.box.width, det.box.height) >= config.min_face_size
        ]
        detected = time.perf_counter()
        tracked = self.tracker.update(detections, stamp)
        track_done = time.perf_counter()
        faces = [
            TrackedFace(
                item.track_id,
                item.detection,
                align_face(rgb, item.detection, config.crop_size, config.crop_margin),
            )
            for item in tracked
        ]
        cropped = time.perf_counter()
        return FrameFaces(
            faces,
            {
                "detect": (detected - start) * 1e3,
                "track": (track_done - detected) * 1e3,
                "crop": (cropped - track_done) * 1e3,
            },
        )
