"""``ser-cl report RUNS_DIR --compare A B``: a paired comparison of two variants over the same folds.

A and B are variants (or seed groups, ``ser_cl.eval.seeds``) under RUNS_DIR, named by their path
relative to it (``exp/variant``), by ``experiment/variant`` as run.json says, or by the variant's
name alone when no other variant has it. Both must have been run with the same protocol, on the
same data (run.json ``data_dir``) or on two stores of one corpus (e.g. log-mel and openSMILE
functionals).

Pairing: by fold name, over the folds where both have the metric (the method's score of a complete
fold, as in the report), and only when each such fold tests the same utterances in every variant
of A and B (``split.json`` ``test`` ids): two fold counts of ``speaker_groups``, two fold files or
two sets of holdout speakers are refused (one line), as is a fold without a readable split.json.
A fold of one side's protocol that the other's never had is said to be so. When the paired folds
were trained on different speakers (``split.json``: ``train_speakers``, or the speakers of its
``train`` ids in the store's manifest), or one side also trained on copies (``train_copies``), the
output says so: the difference then measures those too. A seed group's value for a fold is the
mean over its seeds of that fold, and a fold counts only when every seed of the group has it: the
folds (their test speakers) are the paired units, never the (seed, fold) pairs, which are not
independent.

Test: ``scipy.stats.wilcoxon`` on the per-fold differences A - B (two-sided, zero differences
dropped; exact for n <= 50 non-zero differences, ties or not, else the normal approximation:
``wilcoxon_test``, named in the output). With n non-zero differences and no ties, the smallest
two-sided p an exact test can give is 2 / 2^n: for n <= 5 no result reaches p < 0.05, which the
output says. All differences zero: p = 1, no test is run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ser_cl.eval.run_results import VariantResult, collect_runs
from ser_cl.eval.seeds import SEED_KEY, group_in_order, seed_base, seed_key
from ser_cl.eval.signed_rank import wilcoxon_test
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
    if a_protocol and b_protocol and a_protocol != b_protocol:
        raise CompareError(f"{a.name} and {b.name} were not run on the same data (protocol {a_protocol} vs "
                           f"{b_protocol}): their folds cannot be paired")
    if a_data and b_data and a_data != b_data:  # the paired folds' test utterances are checked next
        notes.append(f"two stores ({a_data} vs {b_data}): every paired fold tests the same utterances")
        return f"{a_data} | {b_data}", a_protocol or b_protocol, notes
    return a_data or b_data, a_protocol or b_protocol, notes


def _split(fold_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        split = json.loads((fold_dir / "split.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return split if isinstance(split, dict) and isinstance(split.get("test"), list) else None


_MANIFEST_SPEAKERS: Dict[str, Optional[Dict[str, str]]] = {}


def _manifest_speakers(data_dir: Optional[str]) -> Optional[Dict[str, str]]:
    """utterance id -> speaker from a store's manifest.csv (None: not readable)."""
    if not data_dir:
        return None
    if data_dir not in _MANIFEST_SPEAKERS:
        import csv

        try:
            with open(Path(data_dir) / "manifest.csv", newline="", encoding="utf-8") as f:
                _MANIFEST_SPEAKERS[data_dir] = {row["utt_id"]: row["speaker"] for row in csv.DictReader(f)}
        except (OSError, KeyError, ValueError):
            _MANIFEST_SPEAKERS[data_dir] = None
    return _MANIFEST_SPEAKERS[data_dir]


def _training_set(split: Dict[str, Any], data_dir: Optional[str]) -> Tuple[str, frozenset]:
    """("speakers", their names) of a fold's training utterances (copies aside), or ("utterances",
    the ids) when neither split.json nor the store's manifest names their speakers."""
    if isinstance(split.get("train_speakers"), list):
        return "speakers", frozenset(split["train_speakers"])
    ids = split.get("train") or []
    speakers = _manifest_speakers(data_dir)
    if speakers is not None and all(u in speakers for u in ids):
        return "speakers", frozenset(speakers[u] for u in ids)
    return "utterances", frozenset(ids)


def _copy_stores(split: Dict[str, Any]) -> Tuple[str, ...]:
    return tuple(sorted({u.split(":", 1)[0] for u in split.get("train_copies") or ()}))


def _check_pairs(a: Side, b: Side, folds: Sequence[str]) -> List[str]:
    """CompareError (one line) unless every paired fold tests the same utterances in every variant
    of both sides; notes on what the paired folds were trained on when the sides differ there."""
    trained: Dict[str, List[set]] = {}
    copies: List[set] = [set(), set()]
    for name in folds:
        tests: Dict[Tuple[str, ...], str] = {}
        for index, side in enumerate((a, b)):
            for result in side.variants:
                fold = next(f for f in result.complete_folds if f.name == name)
                split = _split(fold.path)
                if split is None:
                    raise CompareError(f"{fold.path / 'split.json'} is missing or unreadable: cannot check that "
                                       f"{a.name} and {b.name} test the same utterances in {name}")
                tests.setdefault(tuple(sorted(split["test"])), side.name)
                trained.setdefault(name, [set(), set()])[index].add(_training_set(split, result.run.get("data_dir")))
                copies[index].add(_copy_stores(split))
        if len(tests) > 1:
            (x, x_side), (y, y_side) = list(tests.items())[:2]
            raise CompareError(
                f"{name} tests other utterances in {x_side} ({len(x)}) than in {y_side} ({len(y)}; {len(set(x) & set(y))} "
                "shared): their folds cannot be paired (another data.n_folds, fold file or holdout speakers?)")
    notes = []
    differ = [name for name, (sa, sb) in trained.items() if sa != sb]
    if differ:
        name = differ[0]
        (kind_a, set_a), (kind_b, set_b) = min(trained[name][0]), min(trained[name][1])
        what = kind_a if kind_a == kind_b else "utterances"
        detail = (f"{len(set_a)} vs {len(set_b)} {what}"
                  + (f"; only in A: {', '.join(sorted(set_a - set_b)[:6])}" if what == "speakers" and set_a - set_b else "")
                  + (f"; only in B: {', '.join(sorted(set_b - set_a)[:6])}" if what == "speakers" and set_b - set_a else ""))
        notes.append(f"A and B were trained on different {what} in {len(differ)} of the {len(folds)} paired folds "
                     f"(e.g. {name}: {detail}): the difference measures that too")
    if copies[0] != copies[1]:
        def said(stores: set) -> str:
            names = sorted({s for group in stores for s in group})
            return "copies from " + ", ".join(names) if names else "no copies"

        notes.append(f"A trained on {said(copies[0])} (split.json train_copies), B on {said(copies[1])}: "
                     "the difference measures that too")
    return notes


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
    notes += _check_pairs(side_a, side_b, folds)
    left_out = []
    for name in sorted(set(values_a) ^ set(values_b) | set(why_a) | set(why_b)):
        if name in folds:
            continue
        reasons = []
        for side, values, why in ((side_a, values_a, why_a), (side_b, values_b, why_b)):
            if name not in values:
                protocol_folds = [r.expected_folds for r in side.variants if r.expected_folds is not None]
                if protocol_folds and all(name not in names for names in protocol_folds):
                    reasons.append(f"not a fold of {side.name} (its run has {len(protocol_folds[0])} folds)")
                else:
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
