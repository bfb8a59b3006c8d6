"""Face identity: an aligned face crop -> a 128-D embedding, so a returning person is recognised.

`dlib_resnet` (the only backend): dlib's ResNet face descriptor
(`dlib_face_recognition_resnet_model_v1.dat`) after its 5-point landmark model
(`shape_predictor_5_face_landmarks.dat`), both shipped in the face-recognition-models package
(CC0) and run by the dlib-bin wheel. Two embeddings of one person lie about 0.1-0.4 apart
(Euclidean), of different people about 0.6-0.9; bench/identity.py measures it on real crops.

The input is face_crop_node's crop (core/alignment.align_face): eyes levelled, the detector's
box centred, `crop_margin` of its side added on each side. The face rectangle the landmark model
expects is derived from that geometry; no detector runs here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from uservlm_ros.backends.face_detector import package_file
from uservlm_ros.core.errors import ConfigError, ModelLoadError
from uservlm_ros.core.parameters import check_settings, setting
from uservlm_ros.core.registry import Registry

LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL_HINT = "pip install face-recognition-models==0.3.0 --no-deps"
MIN_CROP = 64  # pixels: smaller crops hold too little of a face to tell people apart
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # the descriptor network's input (its training layout)
# dlib's landmark model was trained on its HOG detector's boxes; on BlazeFace crops of the
# shipped photos those are 0.81-0.97 (mean 0.86) of BlazeFace's box side, centred ~3 % of the
# side lower.
DLIB_BOX_SCALE, DLIB_BOX_DROP = 0.85, 0.03
# A featureless crop (uniform, black frame padding, a plain texture) still gets an embedding, near
# that of a uniform grey crop; real faces lay 0.53-0.85 from it, black 0.23, brick wall 0.29
# (bench/identity.py). Textured non-faces (a cat: 0.58) pass: rejecting them is the detector's job.
BLANK_DISTANCE = 0.4


@dataclass(frozen=True)
class IdentityOptions:
    path: str = setting("", name="model_path")
    """Folder with the backend's weights ("" = the installed face-recognition-models files)"""
    crop_margin: float = setting(0.2, min=0.0, max=2.0)
    """Where the face lies in a crop: face_crop_node's crop_margin (set both alike)"""
    num_jitters: int = setting(0, min=0, max=100)
    """Extra randomly jittered passes averaged into each embedding (each costs one more pass)"""

    def __post_init__(self) -> None:
        check_settings(self)


class FaceIdentity(Protocol):
    model_id: str
    dim: int

    def embed(self, crop_rgb: np.ndarray) -> np.ndarray | None:
        """The (dim,) float32 embedding of an aligned square (n, n, 3) uint8 RGB face crop
        (n >= 64), or None when no usable face is in it; raises ValueError for another shape
        or dtype."""
        ...


class DlibResnetIdentity:
    dim = 128

    def __init__(self, options: IdentityOptions) -> None:
        try:
            import dlib
        except ImportError as error:
            raise ConfigError(
                "identity backend dlib_resnet needs dlib: pip install dlib-bin==20.0.1.post1"
            ) from error
        folder = (
            Path(options.path)
            if options.path
            else package_file("face_recognition_models", "models")
        )
        if folder is None:
            raise ModelLoadError(f"face-recognition-models is not installed; {INSTALL_HINT}")
        self._dlib = dlib
        self._landmarks = _load(dlib.shape_predictor, folder / LANDMARKS_FILE)
        self._descriptor = _load(dlib.face_recognition_model_v1, folder / DESCRIPTOR_FILE)
        self.folder = folder
        self.model_id = f"dlib_resnet:{DESCRIPTOR_FILE.removesuffix('.dat')}"
        self._options = options
        self._blank = self.describe(np.full((224, 224, 3), 128, np.uint8))

    def __repr__(self) -> str:
        return f"DlibResnetIdentity(model_id={self.model_id!r}, folder={str(self.folder)!r})"

    def embed(self, crop_rgb: np.ndarray) -> np.ndarray | None:
        check_crop(crop_rgb)
        embedding = self.describe(crop_rgb)
        if float(np.linalg.norm(embedding - self._blank)) < BLANK_DISTANCE:
            return None
        return embedding

    def describe(self, crop: np.ndarray) -> np.ndarray:
        """The embedding of a checked crop without the no-face test (for calibration)."""
        side = crop.shape[0]
        face = side / (1.0 + 2.0 * self._options.crop_margin)
        half = face * DLIB_BOX_SCALE / 2
        centre_x, centre_y = side / 2, side / 2 + face * DLIB_BOX_DROP
        rect = self._dlib.rectangle(
            round(centre_x - half), round(centre_y - half),
            round(centre_x + half), round(centre_y + half),
        )  # fmt: skip
        crop = np.ascontiguousarray(crop)
        shape = self._landmarks(crop, rect)
        chip = self._dlib.get_face_chip(crop, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        vector = self._descriptor.compute_face_descriptor(chip, self._options.num_jitters)
        return np.asarray(vector, np.float32)


def check_crop(crop: object) -> None:
    """Raise ValueError (one line) unless `crop` is a square (n, n, 3) uint8 array, n >= 64."""
    if not isinstance(crop, np.ndarray):
        raise ValueError(f"face crop must be a numpy array, got {type(crop).__name__}")
    shape = crop.shape
    if (
        crop.dtype != np.uint8
        or len(shape) != 3
        or shape[2] != 3
        or shape[0] != shape[1]
        or shape[0] < MIN_CROP
    ):
        raise ValueError(
            f"face crop must be a square (n, n, 3) uint8 RGB image with n >= {MIN_CROP}, "
            f"got shape {shape} dtype {crop.dtype}"
        )


def _load(loader, path: Path):
    if not path.is_file():
        raise ModelLoadError(f"identity model {path} not found; {INSTALL_HINT}")
    try:
        return loader(str(path))
    except RuntimeError as error:  # dlib's deserialisation errors
        reason = " ".join(str(error).split())
        raise ModelLoadError(f"identity model {path} is corrupt ({reason})") from error


IDENTITY: Registry[FaceIdentity] = Registry("identity backend", "identity")
IDENTITY.add(
    "dlib_resnet",
    DlibResnetIdentity,
    IdentityOptions,
    "dlib's ResNet face descriptor, 128-D, weights from face-recognition-models (CC0)",
)
