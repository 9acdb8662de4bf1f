"""The classical baseline (``stage = "baseline"``) against a direct computation.

The reference computes the functionals with ``opensmile.Smile.process_file`` on each WAV (numpy
for the speaker statistics: over every file of the speaker, the classes ``--classes`` dropped
included) or pools the store's frames with numpy, and chooses C with scikit-learn's own
``GridSearchCV(StandardScaler + LinearSVC, cv=LeaveOneGroupOut(), scoring="balanced_accuracy")``
over the fold's non-test speakers, refitted on all of them: the run's chosen C, test UA and
per-utterance predictions must be the same.
"""

from __future__ import annotations

import csv
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
    from ser_cl.data.stores.prepare import prepare

    out = tmp_path_factory.mktemp("tiny-emodb") / "data"
    prepare(tiny_emodb_raw, out, classes="angry,sad,neutral", jobs=1, progress=False)
    return out


@pytest.fixture(scope="module")
def two_classes(tiny_emodb_raw, tmp_path_factory) -> Path:
    """The same corpus with --classes angry,sad: every speaker's neutral clips are not in the store."""
    from ser_cl.data.stores.prepare import prepare

    out = tmp_path_factory.mktemp("tiny-emodb-2") / "data"
    prepare(tiny_emodb_raw, out, classes="angry,sad", jobs=1, progress=False)
    return out


def _experiment(tmp_path: Path, data_dir: Path, norms, feature_set: str = "eGeMAPSv02") -> Path:
    path = tmp_path / "svm.toml"
    path.write_text(f'''experiment = "svm"
stage = "baseline"
probe = false
runs_dir = "{tmp_path / 'runs'}"
[data]
dir = "{data_dir}"
protocol = "speaker"
[baseline]
feature_set = "{feature_set}"
c_grid = {C_GRID}
[sweep]
"baseline.norm" = {json.dumps(list(norms))}
''')
    return path


def _smile(path: str) -> np.ndarray:
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    return smile.process_file(path).to_numpy().reshape(-1).astype(np.float64)


def _reference_inputs(data_dir: Path, raw_dir: Path, norm: str) -> np.ndarray:
    """eGeMAPS of the store's files; ``speaker``: standardised with each speaker's mean and std
    over ALL of the speaker's files in ``raw_dir`` (EmoDB names: speaker = first two letters),
    std floored at 1e-5 as the models' speaker statistics are."""
    rows = list(csv.DictReader((data_dir / "manifest.csv").open()))
    X = np.stack([_smile(r["path"]) for r in rows])
    if norm == "speaker":
        for s in {r["speaker"] for r in rows}:
            every = np.stack([_smile(str(p)) for p in sorted(raw_dir.glob(f"{s}*.wav"))])
            m = np.array([r["speaker"] == s for r in rows])
            X[m] = (X[m] - every.mean(axis=0)) / np.maximum(every.std(axis=0), 1e-5)
    return X


def _reference_fit(data_dir: Path, fold_dir: Path, X: np.ndarray, norm: str):
    """(C, test UA, test predictions) by scikit-learn's GridSearchCV over the fold's split.json."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    rows = list(csv.DictReader((data_dir / "manifest.csv").open()))
    classes = json.loads((data_dir / "prepare.json").read_text())["classes"]
    y = np.array([classes.index(r["label"]) for r in rows])
    speakers = np.array([r["speaker"] for r in rows])
    ids = [r["utt_id"] for r in rows]
    split = json.loads((fold_dir / "split.json").read_text())
    train, test = (np.array([ids.index(u) for u in split[p]]) for p in ("train", "test"))
    assert set(speakers[train]) == set(speakers) - set(speakers[test])  # every non-test speaker trains
    steps = [StandardScaler()] if norm != "none" else []
    pipe = make_pipeline(*steps, LinearSVC(dual=True, max_iter=10000, random_state=0))
    search = GridSearchCV(pipe, {"linearsvc__C": C_GRID}, cv=LeaveOneGroupOut(), scoring="balanced_accuracy")
    search.fit(X[train], y[train], groups=speakers[train])
    pred = search.predict(X[test])
    return (search.best_params_["linearsvc__C"], balanced_accuracy_score(y[test], pred),
            {ids[i]: classes[p] for i, p in zip(test, pred)})


def _check_run(tmp_path: Path, data_dir: Path, norms, folds, reference_inputs):
    for norm in norms:
        vdir = tmp_path / "runs" / "svm" / f"baseline_norm={norm}"
        assert json.loads((vdir / "run.json").read_text())["stage"] == "baseline"
        X = reference_inputs(norm)
        for fold in folds:
            metrics = json.loads((vdir / fold / "metrics.json").read_text())
            C, test, preds = _reference_fit(data_dir, vdir / fold, X, norm)
            assert metrics["status"] == "complete" and metrics["baseline"]["C"] == C, (norm, fold)
            assert metrics["test"]["ua"] == pytest.approx(test, abs=1e-9)
            assert json.loads((vdir / fold / "predictions.json").read_text())["test"] == preds


def test_the_baseline_run_equals_opensmile_and_sklearn_by_hand(tiny_emodb, tiny_emodb_raw, tmp_path):
    norms = ["none", "global", "speaker"]
    res = CliRunner().invoke(app, ["run", str(_experiment(tmp_path, tiny_emodb, norms)), "--fold", "1", "--fold", "3"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    _check_run(tmp_path, tiny_emodb, norms, ("fold-01", "fold-03"),
               lambda norm: _reference_inputs(tiny_emodb, tiny_emodb_raw, norm))
    # a line per fold and variant
    assert res.stderr.count("fold-01: C = ") == 3 and "leave-one-speaker-out UA" in res.stderr
    # one cached vector per utterance, shared by the variants and folds
    assert len(list((tiny_emodb / "cache" / "functionals").glob("*.npy"))) == 36
    # the report shows the baseline rows
    report = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--no-plots"])
    assert report.exit_code == 0, report.output
    assert report.output.count("opensmile svm") >= 3 and "2/4" in report.output


def test_speaker_statistics_cover_the_utterances_that_classes_dropped(two_classes, tiny_emodb_raw, tmp_path):
    """--classes angry,sad leaves the neutral clips out of the store; the speaker statistics are
    still taken over all of each speaker's recordings (as the models' speaker_stats.npz are)."""
    from ser_cl.config import BaselineConfig, StageConfig
    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.train.baseline import baseline_vectors

    store = FeatureStore(two_classes)
    assert len(store) == 24
    cfg = StageConfig(kind="baseline", baseline=BaselineConfig(feature_set="eGeMAPSv02", norm="speaker"))
    expected = _reference_inputs(two_classes, tiny_emodb_raw, "speaker")
    np.testing.assert_allclose(baseline_vectors(cfg, store), expected, rtol=1e-4, atol=1e-4)
    res = CliRunner().invoke(app, ["run", str(_experiment(tmp_path, two_classes, ["speaker"])), "--fold", "2"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    _check_run(tmp_path, two_classes, ["speaker"], ("fold-02",), lambda norm: expected)


def _pooled_reference(data_dir: Path, norm: str) -> np.ndarray:
    """Mean and std over each utterance's frames, read from features.npy / offsets.npy with numpy;
    ``speaker``: frames standardised first with the speaker's mean and std over all of its frames."""
    feats = np.load(data_dir / "features.npy").astype(np.float64)
    offsets = np.load(data_dir / "offsets.npy")
    rows = list(csv.DictReader((data_dir / "manifest.csv").open()))
    frames = [feats[offsets[i]:offsets[i + 1]] for i in range(len(rows))]
    if norm == "speaker":
        for s in {r["speaker"] for r in rows}:
            mine = [i for i, r in enumerate(rows) if r["speaker"] == s]
            every = np.concatenate([frames[i] for i in mine])
            mean, std = every.mean(axis=0), np.maximum(every.std(axis=0), 1e-5)
            for i in mine:
                frames[i] = (frames[i] - mean) / std
    return np.stack([np.concatenate([f.mean(axis=0), f.std(axis=0)]) for f in frames])


def test_the_store_probe_pools_the_stores_own_frames(tiny_emodb, tmp_path):
    norms = ["global", "speaker"]
    res = CliRunner().invoke(app, ["run", str(_experiment(tmp_path, tiny_emodb, norms, feature_set="store")),
                                   "--fold", "2"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    _check_run(tmp_path, tiny_emodb, norms, ("fold-02",), lambda norm: _pooled_reference(tiny_emodb, norm))
    metrics = json.loads((tmp_path / "runs/svm/baseline_norm=global/fold-02/metrics.json").read_text())
    assert metrics["baseline"]["dims"] == 2 * 257  # mean + std of the spectrogram's 257 bins
    report = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--no-plots"])
    assert report.output.count("store svm") >= 3 and "opensmile svm |" not in report.output  # 2 rows + legend


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


def test_the_baseline_trains_on_the_speed_copies_too(tiny_emodb_raw, tmp_path):
    """data.train_copies: the copies of the fold's training utterances train (left out with their
    speaker in the inner folds, never scored); the reference fits scikit-learn by hand on the
    stores' functionals read with numpy."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from ser_cl.data.frontends.features import feature_params
    from ser_cl.data.stores.prepare import prepare

    data = tmp_path / "egemaps"
    params = feature_params("functionals", feature_set="eGeMAPSv02")
    prepare(tiny_emodb_raw, data, classes="angry,sad,neutral", jobs=1, progress=False, features=params)
    prepare(tiny_emodb_raw, Path(f"{data}-sp0.9"), classes="angry,sad,neutral", jobs=1, progress=False,
            features=params, speed=0.9)
    exp = _experiment(tmp_path, data, ["global"])
    res = CliRunner().invoke(app, ["run", str(exp), "--fold", "1", "--set", 'data.train_copies=["{data.dir}-sp0.9"]'])
    assert res.exit_code == 0, res.output + repr(res.exception)
    fold_dir = tmp_path / "runs/svm/baseline_norm=global/fold-01"

    def read(d):
        rows = list(csv.DictReader((d / "manifest.csv").open()))
        return np.load(d / "features.npy").astype(np.float64), rows

    X, rows = read(data)
    Xc, crows = read(Path(f"{data}-sp0.9"))
    classes = ["angry", "sad", "neutral"]
    y, yc = (np.array([classes.index(r["label"]) for r in rr]) for rr in (rows, crows))
    split = json.loads((fold_dir / "split.json").read_text())
    train = [i for i, r in enumerate(rows) if r["utt_id"] in split["train"]]
    ctrain = [i for i, r in enumerate(crows) if r["utt_id"] in split["train"]]
    assert len(split["train_copies"]) == len(ctrain) == len(train) == 27
    XA, yA = np.concatenate([X[train], Xc[ctrain]]), np.concatenate([y[train], yc[ctrain]])
    gA = np.array([rows[i]["speaker"] for i in train] + [crows[i]["speaker"] for i in ctrain])
    target = np.arange(len(yA)) < len(train)

    def fit(C, rows_):
        return make_pipeline(StandardScaler(), LinearSVC(C=C, dual=True, max_iter=10000, random_state=0)).fit(
            XA[rows_], yA[rows_])

    means = []
    for C in C_GRID:
        uas = []
        for g in np.unique(gA):
            pred, true = fit(C, gA != g).predict(XA[(gA == g) & target]), yA[(gA == g) & target]
            uas.append(np.mean([np.mean(pred[true == k] == k) for k in np.unique(true)]))
        means.append(np.mean(uas))
    C = C_GRID[int(np.argmax(means))]
    test = [i for i, r in enumerate(rows) if r["utt_id"] in split["test"]]
    pred = fit(C, np.ones(len(yA), dtype=bool)).predict(X[test])
    metrics = json.loads((fold_dir / "metrics.json").read_text())
    assert metrics["baseline"]["C"] == C and metrics["baseline"]["copies"] == 27
    assert metrics["baseline"]["inner_ua"] == pytest.approx({f"{c:g}": m for c, m in zip(C_GRID, means)})
    assert json.loads((fold_dir / "predictions.json").read_text())["test"] == {
        rows[i]["utt_id"]: classes[p] for i, p in zip(test, pred)}


def test_a_fold_of_the_earlier_rule_is_refused_not_reused(tiny_emodb, tmp_path):
    """A baseline fold whose C was chosen on a validation speaker (fingerprint without
    baseline.rule) is not taken as complete under the leave-one-speaker-out rule."""
    exp = _experiment(tmp_path, tiny_emodb, ["global"])
    assert CliRunner().invoke(app, ["run", str(exp), "--fold", "1"]).exit_code == 0
    path = tmp_path / "runs/svm/baseline_norm=global/fold-01/fingerprint.json"
    before = json.loads(path.read_text())
    assert before.pop("baseline.rule") == 2
    path.write_text(json.dumps(before))
    res = CliRunner().invoke(app, ["run", str(exp), "--fold", "1"])
    assert res.exit_code == 2 and "baseline.rule: None -> 2" in res.stderr and "--restart" in res.stderr, res.output
