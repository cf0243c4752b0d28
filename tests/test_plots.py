"""Figures: the misclassified gallery shows the surest mistakes spread over the classes; legends hide no curve."""

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


def test_curve_legends_sit_below_their_axes() -> None:
    history = [{"epoch": 1, "train_loss": 0.9, "val_loss": 0.2, "train_acc": 0.83, "val_acc": 0.98}]
    curve = [{"epoch": e / 8, "val_acc": a} for e, a in zip(range(1, 9), (0.36, 0.32, 0.6, 0.7, 0.89, 0.93, 0.95, 0.98))]
    fig = plots.curves(history, curve, "t")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend, frame = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
        assert legend.y1 < frame.y0, ax.get_title()  # under the plotting area, so no point is hidden behind it
        assert legend.y0 >= 0, ax.get_title()  # and still inside the figure
