"""Recognition metrics of the thesis (4.3.2.2): UA, WA and the confusion matrix.

* WA (weighted accuracy) is the overall accuracy: correct predictions / all predictions.
  Each class weighs by its number of samples, hence "weighted".
* UA (unweighted accuracy) is the mean of the per-class recalls, every class weighing the
  same. Only the classes PRESENT in ``y_true`` are averaged: a class with no true sample has
  no recall (0/0), and counting it as 0 or 1 would move UA by 1/n_classes for a reason that
  has nothing to do with the model. This is scikit-learn's ``balanced_accuracy_score``.

Shared by the training loop (validation) and ``ser_cl.eval`` (probes, reports), so it lives
below both. Labels are integer class indices in ``[0, n_classes)``. Everything returned by
:func:`classification_report` is a plain Python type so it can go straight into JSON.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np


def _as_labels(y: Any, name: str) -> np.ndarray:
    """``y`` as a 1-D int64 array; a clear error for anything else."""
    array = np.asarray(y)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices")
    return array.astype(np.int64, copy=False)


def _check_pair(y_true: Any, y_pred: Any, n_classes: Optional[int]) -> "tuple[np.ndarray, np.ndarray]":
    true = _as_labels(y_true, "y_true")
    pred = _as_labels(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {true.size} != {pred.size}")
    if true.size == 0:
        raise ValueError("cannot score an empty set of predictions")
    if n_classes is not None:
        for name, array in (("y_true", true), ("y_pred", pred)):
            if array.min() < 0 or array.max() >= n_classes:
                raise ValueError(
                    f"{name} holds labels outside [0, {n_classes}): min {array.min()}, max {array.max()}"
                )
    return true, pred


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts ``[n_classes, n_classes]`` (int64); row = true class, column = predicted class."""
    true, pred = _check_pair(y_true, y_pred, n_classes)
    flat = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def per_class_recall(confusion: Any) -> np.ndarray:
    """Recall of each class from a confusion matrix; NaN for a class with no true sample."""
    counts = np.asarray(confusion, dtype=np.float64)
    support = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(counts) / np.where(support > 0, support, 1), np.nan)


def ua_from_confusion(confusion: Any) -> float:
    """UA of a confusion matrix: mean recall over the classes with at least one true sample."""
    recalls = per_class_recall(confusion)
    present = ~np.isnan(recalls)
    if not present.any():
        raise ValueError("confusion matrix is empty: no true samples")
    return float(recalls[present].mean())


def wa_from_confusion(confusion: Any) -> float:
    """WA of a confusion matrix: trace / total."""
    counts = np.asarray(confusion, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("confusion matrix is empty: no samples")
    return float(np.trace(counts) / total)


def unweighted_accuracy(y_true: Sequence[int], y_pred: Sequence[int], n_classes: Optional[int] = None) -> float:
    """UA: mean per-class recall over the classes present in ``y_true`` (balanced accuracy)."""
    true, pred = _check_pair(y_true, y_pred, n_classes)
    size = int(max(true.max(), pred.max()) + 1) if n_classes is None else n_classes
    return ua_from_confusion(confusion_matrix(true, pred, size))


def weighted_accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """WA: overall accuracy (fraction of correct predictions)."""
    true, pred = _check_pair(y_true, y_pred, None)
    return float(np.mean(true == pred))


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> Dict[str, Any]:
    """``{"ua": float, "wa": float, "confusion": [[int]]}`` -- the block stored in metrics/probe.json.

    ua/wa are fractions in [0, 1]; confusion rows are true classes, columns predictions.
    """
    confusion = confusion_matrix(y_true, y_pred, n_classes)
    return {
        "ua": ua_from_confusion(confusion),
        "wa": wa_from_confusion(confusion),
        "confusion": confusion.tolist(),
    }
