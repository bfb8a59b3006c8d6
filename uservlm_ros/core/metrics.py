"""Evaluation metrics: detection, classification, fairness across groups, latency, ROUGE-1.

Pure functions over plain Python data, used by `uservlm eval` and the demo report.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from uservlm_ros.core.faces import Box, iou


def match_boxes(
    predicted: Sequence[Box],
    truth: Sequence[Box],
    threshold: float = 0.5,
) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by IoU (highest first); pairs (predicted, truth) >= threshold."""
    candidates = sorted(
        ((iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)),
        reverse=True,
    )
    used_p, used_t, pairs = set(), set(), []
    for overlap, i, j in candidates:
        if overlap < threshold:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            pairs.append((i, j))
    return pairs


@dataclass
class DetectionCounts:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    def add(self, predicted: int, truth: int, matched: int) -> None:
        self.true_positives += matched
        self.false_positives += predicted - matched
        self.false_negatives += truth - matched

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 0.0

    @property
    def recall(self) -> float:
        present = self.true_positives + self.false_negatives
        return self.true_positives / present if present else 0.0


def confusion_matrix(
    truth: Sequence[str],
    predicted: Sequence[str],
    labels: Sequence[str],
) -> list[list[int]]:
    """Rows: true label, columns: predicted label, in `labels` order (others are ignored)."""
    index = {label: k for k, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, predicted, strict=True):
        if t in index and p in index:
            matrix[index[t]][index[p]] += 1
    return matrix


def accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    if not truth:
        return 0.0
    return sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)


def macro_f1(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over the classes present in truth or predictions."""
    present = [label for label in labels if label in set(truth) | set(predicted)]
    if not present:
        return 0.0
    scores = []
    for label in present:
        tp = sum(t == label and p == label for t, p in zip(truth, predicted, strict=True))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def group_accuracy(
    truth: Sequence[str],
    predicted: Sequence[str],
    groups: Sequence[str],
) -> tuple[dict[str, float], float]:
    """Accuracy within each group and the largest gap between two groups (0 with one group)."""
    per_group: dict[str, list[bool]] = {}
    for t, p, g in zip(truth, predicted, groups, strict=True):
        per_group.setdefault(g, []).append(t == p)
    scores = {g: sum(hits) / len(hits) for g, hits in sorted(per_group.items())}
    gap = max(scores.values()) - min(scores.values()) if scores else 0.0
    return scores, gap


def percentiles(values: Iterable[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return {f"p{q:g}": float("nan") for q in qs} | {"mean": float("nan"), "n": 0}
    return {f"p{q:g}": float(np.percentile(data, q)) for q in qs} | {
        "mean": float(data.mean()),
        "n": int(data.size),
    }


_TOKEN = re.compile(r"[a-z0-9]+")


def rouge1(candidate: str, reference: str) -> dict[str, float]:
    """ROUGE-1 precision, recall and F1 on lower-cased alphanumeric unigrams (clipped counts)."""
    cand = Counter(_TOKEN.findall(candidate.lower()))
    ref = Counter(_TOKEN.findall(reference.lower()))
    overlap = sum((cand & ref).values())
    precision = overlap / sum(cand.values()) if cand else 0.0
    recall = overlap / sum(ref.values()) if ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if overlap else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def mean_dicts(items: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Key-wise mean of metric dicts with the same keys."""
    return {key: float(np.mean([item[key] for item in items])) for key in items[0]} if items else {}
