"""Figures: the misclassified gallery shows the surest mistakes spread over the classes."""

from __future__ import annotations

import torch

from dnic_utils import plots


def test_confident_errors_take_each_class_in_turn_surest_first() -> None:
    y_true = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = torch.tensor([1, 1, 1, 0, 0, 0, 2, 0])
    confidence = torch.tensor([0.6, 0.9, 0.8, 0.99, 0.7, 0.95, 0.5, 0.4])
    # class 0's mistakes: 1 (0.9), 2 (0.8), 0 (0.6); class 1's: 5 (0.95), 4 (0.7); class 2's: 7 (0.4); index 3 and 6 are right
    assert plots.confident_errors(y_true, y_pred, confidence) == [5, 1, 7, 4, 2, 0]
    assert plots.confident_errors(y_true, y_pred, confidence, limit=2) == [5, 1]
    assert plots.confident_errors(y_true, y_true, confidence) == []


def test_misclassified_gallery_captions_the_probability() -> None:
    x = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    fig = plots.misclassified(x, torch.tensor([0, 1, 1]), torch.tensor([1, 1, 0]), torch.tensor([0.81, 0.5, 0.64]), ("a", "b"))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["a → b\n(p = 0.81)", "b → a\n(p = 0.64)"]
