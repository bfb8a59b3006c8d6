"""The console's camera view: at most a few JPEG frames a second, made in memory only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from uservlm_ros.core.parameters import setting


@dataclass(frozen=True)
class CameraConfig:
    """console_node's camera.* parameters."""

    enabled: bool = setting(True, live=True)
    """Show the camera; false never subscribes to it"""
    max_fps: float = setting(10.0, min=0.5, max=10.0, live=True)
    """Most camera frames per second sent to pages"""
    max_width: int = setting(640, min=160, max=1920, live=True)
    """Frames wider than this are scaled down, px"""
    jpeg_quality: int = setting(70, min=30, max=95, live=True)
    """JPEG quality of the frames"""


class FrameThrottle:
    """Lets a frame through when at least 1/max_fps seconds passed since the last one."""

    def __init__(self, max_fps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / max_fps
        self._clock = clock
        self._last = -float("inf")
        self._sent: list[float] = []  # times of the frames let through in the last second

    def ready(self) -> bool:
        now = self._clock()
        # a small tolerance: frames arriving at exactly max_fps must not be halved by jitter
        if now - self._last < self.interval * 0.9:
            return False
        self._last = now
        self._sent = [t for t in self._sent if now - t < 1.0] + [now]
        return True

    def fps(self) -> float:
        now = self._clock()
        return float(sum(now - t < 1.0 for t in self._sent))


def encode_jpeg(rgb: np.ndarray, max_width: int, quality: int) -> bytes:
    """(h, w, 3) uint8 RGB -> JPEG bytes, scaled down to max_width when wider."""
    height, width = rgb.shape[:2]
    if width > max_width:
        rgb = cv2.resize(
            rgb,
            (max_width, max(1, round(height * max_width / width))),
            interpolation=cv2.INTER_LINEAR,  # INTER_AREA costs 5x more at odd ratios
        )
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return data.tobytes()
