"""Small synthetic datasets in the documented layouts, for the docs' worked examples and tests.

    python -m uservlm_ros.training.synthetic --out data/synthetic --faces 64

writes `faces/` (FairFace layout: train/ and val/ images + fairface_label_{train,val}.csv) and
`vlm/` (images/ + align.jsonl, sft.jsonl, dpo.jsonl in the User-VLM JSONL layout). The "faces"
are coloured patterns whose colour, brightness and stripes follow the labels, so a model can
learn them in a few steps; they are not photographs and teach nothing about real faces.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import numpy as np

from uservlm_ros.core import labels

_QUESTIONS = (
    ("What should I wear today?", "A warm coat and comfortable shoes.", "Whatever."),
    ("Can you recommend a game for me?", "A memory game could be fun for you.", "No."),
    ("How are you?", "I am fine, thank you. How are you?", "Why do you ask?"),
    ("Tell me a joke.", "Why did the robot cross the road? To recharge.", "I will not."),
)


def face_image(record: dict[str, str], size: int, rng: random.Random) -> np.ndarray:
    """A pattern whose colour follows ethnicity, brightness age, stripes gender."""
    ethnicity = labels.ETHNICITIES.index(record["race"])
    age = labels.AGE_GROUPS.index(labels.FAIRFACE_AGE_ALIASES.get(record["age"], record["age"]))
    hue = np.array([(ethnicity * 37) % 256, (ethnicity * 91) % 256, (ethnicity * 53) % 256])
    image = np.zeros((size, size, 3), dtype=np.float32) + hue * (0.4 + 0.6 * age / 8)
    if record["gender"] == "Female":
        image[:, ::4] = 255 - image[:, ::4]
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 8, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _random_labels(rng: random.Random) -> dict[str, str]:
    age = rng.choice(labels.AGE_GROUPS)
    return {
        "age": "more than 70" if age == "70+" else age,  # FairFace's spelling
        "gender": rng.choice(labels.GENDERS),
        "race": rng.choice(labels.ETHNICITIES),
    }


def make_face_dataset(folder: Path, count: int = 64, size: int = 48, seed: int = 0) -> Path:
    """A FairFace-layout folder with `count` training and count // 4 validation faces."""
    rng = random.Random(seed)
    folder = Path(folder)
    for split, total in (("train", count), ("val", max(2, count // 4))):
        rows = []
        for index in range(1, total + 1):
            row = {"file": f"{split}/{index}.png", **_random_labels(rng), "service_test": "True"}
            _write_png(folder / row["file"], face_image(row, size, rng))
            rows.append(row)
        with (folder / f"fairface_label_{split}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, ["file", "age", "gender", "race", "service_test"])
            writer.writeheader()
            writer.writerows(rows)
    return folder


def make_vlm_datasets(folder: Path, count: int = 16, size: int = 48, seed: int = 0) -> Path:
    """images/ + align.jsonl, sft.jsonl and dpo.jsonl with `count` rows each."""
    rng = random.Random(seed)
    folder = Path(folder)
    stages: dict[str, list[dict]] = {"align": [], "sft": [], "dpo": []}
    for index in range(count):
        row = _random_labels(rng)
        image = f"images/{index}.png"
        _write_png(folder / image, face_image(row, size, rng))
        age = labels.FAIRFACE_AGE_ALIASES.get(row["age"], row["age"])
        profile = labels.profile_text(age, row["gender"], row["race"])
        question, good, bad = _QUESTIONS[index % len(_QUESTIONS)]
        stages["align"].append({"image": image, "user_profile": profile})
        stages["sft"].append(
            {"image": image, "question": question, "answer": good, "user_profile": profile}
        )
        stages["dpo"].append({"image": image, "prompt": question, "chosen": good, "rejected": bad})
    for stage, rows in stages.items():
        (folder / f"{stage}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--faces", type=int, default=64, help="training faces (val: a quarter)")
    parser.add_argument("--vlm-rows", type=int, default=16, help="rows per VLM stage")
    parser.add_argument("--size", type=int, default=48, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    make_face_dataset(args.out / "faces", args.faces, args.size, args.seed)
    make_vlm_datasets(args.out / "vlm", args.vlm_rows, args.size, args.seed)
    print(f"wrote {args.out / 'faces'} (FairFace layout) and {args.out / 'vlm'} (User-VLM JSONL)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
