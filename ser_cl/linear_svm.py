"""The linear SVM with C chosen on validation UA, shared by the embedding probe
(``ser_cl.eval.probe``, thesis 4.3.2.2) and the openSMILE baseline (``ser_cl.train.baseline``).

``sklearn.svm.LinearSVC`` (liblinear, one-vs-rest, squared hinge), features standardised with the
train split's statistics inside the returned pipeline (``standardize=False``: the raw features);
C from a grid by validation UA, ties to the smallest C; the model returned is the one fitted on
train with that C (validation only selects). ``ser_cl.eval.probe``'s docstring says why.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ser_cl.metrics import unweighted_accuracy

DEFAULT_C_GRID: Tuple[float, ...] = (0.01, 0.1, 1, 10)


def _check_xy(X: Any, y: Any, name: str, n_classes: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Embeddings as float64 [n, D] and labels as int64 [n]; clear errors for bad shapes/labels."""
    features = np.asarray(X, dtype=np.float64)
    labels = np.asarray(y)
    if features.ndim != 2:
        raise ValueError(f"{name} embeddings must be 2-D [n, D], got shape {features.shape}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(f"{name} labels must be 1-D with {features.shape[0]} entries, got shape {labels.shape}")
    if features.shape[0] == 0:
        raise ValueError(f"{name} split is empty")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} embeddings contain NaN or infinite values")
    labels = labels.astype(np.int64)
    if n_classes is not None and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name} labels outside [0, {n_classes}): min {labels.min()}, max {labels.max()}")
    return features, labels


def fit_linear_svm(
    train_X: Any,
    train_y: Any,
    val_X: Any,
    val_y: Any,
    C_grid: Sequence[float] = DEFAULT_C_GRID,
    seed: int = 0,
    standardize: bool = True,
) -> Tuple[Any, float]:
    """Fit a standardise + LinearSVC pipeline on train for each C; return ``(model, C)`` best on val UA.

    ``model.predict(X)`` takes raw features (the scaler is inside the pipeline; without
    ``standardize`` there is none and the SVM sees the features as given).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    X_train, y_train = _check_xy(train_X, train_y, "train")
    X_val, y_val = _check_xy(val_X, val_y, "val")
    if not len(C_grid):
        raise ValueError("C_grid is empty")
    if np.unique(y_train).size < 2:
        raise ValueError("the train split has a single class: an SVM needs at least two")
    # primal solver when samples outnumber features (the usual case): faster and deterministic
    dual = bool(X_train.shape[0] <= X_train.shape[1])
    best_model, best_C, best_ua = None, None, -np.inf
    for C in sorted(float(c) for c in C_grid):
        steps = [StandardScaler()] if standardize else []
        model = make_pipeline(*steps, LinearSVC(C=C, dual=dual, max_iter=10000, random_state=seed))
        with warnings.catch_warnings():
            # a not-fully-converged liblinear solution is still a usable linear classifier;
            # the validation UA judges it like any other
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_train, y_train)
        ua = unweighted_accuracy(y_val, model.predict(X_val))
        if ua > best_ua:  # strict: ties keep the smaller C
            best_model, best_C, best_ua = model, C, ua
    return best_model, float(best_C)
