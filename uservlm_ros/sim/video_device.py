"""A simulated ALVideoDevice serving real frames over the NAOqi protocol (libqi).

    device = SimulatedVideoDevice([rgb_frame, ...])
    session.registerService("ALVideoDevice", device)

It implements the calls a camera client makes: subscribeCamera, getImageRemote, releaseImage,
unsubscribe, with NAOqi's resolution and colour-space codes. getImageRemote returns NAOqi's
ALImage array: [width, height, layers, colour space, seconds, microseconds, pixels, camera id,
left, top, right, bottom angle (radians)].
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

import cv2
import numpy as np
import qi

# NAOqi resolution codes -> (width, height)
RESOLUTIONS = {
    0: (160, 120),
    1: (320, 240),
    2: (640, 480),
    3: (1280, 960),
    7: (80, 60),
    8: (40, 30),
}
K_YUV422, K_RGB, K_BGR = 9, 11, 13  # NAOqi colour-space codes (layers: 2, 3, 3)
LAYERS = {K_YUV422: 2, K_RGB: 3, K_BGR: 3}
ALIMAGE_SIGNATURE = "(iiiiiiriffff)"
# Pepper's top camera field of view (radians): half of 56.3 deg horizontal, 43.7 deg vertical.
HALF_FOV = (0.4913, 0.3814)


def rgb_to_yuv422(rgb: np.ndarray) -> bytes:
    """Pack RGB as YUYV 4:2:2 (Y0 U Y1 V per two pixels), NAOqi's kYUV422ColorSpace layout.

    Uses OpenCV's BT.601 video-range conversion (I420), the inverse of COLOR_YUV2RGB_YUYV; its
    chroma, shared by 2x2 pixels, is repeated on both rows.
    """
    height, width = rgb.shape[:2]
    planes = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    y = planes[: height * width].reshape(height, width)
    quarter = (height // 2) * (width // 2)
    u = planes[height * width : height * width + quarter].reshape(height // 2, width // 2)
    v = planes[height * width + quarter :].reshape(height // 2, width // 2)
    packed = np.empty((height, width * 2), np.uint8)
    packed[:, 0::4], packed[:, 2::4] = y[:, 0::2], y[:, 1::2]
    packed[:, 1::4], packed[:, 3::4] = np.repeat(u, 2, axis=0), np.repeat(v, 2, axis=0)
    return packed.tobytes()


class SimulatedVideoDevice:
    """Serves the given RGB frames in a loop, scaled to each subscriber's resolution."""

    def __init__(self, frames: Sequence[np.ndarray]) -> None:
        if not frames:
            raise ValueError("SimulatedVideoDevice needs at least one frame")
        self._frames = list(frames)
        self._subscribers: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self.images_served = 0

    def subscribeCamera(self, name, cameraIndex, resolution, colorSpace, fps):
        if int(resolution) not in RESOLUTIONS or int(colorSpace) not in LAYERS:
            raise ValueError(f"unsupported resolution {resolution} or colour space {colorSpace}")
        with self._lock:
            handle = f"{name}_{next(self._ids)}"
            self._subscribers[handle] = {
                "camera": int(cameraIndex),
                "resolution": int(resolution),
                "colour": int(colorSpace),
                "fps": int(fps),
                "next": 0,
            }
        return handle

    # ALImage as a struct whose pixels are a raw buffer (a dynamic reply would turn bytes into text)
    @qi.bind(ALIMAGE_SIGNATURE)
    def getImageRemote(self, handle):
        with self._lock:
            subscriber = self._subscribers.get(handle)
            if subscriber is None:
                raise RuntimeError(f"ALVideoDevice: no subscriber {handle!r}")
            frame = self._frames[subscriber["next"] % len(self._frames)]
            subscriber["next"] += 1
            self.images_served += 1
        width, height = RESOLUTIONS[subscriber["resolution"]]
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        colour = subscriber["colour"]
        if colour == K_YUV422:
            pixels = rgb_to_yuv422(frame)
        elif colour == K_BGR:
            pixels = np.ascontiguousarray(frame[..., ::-1]).tobytes()
        else:
            pixels = frame.tobytes()
        now = time.time()
        seconds = int(now)
        return [
            width,
            height,
            LAYERS[colour],
            colour,
            seconds,
            int((now - seconds) * 1e6),
            pixels,
            subscriber["camera"],
            HALF_FOV[0],
            -HALF_FOV[1],
            -HALF_FOV[0],
            HALF_FOV[1],
        ]

    def releaseImage(self, handle):
        return handle in self._subscribers

    def unsubscribe(self, handle):
        with self._lock:
            return self._subscribers.pop(handle, None) is not None

    def getSubscribers(self):
        with self._lock:
            return list(self._subscribers)
