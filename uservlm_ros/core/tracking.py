"""Multi-face tracking: stable ids from IoU matching with constant-velocity prediction.

A person who leaves (or is missed) and comes back within `reid_timeout_s` keeps the id when the
new box has a similar size and lies near where the track was last seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from uservlm_ros.core.faces import Box, Detection, iou
from uservlm_ros.core.parameters import setting


@dataclass(frozen=True)
class TrackerConfig:
    iou_threshold: float = setting(0.3, min=0.01, max=1.0)
    """Minimum IoU of a face with a track's motion-predicted box to continue the track"""
    reid_timeout_s: float = setting(3.0, min=0.0, max=600.0)
    """A person who leaves and comes back within this time keeps the id if the box matches"""
    reid_max_shift: float = setting(1.0, min=0.0, max=10.0)
    """Re-identification: maximum move of the box centre, in box widths"""
    reid_max_scale: float = 1.5  # re-identification: most change of the box size, a factor
    max_prediction_s: float = setting(0.5, min=0.0, max=10.0)
    """Constant-velocity motion is extrapolated for at most this long"""
    velocity_smoothing: float = 0.5  # weight of the newest velocity measurement, 0..1

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError("iou_threshold must be in (0, 1]")
        if self.reid_timeout_s < 0 or self.max_prediction_s < 0 or self.reid_max_shift < 0:
            raise ValueError("timeouts and shifts must be >= 0")
        if self.reid_max_scale < 1.0:
            raise ValueError("reid_max_scale must be >= 1")
        if not 0.0 < self.velocity_smoothing <= 1.0:
            raise ValueError("velocity_smoothing must be in (0, 1]")


@dataclass
class Track:
    track_id: int
    box: Box
    last_seen: float  # seconds (frame stamps)
    first_seen: float
    velocity: tuple[float, float] = (0.0, 0.0)  # centre motion, pixels per second
    hits: int = 1

    def predicted(self, now: float, max_prediction_s: float) -> Box:
        dt = min(max(now - self.last_seen, 0.0), max_prediction_s)
        return self.box.shifted(self.velocity[0] * dt, self.velocity[1] * dt)


@dataclass(frozen=True)
class TrackedDetection:
    track_id: int
    detection: Detection


class Tracker:
    """Assigns each detection of a frame a track id (>= 1); ids are never reused."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, detections: list[Detection], now: float) -> list[TrackedDetection]:
        """Match one frame's detections (stamp `now`, seconds) to tracks; returns them in order."""
        config = self.config
        self._forget(now)
        candidates = sorted(
            (
                (iou(track.predicted(now, config.max_prediction_s), det.box), track_id, index)
                for track_id, track in self.tracks.items()
                for index, det in enumerate(detections)
            ),
            reverse=True,
        )
        assigned: dict[int, int] = {}  # detection index -> track id
        used_tracks: set[int] = set()
        for overlap, track_id, index in candidates:
            if overlap < config.iou_threshold:
                break
            if index not in assigned and track_id not in used_tracks:
                assigned[index] = track_id
                used_tracks.add(track_id)
        for index, det in enumerate(detections):
            if index not in assigned:
                track_id = self._reidentify(det.box, used_tracks)
                if track_id is not None:
                    assigned[index] = track_id
                    used_tracks.add(track_id)
        result = []
        for index, det in enumerate(detections):
            track_id = assigned.get(index)
            if track_id is None:
                track_id = self._next_id
                self._next_id += 1
                self.tracks[track_id] = Track(track_id, det.box, now, now)
            else:
                self._observe(self.tracks[track_id], det.box, now)
            result.append(TrackedDetection(track_id, det))
        return result

    def _reidentify(self, box: Box, taken: set[int]) -> int | None:
        """The nearest lost track whose last box is close and of similar size, if any."""
        config = self.config
        best, best_distance = None, float("inf")
        cx, cy = box.centre
        for track_id, track in self.tracks.items():
            if track_id in taken:
                continue
            scale = max(box.width / track.box.width, track.box.width / box.width)
            tx, ty = track.box.centre
            distance = ((cx - tx) ** 2 + (cy - ty) ** 2) ** 0.5 / track.box.width
            close = scale <= config.reid_max_scale and distance <= config.reid_max_shift
            if close and distance < best_distance:
                best, best_distance = track_id, distance
        return best

    def _observe(self, track: Track, box: Box, now: float) -> None:
        dt = now - track.last_seen
        if 0 < dt <= self.config.max_prediction_s:
            (ox, oy), (nx, ny) = track.box.centre, box.centre
            alpha = self.config.velocity_smoothing
            track.velocity = (
                alpha * (nx - ox) / dt + (1 - alpha) * track.velocity[0],
                alpha * (ny - oy) / dt + (1 - alpha) * track.velocity[1],
            )
        elif dt > self.config.max_prediction_s:
            track.velocity = (0.0, 0.0)  # back after a gap: the old motion says nothing
        track.box, track.last_seen = box, now
        track.hits += 1

    def _forget(self, now: float) -> None:
        expired = [
            track_id
            for track_id, track in self.tracks.items()
            if now - track.last_seen > self.config.reid_timeout_s
        ]
        for track_id in expired:
            del self.tracks[track_id]
