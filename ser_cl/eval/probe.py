"""Probing learned embeddings (thesis 4.3.2.2): linear SVM, retrieval Recall@1, k-means clustering.

Pure numpy / scipy / scikit-learn: the caller (``ser-cl probe``) embeds the utterances with the
checkpoint and hands over arrays, so this module runs without torch.

Choices the thesis leaves open, made here (and documented in the README):

* SVM: ``sklearn.svm.LinearSVC`` (liblinear, one-vs-rest, squared hinge, primal solver), not
  ``SVC(kernel="linear")`` (libsvm, one-vs-one). On 5000 x 256 embeddings of 4 overlapping classes
  LinearSVC fits in ~0.2 s per C on one core, while SVC takes 3 s to 50 s per C (its kernel solver
  scales with n_samples^2 and slows down sharply as C grows); the sweep runs 4 C values x 10 folds
  x every variant, so only LinearSVC keeps ``ser-cl probe`` cheap. Both are linear-kernel SVMs.
* Features are standardised (zero mean, unit variance per dimension, statistics of the TRAIN split
  only) inside the returned pipeline. Contrastive embeddings are L2-normalised, so their
  coordinates are ~1/sqrt(D) small: without scaling the same C would mean a very different amount
  of regularisation for normalised and unnormalised encoders, and liblinear converges slower.
  Standardising is an affine map, so the family of linear classifiers is unchanged.
* C is picked from ``C_grid`` by validation UA; ties go to the smallest C (most regularised).
  The model returned is the one fitted on the train split with that C (no refit on train+val:
  validation is only for model selection, as in the thesis' protocol).
* Retrieval: nearest train neighbour (Euclidean) of each query; Recall@1 of class c = fraction of
  the class-c queries whose neighbour has class c; averaged over the classes present in the
  queries (i.e. the UA of 1-NN predictions). Exact distance ties go to the lowest train index.
* Clustering: k-means (k = n_classes, 10 restarts, seeded) on each split's embeddings on their own
  (val and test are clustered separately, no fit on train). F1: clusters are matched one-to-one to
  classes by the Hungarian method on the cluster x class contingency matrix (maximising the number
  of samples on the diagonal), then the macro F1 of the matched predictions over the classes
  present in ``y``. NMI: ``sklearn.metrics.normalized_mutual_info_score`` (arithmetic mean
  normalisation) between classes and cluster ids; it needs no matching.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ser_cl.linear_svm import DEFAULT_C_GRID, _check_xy, fit_linear_svm
from ser_cl.metrics import classification_report, unweighted_accuracy

SPLITS: Tuple[str, str] = ("val", "test")


def nearest_neighbour_labels(train_X: Any, train_y: Any, query_X: Any, chunk: int = 1024) -> np.ndarray:
    """Label of the Euclidean nearest train embedding of each query (ties: lowest train index)."""
    X_train, y_train = _check_xy(train_X, train_y, "train")
    queries = np.asarray(query_X, dtype=np.float64)
    if queries.ndim != 2 or queries.shape[1] != X_train.shape[1]:
        raise ValueError(f"query embeddings must be [n, {X_train.shape[1]}], got shape {queries.shape}")
    train_sq = np.einsum("ij,ij->i", X_train, X_train)
    nearest = np.empty(queries.shape[0], dtype=np.int64)
    for start in range(0, queries.shape[0], chunk):
        block = queries[start : start + chunk]
        # |q - t|^2 = |q|^2 - 2 q.t + |t|^2; |q|^2 is constant per row, so it does not move the argmin
        distances = train_sq[None, :] - 2.0 * block @ X_train.T
        nearest[start : start + chunk] = np.argmin(distances, axis=1)
    return y_train[nearest]


def retrieval_recall_at_1(train_X: Any, train_y: Any, query_X: Any, query_y: Any, n_classes: int) -> float:
    """Mean over the classes present in ``query_y`` of the per-class Recall@1 (1-NN in train)."""
    _, y_query = _check_xy(query_X, query_y, "query", n_classes)
    _check_xy(train_X, train_y, "train", n_classes)
    predicted = nearest_neighbour_labels(train_X, train_y, query_X)
    return unweighted_accuracy(y_query, predicted, n_classes)


def match_clusters(y: Any, clusters: Any, n_classes: int) -> np.ndarray:
    """Map cluster ids to classes one-to-one (Hungarian method, most samples matched).

    Returns the matched class of every sample; a cluster left without a class (only when there
    are more clusters than classes) maps to -1, which counts as wrong.
    """
    from scipy.optimize import linear_sum_assignment

    labels = np.asarray(y, dtype=np.int64)
    cluster_ids = np.asarray(clusters, dtype=np.int64)
    n_clusters = int(cluster_ids.max()) + 1 if cluster_ids.size else 0
    contingency = np.zeros((n_clusters, n_classes), dtype=np.int64)
    np.add.at(contingency, (cluster_ids, labels), 1)
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    mapping = np.full(n_clusters, -1, dtype=np.int64)
    mapping[rows] = cols
    return mapping[cluster_ids]


def clustering_scores(X: Any, y: Any, n_classes: int, seed: int = 0) -> Dict[str, float]:
    """k-means (k = n_classes) on ``X``; ``{"f1": Hungarian-matched macro F1, "nmi": NMI}``.

    k is lowered to the number of samples when a (tiny, smoke-test) split has fewer samples
    than classes, since k-means cannot make more clusters than points.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import f1_score, normalized_mutual_info_score

    features, labels = _check_xy(X, y, "clustering", n_classes)
    k = min(n_classes, features.shape[0])
    with warnings.catch_warnings():
        # fewer distinct points than k: k-means still returns a labelling, which is scored as is
        warnings.simplefilter("ignore", ConvergenceWarning)
        clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(features)
    matched = match_clusters(labels, clusters, n_classes)
    present = np.unique(labels)
    f1 = f1_score(labels, matched, labels=present, average="macro", zero_division=0)
    nmi = normalized_mutual_info_score(labels, clusters)
    return {"f1": float(f1), "nmi": float(nmi)}


def probe_embeddings(
    train: Tuple[Any, Any],
    val: Tuple[Any, Any],
    test: Optional[Tuple[Any, Any]],
    classes: Sequence[str],
    classifier_preds: Optional[Mapping[str, Any]] = None,
    seed: int = 0,
    C_grid: Sequence[float] = DEFAULT_C_GRID,
) -> Dict[str, Any]:
    """Every probe of one fold, as the probe.json object of the run-directory contract.

    ``train``/``val``/``test`` are ``(embeddings [n, D], labels [n])``; ``classifier_preds``
    optionally holds the classifier head's predicted labels ``{"val": [...], "test": [...]}``
    (same order as the split's labels). All scores are fractions in [0, 1]. ``test`` may be None
    or empty: a fold without a test set (protocol holdout) gets null ``test`` blocks.
    """
    n_classes = len(classes)
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {list(classes)}")
    parts = [("train", train), ("val", val)]
    if test is not None and len(test[1]) > 0:
        parts.append(("test", test))
    data = {name: _check_xy(X, y, name, n_classes) for name, (X, y) in parts}
    dims = {name: features.shape[1] for name, (features, _) in data.items()}
    if len(set(dims.values())) != 1:
        raise ValueError(f"embedding dimensions differ between splits: {dims}")

    train_X, train_y = data["train"]
    model, C = fit_linear_svm(train_X, train_y, *data["val"], C_grid=C_grid, seed=seed)

    svm: Dict[str, Any] = {}
    retrieval: Dict[str, Any] = {}
    clustering: Dict[str, Any] = {}
    for split in SPLITS:
        if split not in data:  # no test set
            svm[split] = retrieval[split] = clustering[split] = None
            continue
        X, y = data[split]
        svm[split] = classification_report(y, model.predict(X), n_classes)
        retrieval[split] = {"recall_at_1": retrieval_recall_at_1(train_X, train_y, X, y, n_classes)}
        clustering[split] = clustering_scores(X, y, n_classes, seed=seed)

    classifier: Optional[Dict[str, Any]] = None
    if classifier_preds is not None:
        classifier = {}
        for split in SPLITS:
            if split not in data:
                classifier[split] = None
                continue
            if split not in classifier_preds:
                raise ValueError(f"classifier_preds lacks the {split!r} predictions")
            classifier[split] = classification_report(data[split][1], classifier_preds[split], n_classes)

    return {
        "classes": [str(name) for name in classes],
        "C": float(C),
        "svm": svm,
        "classifier": classifier,
        "retrieval": retrieval,
        "clustering": clustering,
    }


def load_fold_embeddings(fold_dir: Any) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Read ``fold-NN/embeddings/{split}.npy`` + ``{split}_labels.npy`` for train, val and test."""
    folder = Path(fold_dir) / "embeddings"
    splits = {}
    for split in ("train", "val", "test"):
        X_path, y_path = folder / f"{split}.npy", folder / f"{split}_labels.npy"
        for path in (X_path, y_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: run `ser-cl probe` on a trained fold first")
        splits[split] = (np.load(X_path), np.load(y_path))
    return splits


def probe_saved_embeddings(
    fold_dir: Any,
    classes: Sequence[str],
    classifier_preds: Optional[Mapping[str, Any]] = None,
    seed: int = 0,
) -> Dict[str, Any]:
    """Probe the embeddings saved in ``fold_dir/embeddings/`` and write ``fold_dir/probe.json`` atomically."""
    from ser_cl.io import write_json

    splits = load_fold_embeddings(fold_dir)
    result = probe_embeddings(splits["train"], splits["val"], splits["test"], classes, classifier_preds, seed)
    write_json(Path(fold_dir) / "probe.json", result)
    return result
