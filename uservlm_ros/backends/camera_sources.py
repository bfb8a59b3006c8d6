"""Frame sources of camera_node: a webcam, a video file, an image folder, Pepper's camera (NAOqi).

Every source returns (h, w, 3) uint8 RGB frames from `read()`, None at the end of a file source,
and raises CameraError when a frame cannot be had (the node logs, counts and carries on).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from uservlm_ros.core.errors import ConfigError, UservlmError
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.registry import Registry

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
# NAOqi colour spaces a client may ask for -> (code, channels)
NAOQI_COLOUR_SPACES = {"yuv422": (9, 2), "rgb": (11, 3)}
NAOQI_RESOLUTIONS = (0, 1, 2, 3)  # kQQVGA 160x120, kQVGA 320x240, kVGA 640x480, k4VGA 1280x960


class CameraError(UservlmError):
    """A frame could not be read (device gone, unreadable file)."""


class FrameSource(Protocol):
    description: str

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class CaptureSource:
    """A webcam (by index) or a video file through OpenCV."""

    def __init__(self, target: int | str, loop: bool = False) -> None:
        self.description = f"webcam {target}" if isinstance(target, int) else f"video {target}"
        if isinstance(target, str) and not Path(target).is_file():
            raise ConfigError(f"video file {target} does not exist")
        self._capture = cv2.VideoCapture(target)
        if not self._capture.isOpened():
            raise ConfigError(f"cannot open {self.description}")
        self._loop = loop and isinstance(target, str)
        self._is_file = isinstance(target, str)

    def read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        if not ok and self._loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        if not ok:
            if self._is_file:
                return None
            raise CameraError(f"{self.description} gave no frame")
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._capture.release()


class FolderSource:
    """The images of a folder in name order, once or looped."""

    def __init__(self, folder: str, loop: bool = True) -> None:
        path = Path(folder)
        if not path.is_dir():
            raise ConfigError(f"image folder {folder!r} does not exist")
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ConfigError(f"image folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} files")
        self.description = f"folder {folder} ({len(self.files)} images)"
        self._loop = loop
        self._next = 0

    def read(self) -> np.ndarray | None:
        if self._next >= len(self.files):
            if not self._loop:
                return None
            self._next = 0
        path = self.files[self._next]
        self._next += 1
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise CameraError(f"cannot read image {path}")
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        pass


def decode_naoqi_image(image) -> np.ndarray:
    """NAOqi's ALImage array -> RGB; raises CameraError on a malformed reply."""
    try:
        width, height, layers, colour, pixels = (
            int(image[0]),
            int(image[1]),
            int(image[2]),
            int(image[3]),
            image[6],
        )
    except (TypeError, IndexError, ValueError) as error:
        raise CameraError(f"malformed ALImage: {error}") from error
    buffer = np.frombuffer(bytes(pixels), np.uint8)
    if width <= 0 or height <= 0 or buffer.size != width * height * layers:
        raise CameraError(f"ALImage of {width}x{height}x{layers} carries {buffer.size} bytes")
    if colour == 9 and layers == 2:  # kYUV422: Y0 U Y1 V
        return cv2.cvtColor(buffer.reshape(height, width, 2), cv2.COLOR_YUV2RGB_YUYV)
    if colour == 11 and layers == 3:
        return buffer.reshape(height, width, 3).copy()
    if colour == 13 and layers == 3:
        return buffer.reshape(height, width, 3)[..., ::-1].copy()
    raise CameraError(f"unsupported ALImage colour space {colour} with {layers} layers")


class NaoqiSource:
    """Pepper's camera through ALVideoDevice (subscribeCamera / getImageRemote / unsubscribe)."""

    def __init__(
        self, ip: str, port: int, camera: int, resolution: int, colour_space: str, fps: int
    ) -> None:
        import qi

        self.url = f"tcp://{ip}:{port}"
        self.description = f"NAOqi camera {camera} at {self.url}"
        self._session = qi.Session()
        try:
            self._session.connect(self.url)
            self._device = self._session.service("ALVideoDevice")
            self._handle = self._device.subscribeCamera(
                "uservlm_camera", camera, resolution, NAOQI_COLOUR_SPACES[colour_space][0], fps
            )
        except RuntimeError as error:
            raise ConfigError(f"cannot subscribe to the camera of {self.url}: {error}") from error

    def read(self) -> np.ndarray | None:
        try:
            image = self._device.getImageRemote(self._handle)
        except RuntimeError as error:
            raise CameraError(f"{self.description}: {error}") from error
        if image is None:
            raise CameraError(f"{self.description} returned no image")
        return decode_naoqi_image(image)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # the robot may be gone already
            self._device.unsubscribe(self._handle)
        self._session.close()


@dataclass(frozen=True)
class WebcamOptions:
    index: int = setting(0, name="webcam.index", min=0, max=64)
    """source webcam: OpenCV device index"""


@dataclass(frozen=True)
class FileOptions:
    path: str = setting("")
    """source video: the video file; source folder: the image folder"""
    loop: bool = setting(True)
    """source video/folder: start again at the end (false: stop and report)"""


@dataclass(frozen=True)
class NaoqiOptions:
    ip: str = setting("127.0.0.1", name="naoqi.ip")
    """source naoqi: the robot's address"""
    port: int = setting(9559, name="naoqi.port", min=1, max=65535)
    """source naoqi: NAOqi port"""
    camera: int = setting(0, name="naoqi.camera", min=0, max=2)
    """source naoqi: 0 top camera, 1 bottom camera"""
    resolution: int = setting(2, name="naoqi.resolution", choices=NAOQI_RESOLUTIONS)
    """source naoqi: 0 160x120, 1 320x240, 2 640x480, 3 1280x960"""
    colour_space: str = setting(
        "yuv422", name="naoqi.colour_space", choices=tuple(NAOQI_COLOUR_SPACES)
    )
    """source naoqi: colour space asked of the robot (yuv422 is 2/3 of rgb's bytes)"""


# Factories take the options and the node's frame rate (Pepper's camera is asked for it).
SOURCES: Registry[FrameSource] = Registry("camera source", "")
SOURCES.add("webcam", lambda o, rate_hz: CaptureSource(o.index), WebcamOptions, "a webcam (OpenCV)")
SOURCES.add(
    "video", lambda o, rate_hz: CaptureSource(o.path, loop=o.loop), FileOptions, "a video file"
)
SOURCES.add(
    "folder",
    lambda o, rate_hz: FolderSource(o.path, loop=o.loop),
    FileOptions,
    "the images of a folder, in name order",
)
SOURCES.add(
    "naoqi",
    lambda o, rate_hz: NaoqiSource(
        o.ip, o.port, o.camera, o.resolution, o.colour_space, max(1, round(rate_hz))
    ),
    NaoqiOptions,
    "Pepper's camera over NAOqi (ALVideoDevice)",
)
