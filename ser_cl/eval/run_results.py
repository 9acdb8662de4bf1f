"""Reading a runs directory for the report: each variant's run.json and its folds' metrics.json,
probe.json and cross.json, checked (``collect_runs`` -> ``VariantResult``s, defined with their
``FoldResult``s in ``ser_cl.eval.variant_result`` and re-exported here).

The rules (which method scores a variant, when a fold or a variant is complete, what "partial"
means) are in ``ser_cl.eval.report``'s docstring and the README; this module applies them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ser_cl.data.batches.pool import serves_every_fold
from ser_cl.eval.variant_result import (METHOD_BASELINE, METHOD_ENSEMBLE, METHOD_HEAD, METHOD_STORE_PROBE, METHOD_SVM,
                                        FoldResult, VariantResult,
                                        _Corrupt, _read_json, clear_data_caches, data_info, mean_std,
                                        number_or_none, store_label)

# names other modules import from here
__all__ = ["METHOD_BASELINE", "METHOD_ENSEMBLE", "METHOD_HEAD", "METHOD_STORE_PROBE", "METHOD_SVM", "FoldResult",
           "VariantResult", "collect_runs",
           "data_info", "mean_std", "number_or_none", "store_label"]

_SPLITS = ("val", "test")
_STAGE_METHODS = {"baseline": METHOD_BASELINE, "ensemble": METHOD_ENSEMBLE}  # other stages with a head: METHOD_HEAD


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
    test set (protocol holdout) says ``"test": null``, one without validation speakers
    (``data.val_speakers = 0``) ``"val": null``: then that split is None (not both)."""
    if not isinstance(parent, dict):
        return None
    blocks = {split: _scores_block(parent.get(split)) for split in _SPLITS}
    if all(blocks[split] is None for split in _SPLITS):
        return None
    for split in _SPLITS:
        if blocks[split] is None and not (split in parent and parent[split] is None):
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
                      if isinstance(v, dict) and number_or_none(v.get("ua")) is not None
                      and number_or_none(v.get("wa")) is not None}
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
    shared_pool = serves_every_fold(run)
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
    method = _STAGE_METHODS.get(run.get("stage"), METHOD_HEAD) if head else METHOD_SVM
    if method == METHOD_BASELINE and any(((fold.metrics or {}).get("baseline") or {}).get("feature_set") == "store"
                                         for fold in folds):  # the linear probe on the store's own frames
        method = METHOD_STORE_PROBE
    return VariantResult(
        experiment=experiment,
        variant=variant,
        path=path,
        run=run,
        head=head,
        method=method,
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
    clear_data_caches()  # data dirs are read afresh by each report
    variant_dirs = {p.parent for p in root.rglob("run.json")}
    variant_dirs |= {p.parent for p in root.rglob("fold-*") if p.is_dir()}
    # a fold-* directory below another variant's fold is not a variant of its own
    variant_dirs = {d for d in variant_dirs if not any(part.startswith("fold-") for part in d.relative_to(root).parts)}
    results = [_read_variant(d) for d in sorted(variant_dirs)]
    results.sort(key=lambda r: (r.experiment, _variant_key(r)))
    return results
