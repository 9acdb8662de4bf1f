"""Cross-corpus evaluation: the shared-class logic, the holdout protocol, ``cross_test`` against an
independent computation, the one-line refusals, and ``ser-cl run experiments/cross_corpus.toml``
-> cross.json -> the report's train x test matrix, on two synthetic stores.

Store A is the synthetic corpus (log-mel 40; neutral/happy/sad/angry); store B is the same raw
corpus prepared with other classes: neutral, joy (= happy), angry and frustrated (no training
class), so that with ``class_map = {joy = "happy"}`` three classes are shared, ``frustrated`` is
dropped and ``sad`` is never predicted.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.frontends.features import feature_params
from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.store import FeatureStore
from ser_cl.eval.cross_corpus import cross_test, cross_test_run, parse_class_map, shared_classes
from ser_cl.eval.summary import summarize_variant

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "cross_corpus.toml"
TINY = ["model.preset=small", "model.conv_channels=4", "model.gru_hidden=16", "model.n_heads=2",
        "model.freq_kernels=scaled", "model.d_ff=32", "optim.epochs=2", "optim.batch_size=16", "optim.lr=3e-3",
        "device=cpu"]
B_CLASSES = "ang=angry,hap+exc=joy,fru=frustrated,neu=neutral"
MAP = {"joy": "happy"}


def invoke(*args, ok: bool = True):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def sets(*items: str):
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models run fastest on one thread, and stay fast when another job shares the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def stores(synth_corpus_dir, synth_mel_dir, tmp_path_factory):
    """A (log-mel 40, 4 classes), B (log-mel 40, other classes), C (log-mel 32: another front-end),
    D (log-mel 40, joy / frustrated: no class of A's without the map)."""
    from ser_cl.data.stores.prepare import prepare

    root = tmp_path_factory.mktemp("cross-stores")
    prepare(synth_corpus_dir, root / "synth-b", classes=B_CLASSES, jobs=1, progress=False,
            features=feature_params("mel", n_mels=40))
    prepare(synth_corpus_dir, root / "synth-mel32", jobs=1, progress=False, features=feature_params("mel", n_mels=32))
    prepare(synth_corpus_dir, root / "synth-d", classes="hap+exc=joy,fru=frustrated", jobs=1, progress=False,
            features=feature_params("mel", n_mels=40))
    return {"a": Path(synth_mel_dir), "b": root / "synth-b", "c": root / "synth-mel32", "d": root / "synth-d"}


@pytest.fixture(scope="module")
def trained(stores, tmp_path_factory):
    """`ser-cl run experiments/cross_corpus.toml` on A (holdout, 2 epochs), tested on B."""
    runs = tmp_path_factory.mktemp("cross-runs")
    res = invoke("run", EXPERIMENT, "--no-report", *sets(
        *TINY, f"data.dir={json.dumps(str(stores['a']))}", f"runs_dir={json.dumps(str(runs))}",
        f"data.test_on={json.dumps([str(stores['b'])])}", 'data.class_map={joy = "happy"}'))
    return runs, res.output


# ----------------------------------------------------------------------------- shared classes


def test_shared_classes_drop_rename_and_merge():
    s = shared_classes(["neutral", "happy", "sad", "angry"], ["angry", "joy", "neutral", "fear"], {"joy": "happy"})
    assert s.names == ["neutral", "happy", "angry"]  # training class order
    assert s.train_index == {"neutral": [0], "happy": [1], "angry": [3]}
    assert s.test_index == {"neutral": [2], "happy": [1], "angry": [0]}
    assert s.dropped_test == ["fear"] and s.unused_train == ["sad"]
    notes = s.notes({"fear": 7})
    assert len(notes) == 2 and "'fear' (7 utterances)" in notes[0] and "left out" in notes[0]
    assert "'sad'" in notes[1] and "never predicted" in notes[1]

    # the map applies to both sides: two training classes merged into one shared name, and a
    # test class renamed onto another
    s = shared_classes(["neu", "hap", "exc", "sad"], ["calm", "neutral", "happy"],
                       {"neu": "neutral", "hap": "happy", "exc": "happy", "calm": "neutral"})
    assert s.names == ["neutral", "happy"]
    assert s.train_index == {"neutral": [0], "happy": [1, 2]} and s.test_index == {"neutral": [0, 1], "happy": [2]}
    assert s.dropped_test == [] and s.unused_train == ["sad"]
    assert "(as 'neutral')" not in " ".join(s.notes()) and "'sad'" in s.notes()[0]

    assert shared_classes(["a", "b"], ["c"], {}).names == []
    assert parse_class_map(["hap=happy", " ang = angry "]) == {"hap": "happy", "ang": "angry"}
    with pytest.raises(ValueError, match="NAME=SHARED"):
        parse_class_map(["happy"])


# ----------------------------------------------------------------------------- protocol holdout


def _rows(genders: str = "FM", n_sessions: int = 5, per_speaker: int = 2):
    return [{"speaker": f"S{s}{g}", "session": f"S{s}", "gender": g}
            for s in range(1, n_sessions + 1) for g in genders for _ in range(per_speaker)]


def test_holdout_protocol_one_fold_disjoint_speakers():
    rows = _rows()
    speakers = np.array([r["speaker"] for r in rows])
    for k in (1, 2, 3, 5, 9):
        folds = make_folds(rows, "holdout", holdout_speakers=k)
        assert len(folds) == 1 and folds[0].name == "fold-01"
        f = folds[0]
        assert f.test.size == 0 and f.test_speakers == []
        assert len(f.val_speakers) == k == len(set(speakers[f.val]))
        assert set(speakers[f.val]) == set(f.val_speakers)
        assert not set(speakers[f.train]) & set(f.val_speakers)
        assert sorted(np.concatenate([f.train, f.val]).tolist()) == list(range(len(rows)))
    # genders known: the picks alternate F / M; spread over the sorted speakers of each gender
    assert make_folds(rows, "holdout")[0].val_speakers == ["S3F", "S3M"]
    assert [s[-1] for s in make_folds(rows, "holdout", holdout_speakers=4)[0].val_speakers].count("F") == 2
    # unknown genders: one group, every (n / k)-th speaker from the middle of the first stride
    plain = [{"speaker": f"a{i}"} for i in range(8) for _ in range(2)]
    assert make_folds(plain, "holdout", holdout_speakers=2)[0].val_speakers == ["a2", "a6"]
    assert make_folds(rows, "holdout", 3)[0].val.tolist() == make_folds(rows, "holdout", 3)[0].val.tolist()
    # too few speakers: at least holdout_speakers + 1
    with pytest.raises(ValueError, match="needs at least 4 speakers, found 3"):
        make_folds([{"speaker": s} for s in "abc"], "holdout", holdout_speakers=3)
    assert len(make_folds([{"speaker": s} for s in "abc"], "holdout", holdout_speakers=2)[0].train) == 1
    with pytest.raises(ValueError, match=">= 1"):
        make_folds(rows, "holdout", holdout_speakers=0)


# ----------------------------------------------------------------------------- cross_test


def _by_hand(model, store, train_name, test_name):
    """Every utterance alone through the model; argmax over the training classes in ``train_name``
    (index -> shared name); true names from ``test_name`` (test class -> shared name; others left out)."""
    allowed = sorted(train_name)
    truth, predicted = [], []
    for i in range(len(store)):
        label = store.classes[store.labels[i]]
        if label not in test_name:
            continue
        x = torch.from_numpy(np.asarray(store[i], dtype=np.float32))[None]
        logits = model(x, torch.tensor([x.shape[1]]))[0]
        predicted.append(train_name[allowed[int(torch.argmax(logits[allowed]))]])
        truth.append(test_name[label])
    return truth, predicted


@torch.no_grad()
def test_cross_test_equals_an_independent_computation(trained, stores):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

    from ser_cl.train.checkpoint import load_model

    runs, _ = trained
    fold = runs / "cross_corpus" / "train" / "fold-01"
    model, ckpt = load_model(fold / "best.pt")
    store = FeatureStore(stores["b"])
    assert ckpt["classes"] == ["neutral", "happy", "sad", "angry"]
    assert store.classes == ["angry", "joy", "frustrated", "neutral"]  # another order than training's

    # 1) joy -> happy: frustrated is left out, sad never predicted (argmax over neutral, happy, angry)
    result = cross_test(fold, stores["b"], MAP, "cpu", batch_size=7)
    truth, predicted = _by_hand(model, store, {0: "neutral", 1: "happy", 3: "angry"},
                                {"neutral": "neutral", "joy": "happy", "angry": "angry"})
    assert len(set(predicted)) >= 2, "the model predicts one class: the check below would be weak"
    assert result["n"] == len(truth) == 120
    assert result["classes"] == ["neutral", "happy", "angry"]  # training class order
    assert result["ua"] == pytest.approx(balanced_accuracy_score(truth, predicted), abs=1e-9)
    assert result["wa"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-9)
    assert result["confusion"] == confusion_matrix(truth, predicted, labels=result["classes"]).tolist()
    assert result["dropped_test_classes"] == {"frustrated": 10} and result["unused_train_classes"] == ["sad"]
    assert result["data_dir"] == str(stores["b"].resolve()) and result["corpus"] == "iemocap"
    # the run wrote the same numbers into cross.json, keyed by the resolved test dir
    written = json.loads((fold / "cross.json").read_text())
    assert list(written) == [str(stores["b"].resolve())]
    assert written[str(stores["b"].resolve())]["ua"] == pytest.approx(result["ua"], abs=1e-9)

    # 2) merges on both sides: training sad and angry both stand for "angry"; test frustrated
    #    joins angry (50 utterances against 40: UA and WA differ)
    merge = {"joy": "happy", "frustrated": "angry", "sad": "angry"}
    result = cross_test(fold, stores["b"], merge, "cpu")
    truth, predicted = _by_hand(model, store, {0: "neutral", 1: "happy", 2: "angry", 3: "angry"},
                                {"neutral": "neutral", "joy": "happy", "angry": "angry", "frustrated": "angry"})
    assert result["n"] == len(truth) == 130 and result["classes"] == ["neutral", "happy", "angry"]
    ua, wa = balanced_accuracy_score(truth, predicted), accuracy_score(truth, predicted)
    assert result["ua"] == pytest.approx(ua, abs=1e-9) and result["wa"] == pytest.approx(wa, abs=1e-9)
    assert abs(ua - wa) > 1e-6
    assert result["dropped_test_classes"] == {} and result["unused_train_classes"] == []


def test_refusals_are_one_line(trained, stores, tmp_path):
    runs, _ = trained
    fold = runs / "cross_corpus" / "train" / "fold-01"
    with pytest.raises(ValueError) as err:
        cross_test(fold, stores["c"], MAP, "cpu")
    text = str(err.value)
    assert "\n" not in text and "different front-ends" in text and "n_freq 40 vs 32" in text
    assert str(stores["c"]) in text and str(stores["a"].resolve()) in text
    with pytest.raises(ValueError) as err:
        cross_test(fold, stores["d"], {}, "cpu")
    text = str(err.value)
    assert "\n" not in text and "no class is shared" in text and "data.class_map" in text
    assert "(neutral, happy, sad, angry)" in text and "(joy, frustrated)" in text and str(stores["d"]) in text
    assert cross_test(fold, stores["d"], MAP, "cpu")["classes"] == ["happy"]  # the map makes one shared

    res = invoke("crosstest", runs / "cross_corpus", "--on", stores["c"], ok=False)
    assert res.exit_code == 2 and res.output.startswith("error:") and len(res.output.strip().splitlines()) == 1
    res = invoke("crosstest", runs / "cross_corpus", "--on", tmp_path / "nope", ok=False)
    assert res.exit_code == 2 and "nope" in res.output and len(res.output.strip().splitlines()) == 1
    res = invoke("crosstest", runs / "cross_corpus", "--on", stores["b"], "--map", "joy", ok=False)
    assert res.exit_code == 2 and "NAME=SHARED" in res.output
    # a test store with another front-end stops `ser-cl run` before any training
    res = invoke("run", EXPERIMENT, "--no-report", *sets(
        *TINY, f"data.dir={json.dumps(str(stores['a']))}", f"runs_dir={json.dumps(str(tmp_path / 'runs'))}",
        f"data.test_on={json.dumps([str(stores['c'])])}"), ok=False)
    assert res.exit_code == 2 and "different front-ends" in res.output and not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- end to end


def test_run_writes_cross_json_and_the_report_shows_the_matrix(trained, stores):
    runs, output = trained
    vdir = runs / "cross_corpus" / "train"
    assert json.loads((vdir / "run.json").read_text())["protocol"] == "holdout"
    assert json.loads((vdir / "run.json").read_text())["folds"] == ["fold-01"]
    metrics = json.loads((vdir / "fold-01" / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["test"] is None and metrics["val"]["ua"] > 0
    split = json.loads((vdir / "fold-01" / "split.json").read_text())
    assert split["test"] == [] and len(split["val_speakers"]) == 2
    probe = json.loads((vdir / "fold-01" / "probe.json").read_text())
    assert probe["svm"]["test"] is None and probe["classifier"]["test"] is None and probe["svm"]["val"]["ua"] > 0
    cross = json.loads((vdir / "fold-01" / "cross.json").read_text())[str(stores["b"].resolve())]
    assert "on iemocap/synth-b UA" in output
    assert summarize_variant(vdir) == [f"  fold-01: val UA {100 * metrics['val']['ua']:.2f}, no test set",
                                       f"cross_corpus/train: val UA {100 * metrics['val']['ua']:.2f} +- 0.00 "
                                       "over 1/1 folds (no test set)"]

    md = invoke("report", runs, "--no-plots").output
    assert "## Cross-corpus" in md
    a_label, b_label = f"iemocap/{stores['a'].name}", "iemocap/synth-b"
    header = next(line for line in md.splitlines() if line.startswith("| trained on"))
    assert f"{a_label} UA" in header and f"{b_label} UA" in header
    row = next(line for line in md.splitlines() if line.startswith(f"| {a_label}"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "cross_corpus/train"
    assert cells[2] == f"{100 * metrics['val']['ua']:.2f} (val)"  # in-corpus: no test set -> val UA
    assert cells[3] == f"{100 * cross['ua']:.2f}"
    assert f"- {a_label} -> {b_label}: test class 'frustrated' (10 utterances) matches no training class" in md
    assert f"- {a_label} -> {b_label}: training class 'sad' is not in the test store" in md
    assert "| train   | ce head |" in md and "| ok " in md  # the holdout fold counts as complete

    parsed = list(csv.DictReader(io.StringIO(invoke("report", runs, "--format", "csv", "--no-plots").output)))
    assert float(parsed[0][f"cross_{b_label}_ua_mean"]) == pytest.approx(100 * cross["ua"], abs=1e-4)
    assert parsed[0]["data"] == a_label and parsed[0]["test_ua_mean"] == ""
    rows = json.loads(invoke("report", runs, "--format", "json", "--no-plots").output)
    entry = rows[0]["cross"][str(stores["b"].resolve())]
    assert entry["ua_mean"] == pytest.approx(100 * cross["ua"]) and entry["n_folds"] == 1
    assert entry["label"] == b_label and entry["dropped_test_classes"] == {"frustrated": 10}

    # crosstest: done folds are skipped (cross.json untouched), --redo tests again, same numbers
    path = vdir / "fold-01" / "cross.json"
    before = path.stat().st_mtime_ns
    out = invoke("crosstest", runs / "cross_corpus", "--on", stores["b"], "--map", "joy=happy", "--device", "cpu").output
    assert path.stat().st_mtime_ns == before
    line = next(line for line in out.splitlines() if line.startswith("cross_corpus/train"))
    assert b_label in line and f"{100 * cross['ua']:.2f}" in line and "neutral,happy,angry" in line
    assert "note: " in out and "'frustrated'" in out
    cross_test_run(vdir, [stores["b"]], MAP, "cpu", progress=False, skip_done=False)
    again = json.loads(path.read_text())[str(stores["b"].resolve())]
    assert path.stat().st_mtime_ns != before and again["ua"] == pytest.approx(cross["ua"], abs=1e-9)
    # the training store itself is skipped (its score is the folds' own)
    assert cross_test_run(vdir, [stores["a"]], MAP, "cpu", progress=False) == []


def test_dry_run_with_the_cpu_preset(stores):
    out = invoke("run", EXPERIMENT, "--dry-run", "--preset", "cpu", "--force",  # cpu is for 64 bands, A has 40
                 "--set", f"data.dir={json.dumps(str(stores['a']))}").output
    lines = out.strip().splitlines()
    assert lines[0].startswith("warning: preset 'cpu' was chosen for 64-band")
    assert lines[1:] == ["train     runs/cross_corpus/train  folds 1 of 1: fold-01"]


def test_report_matrix_two_corpora_both_ways(tmp_path):
    """Files only: A trained with 2 test folds, tested on B; B trained (holdout), tested on A."""
    from ser_cl.eval.report import build_table, collect_runs, render

    def block(ua, wa):
        return {"ua": ua, "wa": wa, "confusion": [[1, 0], [0, 1]]}

    def variant(name, data_dir, corpus, folds, tests, cross):
        vdir = tmp_path / "runs" / "exp" / name
        vdir.mkdir(parents=True)
        (vdir / "run.json").write_text(json.dumps({
            "experiment": "exp", "variant": name, "stage": "train", "data_dir": data_dir, "corpus": corpus,
            "protocol": "speaker", "folds": folds, "head": True, "classes": ["x", "y"]}))
        for k, fold in enumerate(folds):
            (vdir / fold).mkdir()
            (vdir / fold / "metrics.json").write_text(json.dumps({
                "status": "complete", "val": block(0.5 + 0.1 * k, 0.5), "test": tests[k]}))
            if cross[k] is not None:
                (vdir / fold / "cross.json").write_text(json.dumps(cross[k]))

    def result(ua, corpus, dropped=None):
        return {"ua": ua, "wa": ua + 0.01, "n": 9, "corpus": corpus, "classes": ["x", "y"],
                "dropped_test_classes": dropped or {}, "unused_train_classes": [],
                "notes": [f"test class '{c}' ({n} utterances) matches no training class: left out"
                          for c, n in (dropped or {}).items()]}

    a, b = "/data/iemo", "/data/emo"
    variant("on-a", a, "iemocap", ["fold-01", "fold-02", "fold-03"], [block(0.6, 0.6), block(0.7, 0.7), block(0.8, 0.8)],
            [{b: result(0.30, "emodb", {"fear": 5})}, {b: result(0.50, "emodb", {"fear": 5})}, None])
    variant("on-b", b, "emodb", ["fold-01"], [None], [{a: result(0.42, "iemocap")}])
    rows = build_table(collect_runs(tmp_path / "runs"))
    md = render(rows, "md")
    lines = md[md.index("## Cross-corpus"):].splitlines()
    header = next(line for line in lines if line.startswith("| trained on"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["trained on", "variant", "iemocap/iemo UA",
                                                                  "emodb/emo UA"]
    cells = {c[1]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines
                               if line.startswith("| iemocap/") or line.startswith("| emodb/"))}
    # A: in-corpus = mean +- std test UA over 3 folds; on B: 2 of the 3 folds tested
    assert cells["exp/on-a"][2] == f"{70:.2f} +- {np.std([60, 70, 80]):.2f}"
    assert cells["exp/on-a"][3] == f"{40:.2f} +- {np.std([30, 50]):.2f} (2/3)"
    # B: holdout-like (no test set): in-corpus = val UA marked (val); on A: the single fold's value
    assert cells["exp/on-b"][2] == "42.00" and cells["exp/on-b"][3] == "50.00 (val)"
    assert "- iemocap/iemo -> emodb/emo: test class 'fear' (5 utterances) matches no training class: left out" in md
    parsed = {r["variant"]: r for r in csv.DictReader(io.StringIO(render(rows, "csv")))}
    assert float(parsed["on-a"]["cross_emodb/emo_ua_mean"]) == pytest.approx(40.0)
    assert float(parsed["on-a"]["cross_emodb/emo_ua_std"]) == pytest.approx(10.0)
    assert float(parsed["on-a"]["cross_emodb/emo_wa_mean"]) == pytest.approx(41.0)
    assert parsed["on-a"]["cross_emodb/emo_n_folds"] == "2" and parsed["on-a"]["cross_iemocap/iemo_ua_mean"] == ""
    assert parsed["on-b"]["data"] == "emodb/emo" and parsed["on-b"]["test_ua_mean"] == ""
    assert [r["status"] for r in rows] == ["ok", "ok"]
