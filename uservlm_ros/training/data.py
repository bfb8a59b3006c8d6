"""Dataset readers: labelled face images (profiler) and JSONL + images (User-VLM stages).

Face data (`uservlm train profiler`), any of:
- the FairFace layout: a folder with `fairface_label_train.csv` and `fairface_label_val.csv`
  (columns `file,age,gender,race[,service_test]`, `file` like `train/1.jpg` relative to the
  folder; the age bin "more than 70" reads as "70+");
- a folder with `train.csv|train.jsonl` and optionally `val.csv|val.jsonl`;
- one CSV or JSONL file (an optional `split` column says train or val).
Columns: `image` (or `file`, `path`; relative to the manifest's folder), `age_group` (or `age`: a
FairFace bin or a number of years), `gender`, `ethnicity` (or `race`), `emotion` (optional);
an empty cell means unknown. Without a validation split, `val_fraction` of the rows is held out.

User-VLM data (`uservlm train align|sft|dpo`), the columns of the public User-VLM datasets
(ACIDE/user-vlm-pt, -instruct, -dpo) exported to JSONL with images as files: a folder with
`train.jsonl` (and optionally `val.jsonl`) or one JSONL file, one object per line:
- align: `image` + `caption` (or `user_profile`, `profile`), or the face label columns above,
  from which the caption is `core.labels.profile_text`;
- sft: `image`, `question`, `answer`, optional `user_profile` (used in profile_prompt mode);
- dpo: `image`, `prompt` (or `question`), `chosen`, `rejected`, optional `user_profile`.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uservlm_ros.core import labels
from uservlm_ros.core.errors import UservlmError

FAIRFACE_FILES = {"train": "fairface_label_train.csv", "val": "fairface_label_val.csv"}
SPLITS = ("train", "val")
IMAGE_KEYS = ("image", "file", "path")
ATTRIBUTE_KEYS = {
    "age_group": ("age_group", "age"),
    "gender": ("gender",),
    "ethnicity": ("ethnicity", "race"),
    "emotion": ("emotion", "expression"),
}


class DatasetError(UservlmError):
    """A dataset file is missing, malformed, or names a label or image that does not exist."""


@dataclass(frozen=True)
class FaceRecord:
    image: Path
    age_group: str = labels.UNKNOWN
    gender: str = labels.UNKNOWN
    ethnicity: str = labels.UNKNOWN
    emotion: str = labels.UNKNOWN

    def label(self, attribute: str) -> str:
        return getattr(self, attribute)

    @property
    def caption(self) -> str:
        """The papers' profile sentence for this face (known attributes only)."""
        return labels.profile_text(self.age_group, self.gender, self.ethnicity, self.emotion)


def _canonical(attribute: str, value: Any, where: str) -> str:
    text = "" if value is None else str(value).strip()
    if not text or text.lower() in (labels.UNKNOWN, "none", "nan"):
        return labels.UNKNOWN
    if attribute == "age_group":
        text = labels.FAIRFACE_AGE_ALIASES.get(text.lower(), text)
        try:
            return labels.age_bin(float(text))
        except ValueError:
            pass
    wanted = text.lower().replace("/", "_").replace(" ", "_")
    for label in labels.LABEL_SETS[attribute]:
        if label.lower().replace(" ", "_") == wanted:
            return label
    raise DatasetError(
        f"{where}: {attribute} {text!r} is not one of {list(labels.LABEL_SETS[attribute])}"
    )


def _first(row: dict[str, Any], keys: Iterable[str]) -> Any:
    return next((row[key] for key in keys if row.get(key) not in (None, "")), None)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist")
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DatasetError(f"{path}:{number}: not valid JSON: {error}") from error
        return rows
    raise DatasetError(f"{path}: expected a .csv or .jsonl manifest")


def _face_record(row: dict[str, Any], folder: Path, where: str) -> FaceRecord:
    image = _first(row, IMAGE_KEYS)
    if image is None:
        raise DatasetError(f"{where}: no image column (one of {IMAGE_KEYS})")
    found = {
        attribute: _canonical(attribute, _first(row, keys), where)
        for attribute, keys in ATTRIBUTE_KEYS.items()
    }
    return FaceRecord(image=folder / str(image), **found)


def _face_file(path: Path) -> list[tuple[str | None, FaceRecord]]:
    return [
        (row.get("split") or None, _face_record(row, path.parent, f"{path}:{number}"))
        for number, row in enumerate(_read_rows(path), 2 if path.suffix == ".csv" else 1)
    ]


def _split_manifests(folder: Path) -> dict[str, Path]:
    if all((folder / name).is_file() for name in FAIRFACE_FILES.values()):
        return {split: folder / name for split, name in FAIRFACE_FILES.items()}
    found = {}
    for split in SPLITS:
        for suffix in (".csv", ".jsonl"):
            if (folder / f"{split}{suffix}").is_file():
                found[split] = folder / f"{split}{suffix}"
    if "train" not in found:
        raise DatasetError(
            f"{folder} has no face manifest: expected FairFace's {FAIRFACE_FILES['train']} "
            f"(+ {FAIRFACE_FILES['val']}) or train.csv / train.jsonl (docs/training.md)"
        )
    return found


def hold_out(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """A seeded random split into (train, val); val gets at least one item when possible."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    count = min(len(items) - 1, max(1, round(len(items) * fraction))) if len(items) > 1 else 0
    val = sorted(order[:count])
    keep = sorted(order[count:])
    return [items[i] for i in keep], [items[i] for i in val]


def read_face_dataset(
    path: Path, val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """(train, val) face records from a FairFace folder, a split folder, or one manifest."""
    path = Path(path)
    if path.is_dir():
        rows = [
            (split, record)
            for split, manifest in _split_manifests(path).items()
            for _, record in _face_file(manifest)
        ]
    else:
        rows = _face_file(path)
    train = [record for split, record in rows if split in (None, "train")]
    val = [record for split, record in rows if split == "val"]
    if not train:
        raise DatasetError(f"{path}: no training rows")
    if not val:
        train, val = hold_out(train, val_fraction, seed)
    return train, val


def load_rgb(path: Path) -> np.ndarray:
    """An image file as (h, w, 3) uint8 RGB; DatasetError when it is missing or unreadable."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot read image {path} (missing or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# --- User-VLM JSONL ---------------------------------------------------------------------------

VLM_COLUMNS = {
    "align": {"caption": ("caption", "user_profile", "profile")},
    "sft": {"question": ("question", "prompt", "instruction"), "answer": ("answer", "response")},
    "dpo": {"prompt": ("prompt", "question"), "chosen": ("chosen",), "rejected": ("rejected",)},
}


def _vlm_record(stage: str, row: dict[str, Any], folder: Path, where: str) -> dict[str, Any]:
    image = _first(row, IMAGE_KEYS)
    if image is None:
        raise DatasetError(f"{where}: no image column (one of {IMAGE_KEYS})")
    record: dict[str, Any] = {"image": folder / str(image)}
    record["user_profile"] = str(_first(row, ("user_profile", "profile")) or "")
    for column, keys in VLM_COLUMNS[stage].items():
        value = _first(row, keys)
        if value is None and column == "caption":
            value = _face_record(row, folder, where).caption or None
        if value is None:
            raise DatasetError(f"{where}: {stage} data needs a {column!r} (one of {keys})")
        record[column] = str(value)
    return record


def read_vlm_dataset(
    stage: str, path: Path, val_fraction: float = 0.0, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, val) records of one VLM stage from a folder (train/val.jsonl) or one JSONL."""
    path = Path(path)
    files = {"train": path / "train.jsonl", "val": path / "val.jsonl"} if path.is_dir() else {}
    if path.is_dir() and not files["train"].is_file():
        raise DatasetError(f"{path} has no train.jsonl (docs/training.md)")
    files = files or {"train": path}
    splits: dict[str, list[dict[str, Any]]] = {}
    for split, file in files.items():
        if file.is_file():
            splits[split] = [
                _vlm_record(stage, row, file.parent, f"{file}:{number}")
                for number, row in enumerate(_read_rows(file), 1)
            ]
    train, val = splits.get("train", []), splits.get("val", [])
    if not train:
        raise DatasetError(f"{path}: no training rows")
    if not val and val_fraction > 0:
        train, val = hold_out(train, val_fraction, seed)
    return train, val
