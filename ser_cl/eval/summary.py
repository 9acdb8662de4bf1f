"""The few lines ``ser-cl train | pretrain | finetune`` print when a variant is done.

Read from the files training wrote: ``run.json`` (the folds expected, whether there is a
classifier head) and each ``fold-NN/metrics.json`` (only folds whose status is "complete").
UA in percent with 2 decimals, mean +- population std over the complete folds, as in the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np


def _read(path: Path) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _ua(metrics: Dict[str, Any], split: str) -> Optional[float]:
    block = metrics.get(split)
    try:
        return 100.0 * float(block["ua"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def _pm(values: List[float], digits: int) -> str:
    return f"{np.mean(values):.{digits}f} +- {np.std(values, ddof=0):.{digits}f}"


def summarize_variant(variant_dir: Union[str, Path]) -> List[str]:
    """One line per complete fold, then a mean line, for runs/<experiment>/<variant>.

    With a classifier head: ``fold-01: val UA 55.20, test UA 54.10`` and
    ``exp/variant: test UA 54.10 +- 4.03 (val 55.20 +- 3.10) over 10/10 folds``; folds without a
    test set (protocol holdout) give ``fold-01: val UA 55.20, no test set`` and a val-only mean.
    Without one (pretraining): the best validation loss per fold, its mean, and how to get the
    linear-SVM UA (``ser-cl probe``, then ``ser-cl report``).
    """
    vdir = Path(variant_dir)
    run = _read(vdir / "run.json") or {}
    name = f"{run.get('experiment') or vdir.parent.name}/{run.get('variant') or vdir.name}"
    expected = run.get("folds") if isinstance(run.get("folds"), list) else sorted(
        p.name for p in vdir.glob("fold-*") if p.is_dir())
    head = bool(run.get("head", True))
    lines: List[str] = []
    vals: List[float] = []
    tests: List[float] = []
    losses: List[float] = []
    scored = 0  # complete folds with a classifier head's scores
    for fold in expected:
        metrics = _read(vdir / fold / "metrics.json")
        if metrics is None or metrics.get("status") != "complete":
            continue
        if head:
            val, test = _ua(metrics, "val"), _ua(metrics, "test")
            # null: a fold without a test set (protocol holdout) or without validation (val_speakers = 0);
            # absent or unreadable: not scored
            if any(ua is None and metrics.get(split, {}) is not None for split, ua in (("val", val), ("test", test))):
                continue
            scored += 1
            if val is not None:
                vals.append(val)
            if test is not None:
                tests.append(test)
            lines.append(f"  {fold}: " + (f"val UA {val:.2f}" if val is not None else "no validation set") + ", "
                         + (f"test UA {test:.2f}" if test is not None else "no test set"))
        else:
            try:
                loss = float(metrics["best_value"])
            except (KeyError, TypeError, ValueError):
                continue
            losses.append(loss)
            epoch = metrics.get("best_epoch")
            lines.append(f"  {fold}: best val loss {loss:.4f}" + (f" (epoch {epoch})" if epoch else ""))
    done = scored if head else len(losses)
    over = f"over {done}/{len(expected)} folds"
    if done == 0:
        return lines + [f"{name}: no complete fold yet"]
    if head and not tests:  # no fold has a test set (protocol holdout)
        return lines + [f"{name}: val UA {_pm(vals, 2)} {over} (no test set)"]
    if head:
        return lines + [f"{name}: test UA {_pm(tests, 2)} " + (f"(val {_pm(vals, 2)})" if vals else "(no validation set)")
                        + f" {over}"]
    return lines + [
        f"{name}: best val loss {_pm(losses, 4)} {over}; no classifier head, so no UA here:",
        f"  `ser-cl probe {vdir}` then `ser-cl report {vdir.parent}` give the linear SVM's UA",
    ]
