"""The classical baseline as a fold run: openSMILE functionals + a linear SVM (``stage = "baseline"``).

Per fold: the functionals of every utterance of the store (``ser_cl.data.functionals``, cached),
normalised as ``baseline.norm`` says, a LinearSVC fitted on the fold's training speakers for each
C of ``baseline.c_grid``, the C with the best validation UA kept (ties: the smaller C), and that
model scored on validation and test. The fold folder holds what a trained fold holds for the
report: ``config.toml``, ``split.json``, ``metrics.json`` (status "complete", the val and test
blocks of ``ser_cl.metrics.classification_report``, the chosen C) and ``predictions.json``.

Normalisations, the same three as the models' ``model.input_norm``:

* ``none``: the raw functionals (their scales differ by orders of magnitude: a weak SVM; kept for
  the comparison with a model trained without normalisation);
* ``global``: each functional standardised with the mean and standard deviation of the fold's
  training utterances (the usual baseline);
* ``speaker``: each speaker's functionals standardised with that speaker's own mean and standard
  deviation over all of the speaker's utterances in the store (test speakers' too, no labels
  used): the assumption ``--preset cpu`` makes, that a speaker's recordings are at hand; then
  standardised as ``global``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np

from ser_cl.config import StageConfig
from ser_cl.data.folds import Fold
from ser_cl.data.store import FeatureStore
from ser_cl.io import write_json
from ser_cl.linear_svm import fit_linear_svm
from ser_cl.metrics import classification_report
from ser_cl.train.loop import begin_fold, complete_metrics


def speaker_standardized(X: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """Each speaker's rows of ``X`` minus that speaker's mean, over its standard deviation (a
    constant column gives 0)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.empty_like(X)
    speakers = np.asarray(speakers)
    for s in np.unique(speakers):
        rows = speakers == s
        mean, std = X[rows].mean(axis=0), X[rows].std(axis=0)
        out[rows] = (X[rows] - mean) / np.where(std > 0, std, 1.0)
    return out


def baseline_inputs(cfg: StageConfig, store: FeatureStore, functionals: np.ndarray) -> np.ndarray:
    """The functionals the SVM sees under ``baseline.norm`` (``global`` is standardised inside the
    SVM's pipeline, with the training split's statistics)."""
    if cfg.baseline.norm == "speaker":
        return speaker_standardized(functionals, store.speakers)
    return np.asarray(functionals, dtype=np.float64)


def fit_baseline_fold(cfg: StageConfig, store: FeatureStore, fold: Fold, fold_dir: Path,
                      inputs: np.ndarray) -> Dict[str, Any]:
    """Fit and score one fold; return (and write) its metrics.json. A complete fold is kept."""
    fold_dir = Path(fold_dir)
    done = complete_metrics(fold_dir)
    if done is not None:
        return done
    begin_fold(cfg, store, fold, fold_dir)
    labels = store.labels
    model, C = fit_linear_svm(inputs[fold.train], labels[fold.train], inputs[fold.val], labels[fold.val],
                              C_grid=cfg.baseline.c_grid, seed=cfg.optim.seed,
                              standardize=cfg.baseline.norm != "none")
    n_classes = len(store.classes)
    metrics: Dict[str, Any] = {
        "status": "complete", "fold": fold.name, "epochs_run": None, "best_epoch": None,
        "monitor": "val_ua", "best_value": None, "classes": list(store.classes), "val": None, "test": None,
        "baseline": {"feature_set": cfg.baseline.feature_set, "norm": cfg.baseline.norm, "C": C,
                     "dims": int(inputs.shape[1])},
    }
    predictions = {}
    for part in ("val", "test"):
        indices = getattr(fold, part)
        if not indices.size:  # protocol holdout's test: no scores
            continue
        preds = model.predict(inputs[indices])
        metrics[part] = classification_report(labels[indices], preds, n_classes)
        predictions[part] = {store.utt_ids[i]: store.classes[int(p)] for i, p in zip(indices, preds)}
    metrics["best_value"] = metrics["val"]["ua"] if metrics["val"] else None
    write_json(fold_dir / "predictions.json", predictions)
    write_json(fold_dir / "metrics.json", metrics)  # last: the fold's completion marker
    return metrics
