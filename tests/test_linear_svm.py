"""``fit_linear_svm_loso`` (C by leave-one-speaker-out, then refitted) against scikit-learn's own
``GridSearchCV(StandardScaler + LinearSVC, cv=LeaveOneGroupOut(), scoring="balanced_accuracy")``,
in both of liblinear's regimes: more features than samples (the dual, which the code solves in the
samples' span) and more samples than features (the primal)."""

from __future__ import annotations

import numpy as np
import pytest

from ser_cl.linear_svm import fit_linear_svm, fit_linear_svm_loso

GRID = [1e-3, 1e-2, 1e-1, 1.0]


def _data(n_per_group: int, dims: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"s{k}" for k in range(5)], n_per_group)
    y = np.tile(np.arange(3), len(groups) // 3 + 1)[: len(groups)]
    X = rng.normal(size=(len(groups), dims)) * rng.uniform(0.1, 20, size=dims)
    X[:, :3] += 1.5 * np.eye(3)[y] * X[:, :3].std(axis=0)  # a weak class signal in 3 dimensions
    X += rng.normal(size=(5, dims))[np.searchsorted(np.unique(groups), groups)]  # a speaker offset
    return X, y, groups


@pytest.mark.parametrize("n_per_group, dims", [(9, 300), (60, 6)], ids=["dual", "primal"])
@pytest.mark.parametrize("standardize", [True, False])
def test_loso_equals_gridsearchcv(n_per_group, dims, standardize):
    from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    X, y, groups = _data(n_per_group, dims)
    test_X, _, _ = _data(n_per_group, dims, seed=1)
    model, C, info = fit_linear_svm_loso(X, y, groups, GRID, seed=0, standardize=standardize)
    steps = [StandardScaler()] if standardize else []
    pipe = make_pipeline(*steps, LinearSVC(dual=dims >= len(y), max_iter=10000, random_state=0))
    search = GridSearchCV(pipe, {"linearsvc__C": GRID}, cv=LeaveOneGroupOut(), scoring="balanced_accuracy")
    search.fit(X, y, groups=groups)
    assert C == search.best_params_["linearsvc__C"]
    np.testing.assert_allclose([info["scores"][f"{c:g}"] for c in GRID], search.cv_results_["mean_test_score"],
                               atol=1e-12)
    np.testing.assert_array_equal(model.predict(test_X), search.predict(test_X))
    assert info["groups"] == [f"s{k}" for k in range(5)]


def test_the_span_projection_gives_sklearns_decision_values():
    """The dual fit on the samples' span coordinates is the same classifier as LinearSVC on the
    features: the same decision values (to solver round-off), the same predictions."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    X, y, _ = _data(9, 300)
    test_X, test_y, _ = _data(9, 300, seed=2)
    for C in (1e-3, 1.0):
        model, chosen = fit_linear_svm(X, y, test_X, test_y, C_grid=[C])
        ref = make_pipeline(StandardScaler(), LinearSVC(C=C, dual=True, max_iter=10000, random_state=0)).fit(X, y)
        np.testing.assert_allclose(model.decision_function(test_X), ref.decision_function(test_X), rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_array_equal(model.predict(test_X), ref.predict(test_X))


def test_a_copy_row_trains_but_is_not_scored():
    """``scored``: rows left out with their group but never scored (a speaker's training copies)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    X, y, groups = _data(9, 300)
    copies = X[:20] * 1.1
    X2, y2, g2 = np.concatenate([X, copies]), np.concatenate([y, y[:20]]), np.concatenate([groups, groups[:20]])
    scored = np.arange(len(y2)) < len(y)
    _, C, info = fit_linear_svm_loso(X2, y2, g2, GRID, scored=scored)
    means = []
    for c in GRID:  # by hand: leave each speaker out with its copies, score its own rows only
        uas = []
        for g in np.unique(groups):
            out = g2 == g
            m = make_pipeline(StandardScaler(), LinearSVC(C=c, dual=True, max_iter=10000, random_state=0))
            pred = m.fit(X2[~out], y2[~out]).predict(X2[out & scored])
            true = y2[out & scored]
            uas.append(np.mean([np.mean(pred[true == k] == k) for k in np.unique(true)]))
        means.append(np.mean(uas))
    np.testing.assert_allclose([info["scores"][f"{c:g}"] for c in GRID], means, atol=1e-12)
    assert C == GRID[int(np.argmax(means))] and (info["oof"][~scored] == -1).all()
