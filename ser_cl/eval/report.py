"""``ser-cl report``: gather runs/<experiment>/<variant>/ into thesis-style tables.

Reading and checking the run directories is ``ser_cl.eval.run_results``; ``ser_cl.eval.report_rows``
turns its ``VariantResult``s into rows; this module renders them (Markdown, CSV, JSON) and writes
the report (the plots: ``ser_cl.eval.plots``).

What is read (the run-directory contract): ``run.json`` of each variant, and in each
``fold-NN/`` its ``metrics.json`` and, when present, ``probe.json`` and ``cross.json`` (the
"Cross-corpus" section: a train x test matrix of mean UA; see ``ser_cl.eval.cross_corpus``).
A fold without a test set (protocol holdout, ``"test": null``) still counts; its test cells are empty.

Rules (also in the README):

* Method. A variant whose run.json says ``"head": true`` is scored with its classifier head
  ("ce head"): probe.json's ``"classifier"`` block when present, else metrics.json's val/test.
  Otherwise it is scored with the linear SVM of probe.json ("svm"). A run.json ``"stage"`` of
  ``"baseline"`` or ``"ensemble"`` names its method "opensmile svm" or "ensemble" instead. A
  head variant also shows the SVM's UA on the same embeddings (``svm_ua``) when every complete
  fold has probe.json's ``"svm"`` block; otherwise (and for svm variants, where it would repeat
  UA) it is empty.
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
* Seeds (``ser_cl.eval.seeds``). Variants that differ only by a swept ``optim.seed`` form a seed
  group (named after them less ``_seed=N``). Their rows stay as they are; under the experiment's
  table a "Seeds" table gives one row per group: per seed the mean over its complete folds, then
  the mean over seeds +- the std (ddof=0) of those seed means, and the number of seeds. In a sweep
  holding seed groups the best is chosen among the groups (by their mean over seeds of the
  validation UA) and the variants without a seed sweep, never among single seeds; a group is a
  candidate only when every one of its variants is complete. csv/json: the group rows follow the
  variant rows and have ``seeds`` / ``n_seeds``; the variant rows of a group have ``seed_group``.
  Runs without a seed sweep give the same output as before.
* ``--compare A B``: a paired comparison of two variants (or seed groups) over their common
  folds, with a Wilcoxon signed-rank test (``ser_cl.eval.compare``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ser_cl.eval.report_rows import METRICS, SPLITS, THESIS_CORPUS, build_seed_table, build_table, class_set_notes
from ser_cl.eval.run_results import VariantResult, collect_runs
from ser_cl.eval.seeds import SEED_KEY
from ser_cl.eval.table_format import format_sweep, format_value, md_table, pm, pm_folds, safe_name

FORMATS = ("md", "csv", "json")
PLOTS_HINT = 'plots skipped: matplotlib is not installed; `pip install "ser-cl[plots]"` gives them'
# names other modules and tests import from here
__all__ = ["FORMATS", "PLOTS_HINT", "THESIS_CORPUS", "ReportResult", "VariantResult", "build_seed_table",
           "build_table", "collect_runs", "format_sweep", "format_value", "render", "safe_name", "write_report"]


# ----------------------------------------------------------------------------- rendering


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
                    cells.append(pm_folds(row["test_ua_mean"], row["test_ua_std"], row["n_folds"]))
                elif row["val_ua_mean"] is not None:
                    cells.append(pm_folds(row["val_ua_mean"], row["val_ua_std"], row["n_folds"]) + " (val)")
                else:
                    cells.append("-")
            elif entry is None:
                cells.append("-")
            else:
                text = pm_folds(entry["ua_mean"], entry["ua_std"], entry["n_folds"])
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
    out += md_table(header, body, [False, False] + [True] * len(columns))
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


def _header_values(group: List[Dict[str, Any]], name: str) -> str:
    """``stage: train`` for an experiment's rows, or ``stages: ensemble + train`` when they differ
    (every value in row order, not only the first row's)."""
    values = list(dict.fromkeys(str(row[name]) for row in group if row.get(name) not in (None, "")))
    return f"{name}{'s' if len(values) > 1 else ''}: {' + '.join(values)}"


def _render_md(rows: List[Dict[str, Any]]) -> str:
    out = [
        "# ser-cl report",
        "",
        "UA = unweighted accuracy (mean per-class recall), WA = weighted (overall) accuracy, in %,",
        "mean +- std over folds (population std, ddof=0). R@1 = retrieval Recall@1 (%), F1 (%) and",
        "NMI = k-means clustering, test split. method: `ce head` = the trained classifier head,",
        "`svm` = linear SVM fitted on the train embeddings; svm test UA = that SVM's UA for a",
        "`ce head` variant (only when all its averaged folds have probe.json). `opensmile svm` =",
        "the classical baseline (openSMILE functionals + linear SVM, `stage = \"baseline\"`); `store svm` =",
        "the same SVM on the store's own frames, mean + std pooled (`baseline.feature_set = \"store\"`).",
        "`ensemble` = the mean class probabilities of several runs' heads (`ser-cl ensemble`).",
    ]
    legend_best = legend_incomplete = legend_seeds = False
    class_notes: List[str] = []
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
            for split in SPLITS:
                for key in ("ua", "wa"):
                    text = pm(row[f"{split}_{key}_mean"], row[f"{split}_{key}_std"], 2)
                    mixed = " ~" if key == "ua" and row.get(f"{split}_ua_classes_differ") and text != "-" else ""
                    cells.append(text + (mark if text != "-" else "") + mixed)
                class_notes += class_set_notes(row, split)
            if has_svm:
                text = pm(row["test_svm_ua_mean"], row["test_svm_ua_std"], 2)
                cells.append(text + (mark if text != "-" else ""))
            if has_probe:
                for key, digits in (("r1", 2), ("f1", 2), ("nmi", 3)):
                    text = pm(row[f"test_{key}_mean"], row[f"test_{key}_std"], digits)
                    cells.append(text + (mark if text != "-" else ""))
            for shown, key in ((has_thesis_val, "thesis_val_ua"), (has_thesis_test, "thesis_test_ua")):
                if shown:
                    cells.append("" if row["thesis_hidden"] else "-" if row[key] is None else f"{row[key]:.2f}")
            expected = "?" if row["n_expected"] is None else str(row["n_expected"])
            cells += [f"{row['n_folds']}/{expected}", row["status"]]
            body.append(cells)

        about = ", ".join(_header_values(group, name) for name in ("stage", "protocol")
                          if any(row.get(name) not in (None, "") for row in group))
        out += ["", f"## {experiment}" + (f" ({about})" if about else ""), ""]
        out += md_table(header, body, right)
        other = sorted({row["corpus"] for row in group if row["thesis_hidden"]})
        if other:
            out += ["", f"The thesis' numbers are IEMOCAP's and these runs are on {', '.join(other)}, "
                    "so they are not shown beside them."]
        seed_groups = build_seed_table(group)
        if seed_groups:
            out += _seeds_md(seed_groups)
            legend_seeds = True
            legend_best |= any(row["best"] for row in seed_groups)

    if not rows:
        out += ["", "No runs found."]
    legend = []
    if legend_best:
        legend.append("`*` best variant of the sweep by mean validation UA (complete variants only).")
    if legend_best and legend_seeds:
        legend.append("In a sweep with seeds the best is a seed group (by its mean over seeds), never one seed.")
    if legend_incomplete:
        legend.append("`!` incomplete or partial variant: mean over its complete folds only; the status names "
                      "the bad files (partial: some folds were not run).")
    if class_notes:
        legend.append("`~` the folds' UA averages over different classes (a class that some folds' speakers do "
                      "not have): each fold's UA is the mean recall over the classes of its own speakers, and the "
                      "mean over folds mixes them (docs/evaluation.md, 'Scores'):")
        legend += [f"- {note}" for note in class_notes]
    if legend:
        out += [""] + legend
    if any(row.get("cross") for row in rows):
        out += _cross_md(rows)
    return "\n".join(out) + "\n"


def _seeds_md(groups: List[Dict[str, Any]]) -> List[str]:
    """The "Seeds" table under an experiment's table: one row per seed group."""
    sweep_keys: List[str] = []
    for group in groups:
        sweep_keys.extend(key for key in sorted(group["sweep"]) if key not in sweep_keys)
    header = ["seed group"] + sweep_keys + ["method", "seeds", "val UA", "test UA", "test UA per seed", "folds",
                                            "status"]
    right = [False] * (1 + len(sweep_keys)) + [False, False, True, True, False, True, False]
    body = []
    for group in groups:
        mark = "" if group["complete"] else " !"
        cells = [group["variant"] + (" *" if group["best"] else "")]
        cells += [format_value(group["sweep"][key]) if key in group["sweep"] else "" for key in sweep_keys]
        cells += [group["method"], f"{group['n_seeds']} ({', '.join(format_value(s) for s in group['seeds'])})"]
        for split in SPLITS:
            text = pm(group[f"{split}_ua_mean"], group[f"{split}_ua_std"], 2)
            cells.append(text + (mark if text != "-" else ""))
        cells.append(", ".join("-" if m is None else f"{m:.2f}" for m in group["test_ua_seed_means"]))
        expected = "?" if group["n_expected"] is None else str(group["n_expected"])
        counts = sorted(set(group["n_folds"]))
        folds = str(counts[0]) if len(counts) == 1 else ",".join(str(n) for n in group["n_folds"])
        cells += [f"{folds}/{expected}", group["status"]]
        body.append(cells)
    return ["", f"Seeds (`{SEED_KEY}`): per seed the mean over its folds; here the mean over seeds +- the std "
            "(ddof=0) of those seed means.", ""] + md_table(header, body, right)


CSV_COLUMNS = (
    ["experiment", "variant", "sweep", "method", "stage", "protocol", "corpus"]
    + [f"{split}_{key}_{stat}" for split in SPLITS for key in METRICS for stat in ("mean", "std")]
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
    groups = build_seed_table(rows)
    if groups:  # seed-group rows after the variant rows: their numbers are over seeds
        columns += ["seed_group", "seeds", "n_seeds"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows + groups:
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
            elif column == "seeds" and value is not None:
                value = ";".join(format_value(seed) for seed in value)
            elif column == "n_folds" and isinstance(value, list):
                value = ";".join(str(n) for n in value)
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
        return json.dumps(rows + build_seed_table(rows), indent=2) + "\n"
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

