"""The linear SVM with C chosen on held-out UA, shared by the embedding probe
(``ser_cl.eval.probe``, thesis 4.3.2.2) and the classical baseline (``ser_cl.train.baseline``).

``sklearn.svm.LinearSVC`` (liblinear, one-vs-rest, squared hinge), features standardised with the
train split's statistics (``standardize=False``: the raw features); C from a grid, ties to the
smallest C. ``fit_linear_svm`` chooses C on a validation split and returns the model fitted on
train with it (validation only selects; ``ser_cl.eval.probe``'s docstring says why);
``fit_linear_svm_loso`` chooses C by leave-one-group-out over the training rows (the mean over
held-out speakers of each one's UA, as scikit-learn's ``GridSearchCV(cv=LeaveOneGroupOut(),
scoring="balanced_accuracy")`` scores it) and refits on all of them.

Speed, exactly: where samples do not outnumber features (ComParE's 6,373 functionals, an
upstream's pooled frames) liblinear's dual solver is used, and it only ever reads the samples
through their inner products. The standardised training rows, with liblinear's constant bias
feature appended, are replaced by their coordinates in their own span (a thin SVD, ``n`` columns
instead of ``D``); inner products, and so every solver step (the same random order), are
unchanged, and new rows are projected the same way (the eigenvectors of the rows' Gram matrix:
one ``n x n`` product and eigendecomposition per training set). Each step costs ``n`` instead of ``D``
operations per sample: the fits of a ComParE fold run ~10x faster, with the same predictions up
to floating-point rounding. With more samples than features the primal solver runs on the
features as given.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ser_cl.metrics import unweighted_accuracy

DEFAULT_C_GRID: Tuple[float, ...] = (0.01, 0.1, 1, 10)
SPAN_TOL = 1e-10  # eigenvalues of the rows' Gram matrix below this fraction of the largest are dropped


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


class LinearSVM:
    """A fitted standardise (optional) + LinearSVC; ``predict`` takes raw features."""

    def __init__(self, scaler, basis: Optional[Tuple[np.ndarray, np.ndarray]], svm):
        self.scaler, self.basis, self.svm = scaler, basis, svm
        self.classes_ = svm.classes_

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.scaler is not None:
            X = self.scaler.transform(X)
        if self.basis is not None:  # the dual solver's span coordinates, bias feature included
            rows, coef = self.basis  # the training rows' span: x -> (x . rows) @ coef, never a D x n matrix
            X = (np.hstack([X, np.ones((X.shape[0], 1))]) @ rows.T) @ coef
        return X

    def decision_function(self, X: Any) -> np.ndarray:
        return self.svm.decision_function(self._inputs(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.svm.predict(self._inputs(X))


class _TrainingSet:
    """One training set's standardised (and, for the dual solver, span-projected) rows, fitted
    for any number of C values."""

    def __init__(self, X: np.ndarray, y: np.ndarray, standardize: bool):
        from sklearn.preprocessing import StandardScaler

        self.y = y
        self.scaler = StandardScaler().fit(X) if standardize else None
        A = self.scaler.transform(X) if standardize else X
        self.dual = bool(X.shape[0] <= X.shape[1])  # liblinear's dual when features outnumber samples
        self.basis = None
        if self.dual:  # the rows' coordinates in their span: K = A A^T = U L U^T, Z = U L^1/2, basis A^T U L^-1/2
            A = np.hstack([A, np.ones((A.shape[0], 1))])
            lam, U = np.linalg.eigh(A @ A.T)
            keep = lam > lam.max() * SPAN_TOL  # directions the rows do not span add nothing to their products
            self.basis = (A, U[:, keep] / np.sqrt(lam[keep]))
            A = U[:, keep] * np.sqrt(lam[keep])
        self.A = A
        self.not_converged = 0

    def fit(self, C: float, seed: int, max_iter: int = 10000) -> LinearSVM:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.svm import LinearSVC

        # the dual's bias is the appended constant feature (liblinear's intercept_scaling = 1), inside the basis
        svm = LinearSVC(C=C, dual=self.dual, max_iter=max_iter, random_state=seed, fit_intercept=not self.dual)
        with warnings.catch_warnings(record=True) as caught:
            # a not-fully-converged liblinear solution is still a usable linear classifier;
            # the held-out UA judges it like any other (the count is reported)
            warnings.simplefilter("always", ConvergenceWarning)
            svm.fit(self.A, self.y)
        self.not_converged += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        return LinearSVM(self.scaler, self.basis, svm)


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
    X_train, y_train = _check_xy(train_X, train_y, "train")
    X_val, y_val = _check_xy(val_X, val_y, "val")
    if not len(C_grid):
        raise ValueError("C_grid is empty")
    if np.unique(y_train).size < 2:
        raise ValueError("the train split has a single class: an SVM needs at least two")
    data = _TrainingSet(X_train, y_train, standardize)
    best_model, best_C, best_ua = None, None, -np.inf
    for C in sorted(float(c) for c in C_grid):
        model = data.fit(C, seed)
        ua = unweighted_accuracy(y_val, model.predict(X_val))
        if ua > best_ua:  # strict: ties keep the smaller C
            best_model, best_C, best_ua = model, C, ua
    return best_model, float(best_C)


def fit_linear_svm_loso(X: Any, y: Any, groups: Sequence[str], C_grid: Sequence[float] = DEFAULT_C_GRID,
                        seed: int = 0, standardize: bool = True, scored: Optional[Sequence[bool]] = None,
                        max_iter: int = 10000) -> Tuple[LinearSVM, float, Dict[str, Any]]:
    """C by leave-one-group-out over the rows of ``X`` (their ``groups``: speakers), then the
    model refitted on every row with that C. Returns ``(model, C, info)``; ``info`` holds each
    C's score (the mean over held-out groups of that group's UA), the out-of-group predictions
    at the chosen C (``oof``, -1 where not scored), and how many liblinear fits stopped at
    max_iter. ``scored`` (default all): the rows a held-out group is scored on (a training copy
    of a speaker's utterance trains with the others and is left out with its speaker, but is
    never scored). Ties keep the smaller C."""
    X, y = _check_xy(X, y, "train")
    groups = np.asarray(groups)
    scored = np.ones(len(y), dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    if not len(C_grid):
        raise ValueError("C_grid is empty")
    if np.unique(y).size < 2:
        raise ValueError("the train split has a single class: an SVM needs at least two")
    inner = [g for g in dict.fromkeys(groups[scored].tolist())]
    grid = sorted(float(c) for c in C_grid)
    scores = np.zeros((len(grid), len(inner)))
    oof = np.full((len(grid), len(y)), -1, dtype=np.int64)
    not_converged = 0
    if len(inner) >= 2:
        for k, g in enumerate(inner):
            out = groups == g
            if np.unique(y[~out]).size < 2:
                raise ValueError(f"leaving out {g} leaves a single class to train on: an SVM needs at least two")
            data = _TrainingSet(X[~out], y[~out], standardize)
            held = out & scored
            for j, C in enumerate(grid):
                pred = data.fit(C, seed, max_iter).predict(X[held])
                oof[j, held] = pred
                scores[j, k] = unweighted_accuracy(y[held], pred)
            not_converged += data.not_converged
    mean = scores.mean(axis=1) if len(inner) >= 2 else np.zeros(len(grid))
    best = int(np.flatnonzero(mean == mean.max())[0])  # ties: the smaller C
    data = _TrainingSet(X, y, standardize)
    model = data.fit(grid[best], seed, max_iter)
    info = {"scores": {f"{C:g}": float(m) for C, m in zip(grid, mean)}, "oof": oof[best],
            "groups": inner, "not_converged": not_converged + data.not_converged}
    return model, grid[best], info
