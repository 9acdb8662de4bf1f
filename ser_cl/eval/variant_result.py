"""One variant's results as the report reads them: ``VariantResult`` (a runs/<experiment>/<variant>/
directory) and its ``FoldResult``s, with what their properties need (a data dir's prepare.json,
the protocol "auto" chose, means and stds). ``ser_cl.eval.run_results`` reads the directories
into them (``collect_runs``); the rules they apply are in ``ser_cl.eval.report``'s docstring.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ser_cl.data.batches.pool import serves_every_fold

METHOD_HEAD = "ce head"
METHOD_BASELINE = "opensmile svm"  # a stage = "baseline" run: openSMILE functionals + linear SVM
METHOD_STORE_PROBE = "store svm"  # the same with baseline.feature_set = "store": the store's pooled frames
METHOD_ENSEMBLE = "ensemble"  # a stage = "ensemble" run: mean probabilities of several heads (ser-cl ensemble)
METHOD_SVM = "svm"


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
    method: str  # METHOD_HEAD, METHOD_SVM, METHOD_BASELINE or METHOD_ENSEMBLE
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
        info = data_info(self.run.get("data_dir"))
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
        return serves_every_fold(self.run)

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
            ua_mean, ua_std = mean_std(np.asarray([float(r["ua"]) for r in results]), 100.0)
            wa_mean, wa_std = mean_std(np.asarray([float(r["wa"]) for r in results]), 100.0)
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


def data_info(data_dir: Any) -> Optional[dict]:
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


def clear_data_caches() -> None:
    """Forget the data dirs read so far (``collect_runs`` reads them afresh for each report)."""
    _DATA_INFO.clear()
    _AUTO.clear()


def _resolve_auto(data_dir: Any) -> Optional[str]:
    """What protocol "auto" chose on this data dir (as training does), None when it cannot be read."""
    if not isinstance(data_dir, str) or not data_dir:
        return None
    if data_dir not in _AUTO:
        from ser_cl.data.splits.folds import auto_protocol
        from ser_cl.data.stores.store import FeatureStore

        try:
            _AUTO[data_dir] = auto_protocol(FeatureStore(data_dir))
        except (OSError, ValueError, KeyError):
            _AUTO[data_dir] = None
    return _AUTO[data_dir]


def number_or_none(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def mean_std(values: np.ndarray, scale: float) -> Tuple[Optional[float], Optional[float]]:
    if values.size == 0:
        return None, None
    return float(np.mean(values) * scale), float(np.std(values, ddof=0) * scale)


def store_label(data_dir: Union[str, Path], corpus: Optional[str]) -> str:
    """How tables name a store: ``corpus/dir-name`` (the dir name alone when the corpus is unknown)."""
    name = Path(str(data_dir)).name
    return f"{corpus}/{name}" if corpus else name
