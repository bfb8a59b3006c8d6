"""Camera frames waiting for the faces found in them, to draw each frame with its own faces.

The faces of a frame arrive a few frames later (face_crop_node's time), stamped with the frame's
stamp: the latest `keep` frames wait, by stamp. The faces of a stamp take its frame; frames older
than it are dropped, as their faces will not come now. While no faces came for `silent_s` (no
face_crop_node runs), nobody will find faces: frames are not kept but shown as they come.
Frames are opaque here (console_node keeps its Image messages).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

Frame = TypeVar("Frame")
Stamp = tuple[int, int]  # (sec, nanosec), as a message header has it

FRAMES_KEPT = 15  # face_crop_node takes a few frames' time
FACES_SILENT_S = 1.0


class FramePairing(Generic[Frame]):
    def __init__(
        self,
        keep: int = FRAMES_KEPT,
        silent_s: float = FACES_SILENT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keep, self.silent_s = keep, silent_s
        self._clock = clock
        self._frames: OrderedDict[Stamp, Frame] = OrderedDict()
        self._faces_seen = -float("inf")  # clock time the last faces came

    def faces_expected(self) -> bool:
        """Whether faces come: if not, a frame is to be shown alone, at once."""
        return self._clock() - self._faces_seen <= self.silent_s

    def add(self, stamp: Stamp, frame: Frame) -> None:
        """A frame to wait for its faces (the oldest goes beyond `keep`)."""
        self._frames[stamp] = frame
        while len(self._frames) > self.keep:
            self._frames.popitem(last=False)

    def take(self, stamp: Stamp) -> Frame | None:
        """The faces of `stamp` came: its frame (None when it was not kept), and older frames
        are dropped."""
        self._faces_seen = self._clock()
        frame = self._frames.pop(stamp, None)
        while self._frames and next(iter(self._frames)) < stamp:
            self._frames.popitem(last=False)
        return frame

    def clear(self) -> None:
        self._frames.clear()
