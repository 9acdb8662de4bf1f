"""Fold protocols: counts, speaker disjointness, the thesis' val/test swap, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.splits.folds import FOLD_PROTOCOLS, auto_protocol, make_folds
from ser_cl.data.stores.store import FeatureStore


def _iemocap_rows(n_sessions=5, per_speaker=3):
    return [
        {"speaker": f"Ses{s:02d}{g}", "session": f"Ses{s:02d}"}
        for s in range(1, n_sessions + 1) for g in "FM" for _ in range(per_speaker)
    ]


def _check_disjoint(rows, folds):
    speakers = np.array([r["speaker"] for r in rows])
    for f in folds:
        parts = [set(speakers[f.train]), set(speakers[f.val]), set(speakers[f.test])]
        assert all(parts), f.name
        assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2], f.name
        assert parts[1] == set(f.val_speakers) and parts[2] == set(f.test_speakers)
        every = np.concatenate([f.train, f.val, f.test])
        assert len(every) == len(set(every.tolist())) == len(rows)  # a partition of all utterances


def test_session10_is_the_thesis_protocol():
    rows = _iemocap_rows()
    folds = make_folds(rows, "session10")
    assert len(folds) == 10 and [f.name for f in folds] == [f"fold-{k:02d}" for k in range(1, 11)]
    _check_disjoint(rows, folds)
    for k in range(5):
        a, b = folds[2 * k], folds[2 * k + 1]
        session = f"Ses{k + 1:02d}"
        assert a.val_speakers == [f"{session}F"] and a.test_speakers == [f"{session}M"]
        assert b.val_speakers == a.test_speakers and b.test_speakers == a.val_speakers  # swapped
        assert not any(rows[i]["session"] == session for i in a.train)
        assert len(a.train) == 4 * 2 * 3
    assert auto_protocol(rows) == "session10" and len(make_folds(rows)) == 10


def test_session5_validates_on_next_session():
    rows = _iemocap_rows()
    folds = make_folds(rows, "session5")
    assert len(folds) == 5
    _check_disjoint(rows, folds)
    assert [f.test_speakers for f in folds][0] == ["Ses01F", "Ses01M"]
    assert [f.val_speakers[0] for f in folds] == ["Ses02F", "Ses03M", "Ses04F", "Ses05M", "Ses01F"]
    assert all(len(f.train) == 7 * 3 for f in folds)


def test_speaker_protocol_for_corpora_without_sessions():
    rows = [{"speaker": s, "session": ""} for s in ["b", "a", "c", "d", "a", "c"]]
    assert auto_protocol(rows) == "speaker"
    folds = make_folds(rows)
    assert len(folds) == 4
    _check_disjoint(rows, folds)
    assert [(f.test_speakers[0], f.val_speakers[0]) for f in folds] == [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")]
    assert make_folds(rows)[1].train.tolist() == make_folds(rows)[1].train.tolist()


def test_auto_falls_back_when_sessions_do_not_have_two_speakers():
    rows = _iemocap_rows() + [{"speaker": "Ses05X", "session": "Ses05"}]
    assert auto_protocol(rows) == "speaker"
    with pytest.raises(ValueError, match="exactly 2 speakers"):
        make_folds(rows, "session10")
    with pytest.raises(ValueError, match="needs a session"):
        make_folds([{"speaker": s, "session": ""} for s in "abc"], "session5")
    with pytest.raises(ValueError, match="unknown fold protocol"):
        make_folds(rows, "kfold")
    assert set(FOLD_PROTOCOLS) == {"auto", "session10", "session5", "speaker", "holdout"}


def test_folds_on_prepared_store_and_cli(synth_data_dir):
    store = FeatureStore(synth_data_dir)
    for protocol, n in (("session10", 10), ("session5", 5), ("speaker", 10)):
        folds = make_folds(store, protocol)
        assert len(folds) == n
        _check_disjoint(store.rows, folds)
    result = CliRunner().invoke(app, ["folds", str(synth_data_dir), "--protocol", "session5"])
    assert result.exit_code == 0, result.output
    assert "5 folds (session5)" in result.output and "fold-05" in result.output
    assert "Ses01F,Ses01M" in result.output
