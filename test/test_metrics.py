"""Evaluation metrics against hand-computed values."""

import math

import pytest

from uservlm_ros.core import metrics
from uservlm_ros.core.faces import Box


def test_greedy_one_to_one_box_matching():
    predicted = [Box(0, 0, 10, 10), Box(20, 20, 30, 30), Box(100, 100, 110, 110)]
    truth = [Box(21, 21, 31, 31), Box(1, 1, 10, 10)]
    assert sorted(metrics.match_boxes(predicted, truth)) == [(0, 1), (1, 0)]
    counts = metrics.DetectionCounts()
    counts.add(predicted=3, truth=2, matched=2)
    counts.add(predicted=0, truth=1, matched=0)
    assert counts.precision == pytest.approx(2 / 3)
    assert counts.recall == pytest.approx(2 / 3)


def test_classification_metrics():
    truth = ["a", "a", "b", "c"]
    predicted = ["a", "b", "b", "a"]
    assert metrics.accuracy(truth, predicted) == 0.5
    # F1: a = 2*1/(2+1+1) = 0.5, b = 2*1/(2+1+0) = 2/3, c = 0 -> mean 0.3889
    assert metrics.macro_f1(truth, predicted, ["a", "b", "c", "d"]) == pytest.approx(
        (0.5 + 2 / 3 + 0) / 3
    )
    assert metrics.confusion_matrix(truth, predicted, ["a", "b", "c"]) == [
        [1, 1, 0],
        [0, 1, 0],
        [1, 0, 0],
    ]


def test_group_accuracy_reports_the_largest_gap():
    scores, gap = metrics.group_accuracy(
        ["x", "x", "x", "x"], ["x", "y", "x", "x"], ["Male", "Male", "Female", "Female"]
    )
    assert scores == {"Female": 1.0, "Male": 0.5}
    assert gap == 0.5


def test_rouge1_counts_clipped_unigrams():
    score = metrics.rouge1("the cat the cat sat", "The cat sat on the mat")
    # overlap: the x2 (ref has 2), cat x1, sat x1 = 4; P = 4/5, R = 4/6
    assert score["precision"] == pytest.approx(0.8)
    assert score["recall"] == pytest.approx(4 / 6)
    assert score["f1"] == pytest.approx(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6))
    assert metrics.rouge1("", "anything")["f1"] == 0.0


def test_percentiles():
    result = metrics.percentiles(range(1, 101))
    assert result["p50"] == pytest.approx(50.5)
    assert result["n"] == 100
    assert math.isnan(metrics.percentiles([])["p95"])
