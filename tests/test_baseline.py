"""The openSMILE + linear SVM baseline (``stage = "baseline"``) against a direct computation.

The reference computes the functionals with ``opensmile.Smile.process_file`` on each WAV and fits
scikit-learn's StandardScaler + LinearSVC per C by hand (numpy for the speaker statistics), on the
fold's own split.json: the run's UA, chosen C and per-utterance predictions must be the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl.cli import app

opensmile = pytest.importorskip("opensmile")

ROOT = Path(__file__).resolve().parents[1]
C_GRID = [0.001, 0.01, 0.1, 1.0]


@pytest.fixture(scope="module")
def tiny_emodb(tiny_emodb_raw, tmp_path_factory) -> Path:
    """``tiny_emodb_raw`` (conftest) prepared as a spectrogram store."""
    from ser_cl.data.prepare import prepare

    out = tmp_path_factory.mktemp("tiny-emodb") / "data"
    prepare(tiny_emodb_raw, out, classes="angry,sad,neutral", jobs=1, progress=False)
    return out


def _experiment(tmp_path: Path, data_dir: Path, norms) -> Path:
    path = tmp_path / "svm.toml"
    path.write_text(f'''experiment = "svm"
stage = "baseline"
probe = false
runs_dir = "{tmp_path / 'runs'}"
[data]
dir = "{data_dir}"
protocol = "speaker"
[baseline]
feature_set = "eGeMAPSv02"
c_grid = {C_GRID}
[sweep]
"baseline.norm" = {json.dumps(list(norms))}
''')
    return path


def _reference(data_dir: Path, fold_dir: Path, norm: str):
    """(val UA, test UA, C, test predictions) computed directly with opensmile and scikit-learn."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    import csv

    rows = list(csv.DictReader((data_dir / "manifest.csv").open()))
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    X = np.stack([smile.process_file(r["path"]).to_numpy().reshape(-1) for r in rows]).astype(np.float64)
    classes = json.loads((data_dir / "prepare.json").read_text())["classes"]
    y = np.array([classes.index(r["label"]) for r in rows])
    speakers = np.array([r["speaker"] for r in rows])
    if norm == "speaker":
        for s in set(speakers):
            m = speakers == s
            sd = X[m].std(axis=0)
            X[m] = (X[m] - X[m].mean(axis=0)) / np.where(sd > 0, sd, 1)
    ids = [r["utt_id"] for r in rows]
    split = json.loads((fold_dir / "split.json").read_text())
    part = {name: np.array([ids.index(u) for u in split[name]]) for name in ("train", "val", "test")}

    def ua(true, pred):
        return np.mean([np.mean(pred[true == c] == c) for c in np.unique(true)])

    dual = len(part["train"]) <= X.shape[1]  # liblinear's dual solver when features outnumber samples (documented)
    best = None
    for C in C_GRID:
        steps = [StandardScaler()] if norm != "none" else []
        model = make_pipeline(*steps, LinearSVC(C=C, dual=dual, max_iter=10000, random_state=0))
        model.fit(X[part["train"]], y[part["train"]])
        val = ua(y[part["val"]], model.predict(X[part["val"]]))
        if best is None or val > best[0]:
            best = (val, C, model)
    val, C, model = best
    test_pred = model.predict(X[part["test"]])
    return val, ua(y[part["test"]], test_pred), C, {ids[i]: classes[p] for i, p in zip(part["test"], test_pred)}


def test_the_baseline_run_equals_opensmile_and_sklearn_by_hand(tiny_emodb, tmp_path):
    res = CliRunner().invoke(app, ["run", str(_experiment(tmp_path, tiny_emodb, ["none", "global", "speaker"])),
                                   "--fold", "1", "--fold", "3"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for norm in ("none", "global", "speaker"):
        vdir = tmp_path / "runs" / "svm" / f"baseline_norm={norm}"
        assert json.loads((vdir / "run.json").read_text())["stage"] == "baseline"
        for fold in ("fold-01", "fold-03"):
            metrics = json.loads((vdir / fold / "metrics.json").read_text())
            val, test, C, preds = _reference(tiny_emodb, vdir / fold, norm)
            assert metrics["status"] == "complete" and metrics["baseline"]["C"] == C, (norm, fold)
            assert metrics["val"]["ua"] == pytest.approx(val, abs=1e-9)
            assert metrics["test"]["ua"] == pytest.approx(test, abs=1e-9)
            assert json.loads((vdir / fold / "predictions.json").read_text())["test"] == preds
    # one cached vector per utterance, shared by the variants and folds
    assert len(list((tiny_emodb / "cache" / "functionals").glob("*.npy"))) == 36
    # the report shows the baseline rows
    report = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--no-plots"])
    assert report.exit_code == 0, report.output
    assert report.output.count("opensmile svm") >= 3 and "2/4" in report.output


def test_the_shipped_experiment_plans_four_baseline_variants(synth_data_dir):
    from ser_cl.pipeline import plan_experiment

    (stage,) = plan_experiment(ROOT / "experiments/opensmile_svm.toml", [f'data.dir="{synth_data_dir}"'])
    assert stage.stage.kind == "baseline" and not stage.stage.probe
    assert sorted((v.config.baseline.feature_set, v.config.baseline.norm) for v in stage.variants) == [
        ("ComParE_2016", "global"), ("ComParE_2016", "speaker"), ("eGeMAPSv02", "global"), ("eGeMAPSv02", "speaker")]


def test_a_missing_audio_file_is_a_one_line_error_naming_it(tiny_emodb, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_emodb, data, ignore=shutil.ignore_patterns("cache"))
    manifest = (data / "manifest.csv").read_text().splitlines()
    header, first = manifest[0], manifest[1]
    path = first.split(",")[header.split(",").index("path")]
    gone = tmp_path / "elsewhere.wav"
    (data / "manifest.csv").write_text("\n".join([header, first.replace(path, str(gone)), *manifest[2:]]) + "\n")
    res = CliRunner().invoke(app, ["run", str(_experiment(tmp_path, data, ["global"])), "--fold", "1"])
    assert res.exit_code == 2, res.output
    assert str(gone) in res.stderr and "missing" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_without_opensmile_the_run_says_how_to_install_it(tiny_emodb, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)
    res = CliRunner().invoke(app, ["run", str(_experiment(tmp_path, tiny_emodb, ["global"])), "--fold", "1"])
    assert res.exit_code == 2 and 'pip install "ser-cl[baseline]"' in res.stderr, res.output


def test_bad_baseline_keys_are_refused_with_the_choices(tiny_emodb, tmp_path):
    exp = _experiment(tmp_path, tiny_emodb, ["global"])
    for override, words in [("baseline.norm=\"utterance\"", "baseline.norm must be one of none, global, speaker"),
                            ("baseline.feature_set=\"GeMAPS\"", "baseline.feature_set must be one of"),
                            ("baseline.c_grid=[]", "baseline.c_grid must be")]:
        res = CliRunner().invoke(app, ["run", str(exp), "--set", override, "--set", "sweep={}", "--dry-run"])
        assert res.exit_code == 2 and words in res.stderr, (override, res.output)
