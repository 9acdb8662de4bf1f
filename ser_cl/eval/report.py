"""``ser-cl report``: gather runs/<experiment>/<variant>/ into thesis-style tables.

What is read (the run-directory contract): ``run.json`` of each variant, and in each
``fold-NN/`` its ``metrics.json`` and, when present, ``probe.json`` and ``cross.json`` (the
"Cross-corpus" section: a train x test matrix of mean UA; see ``ser_cl.eval.cross_corpus``).
A fold without a test set (protocol holdout, ``"test": null``) still counts; its test cells are empty.

Rules (also in the README):

* Method. A variant whose run.json says ``"head": true`` is scored with its classifier head
  ("ce head"): probe.json's ``"classifier"`` block when present, else metrics.json's val/test.
  Otherwise it is scored with the linear SVM of probe.json ("svm"). A head variant also shows
  the SVM's UA on the same embeddings (``svm_ua``) when every complete fold has probe.json's
  ``"svm"`` block; otherwise (and for svm variants, where it would repeat UA) it is empty.
* A fold is complete when its metrics.json parses and has ``"status": "complete"``, the scores
  of the method are there, and none of its JSON files is corrupt. Only complete folds are ever
  averaged. A variant is complete when every fold listed in run.json's ``"folds"`` is complete.
* An incomplete variant keeps its means (over the complete folds), marked with a trailing
  ``!`` in Markdown, and its status names every bad file, e.g.
  ``INCOMPLETE 7/10: fold-03 missing metrics.json, fold-05 corrupt probe.json``. A fold
  without a directory was never started (``--fold``): it is counted, not listed, and a variant
  whose only gaps are such folds is "partial" (status ``partial 2/10 folds``), not incomplete.
* ``protocol`` is run.json's; an old run.json's "auto" is resolved from its data dir when that
  can be read. The thesis' numbers are IEMOCAP's: they are shown only beside runs whose corpus
  (run.json, else the data dir's prepare.json) is IEMOCAP or unknown, with a note otherwise.
* Means +- standard deviations are over folds; std is the population one (``np.std``, ddof=0;
  the thesis does not say which). UA, WA, Recall@1 and k-means F1 are percentages, NMI a
  fraction in [0, 1].
* In a sweep (two or more variants of one experiment with the same stage kind and scoring
  method) the complete variant with the highest mean validation UA is the best one (``best`` column; `` *`` after its name in Markdown).
  Ties go to the first in table order; incomplete variants are never chosen.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

METHOD_HEAD = "ce head"
METHOD_SVM = "svm"
FORMATS = ("md", "csv", "json")
THESIS_CORPUS = "iemocap"
PLOTS_HINT = 'plots skipped: matplotlib is not installed; `pip install "ser-cl[plots]"` gives them'
_SPLITS = ("val", "test")
_METRICS = ("ua", "wa", "r1", "f1", "nmi", "svm_ua")  # {split}_{metric}_mean / _std of a row


# ----------------------------------------------------------------------------- reading runs


class _Corrupt(Exception):
    """A JSON file that exists but cannot be used."""


def _read_json(path: Path) -> Optional[Any]:
    """Parsed JSON, None when the file is absent, ``_Corrupt`` when it does not parse."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _Corrupt(str(error)) from error


def _scores_block(block: Any) -> Optional[Dict[str, Any]]:
    """A {"ua","wa","confusion"} block with finite numbers, else None."""
    if not isinstance(block, dict):
        return None
    try:
        ua, wa = float(block["ua"]), float(block["wa"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(ua) and math.isfinite(wa)):
        return None
    confusion = block.get("confusion")
    return {"ua": ua, "wa": wa, "confusion": confusion if isinstance(confusion, list) else None}


def _split_scores(parent: Any) -> Optional[Dict[str, Dict[str, Any]]]:
    """``{"val": block, "test": block}`` from a dict holding both, else None. A fold without a
    test set (protocol holdout) says ``"test": null``: then ``"test"`` is None."""
    if not isinstance(parent, dict):
        return None
    blocks = {split: _scores_block(parent.get(split)) for split in _SPLITS}
    if blocks["val"] is None:
        return None
    if blocks["test"] is None and not ("test" in parent and parent["test"] is None):
        return None
    return blocks  # type: ignore[return-value]


def _probe_extras(probe: Optional[dict]) -> Dict[str, Dict[str, float]]:
    """Retrieval / clustering numbers of probe.json as {"r1": {split: x}, "f1": ..., "nmi": ...}."""
    extras: Dict[str, Dict[str, float]] = {"r1": {}, "f1": {}, "nmi": {}}
    if not isinstance(probe, dict):
        return extras
    for split in _SPLITS:
        try:
            extras["r1"][split] = float(probe["retrieval"][split]["recall_at_1"])
        except (KeyError, TypeError, ValueError):
            pass
        for key in ("f1", "nmi"):
            try:
                extras[key][split] = float(probe["clustering"][split][key])
            except (KeyError, TypeError, ValueError):
                pass
    return extras


@dataclass
class FoldResult:
    """One fold directory (or an expected fold whose directory is missing)."""

    name: str
    path: Path
    metrics: Optional[dict] = None  # parsed metrics.json (None if missing or corrupt)
    probe: Optional[dict] = None  # parsed probe.json (None if missing or corrupt)
    scores: Optional[Dict[str, Dict[str, Any]]] = None  # the method's {"val","test"} blocks
    svm: Optional[Dict[str, Dict[str, Any]]] = None  # probe.json's SVM {"val","test"} blocks
    extras: Dict[str, Dict[str, float]] = field(default_factory=dict)  # retrieval / clustering
    problems: List[str] = field(default_factory=list)  # each makes the fold incomplete
    notes: List[str] = field(default_factory=list)  # worth saying, but the fold still counts
    not_run: bool = False  # no directory at all: never started (e.g. a run with --fold)
    cross: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # cross.json: test DATA_DIR -> result

    @property
    def complete(self) -> bool:
        return self.scores is not None and not self.problems


@dataclass
class VariantResult:
    """One runs/<experiment>/<variant>/ directory, read and checked."""

    experiment: str
    variant: str
    path: Path
    run: Dict[str, Any]  # run.json ({} when missing or corrupt)
    head: bool
    method: str  # METHOD_HEAD or METHOD_SVM
    expected_folds: Optional[List[str]]  # run.json "folds"; None when unknown
    folds: List[FoldResult]
    problems: List[str] = field(default_factory=list)  # run-level + fold-level, in order
    notes: List[str] = field(default_factory=list)

    @property
    def sweep(self) -> Dict[str, Any]:
        sweep = self.run.get("sweep")
        return dict(sweep) if isinstance(sweep, dict) else {}

    @property
    def thesis(self) -> Dict[str, Any]:
        thesis = self.run.get("thesis")
        return dict(thesis) if isinstance(thesis, dict) else {}

    @property
    def classes(self) -> List[str]:
        classes = self.run.get("classes")
        if isinstance(classes, list) and classes:
            return [str(name) for name in classes]
        for fold in self.complete_folds:
            for source in (fold.metrics, fold.probe):
                if isinstance(source, dict) and isinstance(source.get("classes"), list):
                    return [str(name) for name in source["classes"]]
        return []

    @property
    def complete_folds(self) -> List[FoldResult]:
        return [fold for fold in self.folds if fold.complete]

    @property
    def not_run(self) -> List[FoldResult]:
        """Expected folds without a directory (never started)."""
        return [fold for fold in self.folds if fold.not_run]

    @property
    def is_partial(self) -> bool:
        """Nothing broken, but some expected folds were never run (e.g. ``--fold 1 --fold 2``)."""
        return not self.problems and bool(self.not_run)

    @property
    def corpus(self) -> Optional[str]:
        """run.json "corpus", else the data dir's prepare.json "corpus"; None when unknown."""
        if isinstance(self.run.get("corpus"), str) and self.run["corpus"]:
            return self.run["corpus"]
        info = _data_info(self.run.get("data_dir"))
        corpus = info.get("corpus") if info else None
        return corpus if isinstance(corpus, str) and corpus else None

    @property
    def protocol(self) -> Optional[str]:
        """run.json "protocol"; an old run.json's "auto" is resolved from its data dir when possible."""
        protocol = self.run.get("protocol")
        if protocol == "auto":
            return _resolve_auto(self.run.get("data_dir")) or protocol
        return protocol if isinstance(protocol, str) else None

    @property
    def n_expected(self) -> Optional[int]:
        return None if self.expected_folds is None else len(self.expected_folds)

    @property
    def shared_pool(self) -> bool:
        """A pool pretraining that serves every fold (run folder ``pool``): no scores of its own."""
        pool = self.run.get("pool")
        return isinstance(pool, dict) and pool.get("per_fold") is False

    @property
    def is_complete(self) -> bool:
        if self.shared_pool:
            return not self.problems and all(isinstance(f.metrics, dict) for f in self.folds)
        return (
            not self.problems
            and self.expected_folds is not None
            and len(self.complete_folds) == len(self.expected_folds)
        )

    @property
    def status(self) -> str:
        """"ok", "partial k/n folds", or "INCOMPLETE k/n: <every bad file>" (+ "; note: ...")."""
        if self.is_complete and self.shared_pool:
            return "ok: one pool pretraining for every fold, scored through the stages that fine-tune it"
        if self.is_complete:
            return "ok" if not self.notes else "ok; note: " + ", ".join(self.notes)
        expected = "?" if self.n_expected is None else str(self.n_expected)
        if self.is_partial:
            text = f"partial {len(self.complete_folds)}/{expected} folds"
            return text if not self.notes else text + "; note: " + ", ".join(self.notes)
        text = f"INCOMPLETE {len(self.complete_folds)}/{expected}"
        if self.problems:
            text += ": " + ", ".join(self.problems)
        if self.not_run:
            n = len(self.not_run)
            text += f"; {n} fold{'s' if n != 1 else ''} not run"
        if self.notes:
            text += "; note: " + ", ".join(self.notes)
        return text

    def values(self, split: str, key: str) -> np.ndarray:
        """Per-complete-fold values: key "ua"/"wa" (method scores), "r1"/"f1"/"nmi" (probe) or
        "svm_ua" (the SVM's UA of a head variant; empty unless every complete fold has it)."""
        out = []
        if key == "svm_ua":
            folds = self.complete_folds
            if self.head and folds and all(fold.svm is not None for fold in folds):
                out = [fold.svm[split]["ua"] for fold in folds if fold.svm[split] is not None]  # type: ignore[index]
            return np.asarray(out, dtype=np.float64)
        for fold in self.complete_folds:
            if key in ("ua", "wa"):
                if fold.scores[split] is not None:  # type: ignore[index]  (None: no test set)
                    out.append(fold.scores[split][key])  # type: ignore[index]
            elif split in fold.extras.get(key, {}):
                out.append(fold.extras[key][split])
        return np.asarray(out, dtype=np.float64)

    def cross_scores(self) -> Dict[str, Dict[str, Any]]:
        """Cross-corpus results over the complete folds: resolved test DATA_DIR -> {"corpus",
        "ua_mean", "ua_std", "wa_mean", "wa_std" (percent), "n_folds", and "n", "classes",
        "dropped_test_classes", "unused_train_classes", "notes" of the first fold}."""
        per_store: Dict[str, List[Dict[str, Any]]] = {}
        for fold in self.complete_folds:
            for key, result in fold.cross.items():
                per_store.setdefault(key, []).append(result)
        out: Dict[str, Dict[str, Any]] = {}
        for key in sorted(per_store):
            results = per_store[key]
            first = results[0]
            ua_mean, ua_std = _mean_std(np.asarray([float(r["ua"]) for r in results]), 100.0)
            wa_mean, wa_std = _mean_std(np.asarray([float(r["wa"]) for r in results]), 100.0)
            out[key] = {
                "corpus": first.get("corpus") if isinstance(first.get("corpus"), str) else None,
                "ua_mean": ua_mean, "ua_std": ua_std, "wa_mean": wa_mean, "wa_std": wa_std,
                "n_folds": len(results), "n": first.get("n"), "classes": first.get("classes"),
                "dropped_test_classes": first.get("dropped_test_classes") or {},
                "unused_train_classes": first.get("unused_train_classes") or [],
                "notes": [str(note) for note in first.get("notes") or []],
            }
        return out

    def pooled_confusion(self, split: str = "test") -> Optional[np.ndarray]:
        """Confusion matrix of the method summed over the complete folds (None if unavailable)."""
        total: Optional[np.ndarray] = None
        for fold in self.complete_folds:
            block = fold.scores[split]  # type: ignore[index]
            if block is None:  # no test set (protocol holdout)
                continue
            confusion = block.get("confusion")
            if confusion is None:
                continue
            try:
                matrix = np.asarray(confusion, dtype=np.int64)
            except (TypeError, ValueError):
                continue
            if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
                continue
            if total is None:
                total = matrix.copy()
            elif total.shape == matrix.shape:
                total += matrix
        return total


_DATA_INFO: Dict[str, Optional[dict]] = {}
_AUTO: Dict[str, Optional[str]] = {}


def _data_info(data_dir: Any) -> Optional[dict]:
    """A data dir's prepare.json (cached), None when unreadable."""
    if not isinstance(data_dir, str) or not data_dir:
        return None
    if data_dir not in _DATA_INFO:
        try:
            info = _read_json(Path(data_dir) / "prepare.json")
        except _Corrupt:
            info = None
        _DATA_INFO[data_dir] = info if isinstance(info, dict) else None
    return _DATA_INFO[data_dir]


def _resolve_auto(data_dir: Any) -> Optional[str]:
    """What protocol "auto" chose on this data dir (as training does), None when it cannot be read."""
    if not isinstance(data_dir, str) or not data_dir:
        return None
    if data_dir not in _AUTO:
        from ser_cl.data.folds import auto_protocol
        from ser_cl.data.store import FeatureStore

        try:
            _AUTO[data_dir] = auto_protocol(FeatureStore(data_dir))
        except (OSError, ValueError, KeyError):
            _AUTO[data_dir] = None
    return _AUTO[data_dir]


def _read_fold(path: Path, name: str, head: Optional[bool]) -> FoldResult:
    """Read and check one fold directory; ``head`` None means unknown (no run.json)."""
    fold = FoldResult(name=name, path=path)
    if not path.is_dir():  # never started: a partial run, not a broken one
        fold.not_run = True
        return fold
    try:
        fold.metrics = _read_json(path / "metrics.json")
    except _Corrupt:
        fold.problems.append(f"{name} corrupt metrics.json")
    try:
        fold.probe = _read_json(path / "probe.json")
    except _Corrupt:
        fold.problems.append(f"{name} corrupt probe.json")
    if fold.metrics is not None and not isinstance(fold.metrics, dict):
        fold.problems.append(f"{name} corrupt metrics.json")
        fold.metrics = None
    if fold.probe is not None and not isinstance(fold.probe, dict):
        fold.problems.append(f"{name} corrupt probe.json")
        fold.probe = None
    has_metrics_file = (path / "metrics.json").is_file()
    if not has_metrics_file:
        fold.problems.append(f"{name} missing metrics.json")
    elif fold.metrics is not None and fold.metrics.get("status") != "complete":
        fold.problems.append(f"{name} metrics.json status {fold.metrics.get('status')!r}")
    if head is None:  # no run.json: the method follows from what metrics.json holds
        head = _split_scores(fold.metrics) is not None
    fold.svm = _split_scores(fold.probe.get("svm")) if fold.probe else None
    if head:
        classifier = fold.probe.get("classifier") if fold.probe else None
        fold.scores = _split_scores(classifier) or _split_scores(fold.metrics)
        if fold.scores is None and fold.metrics is not None:
            fold.problems.append(f"{name} metrics.json lacks val/test scores")
    else:
        fold.scores = fold.svm
        if not (path / "probe.json").is_file():
            fold.problems.append(f"{name} missing probe.json")
        elif fold.probe is not None and fold.scores is None:
            fold.problems.append(f"{name} probe.json lacks svm val/test scores")
    fold.extras = _probe_extras(fold.probe)
    try:
        cross = _read_json(path / "cross.json")
    except _Corrupt:
        fold.notes.append(f"{name} corrupt cross.json")
        cross = None
    if isinstance(cross, dict):
        fold.cross = {str(k): v for k, v in cross.items()
                      if isinstance(v, dict) and _number_or_none(v.get("ua")) is not None
                      and _number_or_none(v.get("wa")) is not None}
    return fold


def _read_variant(path: Path) -> VariantResult:
    problems: List[str] = []
    notes: List[str] = []
    run: Dict[str, Any] = {}
    try:
        parsed = _read_json(path / "run.json")
        if parsed is None:
            problems.append("missing run.json")
        elif not isinstance(parsed, dict):
            problems.append("corrupt run.json")
        else:
            run = parsed
    except _Corrupt:
        problems.append("corrupt run.json")

    experiment = str(run.get("experiment") or path.parent.name)
    variant = str(run.get("variant") or path.name)
    head: Optional[bool] = bool(run["head"]) if isinstance(run.get("head"), bool) else None
    if run and head is None:
        problems.append('run.json lacks "head"')

    found = sorted(child.name for child in path.glob("fold-*") if child.is_dir())
    expected: Optional[List[str]] = None
    if isinstance(run.get("folds"), list) and all(isinstance(name, str) for name in run["folds"]):
        expected = list(run["folds"])
        if not expected:
            problems.append('run.json "folds" is empty')
    elif run:
        problems.append('run.json lacks "folds"')
    names = expected if expected is not None else found
    folds = [_read_fold(path / name, name, head) for name in names]
    if expected is not None:
        extra = [name for name in found if name not in expected]
        notes.extend(f"{name} not in run.json folds (ignored)" for name in extra)
    shared_pool = isinstance(run.get("pool"), dict) and run["pool"].get("per_fold") is False
    for fold in folds:
        if shared_pool:  # never probed by itself (ser_cl.eval.run_probe): no probe.json to expect
            fold.problems = [p for p in fold.problems if not p.endswith("probe.json")]
        problems.extend(fold.problems)
        notes.extend(fold.notes)
    # a head-scored variant needs no probe.json, but when only some complete folds have one,
    # the R@1/F1/NMI columns average fewer folds than UA/WA: say which folds lack it
    complete = [fold for fold in folds if fold.complete]
    probed = [fold for fold in complete if fold.probe is not None]
    if probed and len(probed) < len(complete):
        notes.extend(f"{fold.name} missing probe.json" for fold in complete if fold.probe is None)

    if head is None:  # method from the folds: the head's if any fold had head scores
        head = any(_split_scores(fold.metrics) is not None for fold in folds)
    return VariantResult(
        experiment=experiment,
        variant=variant,
        path=path,
        run=run,
        head=head,
        method=METHOD_HEAD if head else METHOD_SVM,
        expected_folds=expected,
        folds=folds,
        problems=problems,
        notes=notes,
    )


def _sort_value(value: Any) -> Tuple[int, Any]:
    if isinstance(value, bool):
        return (1, str(value))
    if isinstance(value, (int, float)):
        return (0, float(value))
    return (1, str(value))


def _variant_key(result: VariantResult) -> Tuple[Any, ...]:
    sweep = result.sweep
    return (tuple((key, _sort_value(sweep[key])) for key in sorted(sweep)), result.variant)


def collect_runs(runs_dir: Union[str, Path]) -> List[VariantResult]:
    """Every variant under ``runs_dir``, sorted by experiment, then swept values, then name.

    A variant directory is one holding run.json or fold-* sub-directories, at any depth, so
    ``runs/``, ``runs/<experiment>/`` and ``runs/<experiment>/<variant>/`` all work.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory: train something first (`ser-cl train ...`)")
    _DATA_INFO.clear()  # data dirs are read afresh by each report
    _AUTO.clear()
    variant_dirs = {p.parent for p in root.rglob("run.json")}
    variant_dirs |= {p.parent for p in root.rglob("fold-*") if p.is_dir()}
    # a fold-* directory below another variant's fold is not a variant of its own
    variant_dirs = {d for d in variant_dirs if not any(part.startswith("fold-") for part in d.relative_to(root).parts)}
    results = [_read_variant(d) for d in sorted(variant_dirs)]
    results.sort(key=lambda r: (r.experiment, _variant_key(r)))
    return results


# ----------------------------------------------------------------------------- the table


def _mean_std(values: np.ndarray, scale: float) -> Tuple[Optional[float], Optional[float]]:
    if values.size == 0:
        return None, None
    return float(np.mean(values) * scale), float(np.std(values, ddof=0) * scale)


def _number_or_none(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def build_table(results: Sequence[VariantResult]) -> List[Dict[str, Any]]:
    """One row (dict of plain JSON types) per variant, in the order of ``results``.

    Numeric fields: ``{split}_{metric}_mean`` / ``_std`` for split val/test and metric
    ua, wa, r1 (retrieval Recall@1), f1 (k-means F1), svm_ua (the SVM's UA of a head
    variant) -- percent -- and nmi (fraction); None when no complete fold has the number
    (svm_ua: unless every complete fold has it). ``best`` marks the sweep winner.
    """
    rows: List[Dict[str, Any]] = []
    for result in results:
        row: Dict[str, Any] = {
            "experiment": result.experiment,
            "variant": result.variant,
            "sweep": result.sweep,
            "method": result.method,
            "stage": result.run.get("stage"),
            "protocol": result.protocol,
            "corpus": result.corpus,
        }
        for split in _SPLITS:
            for key in _METRICS:
                scale = 1.0 if key == "nmi" else 100.0
                mean, std = _mean_std(result.values(split, key), scale)
                row[f"{split}_{key}_mean"], row[f"{split}_{key}_std"] = mean, std
        thesis = result.thesis
        row["thesis_val_ua"] = _number_or_none(thesis.get("val_ua"))
        row["thesis_test_ua"] = _number_or_none(thesis.get("test_ua"))
        # the thesis' numbers are IEMOCAP's: beside a run on another corpus they would mislead
        row["thesis_hidden"] = bool(
            (row["thesis_val_ua"] is not None or row["thesis_test_ua"] is not None)
            and row["corpus"] is not None and row["corpus"].lower() != THESIS_CORPUS
        )
        if row["thesis_hidden"]:
            row["thesis_val_ua"] = row["thesis_test_ua"] = None
        row["n_folds"] = len(result.complete_folds)
        row["n_expected"] = result.n_expected
        row["complete"] = result.is_complete
        row["partial"] = result.is_partial
        row["best"] = False
        row["status"] = result.status
        row["problems"] = list(result.problems)
        row["notes"] = list(result.notes)
        # cross-corpus (cross.json): the training store and, per test store, the scores
        row["data_dir"] = result.run.get("data_dir") if isinstance(result.run.get("data_dir"), str) else None
        row["cross"] = result.cross_scores()
        rows.append(row)

    # a sweep = the variants of one experiment trained the same way and scored the same way
    # (so a pretraining's SVM never competes with a fine-tuning's classifier head)
    sweeps: Dict[Any, List[Dict[str, Any]]] = {}
    for row in rows:
        sweeps.setdefault((row["experiment"], row["stage"], row["method"]), []).append(row)
    for group in sweeps.values():
        if len(group) < 2:
            continue
        candidates = [row for row in group if row["complete"] and row["val_ua_mean"] is not None]
        if candidates:
            best = max(candidates, key=lambda row: row["val_ua_mean"])  # max keeps the first of ties
            best["best"] = True
    _label_stores(rows)
    return rows


def _store_label(data_dir: str, corpus: Optional[str]) -> str:
    """``corpus/dir-name`` (the dir name alone when the corpus is unknown), as crosstest prints it."""
    name = Path(data_dir).name
    return f"{corpus}/{name}" if corpus else name


def _label_stores(rows: List[Dict[str, Any]]) -> None:
    """Name the stores of the cross-corpus matrix: each row's ``data_label`` and each cross
    entry's ``label`` (a store's full path when two stores would get the same short name)."""
    if not any(row["cross"] for row in rows):
        for row in rows:
            row["data_label"] = None
        return
    corpus: Dict[str, Optional[str]] = {}
    for row in rows:
        if row["data_dir"]:
            corpus.setdefault(row["data_dir"], row["corpus"])
        for key, entry in row["cross"].items():
            corpus.setdefault(key, entry["corpus"] or (_data_info(key) or {}).get("corpus"))
    short = {key: _store_label(key, value) for key, value in corpus.items()}
    taken: Dict[str, int] = {}
    for label in short.values():
        taken[label] = taken.get(label, 0) + 1
    labels = {key: label if taken[label] == 1 else key for key, label in short.items()}
    for row in rows:
        row["data_label"] = labels.get(row["data_dir"]) if row["data_dir"] else None
        for key, entry in row["cross"].items():
            entry["label"] = labels[key]


def _cross_columns(rows: List[Dict[str, Any]]) -> List[Tuple[str, str]]:
    """(DATA_DIR, label) of the matrix' columns: the rows' training stores, then the other test stores."""
    crossed = [row for row in rows if row["cross"]]
    columns: Dict[str, str] = {}
    for row in crossed:
        if row["data_dir"]:
            columns.setdefault(row["data_dir"], row["data_label"] or row["data_dir"])
    others = {key: entry["label"] for row in crossed for key, entry in row["cross"].items() if key not in columns}
    columns.update(sorted(others.items(), key=lambda item: item[1]))
    return list(columns.items())


def _cross_md(rows: List[Dict[str, Any]]) -> List[str]:
    """The "Cross-corpus" section: a train x test matrix of mean UA, then the class notes."""
    crossed = [row for row in rows if row["cross"]]
    columns = _cross_columns(rows)
    header = ["trained on", "variant"] + [f"{label} UA" for _, label in columns]
    body = []
    for row in crossed:
        cells = [row["data_label"] or "?", f"{row['experiment']}/{row['variant']}"]
        for key, _ in columns:
            entry = row["cross"].get(key)
            if key == row["data_dir"]:  # in-corpus: the folds' own test UA, else their validation UA
                if row["test_ua_mean"] is not None:
                    cells.append(_pm_folds(row["test_ua_mean"], row["test_ua_std"], row["n_folds"]))
                elif row["val_ua_mean"] is not None:
                    cells.append(_pm_folds(row["val_ua_mean"], row["val_ua_std"], row["n_folds"]) + " (val)")
                else:
                    cells.append("-")
            elif entry is None:
                cells.append("-")
            else:
                text = _pm_folds(entry["ua_mean"], entry["ua_std"], entry["n_folds"])
                if entry["n_folds"] < row["n_folds"]:  # not every complete fold was tested on this store
                    text += f" ({entry['n_folds']}/{row['n_folds']})"
                cells.append(text)
        body.append(cells)
    out = ["", "## Cross-corpus", "",
           "UA (%) of each variant's fold models on other prepared stores (`data.test_on` or `ser-cl crosstest`),",
           "mean +- std over folds (a single fold: its value; `(k/n)`: only k of the n folds were tested).",
           "Rows: the training store and variant; columns: the test store. The cell in the training store's own",
           "column is the variant's in-corpus test UA, or its validation UA marked `(val)` when its folds have no",
           "test set (protocol holdout). Classes are compared through data.class_map (the shared classes only).",
           ""]
    out += _md_table(header, body, [False, False] + [True] * len(columns))
    notes = []
    for row in crossed:
        for key, entry in row["cross"].items():
            shared = ", ".join(str(c) for c in entry["classes"] or [])
            notes.append(f"- {row['data_label'] or '?'} -> {entry['label']}: {entry['n']} utterances of the "
                         f"shared classes {shared}")
            notes += [f"- {row['data_label'] or '?'} -> {entry['label']}: {note}" for note in entry["notes"]]
    if notes:
        out += [""] + list(dict.fromkeys(notes))
    return out


# ----------------------------------------------------------------------------- rendering


def format_value(value: Any) -> str:
    """Swept values as written in TOML: 0.1 -> "0.1", 1e-05 -> "1e-05", True -> "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def format_sweep(sweep: Dict[str, Any]) -> str:
    return "; ".join(f"{key}={format_value(sweep[key])}" for key in sorted(sweep))


def _pm(mean: Optional[float], std: Optional[float], digits: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def _pm_folds(mean: Optional[float], std: Optional[float], n_folds: int) -> str:
    """Like ``_pm`` with 2 digits, but a single fold's value alone (its std is 0 by definition)."""
    if mean is None:
        return "-"
    return f"{mean:.2f}" if n_folds <= 1 else _pm(mean, std, 2)


def _md_table(header: List[str], body: List[List[str]], right: Sequence[bool]) -> List[str]:
    """Aligned GitHub Markdown table (also readable as plain text)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    widths = [max(width, 3) for width in widths]

    def line(cells: List[str]) -> str:
        padded = [cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(cells, widths, right)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right)) + "|"
    return [line(header), rule] + [line(cells) for cells in body]


def _render_md(rows: List[Dict[str, Any]]) -> str:
    out = [
        "# ser-cl report",
        "",
        "UA = unweighted accuracy (mean per-class recall), WA = weighted (overall) accuracy, in %,",
        "mean +- std over folds (population std, ddof=0). R@1 = retrieval Recall@1 (%), F1 (%) and",
        "NMI = k-means clustering, test split. method: `ce head` = the trained classifier head,",
        "`svm` = linear SVM fitted on the train embeddings; svm test UA = that SVM's UA for a",
        "`ce head` variant (only when all its averaged folds have probe.json).",
    ]
    legend_best = legend_incomplete = False
    experiments: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        experiments.setdefault(row["experiment"], []).append(row)
    for experiment, group in experiments.items():
        sweep_keys: List[str] = []
        for row in group:
            sweep_keys.extend(key for key in sorted(row["sweep"]) if key not in sweep_keys)
        has_svm = any(row["test_svm_ua_mean"] is not None for row in group)
        has_probe = any(row["test_r1_mean"] is not None or row["test_f1_mean"] is not None for row in group)
        has_thesis_val = any(row["thesis_val_ua"] is not None for row in group)
        has_thesis_test = any(row["thesis_test_ua"] is not None for row in group)

        header = ["variant"] + sweep_keys + ["method", "val UA", "val WA", "test UA", "test WA"]
        right = [False] * (1 + len(sweep_keys)) + [False, True, True, True, True]
        if has_svm:
            header.append("svm test UA")
            right.append(True)
        if has_probe:
            header += ["test R@1", "test F1", "test NMI"]
            right += [True, True, True]
        if has_thesis_val:
            header.append("thesis val UA")
            right.append(True)
        if has_thesis_test:
            header.append("thesis test UA")
            right.append(True)
        header += ["folds", "status"]
        right += [True, False]

        body = []
        for row in group:
            mark = "" if row["complete"] else " !"
            legend_incomplete |= not row["complete"]
            legend_best |= row["best"]
            cells = [row["variant"] + (" *" if row["best"] else "")]
            cells += [format_value(row["sweep"][key]) if key in row["sweep"] else "" for key in sweep_keys]
            cells.append(row["method"])
            for split in _SPLITS:
                for key in ("ua", "wa"):
                    text = _pm(row[f"{split}_{key}_mean"], row[f"{split}_{key}_std"], 2)
                    cells.append(text + (mark if text != "-" else ""))
            if has_svm:
                text = _pm(row["test_svm_ua_mean"], row["test_svm_ua_std"], 2)
                cells.append(text + (mark if text != "-" else ""))
            if has_probe:
                for key, digits in (("r1", 2), ("f1", 2), ("nmi", 3)):
                    text = _pm(row[f"test_{key}_mean"], row[f"test_{key}_std"], digits)
                    cells.append(text + (mark if text != "-" else ""))
            for shown, key in ((has_thesis_val, "thesis_val_ua"), (has_thesis_test, "thesis_test_ua")):
                if shown:
                    cells.append("" if row["thesis_hidden"] else "-" if row[key] is None else f"{row[key]:.2f}")
            expected = "?" if row["n_expected"] is None else str(row["n_expected"])
            cells += [f"{row['n_folds']}/{expected}", row["status"]]
            body.append(cells)

        first = group[0]
        about = ", ".join(
            f"{name}: {first[name]}" for name in ("stage", "protocol") if first.get(name) not in (None, "")
        )
        out += ["", f"## {experiment}" + (f" ({about})" if about else ""), ""]
        out += _md_table(header, body, right)
        other = sorted({row["corpus"] for row in group if row["thesis_hidden"]})
        if other:
            out += ["", f"The thesis' numbers are IEMOCAP's and these runs are on {', '.join(other)}, "
                    "so they are not shown beside them."]

    if not rows:
        out += ["", "No runs found."]
    legend = []
    if legend_best:
        legend.append("`*` best variant of the sweep by mean validation UA (complete variants only).")
    if legend_incomplete:
        legend.append("`!` incomplete or partial variant: mean over its complete folds only; the status names "
                      "the bad files (partial: some folds were not run).")
    if legend:
        out += [""] + legend
    if any(row.get("cross") for row in rows):
        out += _cross_md(rows)
    return "\n".join(out) + "\n"


CSV_COLUMNS = (
    ["experiment", "variant", "sweep", "method", "stage", "protocol", "corpus"]
    + [f"{split}_{key}_{stat}" for split in _SPLITS for key in _METRICS for stat in ("mean", "std")]
    + ["thesis_val_ua", "thesis_test_ua", "n_folds", "n_expected", "complete", "best", "status"]
)


def _render_csv(rows: List[Dict[str, Any]]) -> str:
    buffer = io.StringIO()
    # cross-corpus results (only when there are some): the training store's label, then per test
    # store (its label) cross_<label>_{ua,wa}_{mean,std} and cross_<label>_n_folds
    columns = list(CSV_COLUMNS)
    cross_columns = _cross_columns(rows) if any(row.get("cross") for row in rows) else []
    if cross_columns:
        columns.append("data")
        columns += [f"cross_{label}_{stat}" for _, label in cross_columns
                    for stat in ("ua_mean", "ua_std", "wa_mean", "wa_std", "n_folds")]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        row = dict(row, data=row.get("data_label"))
        for key, label in cross_columns:
            entry = row["cross"].get(key) or {}
            row.update({f"cross_{label}_{stat}": entry.get(stat)
                        for stat in ("ua_mean", "ua_std", "wa_mean", "wa_std", "n_folds")})
        cells = {}
        for column in columns:
            value = row.get(column)
            if column == "sweep":
                value = format_sweep(value or {})
            elif isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, float):
                value = round(value, 4)
            cells[column] = "" if value is None else value
        writer.writerow(cells)
    return buffer.getvalue()


def render(rows: List[Dict[str, Any]], fmt: str = "md") -> str:
    """The table as Markdown ("md"), CSV ("csv", one row per variant) or JSON ("json", the rows)."""
    if fmt == "md":
        return _render_md(rows)
    if fmt == "csv":
        return _render_csv(rows)
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")


@dataclass
class ReportResult:
    """What ``write_report`` produced: the rendered text, where it went, plots, and messages."""

    text: str
    out: Optional[Path]
    plots: List[Path]
    messages: List[str]  # one line each, for the user (e.g. the matplotlib hint)
    results: List[VariantResult]


def write_report(
    runs_dir: Union[str, Path],
    fmt: str = "md",
    out: Optional[Union[str, Path]] = None,
    plots: bool = True,
    plots_dir: Optional[Union[str, Path]] = None,
) -> ReportResult:
    """Collect ``runs_dir``, render the table in ``fmt``, write it to ``out`` (atomically) if given.

    With ``plots`` (default) the PNGs go to ``plots_dir`` (default ``<runs_dir>/plots``); without
    matplotlib no plot is made and ``messages`` carries the one-line install hint.
    """
    from ser_cl.io import write_text

    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    results = collect_runs(runs_dir)
    text = render(build_table(results), fmt)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        write_text(out_path, text)
    plot_paths: List[Path] = []
    messages: List[str] = []
    if plots:
        from ser_cl.eval.plots import PlotsUnavailable, write_plots

        target = Path(plots_dir) if plots_dir is not None else Path(runs_dir) / "plots"
        try:
            plot_paths = write_plots(results, target)
        except PlotsUnavailable:
            messages.append(PLOTS_HINT)
        if plot_paths:
            messages.append(f"plots: {target}{os.sep} ({len(plot_paths)} PNG file{'s' if len(plot_paths) != 1 else ''})")
    incomplete = [r for r in results if not r.is_complete and not r.is_partial]
    if incomplete:
        messages.append(
            f"{len(incomplete)} of {len(results)} variants incomplete: "
            + ", ".join(f"{r.experiment}/{r.variant}" for r in incomplete)
        )
    return ReportResult(text=text, out=out_path, plots=plot_paths, messages=messages, results=results)


def safe_name(text: str) -> str:
    """A file-name-safe version of an experiment/variant/key name."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_") or "_"
