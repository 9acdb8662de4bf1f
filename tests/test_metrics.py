"""UA / WA / confusion matrix: hand-computed cases and agreement with scikit-learn."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from ser_cl.metrics import (
    classification_report,
    confusion_matrix,
    per_class_recall,
    ua_from_confusion,
    unweighted_accuracy,
    weighted_accuracy,
)


def test_hand_case():
    # class 0: 2 of 3 right, class 1: 1 of 1, class 2: 0 of 2
    y_true = [0, 0, 0, 1, 2, 2]
    y_pred = [0, 0, 1, 1, 0, 1]
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 0], [1, 1, 0]]
    assert unweighted_accuracy(y_true, y_pred, 3) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert weighted_accuracy(y_true, y_pred) == pytest.approx(3 / 6)


def test_ua_ignores_absent_classes():
    # class 3 never occurs in y_true: averaged over classes 0 and 1 only
    y_true = [0, 0, 1, 1]
    y_pred = [0, 3, 1, 1]
    assert unweighted_accuracy(y_true, y_pred, 4) == pytest.approx((0.5 + 1.0) / 2)
    assert np.isnan(per_class_recall(confusion_matrix(y_true, y_pred, 4))[3])


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = 4
    y_true = rng.integers(0, n_classes, 300)
    y_pred = np.where(rng.random(300) < 0.5, y_true, rng.integers(0, n_classes, 300))
    assert np.array_equal(
        confusion_matrix(y_true, y_pred, n_classes),
        skm.confusion_matrix(y_true, y_pred, labels=range(n_classes)),
    )
    assert unweighted_accuracy(y_true, y_pred, n_classes) == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert weighted_accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))


def test_agrees_with_sklearn_when_a_class_is_missing():
    rng = np.random.default_rng(7)
    y_true = rng.choice([0, 2, 3], 100)  # class 1 absent from the truth
    y_pred = rng.integers(0, 4, 100)
    with warnings.catch_warnings():  # sklearn may warn about the class seen only in y_pred
        warnings.simplefilter("ignore")
        expected = skm.balanced_accuracy_score(y_true, y_pred)
    assert unweighted_accuracy(y_true, y_pred, 4) == pytest.approx(expected)


def test_report_is_plain_json():
    report = classification_report(np.array([0, 1, 1]), np.array([0, 1, 0]), 2)
    assert set(report) == {"ua", "wa", "confusion"}
    assert type(report["ua"]) is float and type(report["wa"]) is float
    assert report["confusion"] == [[1, 0], [1, 1]]
    assert json.loads(json.dumps(report)) == report
    assert report["ua"] == pytest.approx(ua_from_confusion(report["confusion"])) == pytest.approx(0.75)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 4], [0, 1], 4)
    with pytest.raises(ValueError, match="length"):
        weighted_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        unweighted_accuracy([], [], 2)
