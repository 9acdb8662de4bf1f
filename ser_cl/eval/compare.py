"""``ser-cl report RUNS_DIR --compare A B``: a paired comparison of two variants over the same folds.

A and B are variants (or seed groups, ``ser_cl.eval.seeds``) under RUNS_DIR, named by their path
relative to it (``exp/variant``), by ``experiment/variant`` as run.json says, or by the variant's
name alone when no other variant has it. Both must have been run on the same data
(run.json ``data_dir``) with the same protocol, or, from two stores of one corpus (e.g. log-mel
and openSMILE functionals), on folds whose test utterances are the same (each paired fold's
``split.json`` ``test`` ids); otherwise nothing is compared.

Pairing: by fold name, over the folds where both have the metric (the method's score of a complete
fold, as in the report). A seed group's value for a fold is the mean over its seeds of that fold,
and a fold counts only when every seed of the group has it: the folds (their test speakers) are
the paired units, never the (seed, fold) pairs, which are not independent.

Test: ``scipy.stats.wilcoxon`` on the per-fold differences A - B (two-sided, zero differences
dropped: ``zero_method="wilcox"``). With n non-zero differences and no ties, the smallest
two-sided p an exact test can give is 2 / 2^n: for n <= 5 no result reaches p < 0.05, which the
output says. All differences zero: p = 1, no test is run.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ser_cl.eval.run_results import VariantResult, collect_runs
from ser_cl.eval.seeds import SEED_KEY, group_in_order, seed_base, seed_key
from ser_cl.eval.table_format import md_table

# --metric: split and score of the method (percent)
METRICS = {"test_ua": ("test", "ua", "test UA"), "val_ua": ("val", "ua", "val UA"),
           "test_wa": ("test", "wa", "test WA"), "val_wa": ("val", "wa", "val WA")}
COMPARE_FORMATS = ("md", "json")
ALPHA = 0.05


class CompareError(ValueError):
    """A comparison that cannot be made; the message is one line."""


@dataclass
class Side:
    """One side of a comparison: a variant, or the variants of a seed group."""

    name: str  # experiment/variant, or experiment/group for a seed group
    variants: List[VariantResult]
    seeds: Optional[List[Any]] = None  # a seed group's seeds

    @property
    def label(self) -> str:
        method = self.variants[0].method
        if self.seeds is None:
            return f"{self.name} ({method})"
        return f"{self.name} (seeds {', '.join(str(s) for s in self.seeds)}; {method}; mean over seeds per fold)"


@dataclass
class Comparison:
    a: str
    b: str
    metric: str  # a key of METRICS
    folds: List[str]
    a_values: List[float]  # percent, per fold
    b_values: List[float]
    diffs: List[float]  # A - B, percent
    mean_diff: float
    wins: int  # A > B
    losses: int  # A < B
    ties: int
    n_nonzero: int
    statistic: Optional[float]  # scipy's (two-sided: min(W+, W-)); None when not tested
    p_value: float
    min_p: Optional[float]  # smallest two-sided p an exact test can give with n_nonzero (no ties)
    test: str  # how p was obtained
    data_dir: Optional[str]
    protocol: Optional[str]
    left_out: List[str] = field(default_factory=list)  # folds of one side only, and why
    notes: List[str] = field(default_factory=list)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _sides(results: Sequence[VariantResult], root: Path) -> List[Tuple[List[str], Side]]:
    """Every variant and seed group, each with the names it answers to (full names first)."""
    out: List[Tuple[List[str], Side]] = []
    for result in results:
        rel = _relative(result.path, root)
        names = [rel, f"{result.experiment}/{result.variant}", result.variant]
        out.append((names, Side(f"{result.experiment}/{result.variant}", [result])))
    keys = [seed_key(r.experiment, r.variant, r.sweep, r.run.get("stage"), r.method) for r in results]
    for indices in group_in_order(keys).values():
        members = [results[i] for i in indices]
        first = members[0]
        base = seed_base(first.variant, first.sweep)
        parent = _relative(first.path.parent, root)
        names = [f"{parent}/{base}" if parent != "." else str(base), f"{first.experiment}/{base}", str(base)]
        out.append((names, Side(f"{first.experiment}/{base}", members, [m.sweep[SEED_KEY] for m in members])))
    return out


def resolve(results: Sequence[VariantResult], root: Union[str, Path], name: str) -> Side:
    """The variant or seed group ``name`` stands for; CompareError (one line) otherwise."""
    sides = _sides(results, Path(root))
    name = name.strip().strip("/")
    for level in (slice(0, 2), slice(2, 3)):  # full names first, then the bare variant name
        found: Dict[int, Side] = {}
        for names, side in sides:
            if name in names[level]:
                found[id(side)] = side
        if len(found) == 1:
            return next(iter(found.values()))
        if len(found) > 1:
            raise CompareError(f"'{name}' is ambiguous: {', '.join(side.name for side in found.values())}; "
                               "give experiment/variant")
    available = [side.name + (" (seed group)" if side.seeds is not None else "") for _, side in sides]
    raise CompareError(f"no variant '{name}' under {root}; variants: {', '.join(available) or 'none'}")


def fold_values(side: Side, metric: str) -> Tuple[Dict[str, float], Dict[str, str]]:
    """Per fold name, the metric in percent (a seed group: the mean over its seeds), over the folds
    every variant of the side has; and, per fold left out, why."""
    split, key, _ = METRICS[metric]
    per_variant: List[Dict[str, float]] = []
    for result in side.variants:
        values = {}
        for fold in result.complete_folds:
            block = fold.scores[split] if fold.scores else None  # None: no test set
            if block is not None:
                values[fold.name] = float(block[key]) * 100.0
        per_variant.append(values)
    common = set.intersection(*(set(values) for values in per_variant)) if per_variant else set()
    out = {name: float(np.mean([values[name] for values in per_variant])) for name in sorted(common)}
    why = {}
    for name in sorted(set().union(*per_variant) - common):
        lacking = [f"{SEED_KEY.split('.')[-1]}={side.seeds[i]}" if side.seeds is not None else side.name
                   for i, values in enumerate(per_variant) if name not in values]
        why[name] = "not complete in " + ", ".join(lacking)
    return out, why


def _check_same_data(a: Side, b: Side) -> Tuple[Optional[str], Optional[str], List[str]]:
    """The data dir and protocol both sides share; CompareError when they differ."""
    notes: List[str] = []

    def one(side: Side, what: str) -> Optional[str]:
        values = {result.run.get("data_dir") if what == "data_dir" else result.protocol for result in side.variants}
        known = {value for value in values if isinstance(value, str) and value}
        if len(known) > 1:
            raise CompareError(f"the variants of {side.name} were run with different {what}s: {', '.join(sorted(known))}")
        if len(known) < len(values):
            notes.append(f"{side.name}: run.json has no {what}: not checked")
        return known.pop() if known else None

    a_data, b_data = one(a, "data_dir"), one(b, "data_dir")
    a_protocol, b_protocol = one(a, "protocol"), one(b, "protocol")
    data_differs = bool(a_data and b_data and a_data != b_data)
    protocol_differs = bool(a_protocol and b_protocol and a_protocol != b_protocol)
    if data_differs and not protocol_differs and _same_test_sets(a, b):
        notes.append(f"two stores ({a_data} vs {b_data}): every paired fold tests the same utterances")
        return f"{a_data} | {b_data}", a_protocol or b_protocol, notes
    differ = ([f"data.dir {a_data} vs {b_data}"] if data_differs else []) + \
             ([f"protocol {a_protocol} vs {b_protocol}"] if protocol_differs else [])
    if differ:
        raise CompareError(f"{a.name} and {b.name} were not run on the same data ({'; '.join(differ)}): "
                           "their folds cannot be paired")
    return a_data or b_data, a_protocol or b_protocol, notes


def _test_ids(fold_dir: Path) -> Optional[Tuple[str, ...]]:
    try:
        split = json.loads((fold_dir / "split.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return tuple(sorted(split.get("test") or ())) if isinstance(split, dict) else None


def _same_test_sets(a: Side, b: Side) -> bool:
    """Whether every fold both sides completed tests the same utterances in every variant of both
    (split.json's ``test`` ids; a fold without a readable split.json does not count as the same)."""
    per_fold: Dict[str, List[set]] = {}
    for side_index, side in enumerate((a, b)):
        for result in side.variants:
            for fold in result.complete_folds:
                per_fold.setdefault(fold.name, [set(), set()])[side_index].add(_test_ids(fold.path))
    shared = [sets for sets in per_fold.values() if sets[0] and sets[1]]
    return bool(shared) and all(len(sets[0] | sets[1]) == 1 and None not in sets[0] for sets in shared)


def wilcoxon_test(diffs: Sequence[float]) -> Tuple[Optional[float], float, int, Optional[float], str]:
    """(statistic, two-sided p, n non-zero, smallest possible exact p, how) of the differences."""
    d = np.asarray(diffs, dtype=np.float64)
    nonzero = d[d != 0]
    n = int(nonzero.size)
    if n == 0:
        return None, 1.0, 0, None, "not run: every difference is zero"
    from scipy.stats import wilcoxon

    ties = np.unique(np.abs(nonzero)).size < n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns for small n, ties or zeros; the output says it
        result = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    if n <= 50 and not ties and n == d.size:
        how = "exact"
    elif n <= 50:
        how = "ties or zeros, so scipy's own method"
    else:
        how = "normal approximation"
    return float(result.statistic), float(result.pvalue), n, min(1.0, 2.0 / 2 ** n), how


def compare_runs(runs_dir: Union[str, Path], a: str, b: str, metric: str = "test_ua") -> Comparison:
    """Pair A's and B's folds and test the differences A - B (see the module docstring)."""
    if metric not in METRICS:
        raise CompareError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    results = collect_runs(runs_dir)
    side_a, side_b = resolve(results, runs_dir, a), resolve(results, runs_dir, b)
    if side_a.name == side_b.name and side_a.seeds == side_b.seeds:
        raise CompareError(f"A and B are both {side_a.name}: compare two different variants")
    data_dir, protocol, notes = _check_same_data(side_a, side_b)
    values_a, why_a = fold_values(side_a, metric)
    values_b, why_b = fold_values(side_b, metric)
    folds = sorted(set(values_a) & set(values_b))
    label = METRICS[metric][2]
    if not folds:
        raise CompareError(f"no fold has {label} in both {side_a.name} ({len(values_a)} folds) and "
                           f"{side_b.name} ({len(values_b)} folds)")
    left_out = []
    for name in sorted(set(values_a) ^ set(values_b) | set(why_a) | set(why_b)):
        if name in folds:
            continue
        reasons = []
        for side, values, why in ((side_a, values_a, why_a), (side_b, values_b, why_b)):
            if name not in values:
                reasons.append(why.get(name, f"not complete in {side.name}"))
        left_out.append(f"{name}: {'; '.join(reasons)}")
    a_values = [values_a[name] for name in folds]
    b_values = [values_b[name] for name in folds]
    # rounded so that equal scores give an exact 0 and equal gaps a tie, whatever the float noise
    diffs = [round(x - y, 9) for x, y in zip(a_values, b_values)]
    statistic, p_value, n_nonzero, min_p, how = wilcoxon_test(diffs)
    if n_nonzero == 0:
        notes.append("every difference is zero: no evidence either way (p = 1)")
    elif min_p is not None and min_p >= ALPHA:
        notes.append(f"with n = {n_nonzero} non-zero difference{'s' if n_nonzero != 1 else ''} the smallest "
                     f"two-sided p possible is 2/2^{n_nonzero} = {min_p:.4g}: no result can reach p < {ALPHA} "
                     "(compare over more folds)")
    return Comparison(
        a=side_a.label, b=side_b.label, metric=metric, folds=folds, a_values=a_values, b_values=b_values,
        diffs=diffs, mean_diff=float(np.mean(diffs)), wins=sum(d > 0 for d in diffs),
        losses=sum(d < 0 for d in diffs), ties=sum(d == 0 for d in diffs), n_nonzero=n_nonzero,
        statistic=statistic, p_value=p_value, min_p=min_p, test=how, data_dir=data_dir, protocol=protocol,
        left_out=left_out, notes=notes,
    )


def _md(c: Comparison) -> str:
    label = METRICS[c.metric][2]
    out = ["# ser-cl report: paired comparison", "",
           f"A: {c.a}", f"B: {c.b}",
           f"{label} (%) per fold, over the {len(c.folds)} folds both have"
           + (f" (protocol {c.protocol}" + (f", data {c.data_dir})" if c.data_dir else ")") if c.protocol
              else f" (data {c.data_dir})" if c.data_dir else "") + ".", ""]
    body = [[name, f"{x:.2f}", f"{y:.2f}", f"{d:+.2f}"] for name, x, y, d in zip(c.folds, c.a_values, c.b_values, c.diffs)]
    out += md_table(["fold", f"A {label}", f"B {label}", "A - B"], body, [False, True, True, True])
    out += ["",
            f"mean A - B: {c.mean_diff:+.2f} points (A {np.mean(c.a_values):.2f}, B {np.mean(c.b_values):.2f}); "
            f"A better on {c.wins} fold{'s' if c.wins != 1 else ''}, B better on {c.losses}, ties {c.ties}"]
    if c.statistic is None:
        out.append(f"Wilcoxon signed-rank: {c.test}; p = 1")
    else:
        out.append(f"Wilcoxon signed-rank, two-sided (scipy.stats.wilcoxon, {c.test}): W = {c.statistic:g}, "
                   f"n = {c.n_nonzero} non-zero differences, p = {c.p_value:.4g}")
    out += [f"left out: {line}" for line in c.left_out]
    out += [f"note: {line}" for line in c.notes]
    return "\n".join(out) + "\n"


def render_comparison(c: Comparison, fmt: str = "md") -> str:
    """Markdown ("md") or JSON ("json": every field of the Comparison)."""
    if fmt == "md":
        return _md(c)
    if fmt == "json":
        return json.dumps(asdict(c), indent=2) + "\n"
    raise CompareError(f"--compare prints {' or '.join(COMPARE_FORMATS)}, not {fmt!r}")


def write_comparison(runs_dir: Union[str, Path], a: str, b: str, metric: str = "test_ua", fmt: str = "md",
                     out: Optional[Union[str, Path]] = None) -> str:
    """``compare_runs`` rendered in ``fmt``, written to ``out`` (atomically) when given; the text."""
    if fmt not in COMPARE_FORMATS:
        raise CompareError(f"--compare prints {' or '.join(COMPARE_FORMATS)}, not {fmt!r}")
    text = render_comparison(compare_runs(runs_dir, a, b, metric), fmt)
    if out is not None:
        from ser_cl.io import write_text

        write_text(Path(out), text)
    return text
