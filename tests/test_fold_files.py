"""Protocol file: folds read from EmoBox's fold_K/ folders or a utt_id,fold,part CSV, and
`ser-cl folds --export` writing them; export -> import gives the same folds."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.config import ConfigError, stage_from_dict
from ser_cl.data.splits.fold_files import write_folds
from ser_cl.data.splits.folds import FoldFileNote, make_folds
from ser_cl.data.stores.store import FeatureStore

# a store on this machine: 4 speakers (2 sessions), 3 utterances each
ROWS = [{"utt_id": f"{spk}_u{i}", "path": f"/data/corpus/{spk[:5]}/{spk}_u{i}.wav", "speaker": spk,
         "session": spk[:5], "gender": spk[-1], "label": "neu", "duration_s": "1.5"}
        for spk in ("Ses01F", "Ses01M", "Ses02F", "Ses02M") for i in range(3)]


def _sets(folds):
    return [(f.name, set(f.train.tolist()), set(f.val.tolist()), set(f.test.tolist())) for f in folds]


def _emobox_line(utt, machine="/home/someone/EmoBox/downloads/mycorpus"):
    """One utterance as EmoBox writes it, its audio on another machine (only the file name matches)."""
    return json.dumps({"key": f"mycorpus-{utt}", "dataset": "mycorpus", "wav": f"{machine}/wav/{utt}.wav",
                       "type": "raw", "sample_rate": 16000, "num_frame": 24000.0, "task": "category",
                       "length": 1.5, "emo": "neu", "channel": 1})


def _write_emobox(root, folds):
    """folds: {K: {"train": [utt ids], "test": [...]}} as DIR/fold_K/mycorpus_{part}_fold_K.jsonl."""
    for k, parts in folds.items():
        (root / f"fold_{k}").mkdir(parents=True)
        for part, utts in parts.items():
            lines = "".join(_emobox_line(u) + "\n" for u in utts)
            (root / f"fold_{k}" / f"mycorpus_{part}_fold_{k}.jsonl").write_text(lines)
    return root


def _utts(*speakers):
    return [f"{s}_u{i}" for s in speakers for i in range(3)]


def _ids(folds_part):
    return sorted(ROWS[i]["utt_id"] for i in folds_part)


def test_handwritten_emobox_folds_import_as_written(tmp_path):
    root = _write_emobox(tmp_path / "emobox", {
        1: {"train": _utts("Ses02F", "Ses02M"), "test": _utts("Ses01F", "Ses01M")},
        2: {"train": _utts("Ses01F", "Ses01M", "Ses02M"), "test": _utts("Ses02F")},
    })
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every utterance is in a fold: no note
        folds = make_folds(ROWS, "file", folds_file=str(root))
    assert [f.name for f in folds] == ["fold-01", "fold-02"]
    one, two = folds
    assert _ids(one.test) == _utts("Ses01F", "Ses01M") and one.test_speakers == ["Ses01F", "Ses01M"]
    # no valid file: data.val_speakers (1) carved from the training speakers, the one next after
    # the test speakers in sorted order
    assert one.val_speakers == ["Ses02F"] and _ids(one.val) == _utts("Ses02F") and _ids(one.train) == _utts("Ses02M")
    assert two.val_speakers == ["Ses02M"] and _ids(two.train) == _utts("Ses01F", "Ses01M")
    with pytest.raises(ValueError, match="fold-01: data.val_speakers = 2 needs at least 3 training speakers"):
        make_folds(ROWS, "file", folds_file=str(root), val_speakers=2)
    only_two = _write_emobox(tmp_path / "two", {2: {"train": _utts("Ses01F", "Ses01M", "Ses02M"),
                                                    "test": _utts("Ses02F")}})
    (two_val,) = make_folds(ROWS, "file", folds_file=str(only_two), val_speakers=2)
    assert two_val.val_speakers == ["Ses01F", "Ses02M"] and _ids(two_val.train) == _utts("Ses01M")
    # EmoBox's .json twin (one object: key -> record) reads the same
    twin = tmp_path / "json"
    for k in (1, 2):
        (twin / f"fold_{k}").mkdir(parents=True)
        for part in ("train", "test"):
            lines = (root / f"fold_{k}" / f"mycorpus_{part}_fold_{k}.jsonl").read_text().splitlines()
            records = {r.pop("key"): r for r in map(json.loads, lines)}
            (twin / f"fold_{k}" / f"mycorpus_{part}_fold_{k}.json").write_text(json.dumps(records, indent=4))
    assert _sets(make_folds(ROWS, "file", folds_file=str(twin))) == _sets(folds)


def test_a_valid_file_is_used_as_written(tmp_path):
    root = _write_emobox(tmp_path / "emobox", {
        1: {"train": _utts("Ses02F"), "valid": _utts("Ses02M"), "test": _utts("Ses01F", "Ses01M")}})
    (fold,) = make_folds(ROWS, "file", folds_file=str(root), val_speakers=3)  # nothing carved: 3 is not used
    assert _ids(fold.val) == _utts("Ses02M") and fold.val_speakers == ["Ses02M"] and _ids(fold.train) == _utts("Ses02F")


def test_a_mismatch_is_one_line_naming_the_file(tmp_path):
    root = _write_emobox(tmp_path / "emobox", {1: {"train": _utts("Ses02F", "Ses02M") + ["Ses09F_u0"],
                                                   "test": _utts("Ses01F", "Ses01M")}})
    with pytest.raises(ValueError) as err:
        make_folds(ROWS, "file", folds_file=str(root))
    msg = str(err.value)
    assert "\n" not in msg and str(root) in msg and "1 utterances" in msg and "Ses09F_u0.wav" in msg
    both = _write_emobox(tmp_path / "both", {1: {"train": _utts("Ses02F", "Ses01M"), "test": _utts("Ses01M")}})
    with pytest.raises(ValueError, match="in both train and test"):
        make_folds(ROWS, "file", folds_file=str(both))
    with pytest.raises(ValueError, match="holds no fold_K"):
        make_folds(ROWS, "file", folds_file=str(tmp_path))
    with pytest.raises(ValueError, match="needs data.folds_file"):
        make_folds(ROWS, "file")


def test_an_unmentioned_utterance_is_reported_not_guessed(tmp_path):
    train = _utts("Ses02F", "Ses02M")
    root = _write_emobox(tmp_path / "emobox", {1: {"train": train[1:], "test": _utts("Ses01F", "Ses01M")}})
    with pytest.warns(FoldFileNote, match=r"1 of the store's 12 utterances are in no fold .*Ses02F_u0"):
        (fold,) = make_folds(ROWS, "file", folds_file=str(root))
    left = ROWS.index(next(r for r in ROWS if r["utt_id"] == "Ses02F_u0"))
    assert left not in np.concatenate([fold.train, fold.val, fold.test])


def test_a_speaker_dependent_file_is_named_and_still_validates_on_training_utterances(tmp_path):
    """As EmoBox's EmoDB folds: every speaker in train and in test (older files say fold1)."""
    root = tmp_path / "emobox"
    (root / "fold_1").mkdir(parents=True)
    for part, picks in (("train", (0, 1)), ("test", (2,))):
        utts = [u for u in _utts("Ses01F", "Ses01M", "Ses02F", "Ses02M") if int(u[-1]) in picks]
        (root / "fold_1" / f"mycorpus_{part}_fold1.jsonl").write_text("".join(_emobox_line(u) + "\n" for u in utts))
    with pytest.warns(FoldFileNote, match="1 of the 1 folds .* are not speaker-independent"):
        (fold,) = make_folds(ROWS, "file", folds_file=str(root))
    assert fold.val_speakers == ["Ses01F"] and _ids(fold.val) == ["Ses01F_u0", "Ses01F_u1"]
    assert not set(fold.val.tolist()) & set(fold.test.tolist()) and len(fold.train) == 6


def test_csv_form_reads_val_as_written_and_numbers_folds(tmp_path):
    csv = tmp_path / "folds.csv"
    lines = ["utt_id,fold,part"] + [f"{u},fold-02,train" for u in _utts("Ses01F", "Ses01M")]
    lines += [f"{u},2,val" for u in _utts("Ses02M")] + [f"{u},2,test" for u in _utts("Ses02F")]
    csv.write_text("\n".join(lines) + "\n")
    (fold,) = make_folds(ROWS, "file", folds_file=str(csv))
    assert fold.name == "fold-02" and fold.val_speakers == ["Ses02M"] and fold.test_speakers == ["Ses02F"]
    csv.write_text("utt_id,fold,part\nSes01F_u0,1,dev\n")
    with pytest.raises(ValueError, match=r"folds.csv:2: part must be train, val or test"):
        make_folds(ROWS, "file", folds_file=str(csv))


@pytest.mark.parametrize("protocol,kwargs", [("session5", {}), ("speaker", {"val_speakers": 2}),
                                             ("speaker_groups", {"n_folds": 2})])
@pytest.mark.parametrize("form", ["emobox", "fold.csv"])
def test_export_then_import_gives_the_same_folds(tmp_path, protocol, kwargs, form):
    folds = make_folds(ROWS, protocol, **kwargs)
    out = write_folds(folds, ROWS, tmp_path / form, "mycorpus")
    assert _sets(make_folds(ROWS, "file", folds_file=str(out))) == _sets(folds)
    if form == "emobox":
        record = json.loads((out / "fold_1" / "mycorpus_train_fold_1.jsonl").read_text().splitlines()[0])
        assert {"key", "wav", "emo", "length", "type", "channel", "dataset"} <= set(record)
        with pytest.raises(ValueError, match="already holds fold_"):
            write_folds(folds, ROWS, out, "mycorpus")  # no stale folds mixed in


def test_an_export_without_validation_reads_back_without_validation(tmp_path):
    """data.val_speakers = 0: the EmoBox export's _valid files are empty; read back, no validation
    speaker is carved out of train (it was: Ses02F, taken from training)."""
    folds = make_folds(ROWS, "speaker", val_speakers=0)
    out = write_folds(folds, ROWS, tmp_path / "emobox", "mycorpus")
    assert (out / "fold_1" / "mycorpus_valid_fold_1.jsonl").read_text() == ""
    back = make_folds(ROWS, "file", folds_file=str(out))  # default data.val_speakers = 1: not used
    assert _sets(back) == _sets(folds)
    assert all(f.val.size == 0 and f.val_speakers == [] for f in back)


def test_cli_exports_and_reads_back(synth_data_dir, tmp_path):
    store = FeatureStore(synth_data_dir)
    runner = CliRunner()
    for target in (tmp_path / "emobox", tmp_path / "folds.csv"):
        res = runner.invoke(app, ["folds", str(synth_data_dir), "--protocol", "session5", "--export", str(target)])
        assert res.exit_code == 0, res.output
        assert f"wrote 5 folds to {target}" in res.output
        back = runner.invoke(app, ["folds", str(synth_data_dir), "--folds-file", str(target)])
        assert back.exit_code == 0, back.output
        assert f"5 folds (file: {target})" in back.output
        assert res.output.splitlines()[1:-1] == back.output.splitlines()[1:]  # the same table
        assert _sets(make_folds(store, "file", folds_file=str(target))) == _sets(make_folds(store, "session5"))
    assert (tmp_path / "emobox" / "fold_5" / f"{store.info['corpus']}_valid_fold_5.jsonl").is_file()
    # an unmentioned utterance: a note on stderr, the folds still listed
    first = store.rows[0]["utt_id"]
    lines = (tmp_path / "folds.csv").read_text().splitlines()
    (tmp_path / "some.csv").write_text("\n".join(line for line in lines if line.split(",")[0] != first))
    res = runner.invoke(app, ["folds", str(synth_data_dir), "--folds-file", str(tmp_path / "some.csv")])
    assert res.exit_code == 0 and "note: 1 of the store's 160 utterances are in no fold" in res.stderr
    res = runner.invoke(app, ["folds", str(synth_data_dir), "--folds-file", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_config_keys():
    cfg = stage_from_dict({"data": {"protocol": "file", "folds_file": "folds/iemocap"}}, "test")
    assert cfg.data.folds_file == "folds/iemocap"
    with pytest.raises(ConfigError, match="needs data.folds_file"):
        stage_from_dict({"data": {"protocol": "file"}}, "test")
    with pytest.raises(ConfigError, match="read by data.protocol = 'file' only"):
        stage_from_dict({"data": {"folds_file": "x.csv"}}, "test")
