"""Unlabeled stores and pretraining pools (ser_cl.data.batches.pool): what a pool trains on, and that a
fold's validation and test speakers never reach it.

References are independent of the code under test: which utterances must be left out is worked
out from the manifests' speakers and audio paths, not from frame hashes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TINY, tiny_stage
from ser_cl.cli import app
from ser_cl.config import ConfigError
from ser_cl.experiment import Variant
from ser_cl.data.splits.folds import Fold, epoch_train_indices, make_folds
from ser_cl.data.batches.pool import KEYS_FILE, SEEN_FILE, check_not_seen, pool_units, utterance_keys
from ser_cl.data.stores.prepare import prepare
from ser_cl.data.stores.store import FeatureStore
from ser_cl.train.run import run_variant

ROOT = Path(__file__).resolve().parents[1]
MEL40 = {"kind": "mel", "n_mels": 40}


def mel40():
    from ser_cl.data.frontends.features import feature_params

    return feature_params("mel", n_mels=40)


@pytest.fixture(scope="module")
def unlabeled_copy(synth_corpus_dir, tmp_path_factory) -> Path:
    """The target's own audio prepared again as unlabeled speech (speaker = session folder)."""
    out = tmp_path_factory.mktemp("unlabeled-copy")
    prepare(synth_corpus_dir, out, corpus="unlabeled", jobs=1, progress=False, features=mel40(), speaker_level=0)
    return out


def manifest(data_dir: Path) -> list[dict]:
    with open(Path(data_dir) / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


# -- unlabeled stores --------------------------------------------------------------------------
def test_an_unlabeled_store_has_no_labels_and_folder_speakers(unlabeled_copy, synth_corpus_dir):
    store = FeatureStore(unlabeled_copy)
    wavs = sorted(p for p in Path(synth_corpus_dir).rglob("*.wav"))
    assert len(store) == len(wavs)  # every file, the unlabeled fru/xxx ones too
    assert not store.labeled and store.classes == [] and (store.labels == -1).all()
    rows = manifest(unlabeled_copy)
    assert {r["label"] for r in rows} == {""}
    for r in rows:  # the speaker is the first folder below the corpus root
        assert r["speaker"] == Path(r["path"]).relative_to(Path(synth_corpus_dir).resolve()).parts[0]
    info = json.loads((unlabeled_copy / "prepare.json").read_text())
    assert info["labeled"] is False and info["folds"]["folds"] == []


def test_unlabeled_speakers_from_a_csv(synth_corpus_dir, tmp_path):
    wavs = sorted(Path(synth_corpus_dir).rglob("*.wav"))[:6]
    sheet = tmp_path / "speakers.csv"
    sheet.write_text("path,speaker\n" + "".join(f"{w.relative_to(synth_corpus_dir)},spk{k % 2}\n"
                                                 for k, w in enumerate(wavs)))
    prepare(synth_corpus_dir, tmp_path / "d", corpus="unlabeled", jobs=1, progress=False, features=mel40(),
            speakers_csv=sheet)
    named = {r["path"]: r["speaker"] for r in manifest(tmp_path / "d")}
    assert [named[str(w.resolve())] for w in wavs] == [f"spk{k % 2}" for k in range(6)]
    assert sum(1 for s in named.values() if s == "") == len(named) - 6  # the rest: unknown


def test_unlabeled_prepare_from_the_cli(synth_corpus_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", str(synth_corpus_dir), "--out", str(tmp_path / "u"), "--corpus", "unlabeled",
                              "--speaker-level", "0", "--features", "mel", "--n-mels", "40", "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "unlabeled: no classes" in res.output and "10 known speaker" not in res.output  # 5 session folders
    res = runner.invoke(app, ["prepare", str(synth_corpus_dir), "--out", str(tmp_path / "v"), "--corpus", "unlabeled",
                              "--classes", "neu,ang", "-q"])
    assert res.exit_code == 2 and "--classes does not apply" in res.output
    res = runner.invoke(app, ["prepare", str(synth_corpus_dir), "--out", str(tmp_path / "w"), "--speaker-level", "0",
                              "-q"])
    assert res.exit_code == 2 and "only applies to --corpus unlabeled" in res.output


def test_supervised_stages_refuse_an_unlabeled_store(unlabeled_copy, tmp_path):
    for kind, loss in (("train", "ce"), ("pretrain", "supcon")):
        cfg = tiny_stage(stage=kind, loss={"name": loss}, data={"dir": str(unlabeled_copy)}, runs_dir=str(tmp_path))
        with pytest.raises(ConfigError, match=r"is unlabeled .* needs labels"):
            run_variant(Variant(cfg, "v", {}), progress=False)
    res = CliRunner().invoke(app, ["train", str(ROOT / "experiments/ce_baseline.toml"), "--set",
                                   f"data.dir={json.dumps(str(unlabeled_copy))}", "--set", f"runs_dir={json.dumps(str(tmp_path))}"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "unlabeled" in res.output


def test_pool_config_is_checked():
    with pytest.raises(ConfigError, match="self-supervised pretraining only"):
        tiny_stage(stage="pretrain", loss={"name": "supcon"}, data={"pool": ["a"]})
    with pytest.raises(ConfigError, match="one weight per data.pool entry"):
        tiny_stage(stage="pretrain", loss={"name": "selfsup_ntxent"}, augment={"enabled": True, "multiview": True},
                   data={"pool": ["a", "b"], "pool_weights": [1.0]})
    tiny_stage(stage="train", data={"pool": ["a"]})  # read by pretrain stages only


# -- the leakage rule --------------------------------------------------------------------------
def test_a_pool_holding_the_target_leaves_out_each_folds_held_out_speakers(synth_mel_dir, unlabeled_copy, other_speech):
    target = FeatureStore(synth_mel_dir)
    folds = make_folds(target, "session10")
    per_fold, units = pool_units([str(synth_mel_dir), str(unlabeled_copy), str(other_speech)], [], target, folds,
                                 0.1, 0)
    assert per_fold and [name for name, _ in units] == [f.name for f in folds]
    target_rows = manifest(synth_mel_dir)
    speaker_of_path = {r["path"]: r["speaker"] for r in target_rows}
    copy_rows, other_rows = manifest(unlabeled_copy), manifest(other_speech)
    for fold, (_, build) in zip(folds, units):
        unit = build()
        held = set(fold.val_speakers) | set(fold.test_speakers)
        # reference from the manifests: the target's rows of other speakers, the copy's files that
        # are not those speakers' recordings (the fru/xxx files no fold uses stay in), all other speech
        want_target = sum(r["speaker"] not in held for r in target_rows)
        want_copy = sum(speaker_of_path.get(r["path"]) not in held for r in copy_rows)
        got = {s["name"]: (s["n_utterances"], s["n_excluded"]) for s in unit.seen["stores"]}
        assert list(got.values()) == [(want_target, len(target_rows) - want_target),
                                      (want_copy, len(copy_rows) - want_copy), (len(other_rows), 0)]
        assert len(unit.fold.train) == want_target + want_copy + len(other_rows)
        # no training frames equal a held-out utterance's; validation = the fold's validation speakers
        held_keys = utterance_keys(target, np.concatenate([fold.val, fold.test]))
        assert not np.isin(unit.trained_keys, held_keys).any()
        assert np.array_equal(unit.trained_keys, utterance_keys(unit.store, unit.fold.train))
        assert np.array_equal(utterance_keys(unit.store, unit.fold.val), utterance_keys(target, fold.val))
        assert unit.fold.test.size == 0 and (unit.store.labels == -1).all()
        assert unit.seen["excluded_speakers"] == sorted(held)


def test_a_pool_without_the_target_runs_once_and_validates_on_its_own_speakers(synth_mel_dir, unlabeled_copy,
                                                                               other_speech):
    target = FeatureStore(synth_mel_dir)
    # the unlabeled copy is a different corpus with other speaker ids: only the target holds it
    per_fold, units = pool_units([str(unlabeled_copy)], [], None, [], 0.2, 0)
    assert not per_fold and [n for n, _ in units] == ["pool"]
    unit = units[0][1]()
    train_spk = {unit.store.speakers[i] for i in unit.fold.train}
    val_spk = {unit.store.speakers[i] for i in unit.fold.val}
    assert val_spk and not (train_spk & val_spk)  # whole speakers held out
    assert len(unit.fold.val) >= 0.2 * len(unit.store) - 1e-9
    per_fold, units = pool_units([str(other_speech)], [], target, make_folds(target, "session10"), 0.1, 0)
    assert not per_fold  # other speech: no frames, paths or speakers of the target
    unit = units[0][1]()
    assert len(unit.fold.val) == round(0.1 * len(unit.store))  # unknown speakers: held out per utterance


def test_pool_weights_share_out_an_epoch(synth_mel_dir, other_speech):
    target = FeatureStore(synth_mel_dir)
    folds = make_folds(target, "session10")[:1]
    _, units = pool_units([str(synth_mel_dir), str(other_speech)], [3.0, 1.0], target, folds, 0.1, 0, epoch_size=100)
    unit = units[0][1]()
    rng = np.random.default_rng(0)
    n_target = sum(1 for i in unit.fold.train if unit.store.utt_ids[i].startswith(Path(synth_mel_dir).name + ":"))
    for _ in range(3):
        rows = epoch_train_indices(unit.fold, rng)
        from_target = np.array([unit.store.utt_ids[i].startswith(Path(synth_mel_dir).name + ":") for i in rows])
        assert len(rows) == 100 and from_target.sum() == 75  # 3 : 1
        assert len(set(rows[from_target].tolist())) == min(75, n_target)  # no repeat before a whole pass
    plain = Fold("f", np.arange(5), np.arange(0), np.arange(0), [], [])
    assert epoch_train_indices(plain, rng) is plain.train


def test_finetuning_refuses_a_pretraining_that_saw_its_held_out_utterances(synth_mel_dir, tmp_path):
    target = FeatureStore(synth_mel_dir)
    fold = make_folds(target, "session10")[0]
    np.save(tmp_path / KEYS_FILE, utterance_keys(target, fold.train))
    (tmp_path / SEEN_FILE).write_text(json.dumps({"stores": [{"corpus": "iemocap", "speakers": {"Ses02F": 3}}]}))
    check_not_seen(tmp_path, target, fold)  # training speakers only: fine
    np.save(tmp_path / KEYS_FILE, utterance_keys(target, fold.test[:2]))
    with pytest.raises(ValueError, match=r"trained on 2 validation/test utterance\(s\) of fold-01"):
        check_not_seen(tmp_path, target, fold)
    np.save(tmp_path / KEYS_FILE, np.zeros(0, dtype=np.uint64))
    (tmp_path / SEEN_FILE).write_text(json.dumps({"stores": [{"corpus": "iemocap",
                                                              "speakers": {fold.test_speakers[0]: 1}}]}))
    with pytest.raises(ValueError, match="held out by fold-01"):
        check_not_seen(tmp_path, target, fold)


# -- end to end --------------------------------------------------------------------------------
def test_one_pool_pretraining_serves_every_fold(synth_mel_dir, other_speech, tmp_path):
    sets = [f"data.dir={json.dumps(str(synth_mel_dir))}", f"data.pool=[{json.dumps(str(other_speech))}]",
            "data.pool_weights=[]", f"runs_dir={json.dumps(str(tmp_path))}", "optim.epochs=1", "optim.batch_size=16",
            "finetune.freeze_epochs=1", *(f"model.{k}={json.dumps(v)}" for k, v in TINY.items())]
    args = ["run", str(ROOT / "experiments/pool_pretrain.toml"), "--fold", "1", "--fold", "2", "--no-report"]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    pre = tmp_path / "pool_pretrain" / "pretrain"
    assert json.loads((pre / "run.json").read_text())["folds"] == ["pool"]
    assert sorted(p.name for p in pre.iterdir() if p.is_dir()) == ["pool"]  # one run for both folds
    seen = json.loads((pre / "pool" / SEEN_FILE).read_text())
    assert seen["per_fold"] is False and [s["corpus"] for s in seen["stores"]] == ["unlabeled"]
    for k in (1, 2):
        metrics = json.loads((tmp_path / f"pool_pretrain/ft_ce_aug/fold-{k:02d}/metrics.json").read_text())
        assert metrics["status"] == "complete" and metrics["test"]["ua"] is not None
    assert "not trained to completion" not in res.output  # the pool run is not probed by itself
    report = CliRunner().invoke(app, ["report", str(tmp_path), "--no-plots"])
    assert report.exit_code == 0 and "ok: one pool pretraining for every fold" in report.output


@pytest.mark.parametrize("name", ["pool_pretrain.toml", "barlow_twins.toml"])
def test_beyond_the_thesis_experiments_dry_run_with_the_cpu_preset(name, synth_mel_dir):
    data = json.dumps(str(synth_mel_dir))
    res = CliRunner().invoke(app, ["run", str(ROOT / "experiments" / name), "--dry-run", "--preset", "cpu",
                                   "--force",  # cpu is for 64 log-mel bands, the test store has 40: a warning
                                   "--set", f"data.dir={data}", "--set", f"data.pool=[{data}]",
                                   "--set", "data.pool_weights=[]"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.strip().splitlines() if not line.startswith("warning: preset 'cpu'")]
    assert [line.split()[0] for line in lines] == ["pretrain", "finetune"]


def test_a_pool_of_two_front_ends_is_refused(synth_corpus_dir, synth_mel_dir, tmp_path):
    from ser_cl.data.frontends.features import feature_params

    prepare(synth_corpus_dir, tmp_path / "mel32", corpus="unlabeled", jobs=1, progress=False,
            features=feature_params("mel", n_mels=32))
    target = FeatureStore(synth_mel_dir)
    with pytest.raises(ValueError, match=r"different front-ends \(n_freq 40 vs 32; n_mels 40 vs 32\)"):
        pool_units([str(tmp_path / "mel32")], [], target, make_folds(target, "session10"), 0.1, 0)


def test_an_encoder_pretrained_on_unlabeled_speech_alone_fine_tunes_on_a_labelled_corpus(synth_mel_dir, other_speech,
                                                                                         tmp_path):
    ssl = {"stage": "pretrain", "loss": {"name": "selfsup_ntxent", "tau": 0.5}, "optim": {"epochs": 1},
           "augment": {"enabled": True, "multiview": True}, "runs_dir": str(tmp_path), "experiment": "e"}
    pre = run_variant(Variant(tiny_stage(data={"dir": str(other_speech)}, **ssl), "pre", {}), progress=False)
    assert json.loads((pre / "run.json").read_text())["folds"] == ["pool"]  # no target: one run, no folds
    ft = tiny_stage(stage="finetune", data={"dir": str(synth_mel_dir)}, finetune={"from": str(pre), "freeze_epochs": 1},
                    runs_dir=str(tmp_path), experiment="e")
    out = run_variant(Variant(ft, "ft", {}), folds=[1], progress=False)
    metrics = json.loads((out / "fold-01" / "metrics.json").read_text())
    assert metrics["classes"] == FeatureStore(synth_mel_dir).classes and metrics["test"]["ua"] is not None
