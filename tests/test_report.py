"""The report: fake runs trees with known numbers -> rows, flags, formats, plots."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from ser_cl.eval.report import (
    PLOTS_HINT,
    build_table,
    collect_runs,
    render,
    write_report,
)

CLASSES = ["neutral", "happy", "sad", "angry"]
FOLDS3 = ["fold-01", "fold-02", "fold-03"]


def block(ua, wa=None, confusion=None):
    return {"ua": ua, "wa": ua if wa is None else wa, "confusion": confusion or [[5, 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 0], [1, 0, 0, 4]]}


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_variant(root, experiment, variant, *, head, folds=FOLDS3, sweep=None, thesis=None, stage="train"):
    path = root / experiment / variant
    write_json(path / "run.json", {
        "experiment": experiment, "variant": variant, "stage": stage, "protocol": "session10",
        "folds": list(folds), "sweep": sweep or {}, "thesis": thesis or {}, "classes": CLASSES, "head": head,
    })
    return path


def write_metrics(fold_dir, val=None, test=None, status="complete"):
    write_json(fold_dir / "metrics.json", {
        "status": status, "epochs_run": 3, "best_epoch": 2, "monitor": "val_ua", "best_value": 0.5,
        "classes": CLASSES, "val": val, "test": test,
    })


def write_probe(fold_dir, svm_val, svm_test, r1=0.4, f1=0.3, nmi=0.1, classifier=None):
    write_json(fold_dir / "probe.json", {
        "classes": CLASSES, "C": 1.0,
        "svm": {"val": block(svm_val), "test": block(svm_test)},
        "classifier": classifier,
        "retrieval": {"val": {"recall_at_1": r1}, "test": {"recall_at_1": r1}},
        "clustering": {"val": {"f1": f1, "nmi": nmi}, "test": {"f1": f1, "nmi": nmi}},
    })


def pm(values, scale=100.0, digits=2):
    values = np.asarray(values) * scale
    return f"{values.mean():.{digits}f} +- {values.std(ddof=0):.{digits}f}"


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    # 1) CE baseline, head scores from metrics.json; fold-02 also has a probe.json classifier block,
    #    which takes precedence over its metrics.json
    base = make_variant(root, "ce_baseline", "default", head=True, thesis={"test_ua": 54.07, "val_ua": 54.79})
    for name, v, t in zip(FOLDS3, (0.50, 0.60, 0.55), (0.40, 0.99, 0.70)):
        write_metrics(base / name, block(v, wa=v - 0.1), block(t, wa=t - 0.05))
    write_probe(base / "fold-02", 0.1, 0.1, classifier={"val": block(0.60, wa=0.50), "test": block(0.60, wa=0.55)})
    for name in ("fold-01", "fold-03"):
        write_probe(base / name, 0.1, 0.1)
    # 2) a SupCon tau sweep scored with the SVM; tau=1 has the best val UA but is incomplete
    taus = {0.01: (0.40, 0.42), 0.1: (0.52, 0.50), 1.0: (0.90, 0.90)}
    for tau, (v, t) in taus.items():
        path = make_variant(root, "supcon_tau", f"tau-{tau:g}", head=False, sweep={"loss.tau": tau})
        for i, name in enumerate(FOLDS3):
            write_metrics(path / name, None, None)
            write_probe(path / name, v + 0.01 * i, t - 0.01 * i, r1=0.3 + 0.1 * i, f1=0.2, nmi=0.05 * i)
    sweep_bad = root / "supcon_tau" / "tau-1"
    (sweep_bad / "fold-02" / "probe.json").write_text("{not json")
    # 3) an incomplete run: fold-02 missing metrics.json, fold-03 corrupt probe.json,
    #    fold-04 still running, fold-05 never started (no directory)
    folds5 = [f"fold-0{i}" for i in range(1, 6)]
    bad = make_variant(root, "triplet", "m-0.2", head=False, folds=folds5, sweep={"loss.margin": 0.2})
    write_metrics(bad / "fold-01", None, None)
    write_probe(bad / "fold-01", 0.5, 0.45)
    write_probe(bad / "fold-02", 0.6, 0.6)
    write_metrics(bad / "fold-03", None, None)
    (bad / "fold-03" / "probe.json").write_text("")
    write_metrics(bad / "fold-04", None, None, status="running")
    write_probe(bad / "fold-04", 0.6, 0.6)
    return root


def rows_by_variant(root):
    return {(row["experiment"], row["variant"]): row for row in build_table(collect_runs(root))}


def test_collect_finds_every_variant_in_order(runs):
    results = collect_runs(runs)
    assert [(r.experiment, r.variant) for r in results] == [
        ("ce_baseline", "default"),
        ("supcon_tau", "tau-0.01"),
        ("supcon_tau", "tau-0.1"),
        ("supcon_tau", "tau-1"),
        ("triplet", "m-0.2"),
    ]
    # pointing at one experiment or one variant works too
    assert len(collect_runs(runs / "supcon_tau")) == 3
    assert [r.variant for r in collect_runs(runs / "ce_baseline" / "default")] == ["default"]


def test_head_means_and_stds_match_hand_computation(runs):
    row = rows_by_variant(runs)[("ce_baseline", "default")]
    assert row["method"] == "ce head"
    # fold-02 takes the probe.json classifier block (0.60 / 0.60) instead of metrics.json (0.60 / 0.99)
    val, test = [0.50, 0.60, 0.55], [0.40, 0.60, 0.70]
    assert row["val_ua_mean"] == pytest.approx(100 * np.mean(val))
    assert row["val_ua_std"] == pytest.approx(100 * np.std(val))
    assert row["test_ua_mean"] == pytest.approx(100 * np.mean(test))
    assert row["test_ua_std"] == pytest.approx(100 * np.std(test, ddof=0))
    assert row["val_wa_mean"] == pytest.approx(100 * np.mean([0.40, 0.50, 0.45]))
    assert row["test_wa_mean"] == pytest.approx(100 * np.mean([0.35, 0.55, 0.65]))
    assert row["thesis_test_ua"] == 54.07 and row["thesis_val_ua"] == 54.79
    assert (row["n_folds"], row["n_expected"], row["complete"], row["status"]) == (3, 3, True, "ok")
    assert row["best"] is False  # a single variant is not a sweep
    text = render(build_table(collect_runs(runs)), "md")
    assert pm(test) in text and pm(val) in text


def test_svm_rows_and_probe_columns(runs):
    row = rows_by_variant(runs)[("supcon_tau", "tau-0.1")]
    assert row["method"] == "svm"
    assert row["sweep"] == {"loss.tau": 0.1}
    assert row["val_ua_mean"] == pytest.approx(100 * np.mean([0.52, 0.53, 0.54]))
    assert row["test_ua_std"] == pytest.approx(100 * np.std([0.50, 0.49, 0.48]))
    assert row["test_r1_mean"] == pytest.approx(100 * np.mean([0.3, 0.4, 0.5]))
    assert row["test_f1_mean"] == pytest.approx(20.0)
    assert row["test_nmi_mean"] == pytest.approx(0.05) and row["test_nmi_std"] == pytest.approx(np.std([0, 0.05, 0.1]))


def test_best_variant_is_the_complete_one_with_highest_val_ua(runs):
    rows = rows_by_variant(runs)
    assert rows[("supcon_tau", "tau-0.1")]["best"] is True
    assert rows[("supcon_tau", "tau-1")]["best"] is False  # higher val UA, but incomplete
    assert rows[("supcon_tau", "tau-0.01")]["best"] is False
    assert rows[("triplet", "m-0.2")]["best"] is False
    md = render(build_table(collect_runs(runs)), "md")
    assert "| tau-0.1 *" in md and "tau-1 *" not in md
    assert "`*` best variant" in md


def test_incomplete_runs_name_every_bad_file(runs):
    rows = rows_by_variant(runs)
    bad = rows[("triplet", "m-0.2")]
    assert bad["complete"] is False
    assert (bad["n_folds"], bad["n_expected"]) == (1, 5)
    assert bad["status"].startswith("INCOMPLETE 1/5: ")
    for problem in (
        "fold-02 missing metrics.json",
        "fold-03 corrupt probe.json",
        "fold-04 metrics.json status 'running'",
    ):
        assert problem in bad["status"]
        assert problem in bad["problems"]
    # fold-05 was never started: counted, not listed as a broken file
    assert bad["status"].endswith("; 1 fold not run") and "fold-05" not in bad["status"]
    # never averaged with the bad folds: only fold-01 counts
    assert bad["val_ua_mean"] == pytest.approx(50.0) and bad["test_ua_mean"] == pytest.approx(45.0)
    assert bad["val_ua_std"] == 0.0

    tau1 = rows[("supcon_tau", "tau-1")]
    assert tau1["status"] == "INCOMPLETE 2/3: fold-02 corrupt probe.json"
    assert tau1["val_ua_mean"] == pytest.approx(100 * np.mean([0.90, 0.92]))

    md = render(build_table(collect_runs(runs)), "md")
    assert "50.00 +- 0.00 !" in md  # means of incomplete variants are marked
    assert "`!` incomplete or partial variant" in md


def test_missing_and_corrupt_run_json(tmp_path):
    root = tmp_path / "runs"
    write_metrics(root / "exp" / "no-run-json" / "fold-01", block(0.5), block(0.4))
    corrupt = root / "exp" / "corrupt-run-json"
    write_metrics(corrupt / "fold-01", block(0.5), block(0.4))
    (corrupt / "run.json").write_text("[1, 2")
    rows = rows_by_variant(root)
    missing = rows[("exp", "no-run-json")]
    assert missing["status"] == "INCOMPLETE 1/?: missing run.json"
    assert missing["method"] == "ce head"  # inferred: metrics.json carries head scores
    assert missing["test_ua_mean"] == pytest.approx(40.0)
    assert rows[("exp", "corrupt-run-json")]["status"].endswith("corrupt run.json")
    assert rows[("exp", "corrupt-run-json")]["best"] is False


def test_partial_probe_coverage_is_noted_for_head_runs(tmp_path):
    root = tmp_path / "runs"
    path = make_variant(root, "ce", "v", head=True)
    for name in FOLDS3:
        write_metrics(path / name, block(0.5), block(0.5))
    write_probe(path / "fold-01", 0.1, 0.1, r1=0.8)
    row = rows_by_variant(root)[("ce", "v")]
    assert row["complete"] is True
    assert row["status"] == "ok; note: fold-02 missing probe.json, fold-03 missing probe.json"
    assert row["test_r1_mean"] == pytest.approx(80.0)


def test_markdown_reads_like_thesis_tables(runs):
    md = render(build_table(collect_runs(runs)), "md")
    lines = md.splitlines()
    for title in ("## ce_baseline", "## supcon_tau", "## triplet"):
        assert any(line.startswith(title) for line in lines)
    # every table is aligned: all its lines have the same width
    tables, current = [], []
    for line in lines + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) == 3
    for table in tables:
        assert len({len(line) for line in table}) == 1
        assert set(table[1]) <= set("|-: ")
    header = tables[1][0]
    for column in ("variant", "loss.tau", "method", "val UA", "val WA", "test UA", "test WA",
                   "test R@1", "test F1", "test NMI", "folds", "status"):
        assert column in header
    assert "thesis test UA" in tables[0][0] and "thesis test UA" not in header
    assert " 54.07 |" in tables[0][2]


def test_csv_and_json_parse(runs):
    rows = build_table(collect_runs(runs))
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert len(parsed) == len(rows) == 5
    by_variant = {r["variant"]: r for r in parsed}
    assert float(by_variant["default"]["test_ua_mean"]) == pytest.approx(100 * np.mean([0.4, 0.6, 0.7]), abs=1e-4)
    assert by_variant["tau-0.1"]["best"] == "true" and by_variant["tau-0.1"]["sweep"] == "loss.tau=0.1"
    assert by_variant["m-0.2"]["complete"] == "false"
    assert "fold-03 corrupt probe.json" in by_variant["m-0.2"]["status"]
    assert by_variant["default"]["test_r1_mean"] != ""  # the baseline has probe.json too

    loaded = json.loads(render(rows, "json"))
    assert loaded == json.loads(json.dumps(rows))
    assert {r["variant"] for r in loaded if r["best"]} == {"tau-0.1"}
    with pytest.raises(ValueError, match="format"):
        render(rows, "html")


def test_write_report_writes_file_and_plots(runs, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report" / "report.md"
    result = write_report(runs, "md", out=out, plots_dir=tmp_path / "plots")
    assert out.read_text() == result.text
    names = sorted(p.name for p in result.plots)
    assert "supcon_tau__ua_vs_loss.tau.png" in names
    assert "ce_baseline__default__confusion.png" in names
    assert "triplet__m-0.2__confusion.png" in names  # incomplete runs still get their (flagged) matrix
    for path in result.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "plots").glob(".*tmp*"))  # atomic writes leave no temporaries
    assert any("incomplete" in message for message in result.messages)
    assert PLOTS_HINT not in result.messages


def test_without_matplotlib_the_report_says_how_to_get_plots(runs, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = write_report(runs, "csv", plots_dir=tmp_path / "plots")
    assert result.plots == []
    assert PLOTS_HINT in result.messages
    assert 'pip install "ser-cl[plots]"' in PLOTS_HINT
    assert not (tmp_path / "plots").exists()


def test_no_runs_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        collect_runs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "No runs found." in write_report(tmp_path / "empty", plots=False).text


def test_plots_for_grid_and_categorical_sweeps(tmp_path):
    pytest.importorskip("matplotlib")
    from ser_cl.eval.plots import write_plots

    root = tmp_path / "runs"
    for loss in ("ntxent", "supcon"):
        for tau in (0.01, 1.0, 10.0):
            path = make_variant(root, "tau_grid", f"{loss}-{tau:g}", head=False, sweep={"loss.name": loss, "loss.tau": tau})
            for name in FOLDS3:
                write_metrics(path / name, None, None)
                write_probe(path / name, 0.5, 0.4 + tau / 100)
    for mining in ("all", "hard", "semihard"):
        path = make_variant(root, "mining", mining, head=False, sweep={"loss.mining": mining})
        for name in FOLDS3:
            write_metrics(path / name, None, None)
            write_probe(path / name, 0.5, 0.5)
    written = write_plots(collect_runs(root), tmp_path / "plots")
    names = {p.name for p in written}
    assert {"tau_grid__ua_vs_loss.tau.png", "tau_grid__ua_vs_loss.name.png", "mining__ua_vs_loss.mining.png"} <= names
    assert len(names) == 3 + 6 + 3  # sweep plots + one confusion matrix per variant


def test_head_variants_also_show_the_svm_ua_when_every_fold_was_probed(tmp_path):
    root = tmp_path / "runs"
    # every fold probed: svm val 0.60/0.70/0.80, test 0.55/0.65/0.90 -> test 70.00 +- 14.72
    probed = make_variant(root, "ce", "all-probed", head=True, sweep={"optim.lr": 1e-4})
    for name, v, t in zip(FOLDS3, (0.60, 0.70, 0.80), (0.55, 0.65, 0.90)):
        write_metrics(probed / name, block(0.5), block(0.4))
        write_probe(probed / name, v, t)
    # only fold-01 probed: no svm number, the note stays
    partial = make_variant(root, "ce", "partly-probed", head=True, sweep={"optim.lr": 1e-3})
    for name in FOLDS3:
        write_metrics(partial / name, block(0.5), block(0.4))
    write_probe(partial / "fold-01", 0.9, 0.9)
    # incomplete: fold-03 still running, so only fold-01/02 count (test 0.50/0.70 -> 60.00 +- 10.00)
    running = make_variant(root, "ce", "running", head=True, sweep={"optim.lr": 1e-2})
    for name, t, status in zip(FOLDS3, (0.50, 0.70, 0.99), ("complete", "complete", "running")):
        write_metrics(running / name, block(0.5), block(0.4), status=status)
        write_probe(running / name, 0.3, t)
    # an svm-method variant: the column would repeat test UA, so it stays empty
    svm = make_variant(root, "supcon", "svm", head=False)
    for name in FOLDS3:
        write_metrics(svm / name, None, None)
        write_probe(svm / name, 0.5, 0.5)

    rows = rows_by_variant(root)
    row = rows[("ce", "all-probed")]
    assert row["method"] == "ce head"
    assert row["test_ua_mean"] == pytest.approx(40.0)  # UA/WA are still the head's
    assert row["test_svm_ua_mean"] == pytest.approx(70.0)
    assert row["test_svm_ua_std"] == pytest.approx(np.sqrt((15**2 + 5**2 + 20**2) / 3))  # 14.72
    assert row["val_svm_ua_mean"] == pytest.approx(70.0)
    assert row["val_svm_ua_std"] == pytest.approx(100 * np.std([0.60, 0.70, 0.80]))
    assert row["status"] == "ok"

    part = rows[("ce", "partly-probed")]
    assert part["test_svm_ua_mean"] is None and part["val_svm_ua_std"] is None
    assert part["status"] == "ok; note: fold-02 missing probe.json, fold-03 missing probe.json"

    run = rows[("ce", "running")]
    assert run["complete"] is False
    assert run["test_svm_ua_mean"] == pytest.approx(60.0) and run["test_svm_ua_std"] == pytest.approx(10.0)

    only_svm = rows[("supcon", "svm")]
    assert only_svm["test_ua_mean"] == pytest.approx(50.0)
    assert only_svm["test_svm_ua_mean"] is None and only_svm["val_svm_ua_mean"] is None

    table = build_table(collect_runs(root))
    md = render(table, "md")
    assert "svm test UA = " in md  # the legend explains the column
    ce_lines = [line for line in md.split("## supcon")[0].splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in ce_lines[0].strip("|").split("|")]
    assert header.index("svm test UA") == header.index("test WA") + 1
    column = header.index("svm test UA")
    cells = {line.split("|")[1].strip().rstrip(" *"): line.strip("|").split("|")[column].strip() for line in ce_lines[2:]}
    assert cells["all-probed"] == "70.00 +- 14.72" == pm([0.55, 0.65, 0.90])
    assert cells["partly-probed"] == "-"
    assert cells["running"] == "60.00 +- 10.00 !"
    supcon_header = md.split("## supcon")[1].splitlines()[2]
    assert "svm test UA" not in supcon_header  # no row of that experiment has it

    parsed = {r["variant"]: r for r in csv.DictReader(io.StringIO(render(table, "csv")))}
    assert float(parsed["all-probed"]["test_svm_ua_mean"]) == pytest.approx(70.0)
    assert float(parsed["all-probed"]["test_svm_ua_std"]) == pytest.approx(14.7196, abs=1e-4)
    assert float(parsed["all-probed"]["val_svm_ua_mean"]) == pytest.approx(70.0)
    assert float(parsed["all-probed"]["val_svm_ua_std"]) == pytest.approx(8.165, abs=1e-3)
    for variant in ("partly-probed", "svm"):
        for column_name in ("val_svm_ua_mean", "val_svm_ua_std", "test_svm_ua_mean", "test_svm_ua_std"):
            assert parsed[variant][column_name] == ""

    loaded = {r["variant"]: r for r in json.loads(render(table, "json"))}
    assert loaded["all-probed"]["test_svm_ua_mean"] == pytest.approx(70.0)
    assert loaded["running"]["val_svm_ua_std"] == pytest.approx(0.0)
    assert loaded["partly-probed"]["test_svm_ua_mean"] is None
    assert loaded["svm"]["test_svm_ua_std"] is None


def test_a_deliberately_partial_run_is_partial_not_incomplete(tmp_path):
    root = tmp_path / "runs"
    folds10 = [f"fold-{k:02d}" for k in range(1, 11)]
    path = make_variant(root, "ce_baseline", "train", head=True, folds=folds10)
    write_metrics(path / "fold-01", block(0.50), block(0.40))  # `--fold 1 --fold 2`: nothing else exists
    write_metrics(path / "fold-02", block(0.70), block(0.60))
    row = rows_by_variant(root)[("ce_baseline", "train")]
    assert row["status"] == "partial 2/10 folds"
    assert (row["n_folds"], row["n_expected"], row["complete"], row["partial"]) == (2, 10, False, True)
    assert row["problems"] == []
    assert row["test_ua_mean"] == pytest.approx(50.0) and row["test_ua_std"] == pytest.approx(10.0)
    result = write_report(root, plots=False)
    assert "| partial 2/10 folds |" in result.text and "INCOMPLETE" not in result.text
    assert not any("incomplete" in message for message in result.messages)
    # a fold that exists but is broken still makes it INCOMPLETE, naming the file
    write_metrics(path / "fold-03", block(0.5), block(0.5), status="running")
    row = rows_by_variant(root)[("ce_baseline", "train")]
    assert row["status"] == "INCOMPLETE 2/10: fold-03 metrics.json status 'running'; 7 folds not run"
    assert any("incomplete" in message for message in write_report(root, plots=False).messages)


def test_protocol_auto_of_old_runs_is_resolved_from_the_data_dir(tmp_path, synth_data_dir):
    root = tmp_path / "runs"
    for name, data_dir in (("known", str(synth_data_dir)), ("gone", str(tmp_path / "no-data"))):
        path = make_variant(root, name, "train", head=True)
        info = json.loads((path / "run.json").read_text())
        write_json(path / "run.json", {**info, "protocol": "auto", "data_dir": data_dir})
        for fold in FOLDS3:
            write_metrics(path / fold, block(0.5), block(0.5))
    rows = rows_by_variant(root)
    assert rows[("known", "train")]["protocol"] == "session10"  # the synthetic corpus: 5 sessions x 2
    assert rows[("gone", "train")]["protocol"] == "auto"  # nothing to resolve it from
    md = render(build_table(collect_runs(root)), "md")
    assert "## known (stage: train, protocol: session10)" in md
    assert "## gone (stage: train, protocol: auto)" in md


def test_thesis_numbers_are_shown_only_beside_iemocap_runs(tmp_path, synth_data_dir):
    root = tmp_path / "runs"
    thesis = {"val_ua": 54.79, "test_ua": 54.07}
    for experiment, corpus in (("on_iemocap", "iemocap"), ("on_emodb", "emodb")):
        path = make_variant(root, experiment, "train", head=True, thesis=thesis)
        info = json.loads((path / "run.json").read_text())
        write_json(path / "run.json", {**info, "corpus": corpus})
        for fold in FOLDS3:
            write_metrics(path / fold, block(0.5), block(0.5))
    # an old run.json without "corpus": read from its data dir's prepare.json (synthetic IEMOCAP layout)
    old = make_variant(root, "old_run", "train", head=True, thesis=thesis)
    info = json.loads((old / "run.json").read_text())
    write_json(old / "run.json", {**info, "data_dir": str(synth_data_dir)})
    for fold in FOLDS3:
        write_metrics(old / fold, block(0.5), block(0.5))

    rows = rows_by_variant(root)
    assert rows[("on_iemocap", "train")]["thesis_test_ua"] == 54.07
    assert rows[("old_run", "train")]["corpus"] == "iemocap" and rows[("old_run", "train")]["thesis_val_ua"] == 54.79
    emodb = rows[("on_emodb", "train")]
    assert (emodb["corpus"], emodb["thesis_val_ua"], emodb["thesis_test_ua"]) == ("emodb", None, None)
    md = render(build_table(collect_runs(root)), "md")
    sections = {part.split("\n", 1)[0]: part for part in md.split("\n## ")[1:]}
    assert "54.07" in sections["on_iemocap (stage: train, protocol: session10)"]
    emodb_text = sections["on_emodb (stage: train, protocol: session10)"]
    assert "54.07" not in emodb_text and "54.79" not in emodb_text
    assert "The thesis' numbers are IEMOCAP's and these runs are on emodb" in emodb_text
    assert "IEMOCAP's" not in sections["on_iemocap (stage: train, protocol: session10)"]
    parsed = {r["experiment"]: r for r in csv.DictReader(io.StringIO(render(build_table(collect_runs(root)), "csv")))}
    assert parsed["on_emodb"]["thesis_test_ua"] == "" and parsed["on_emodb"]["corpus"] == "emodb"


def test_the_report_says_where_the_plots_went(runs, tmp_path):
    pytest.importorskip("matplotlib")
    result = write_report(runs, "md", plots_dir=tmp_path / "plots")
    line = f"plots: {tmp_path / 'plots'}{os.sep} ({len(result.plots)} PNG files)"
    assert len(result.plots) == len(list((tmp_path / "plots").glob("*.png"))) > 1
    assert line in result.messages
