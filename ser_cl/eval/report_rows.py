"""The report's rows: one per variant (``build_table``: means +- std over complete folds, the
sweep's best, seed groups, the cross-corpus stores' labels) and one per seed group
(``build_seed_table``), as dicts of plain JSON types. The rules are in ``ser_cl.eval.report``'s
docstring; ``report`` renders these rows."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from ser_cl.eval.variant_result import VariantResult, data_info, mean_std, number_or_none, store_label
from ser_cl.eval.seeds import SEED_KEY, group_in_order, seed_base, seed_key, seed_stats
from ser_cl.eval.table_format import format_value

THESIS_CORPUS = "iemocap"
SPLITS = ("val", "test")
METRICS = ("ua", "wa", "r1", "f1", "nmi", "svm_ua")  # {split}_{metric}_mean / _std of a row


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
        for split in SPLITS:
            for key in METRICS:
                scale = 1.0 if key == "nmi" else 100.0
                mean, std = mean_std(result.values(split, key), scale)
                row[f"{split}_{key}_mean"], row[f"{split}_{key}_std"] = mean, std
        thesis = result.thesis
        row["thesis_val_ua"] = number_or_none(thesis.get("val_ua"))
        row["thesis_test_ua"] = number_or_none(thesis.get("test_ua"))
        # the thesis' numbers are IEMOCAP's: beside a run on another corpus they would mislead
        row["thesis_hidden"] = bool(
            (row["thesis_val_ua"] is not None or row["thesis_test_ua"] is not None)
            and row["corpus"] is not None and row["corpus"].lower() != THESIS_CORPUS
        )
        if row["thesis_hidden"]:
            row["thesis_val_ua"] = row["thesis_test_ua"] = None
        for split in SPLITS:  # the classes each complete fold's UA is a mean over (its true classes)
            sets = scored_classes(result, split)
            row[f"{split}_ua_classes"] = {name: list(c) for name, c in sets.items()}
            row[f"{split}_ua_classes_differ"] = len(set(sets.values())) > 1
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

    # variants that differ only by their seed: one seed group (key only on the rows of one)
    keys = [seed_key(row["experiment"], row["variant"], row["sweep"], row["stage"], row["method"]) for row in rows]
    for key, row in zip(keys, rows):
        if key is not None:
            row["seed_group"] = seed_base(row["variant"], row["sweep"])
            row["seed_group_best"] = False

    # a sweep = the variants of one experiment trained the same way and scored the same way
    # (so a pretraining's SVM never competes with a fine-tuning's classifier head); its units are
    # the variants without a seed sweep and the seed groups (a group: the mean over its seeds)
    sweeps: Dict[Any, Dict[Any, List[Dict[str, Any]]]] = {}
    for index, (key, row) in enumerate(zip(keys, rows)):
        units = sweeps.setdefault((row["experiment"], row["stage"], row["method"]), {})
        units.setdefault(key if key is not None else index, []).append(row)
    for units in sweeps.values():
        if len(units) < 2:
            continue
        candidates = []
        for members in units.values():
            if all(row["complete"] for row in members):
                val, _, n = seed_stats([row["val_ua_mean"] for row in members])
                if val is not None and n == len(members):
                    candidates.append((val, members))
        if candidates:
            _, members = max(candidates, key=lambda item: item[0])  # max keeps the first of ties
            for row in members:
                row["seed_group_best" if "seed_group" in row else "best"] = True
    _label_stores(rows)
    return rows


def scored_classes(result: VariantResult, split: str) -> Dict[str, tuple]:
    """Complete fold name -> the classes its ``split`` UA averages over: those with at least one
    true utterance in its confusion matrix (rows are true classes; ``metrics.ua_from_confusion``).
    Folds without a confusion matrix are left out."""
    names = result.classes
    out: Dict[str, tuple] = {}
    for fold in result.complete_folds:
        block = (fold.scores or {}).get(split)
        confusion = block.get("confusion") if isinstance(block, dict) else None
        if not confusion:
            continue
        out[fold.name] = tuple(names[i] if i < len(names) else str(i)
                               for i, counts in enumerate(confusion) if sum(counts) > 0)
    return out


def class_set_notes(row: Dict[str, Any], split: str = "test") -> List[str]:
    """For a row whose folds' UA averages over different classes: which folds lack which class."""
    sets = row.get(f"{split}_ua_classes") or {}
    if not row.get(f"{split}_ua_classes_differ"):
        return []
    every = [c for fold in sets.values() for c in fold]
    union = list(dict.fromkeys(every))
    gaps = [f"{name} without {', '.join(c for c in union if c not in have)}"
            for name, have in sets.items() if len(have) < len(union)]
    return [f"{row['variant']}: {split} UA averages over different classes per fold ({'; '.join(gaps)})"]


def build_seed_table(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per seed group of ``build_table``'s rows (none without a seed sweep), in table order.

    ``{split}_{ua,wa}_mean``: the mean over seeds of each seed's mean over its complete folds;
    ``_std``: the population std (ddof=0) of those seed means; ``_seed_means``: the seed means
    (None for a seed without a value). ``seeds``: the seed values, ``n_seeds``: how many;
    ``n_folds``: each seed's complete folds; ``complete``: every seed's variant is complete.
    """
    keys = [seed_key(row["experiment"], row["variant"], row["sweep"], row["stage"], row["method"])
            if "seed_group" in row else None for row in rows]
    out = []
    for indices in group_in_order(keys).values():
        members = [rows[i] for i in indices]
        first = members[0]
        group: Dict[str, Any] = {
            "experiment": first["experiment"],
            "variant": first["seed_group"],
            "sweep": {key: value for key, value in first["sweep"].items() if key != SEED_KEY},
            "method": first["method"],
            "stage": first["stage"],
            "protocol": first["protocol"],
            "corpus": first["corpus"],
            "seeds": [row["sweep"][SEED_KEY] for row in members],
            "n_seeds": len(members),
            "variants": [row["variant"] for row in members],
        }
        for split in SPLITS:
            for key in ("ua", "wa"):
                means = [row[f"{split}_{key}_mean"] for row in members]
                mean, std, _ = seed_stats(means)
                group[f"{split}_{key}_mean"], group[f"{split}_{key}_std"] = mean, std
                group[f"{split}_{key}_seed_means"] = means
        group["n_folds"] = [row["n_folds"] for row in members]
        expected = {row["n_expected"] for row in members}
        group["n_expected"] = expected.pop() if len(expected) == 1 else None
        group["complete"] = all(row["complete"] for row in members)
        group["best"] = any(row.get("seed_group_best") for row in members)
        bad = [f"{SEED_KEY.split('.')[-1]}={format_value(row['sweep'][SEED_KEY])}" for row in members
               if not row["complete"]]
        group["status"] = "ok" if not bad else "INCOMPLETE: " + ", ".join(bad) + " (see their rows)"
        group["cross"] = {}
        group["data_label"] = None
        out.append(group)
    return out


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
            corpus.setdefault(key, entry["corpus"] or (data_info(key) or {}).get("corpus"))
    short = {key: store_label(key, value) for key, value in corpus.items()}
    taken: Dict[str, int] = {}
    for label in short.values():
        taken[label] = taken.get(label, 0) + 1
    labels = {key: label if taken[label] == 1 else key for key, label in short.items()}
    for row in rows:
        row["data_label"] = labels.get(row["data_dir"]) if row["data_dir"] else None
        for key, entry in row["cross"].items():
            entry["label"] = labels[key]
