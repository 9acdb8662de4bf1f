"""Report figures (optional: needs matplotlib, ``pip install "ser-cl[plots]"``).

* ``<experiment>__ua_vs_<key>.png``: validation and test UA (mean +- std over folds, error bars)
  against each swept hyper-parameter of an experiment, like the thesis' figures 4.4 (margin) and
  4.8 (temperature). The x axis is logarithmic when the values are positive and span a factor of
  10 or more; non-numeric values (e.g. a mining strategy) are placed as categories. When other
  keys vary too, each combination of their values is its own pair of lines. Only complete
  variants are drawn; the title says how many incomplete (or partial) ones were left out.
* ``<experiment>__<variant>__confusion.png``: the test confusion matrix of the variant's method,
  summed over its complete folds and normalised per row (true class), cells annotated.

Files are written atomically with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from ser_cl.eval.variant_result import VariantResult
from ser_cl.eval.table_format import format_value, safe_name
from ser_cl.io import atomic_path


class PlotsUnavailable(ImportError):
    """matplotlib is not installed."""


def plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise PlotsUnavailable('matplotlib is not installed; `pip install "ser-cl[plots]"` gives the plots') from error
    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mean_std_percent(result: VariantResult, split: str) -> Tuple[float, float]:
    values = result.values(split, "ua") * 100.0
    return float(values.mean()), float(values.std(ddof=0))


def _sweep_figure(plt: Any, experiment: str, key: str, variants: List[VariantResult], n_left_out: int) -> Any:
    """UA (val, test) against swept ``key``; one line pair per combination of the other varying keys."""
    values = [variant.sweep[key] for variant in variants]
    numeric = all(_is_number(value) for value in values)
    ordered = sorted({format_value(value) for value in values})

    def position(variant: VariantResult) -> float:
        value = variant.sweep[key]
        return float(value) if numeric else float(ordered.index(format_value(value)))

    all_keys = {k for variant in variants for k in variant.sweep if k != key}
    other_keys = sorted(k for k in all_keys if len({format_value(v.sweep.get(k)) for v in variants}) > 1)
    groups: Dict[str, List[VariantResult]] = {}
    for variant in variants:
        label = ", ".join(f"{k}={format_value(variant.sweep.get(k))}" for k in other_keys)
        groups.setdefault(label, []).append(variant)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2", "C3"])
    for index, (label, members) in enumerate(sorted(groups.items())):
        members = sorted(members, key=position)
        x = np.asarray([position(v) for v in members])
        colour = colours[index % len(colours)]
        for split, style in (("val", "--"), ("test", "-")):
            stats = np.asarray([_mean_std_percent(v, split) for v in members])
            name = f"{split} UA" + (f" ({label})" if label else "")
            ax.errorbar(x, stats[:, 0], yerr=stats[:, 1], fmt="o" + style, color=colour, capsize=3,
                        label=name, alpha=0.9 if split == "test" else 0.6)
    if numeric:
        ticks = sorted({float(v) for v in values})
        if ticks[0] > 0 and ticks[-1] / ticks[0] >= 10:
            ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels([format_value(t) for t in ticks])
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(ordered)))
        ax.set_xticklabels(ordered)
    ax.set_xlabel(key)
    ax.set_ylabel("UA (%)")
    title = f"{experiment}: UA vs {key} (mean ± std over folds)"
    if n_left_out:
        title += f"\n{n_left_out} incomplete or partial variant(s) not shown"
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _confusion_figure(plt: Any, result: VariantResult, counts: np.ndarray) -> Any:
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    classes = result.classes
    if len(classes) != counts.shape[0]:
        classes = [str(i) for i in range(counts.shape[0])]
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.2 * len(classes) + 1.8))
    image = ax.imshow(normalised, vmin=0.0, vmax=1.0, cmap="Blues")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, f"{normalised[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center", fontsize=8,
                    color="white" if normalised[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels(classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    n = len(result.complete_folds)
    expected = "?" if result.n_expected is None else result.n_expected
    flag = "" if result.is_complete else " (partial run)" if result.is_partial else " INCOMPLETE"
    ax.set_title(
        f"{result.experiment}/{result.variant}: test confusion\n"
        f"{result.method}, summed over {n}/{expected} folds{flag}, row-normalised",
        fontsize=9,
    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def write_plots(results: Sequence[VariantResult], out_dir: Union[str, Path]) -> List[Path]:
    """Write the sweep and confusion PNGs for ``results`` into ``out_dir``; return their paths.

    Raises ``PlotsUnavailable`` (an ImportError) when matplotlib is missing.
    """
    plt = _pyplot()
    out = Path(out_dir)
    written: List[Path] = []

    experiments: Dict[str, List[VariantResult]] = {}
    for result in results:
        experiments.setdefault(result.experiment, []).append(result)
    for experiment, variants in experiments.items():
        drawable = [v for v in variants if v.is_complete and v.complete_folds]
        n_left_out = len(variants) - len(drawable)
        keys = sorted({k for v in variants for k in v.sweep})
        for key in keys:
            having = [v for v in drawable if key in v.sweep]
            distinct = {format_value(v.sweep[key]) for v in having}
            if len(distinct) < 2:
                continue  # not swept (or fewer than two drawable points): nothing to plot against
            fig = _sweep_figure(plt, experiment, key, having, n_left_out)
            try:
                written.append(_save(fig, out / f"{safe_name(experiment)}__ua_vs_{safe_name(key)}.png"))
            finally:
                plt.close(fig)

    for result in results:
        counts = result.pooled_confusion("test")
        if counts is None or counts.sum() == 0:
            continue
        fig = _confusion_figure(plt, result, counts)
        try:
            name = f"{safe_name(result.experiment)}__{safe_name(result.variant)}__confusion.png"
            written.append(_save(fig, out / name))
        finally:
            plt.close(fig)
    return written
