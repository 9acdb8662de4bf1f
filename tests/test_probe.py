"""Embedding probes: SVM selection, retrieval Recall@1, clustering F1/NMI, probe.json structure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ser_cl.eval.probe import (
    clustering_scores,
    match_clusters,
    probe_embeddings,
    probe_saved_embeddings,
    retrieval_recall_at_1,
)
from ser_cl.linear_svm import fit_linear_svm

CLASSES = ["neutral", "happy", "sad", "angry"]


def blobs(rng, n, n_classes=4, dim=16, spread=1.0, scale=8.0):
    """Well separated Gaussian blobs: class c centred on scale * e_c."""
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    X = scale * np.eye(n_classes, dim)[y] + spread * rng.normal(size=(n, dim))
    return X.astype(np.float32), y.astype(np.int64)


def brute_force_recall_at_1(train_X, train_y, query_X, query_y):
    hits = {}
    for q, label in zip(query_X, query_y):
        best, best_d = None, np.inf
        for t, t_label in zip(train_X, train_y):
            d = float(np.sum((q.astype(np.float64) - t) ** 2))
            if d < best_d:
                best, best_d = t_label, d
        hits.setdefault(int(label), []).append(best == label)
    return float(np.mean([np.mean(h) for h in hits.values()]))


def test_retrieval_matches_brute_force():
    rng = np.random.default_rng(0)
    train_X, train_y = rng.normal(size=(60, 5)), rng.integers(0, 3, 60)
    query_X, query_y = rng.normal(size=(25, 5)), rng.integers(0, 3, 25)
    expected = brute_force_recall_at_1(train_X, train_y, query_X, query_y)
    assert retrieval_recall_at_1(train_X, train_y, query_X, query_y, 3) == pytest.approx(expected)


def test_retrieval_hand_case_and_absent_class():
    train_X = np.array([[0.0], [10.0], [20.0]])
    train_y = np.array([0, 1, 2])
    # two class-0 queries (one retrieved right), one class-1 query (right); class 2 absent
    query_X = np.array([[1.0], [9.0], [11.0]])
    query_y = np.array([0, 0, 1])
    assert retrieval_recall_at_1(train_X, train_y, query_X, query_y, 3) == pytest.approx((0.5 + 1.0) / 2)


def test_hungarian_matching_of_permuted_clusters():
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    clusters = np.array([2, 2, 0, 0, 3, 3, 1, 1])  # same partition, other ids
    assert match_clusters(y, clusters, 4).tolist() == y.tolist()
    # one sample in the wrong cluster: matching is still the majority one
    clusters_noisy = np.array([2, 2, 0, 0, 3, 3, 1, 0])
    assert match_clusters(y, clusters_noisy, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 1]


def test_clustering_scores_on_blobs_with_shuffled_ids():
    rng = np.random.default_rng(1)
    X, y = blobs(rng, 80)
    scores = clustering_scores(X, y, 4, seed=0)
    assert scores["f1"] == pytest.approx(1.0)
    assert scores["nmi"] == pytest.approx(1.0)
    # random embeddings score low
    noise = clustering_scores(rng.normal(size=(80, 16)), y, 4, seed=0)
    assert noise["f1"] < 0.6 and noise["nmi"] < 0.3


def test_svm_picks_C_on_validation():
    rng = np.random.default_rng(2)
    train, val = blobs(rng, 120, spread=2.0), blobs(rng, 60, spread=2.0)
    model, C = fit_linear_svm(*train, *val, C_grid=(10, 0.1))
    assert C in (0.1, 10.0)
    assert np.mean(model.predict(val[0]) == val[1]) > 0.9
    with pytest.raises(ValueError, match="single class"):
        fit_linear_svm(train[0], np.zeros(120, dtype=int), *val)


def test_probe_embeddings_structure_and_scores():
    rng = np.random.default_rng(3)
    train, val, test = blobs(rng, 160), blobs(rng, 40), blobs(rng, 40)
    preds = {"val": val[1].copy(), "test": (test[1] + 1) % 4}  # head: val perfect, test all wrong
    result = probe_embeddings(train, val, test, CLASSES, classifier_preds=preds, seed=0)

    assert list(result) == ["classes", "C", "svm", "classifier", "retrieval", "clustering"]
    assert result["classes"] == CLASSES
    assert result["C"] in (0.01, 0.1, 1.0, 10.0)
    for split in ("val", "test"):
        assert set(result["svm"][split]) == {"ua", "wa", "confusion"}
        assert result["svm"][split]["ua"] > 0.95
        assert np.asarray(result["svm"][split]["confusion"]).shape == (4, 4)
        assert np.asarray(result["svm"][split]["confusion"]).sum() == 40
        assert result["retrieval"][split]["recall_at_1"] > 0.95
        assert set(result["clustering"][split]) == {"f1", "nmi"}
        assert result["clustering"][split]["f1"] > 0.95
    assert result["classifier"]["val"]["ua"] == 1.0
    assert result["classifier"]["test"]["ua"] == 0.0
    assert json.loads(json.dumps(result)) == result  # plain JSON types only

    assert probe_embeddings(train, val, test, CLASSES)["classifier"] is None


def test_probe_embeddings_refuses_bad_input():
    rng = np.random.default_rng(4)
    train, val, test = blobs(rng, 40), blobs(rng, 20), blobs(rng, 20)
    with pytest.raises(ValueError, match="dimensions"):
        probe_embeddings(train, (val[0][:, :8], val[1]), test, CLASSES)
    with pytest.raises(ValueError, match="outside"):
        probe_embeddings(train, val, (test[0], test[1] + 4), CLASSES)
    with pytest.raises(ValueError, match="lacks"):
        probe_embeddings(train, val, test, CLASSES, classifier_preds={"val": val[1]})


def test_probe_fold_reads_embeddings_and_writes_probe_json(tmp_path):
    rng = np.random.default_rng(5)
    folder = tmp_path / "fold-01" / "embeddings"
    folder.mkdir(parents=True)
    for split, n in (("train", 80), ("val", 20), ("test", 20)):
        X, y = blobs(rng, n)
        np.save(folder / f"{split}.npy", X)
        np.save(folder / f"{split}_labels.npy", y)
    result = probe_saved_embeddings(tmp_path / "fold-01", CLASSES)
    assert json.loads((tmp_path / "fold-01" / "probe.json").read_text()) == result
    with pytest.raises(FileNotFoundError, match="train.npy"):
        probe_saved_embeddings(tmp_path / "missing", CLASSES)
