"""The classical baseline as a fold run: a linear SVM on one vector per utterance (``stage = "baseline"``).

The vectors (``baseline.feature_set``): openSMILE functionals (``eGeMAPSv02``, ``ComParE_2016``;
``ser_cl.data.stores.functionals``, computed from the audio the store's manifest lists and cached, or
read from the store itself when it holds those functionals), or ``store``: the store's own frames
pooled per utterance, mean and standard deviation over frames side by side (a store of one frame
per utterance, functionals, is taken as it is): the linear probe of any front-end, e.g. an
upstream's.

Per fold, on the same speakers as every recipe: the fold's non-test speakers (its training and,
where the protocol gives any, validation speakers) all train; C is chosen among
``baseline.c_grid`` by leave-one-speaker-out over them (``ser_cl.linear_svm.fit_linear_svm_loso``:
the mean over held-out speakers of each one's UA, ties to the smaller C; no test speaker's label
enters), then the SVM is refitted on all of them and scored on the test speakers. With
``data.train_copies`` the copies of the training utterances train too (a copy is left out with
its speaker in the inner folds and never scored). The fold folder holds what a trained fold holds
for the report: ``config.toml``, ``split.json`` (train: every non-test speaker), ``metrics.json``
(status "complete"; "val" is the inner leave-one-speaker-out score at the chosen C, "test" the
test speakers'; the chosen C and each C's inner score) and ``predictions.json``.

Normalisations, the same three as the models' ``model.input_norm``:

* ``none``: the raw vectors (their scales differ by orders of magnitude: a weak SVM; kept for the
  comparison with a model trained without normalisation);
* ``global``: each dimension standardised with the mean and standard deviation of the training
  rows (the usual baseline; in the inner folds, of the inner training rows);
* ``speaker``: each speaker's vectors standardised with that speaker's own statistics
  (``ser_cl.data.stores.normalize.speaker_stats``, the models' helper): over every readable recording
  of the speaker, before class selection (the files ``prepare`` took ``speaker_stats.npz`` over),
  labels never used; an utterance without a speaker alone; then standardised as ``global``. For
  ``store`` the frames are standardised so before pooling, with ``speaker_stats.npz`` itself,
  exactly as the models read them.
"""

from __future__ import annotations

import sys
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ser_cl.config import ConfigError, StageConfig
from ser_cl.data.splits.folds import Fold
from ser_cl.data.stores.normalize import VectorRows, grouped_stats, mean_std, speaker_keys, speaker_stats
from ser_cl.data.stores.store import FeatureStore
from ser_cl.io import write_json
from ser_cl.linear_svm import fit_linear_svm_loso
from ser_cl.metrics import classification_report
from ser_cl.progress import progress_bar
from ser_cl.train.fingerprint import begin_fold, check_fold_config, complete_metrics, config_fingerprint, fold_is_complete
from ser_cl.train.fold_lock import claim_fold


def holds_functionals(store, feature_set: str) -> bool:
    """Whether ``store``'s frames are the openSMILE ``feature_set`` functionals (one per utterance)."""
    params = getattr(store, "feature_params", None) or {}
    return params.get("name") == "functionals" and params.get("feature_set") == feature_set


def pooled_vectors(store, stats: Optional[Dict[str, Any]] = None) -> np.ndarray:
    """[n, D] float64: each utterance's frames (standardised with its speaker's ``stats`` first,
    when given: ``speaker_stats``), pooled as mean and std over frames side by side ([n, 2F]);
    a store of one frame per utterance gives its frames as they are ([n, F])."""
    n = len(store)
    keys = speaker_keys(store.speakers)
    one_frame = all(len(store[i]) == 1 for i in range(n))
    out = []
    for i in range(n):
        x = np.asarray(store[i], dtype=np.float64)
        if stats is not None:
            mean, std = stats[keys[i]]
            x = (x - mean) / std
        out.append(x[0] if one_frame else mean_std(x))
    return np.stack(out)


def _audio_speaker_stats(store: FeatureStore, feature_set: str, progress: bool) -> Optional[Dict[str, Any]]:
    """Each speaker's (mean, std) of ``feature_set`` over the audio files the store's speaker
    statistics were taken over (``store.speaker_audio``: every readable recording, dropped
    classes included); None for a store prepared before prepare recorded those files (the
    statistics then come from the speaker's utterances in the store, as the models' do)."""
    from ser_cl.data.stores.functionals import functionals_of

    audio = store.speaker_audio
    if audio is None:
        info = getattr(store, "info", {}) or {}
        if info.get("dropped_labels"):
            warnings.warn(f"{store.data_dir}: prepared before prepare recorded each speaker's audio files; the "
                          "baseline's speaker statistics come from the utterances in the store only (prepare it "
                          "again for statistics over the dropped classes' recordings too)", stacklevel=2)
        return None
    speakers = [s for s, paths in audio.items() for _ in paths]
    paths = [p for ps in audio.values() for p in ps]
    vectors = functionals_of(paths, feature_set, Path(store.data_dir) / "cache" / "functionals", progress)
    return grouped_stats(VectorRows(vectors, speakers), speakers)


def baseline_vectors(cfg: StageConfig, store, progress: bool = False) -> np.ndarray:
    """[n, D] float64, one vector per utterance of ``store`` under ``baseline.feature_set`` and,
    for ``baseline.norm = "speaker"``, standardised per speaker (``global`` is standardised
    inside the SVM, with the training rows' statistics)."""
    feature_set, by_speaker = cfg.baseline.feature_set, cfg.baseline.norm == "speaker"
    if feature_set == "store" or holds_functionals(store, feature_set):
        return pooled_vectors(store, speaker_stats(store) if by_speaker else None)
    from ser_cl.data.stores.functionals import store_functionals

    X = np.asarray(store_functionals(store, feature_set, progress=progress), dtype=np.float64)
    if not by_speaker:
        return X
    rows = VectorRows(X, store.speakers)
    return pooled_vectors(rows, speaker_stats(rows, _audio_speaker_stats(store, feature_set, progress) or {}))


def _with_copies(cfg: StageConfig, store: FeatureStore, fold: Fold, copies: Sequence[FeatureStore]):
    """(combined store, fold over it) with the copies of the fold's training rows (``with_copies``)."""
    from ser_cl.data.batches.copies import with_copies

    if cfg.baseline.feature_set != "store" and not holds_functionals(store, cfg.baseline.feature_set):
        raise ConfigError(f"data.train_copies: the copies hold {store.feature_params.get('name')} frames, not "
                          f"{cfg.baseline.feature_set} functionals; use baseline.feature_set = \"store\", or a data.dir "
                          f"and copies prepared with --features functionals --feature-set {cfg.baseline.feature_set}")
    return with_copies(store, fold, copies)


def fit_baseline_fold(cfg: StageConfig, store: FeatureStore, fold: Fold, fold_dir: Path, inputs: np.ndarray,
                      copies: Sequence[FeatureStore] = (), label: str = "") -> Dict[str, Any]:
    """Fit and score one fold; return (and write) its metrics.json. A complete fold is kept.
    ``inputs``: ``baseline_vectors`` of ``store``; a line per fold goes to stderr (``label``)."""
    fold_dir = Path(fold_dir)
    done = complete_metrics(fold_dir)
    if done is not None:
        return done
    started = time.perf_counter()
    train = np.sort(np.concatenate([fold.train, fold.val])).astype(np.int64)  # every non-test speaker trains
    fold = Fold(fold.name, train, np.zeros(0, dtype=np.int64), fold.test, [], list(fold.test_speakers))
    fold_store, fold_rows, X, groups = store, fold, inputs, list(store.speakers)
    if copies:
        fold_store, fold_rows = _with_copies(cfg, store, fold, copies)
        stats = speaker_stats(fold_store) if cfg.baseline.norm == "speaker" else None  # a copy: its own pseudo-speaker
        X = np.concatenate([inputs, pooled_vectors(fold_store, stats)[len(store):]])
        train_ids = {store.utt_ids[i] for i in fold.train}  # the copies' rows, in with_copies' order
        groups = groups + [s for c in copies for u, s in zip(c.utt_ids, c.speakers) if u in train_ids]
    begin_fold(cfg, fold_store, fold_rows, fold_dir)
    labels = np.asarray(fold_store.labels)
    rows = fold_rows.train
    model, C, info = fit_linear_svm_loso(X[rows], labels[rows], np.asarray(groups)[rows], cfg.baseline.c_grid,
                                         seed=cfg.optim.seed, standardize=cfg.baseline.norm != "none",
                                         scored=rows < len(store))
    n_classes = len(store.classes)
    scored = (info["oof"] >= 0)
    metrics: Dict[str, Any] = {
        "status": "complete", "fold": fold.name, "epochs_run": None, "best_epoch": None,
        "monitor": "val_ua", "best_value": None, "classes": list(store.classes), "val": None, "test": None,
        "baseline": {"feature_set": cfg.baseline.feature_set, "norm": cfg.baseline.norm, "C": C,
                     "dims": int(X.shape[1]), "selection": "leave-one-speaker-out over the training speakers",
                     "inner_speakers": info["groups"], "inner_ua": info["scores"],
                     "train_rows": int(rows.size), "copies": int((rows >= len(store)).sum()),
                     "not_converged": info["not_converged"], "wall_s": None},
    }
    if scored.any():
        metrics["val"] = classification_report(labels[rows][scored], info["oof"][scored], n_classes)
        metrics["best_value"] = info["scores"][f"{C:g}"]
    predictions: Dict[str, Any] = {}
    if fold.test.size:  # protocol holdout's test: no scores
        preds = model.predict(X[fold.test])
        metrics["test"] = classification_report(labels[fold.test], preds, n_classes)
        predictions["test"] = {store.utt_ids[i]: store.classes[int(p)] for i, p in zip(fold.test, preds)}
    metrics["baseline"]["wall_s"] = round(time.perf_counter() - started, 3)
    write_json(fold_dir / "predictions.json", predictions)
    write_json(fold_dir / "metrics.json", metrics)  # last: the fold's completion marker
    test = f"test UA {100 * metrics['test']['ua']:.2f}" if metrics["test"] else "no test part"
    print(f"{label}{fold.name}: C = {C:g} (leave-one-speaker-out UA {100 * metrics['best_value']:.2f} over "
          f"{len(info['groups'])} training speakers), {test}, {metrics['baseline']['wall_s']:.1f} s"
          if metrics["best_value"] is not None else f"{label}{fold.name}: C = {C:g}, {test}",
          file=sys.stderr, flush=True)
    return metrics


def run_baseline(cfg: StageConfig, store: FeatureStore, selected: List[Fold], out: Path, progress: bool,
                 restart: bool, copies: Sequence[FeatureStore] = ()) -> Path:
    """The baseline's folds of one variant: the vectors once, then each fold (a line per fold)."""
    todo = []
    fingerprint = config_fingerprint(cfg)  # no source checkpoint: the same for every fold
    with ExitStack() as locks:  # each fold's lock (ser_cl.train.fold_lock), held until its fit is done
        for fold in selected:
            if not locks.enter_context(claim_fold(out / fold.name)):
                continue
            check_fold_config(out / fold.name, fingerprint, restart)
            write_json(out / fold.name / "fingerprint.json", fingerprint)
            if not fold_is_complete(out / fold.name):
                todo.append(fold)
        if not todo:
            return out
        try:
            inputs = baseline_vectors(cfg, store, progress=progress)
        except ImportError as err:  # the optional extra is not installed
            raise ConfigError(str(err)) from None
        label = f"{cfg.experiment}/{out.name} "
        for fold in progress_bar(todo, desc=f"{cfg.experiment}/{out.name}", unit="fold", disable=not progress):
            fit_baseline_fold(cfg, store, fold, out / fold.name, inputs, copies, label)
    return out
