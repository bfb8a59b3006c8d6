"""Validation and conversion of raw image buffers (the fields of a sensor_msgs/Image).

Written against the message fields rather than cv_bridge, which has no wheel for ROS 2 on PyPI.
All outputs are contiguous uint8 RGB arrays of shape (height, width, 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uservlm_ros.core.errors import ImageConversionError

# encoding -> (channels, conversion of the (h, w, c) buffer to RGB)
_ENCODINGS = {
    "rgb8": (3, lambda a: a),
    "bgr8": (3, lambda a: a[..., ::-1]),
    "rgba8": (4, lambda a: a[..., :3]),
    "bgra8": (4, lambda a: a[..., 2::-1]),
    "mono8": (1, lambda a: np.repeat(a, 3, axis=2)),
    "8UC1": (1, lambda a: np.repeat(a, 3, axis=2)),
    "8UC3": (3, lambda a: a[..., ::-1]),  # OpenCV's default channel order is BGR
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)

# Larger than any camera a robot carries (8K is 33 Mpx): beyond this a message is corrupt or
# hostile, and decoding it would only exhaust memory.
MAX_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class RawImage:
    """The fields of a sensor_msgs/Image that matter for decoding."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes | bytearray | memoryview | np.ndarray
    is_bigendian: int = 0


def to_rgb(raw: RawImage) -> np.ndarray:
    """Decode a raw image into an (h, w, 3) uint8 RGB array, or raise ImageConversionError."""
    if raw.encoding not in _ENCODINGS:
        raise ImageConversionError(
            f"unsupported encoding {raw.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    if raw.height <= 0 or raw.width <= 0:
        raise ImageConversionError(f"empty image ({raw.width}x{raw.height})")
    if raw.height * raw.width > MAX_PIXELS:
        raise ImageConversionError(
            f"image of {raw.width}x{raw.height} exceeds the limit of {MAX_PIXELS} pixels"
        )
    channels, to_rgb_view = _ENCODINGS[raw.encoding]
    row_bytes = raw.width * channels
    if raw.step < row_bytes:
        raise ImageConversionError(
            f"step {raw.step} is smaller than width*channels = {row_bytes} for {raw.encoding}"
        )
    buffer = (
        np.frombuffer(raw.data, dtype=np.uint8)
        if not isinstance(raw.data, np.ndarray)
        else raw.data.reshape(-1).view(np.uint8)
    )
    expected = raw.step * raw.height
    if buffer.size < expected:
        raise ImageConversionError(
            f"truncated data: {buffer.size} bytes for {raw.height} rows of step {raw.step} "
            f"(need {expected})"
        )
    rows = buffer[:expected].reshape(raw.height, raw.step)[:, :row_bytes]
    pixels = rows.reshape(raw.height, raw.width, channels)
    return np.ascontiguousarray(to_rgb_view(pixels))


def from_rgb(rgb: np.ndarray) -> RawImage:
    """Pack an (h, w, 3) uint8 RGB array as an rgb8 RawImage."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(
            f"expected an (h, w, 3) uint8 array, got shape {rgb.shape} dtype {rgb.dtype}"
        )
    height, width = rgb.shape[:2]
    return RawImage(
        height=height,
        width=width,
        encoding="rgb8",
        step=width * 3,
        data=np.ascontiguousarray(rgb).tobytes(),
    )
