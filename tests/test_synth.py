"""The synthetic corpus: layout, labels, determinism, and that classes are acoustically distinct."""

from __future__ import annotations

import hashlib

import numpy as np
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.corpora import read_corpus
from ser_cl.data.stores.store import FeatureStore
from ser_cl.data.corpora.synth import synthesize_corpus


def _digest(root):
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_and_labels(synth_corpus_dir):
    root = synth_corpus_dir
    assert sorted(p.name for p in root.iterdir()) == [f"Session{s}" for s in range(1, 6)]
    emo = root / "Session1" / "dialog" / "EmoEvaluation"
    assert {p.name for p in emo.iterdir() if p.is_dir()} == {"Attribute", "Categorical", "Self-evaluation"}
    raw = b"".join(p.read_bytes() for p in emo.glob("*.txt"))
    assert b"\xe9" in raw and b"C-E" in raw and b"A-E" in raw
    listing = read_corpus(root)
    assert listing.corpus == "iemocap" and not listing.skipped
    labels = [u.label for u in listing.utterances]
    assert {lab: labels.count(lab) for lab in set(labels)} == {"neu": 40, "hap": 20, "exc": 20, "sad": 40, "ang": 40, "fru": 10}
    assert len({u.speaker for u in listing.utterances}) == 10
    # both speakers appear in each dialog, so dialog letter != speaker letter happens
    assert any(u.utt_id.startswith("Ses01F") and u.speaker == "Ses01M" for u in listing.utterances)


def test_deterministic_from_seed(tmp_path):
    kwargs = dict(per_speaker=1, n_sessions=2, duration=(0.3, 0.4), n_dropped=0)
    synthesize_corpus(tmp_path / "a", seed=3, **kwargs)
    synthesize_corpus(tmp_path / "b", seed=3, **kwargs)
    synthesize_corpus(tmp_path / "c", seed=4, **kwargs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_classes_differ_acoustically(synth_data_dir):
    """Nearest class mean on per-utterance average spectra, across speakers: well above chance (25%)."""
    store = FeatureStore(synth_data_dir)
    x = np.stack([store[i].astype(np.float32).mean(axis=0) for i in range(len(store))])
    sessions = np.array(store.sessions)
    train, test = sessions != "Ses05", sessions == "Ses05"
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    z = (x - mu) / sd
    centroids = np.stack([z[train & (store.labels == c)].mean(0) for c in range(4)])
    pred = np.argmin(((z[test][:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == store.labels[test]).mean() >= 0.5


def test_cli_synth(tmp_path):
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "s"), "--per-speaker", "1", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 60 utterances" in result.output  # 10 speakers x (4 classes x 1 + 2 dropped)
    assert len(list((tmp_path / "s").rglob("*.wav"))) == 60
