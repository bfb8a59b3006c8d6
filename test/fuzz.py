"""Malformed inputs for every node, bounded in size, reproducible from a seed.

Used by test/test_robustness.py (a fast subset) and bench/soak.py (thousands, `make soak`).
"""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import Point
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from uservlm.msg import Face, FaceArray, Response

ENCODINGS = ["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "yuv422", "mono16", "nonsense", ""]
WEIRD_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 0.5, 1.0, 7.0, 1e30]
WEIRD_TEXTS = [
    "",
    " ",
    "\x00\x01\x02",
    "é" * 600,
    "?" * 10_000,
    "<loc0970><loc0970><seg012>",
    "Hello\nthere\r\n\t!",
    "😀 what do you see? 😀",
    "DROP TABLE users; --",
    "\ud7ff\ue000 surrogate-free but odd",
]


class Fuzzer:
    def __init__(self, seed: int = 0, max_side: int = 1280) -> None:
        self.rng = np.random.default_rng(seed)
        self.max_side = max_side

    def _pick(self, values):
        return values[int(self.rng.integers(len(values)))]

    def image(self) -> Image:
        """A sensor_msgs/Image that is wrong in one or more ways (or, rarely, right)."""
        rng = self.rng
        shape = int(rng.integers(6))
        if shape == 0:  # extreme aspect ratios
            height, width = (int(rng.integers(1, 4)), int(rng.integers(200, self.max_side)))
            if rng.random() < 0.5:
                height, width = width, height
        elif shape == 1:  # empty
            height, width = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        else:
            height, width = (int(rng.integers(1, 480)), int(rng.integers(1, 640)))
        encoding = self._pick(ENCODINGS)
        channels = int(rng.integers(1, 5))
        step = width * channels + int(rng.choice([0, 0, 1, -1, 1000]))
        size = max(step, 0) * height
        size = int(size * rng.choice([1.0, 1.0, 0.5, 0.0, 1.5]))
        return Image(
            header=Header(frame_id=self._pick(["camera", "", "x" * 300])),
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=int(rng.integers(2)),
            step=max(step, 0),
            data=rng.integers(0, 256, min(size, 4_000_000), dtype=np.uint8).tobytes(),
        )

    def face_array(self, max_faces: int = 200) -> FaceArray:
        """A FaceArray with bad ids, boxes, landmarks and crops."""
        rng = self.rng
        count = int(rng.choice([0, 1, 3, max_faces]))
        msg = FaceArray(
            header=Header(frame_id="camera"),
            image_width=int(rng.integers(0, 5000)),
            image_height=int(rng.integers(0, 5000)),
        )
        for _ in range(count):
            crop = self.image() if rng.random() < 0.5 else self.crop()
            msg.faces.append(
                Face(
                    track_id=int(rng.choice([0, 1, 2, 2**32 - 1, int(rng.integers(1, 1000))])),
                    xmin=self._pick(WEIRD_FLOATS),
                    ymin=self._pick(WEIRD_FLOATS),
                    xmax=self._pick(WEIRD_FLOATS),
                    ymax=self._pick(WEIRD_FLOATS),
                    confidence=self._pick(WEIRD_FLOATS),
                    landmarks=[
                        Point(x=self._pick(WEIRD_FLOATS), y=self._pick(WEIRD_FLOATS))
                        for _ in range(int(rng.integers(0, 8)))
                    ],
                    roll_deg=self._pick(WEIRD_FLOATS),
                    crop=crop,
                )
            )
        return msg

    def crop(self) -> Image:
        """A well-formed rgb8 crop of an odd size (valid input the profiler must handle)."""
        height, width = int(self.rng.integers(1, 300)), int(self.rng.integers(1, 300))
        pixels = self.rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        return Image(
            height=height, width=width, encoding="rgb8", step=width * 3, data=pixels.tobytes()
        )

    def question(self) -> str:
        return self._pick(WEIRD_TEXTS)

    def response(self, index: int) -> Response:
        rng = self.rng
        return Response(
            request_id=f"fuzz-{index}" if rng.random() < 0.9 else "",
            text=self._pick(WEIRD_TEXTS),
            final=bool(rng.random() < 0.8),
            gesture=self._pick(["", "explain", "no-such-gesture", "\x00"]),
            error=self._pick(["", "", "", "model failed"]),
        )
