"""mAP and top-1 on hand-made inputs whose values are worked out by hand."""

import pytest
import torch

from searchlab.train.metrics import (
    METRICS,
    accuracy_metrics,
    average_precision,
    mean_average_precision,
    top1_accuracy,
)


def test_average_precision_by_hand():
    # ranking: pos, neg, pos, neg -> precisions at the positives 1/1 and 2/3
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    positives = torch.tensor([True, False, True, False])
    assert average_precision(scores, positives) == pytest.approx((1.0 + 2 / 3) / 2)


def test_average_precision_perfect_and_worst():
    scores = torch.tensor([0.4, 0.3, 0.2])
    assert average_precision(scores, torch.tensor([True, True, False])) == pytest.approx(1.0)
    # the only positive ranked last of three
    assert average_precision(scores, torch.tensor([False, False, True])) == pytest.approx(1 / 3)


def test_average_precision_without_positive_raises():
    with pytest.raises(ValueError, match="no positive"):
        average_precision(torch.tensor([0.1, 0.2]), torch.tensor([False, False]))


def test_map_averages_classes_with_positives_only():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4], [0.6, 0.3, 0.9]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    # class 0: scores 0.9(+), 0.6(+), 0.2 -> AP 1; class 1: 0.8(+), 0.3(+), 0.1 -> AP 1;
    # class 2 has no positive and is left out.
    assert mean_average_precision(scores, targets) == pytest.approx(1.0)
    targets2 = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # class 0: ranking 0.9(-), 0.6(-), 0.2(+) -> 1/3; class 2: 0.9(+) first -> 1
    assert mean_average_precision(scores, targets2) == pytest.approx((1 / 3 + 1.0) / 2)


def test_top1_by_hand():
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = torch.tensor([1, 0, 0, 1])
    assert top1_accuracy(scores, labels) == pytest.approx(0.5)


def test_accuracy_metrics_names_follow_the_data_set():
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    labels = torch.tensor([1, 1])
    targets = torch.nn.functional.one_hot(labels, 2).float()
    single = accuracy_metrics(scores=scores, labels=labels, targets=targets, multi_label=False)
    assert single == {"accuracy": 0.5, "top1": 0.5}
    multi = accuracy_metrics(scores=scores, labels=labels, targets=targets, multi_label=True)
    assert set(multi) == {"accuracy", "map"} and multi["accuracy"] == multi["map"]
    assert "accuracy" in METRICS and METRICS["accuracy"].direction == "max"


def test_shape_errors_are_named():
    with pytest.raises(ValueError, match="must be"):
        top1_accuracy(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="must both be"):
        mean_average_precision(torch.zeros(3, 2), torch.zeros(3, 3))
