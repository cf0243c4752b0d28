"""Test metrics against hand-computed values and scikit-learn; confusions; the per-class table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from dnic_utils.metrics import classification_metrics, inference_latency, per_class_report, top_confusions

CLASSES3 = ("a", "b", "c")
Y_TRUE = [0, 0, 1, 1, 2, 2]
Y_PRED = [0, 1, 1, 1, 2, 0]


def test_known_example_by_hand() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, CLASSES3)
    # confusion (rows true, columns predicted): a → a, b; b → b, b; c → c, a
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # precision: a 1/2, b 2/3, c 1/1; recall: a 1/2, b 2/2, c 1/2
    assert m["macro_precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["macro_recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    # F1: a 0.5, b 2·(2/3)·1/(5/3) = 0.8, c 2·1·(1/2)/(3/2) = 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert all(isinstance(m[k], float) for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1"))


def test_accepts_tensors() -> None:
    assert classification_metrics(torch.tensor(Y_TRUE), torch.tensor(Y_PRED), CLASSES3) == classification_metrics(Y_TRUE, Y_PRED, CLASSES3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_scikit_learn(seed: int) -> None:
    rng = np.random.RandomState(seed)
    classes = tuple(str(i) for i in range(10))
    y_true = rng.randint(0, 10, 500)
    y_pred = np.where(rng.rand(500) < 0.6, y_true, rng.randint(0, 10, 500))
    m = classification_metrics(y_true, y_pred, classes)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["macro_precision"] == pytest.approx(precision_score(y_true, y_pred, average="macro"))
    assert m["macro_recall"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["confusion"] == confusion_matrix(y_true, y_pred).tolist()
    assert np.asarray(m["confusion"]).sum() == 500


def test_classes_never_seen_still_get_a_row_and_count_as_zero() -> None:
    classes = ("a", "b", "c", "d")  # d appears neither in y_true nor in y_pred
    m = classification_metrics(Y_TRUE, Y_PRED, classes)
    assert np.asarray(m["confusion"]).shape == (4, 4)
    assert m["confusion"][3] == [0, 0, 0, 0]
    assert m["macro_recall"] == pytest.approx((1 / 2 + 1 + 1 / 2 + 0) / 4)  # zero_division=0, averaged over 4 classes


def test_top_confusions_are_ordered_by_count() -> None:
    cm = [[5, 3, 0], [1, 6, 4], [2, 0, 7]]
    assert top_confusions(cm, CLASSES3) == [("b", "c", 4), ("a", "b", 3), ("c", "a", 2)]
    assert top_confusions(cm, CLASSES3, k=1) == [("b", "c", 4)]
    assert top_confusions(cm, CLASSES3, k=10) == [("b", "c", 4), ("a", "b", 3), ("c", "a", 2), ("b", "a", 1)]  # zeros left out
    array = np.asarray(cm)
    assert top_confusions(array, CLASSES3, k=1) == [("b", "c", 4)]
    assert array.diagonal().tolist() == [5, 6, 7]  # the caller's matrix is not modified


def test_no_mistakes_no_confusions() -> None:
    assert top_confusions([[3, 0], [0, 4]], ("x", "y")) == []


def test_per_class_report_has_one_row_per_class() -> None:
    table = per_class_report(Y_TRUE, Y_PRED, CLASSES3)
    assert list(table.index) == list(CLASSES3)
    assert table.index.name == "class"
    assert {"precision", "recall", "f1-score", "support"} <= set(table.columns)
    assert table.loc["a", "precision"] == pytest.approx(0.5)
    assert table.loc["b", "recall"] == pytest.approx(1.0)
    assert table.loc["c", "f1-score"] == pytest.approx(2 / 3)
    assert table["support"].tolist() == [2, 2, 2]
    assert len(per_class_report(Y_TRUE, Y_PRED, ("a", "b", "c", "d"))) == 4


def test_inference_latency_is_a_positive_number_of_milliseconds() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    model.train()
    ms = inference_latency(model, (3, 8, 8), 4, "cpu", None, repeats=3)
    assert isinstance(ms, float) and ms > 0
    assert not model.training  # measured in eval mode
