"""``model.input_norm = "speaker"``: each utterance standardised with its own speaker's per-band
statistics (``ser_cl.data.stores.normalize.speaker_normalised``), checked against numpy on each
speaker's concatenated frames; training, probing, cross-testing and predict read exactly those
inputs (a run on the in-memory copy equals a run on the same frames written to disk)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.normalize import model_inputs, speaker_normalised
from ser_cl.data.stores.store import FeatureStore

from conftest import tiny_stage


def _numpy_speaker_normalised(store) -> np.ndarray:
    out = np.empty(store.features.shape, dtype=np.float64)
    speakers = np.array(store.speakers)
    for speaker in np.unique(speakers):
        rows = np.flatnonzero(speakers == speaker)
        frames = np.concatenate([np.asarray(store[int(i)], dtype=np.float64) for i in rows])
        mean, std = frames.mean(axis=0), frames.std(axis=0)
        for i in rows:
            lo, hi = store.offsets[i], store.offsets[i + 1]
            out[lo:hi] = (np.asarray(store.features[lo:hi], dtype=np.float64) - mean) / std
    return out


def test_each_speaker_is_standardised_with_their_own_frames(synth_mel_dir, tmp_path):
    # a store without speaker_stats.npz (prepared before prepare wrote it): the statistics are
    # taken over the speaker's utterances in the store (tests/test_speaker_stats.py: with it)
    shutil.copytree(synth_mel_dir, tmp_path / "old", ignore=shutil.ignore_patterns("cache", "speaker_stats.npz"))
    store = FeatureStore(tmp_path / "old")
    assert store.speaker_band_stats is None
    normed = speaker_normalised(store)
    expected = _numpy_speaker_normalised(store)
    assert normed.features.dtype == np.float16 and normed.features.shape == store.features.shape
    np.testing.assert_allclose(normed.features.astype(np.float64), expected, atol=4e-3, rtol=1e-3)
    speakers = np.array(store.speakers)
    for speaker in np.unique(speakers):  # mean 0, std 1 over each speaker's frames
        frames = np.concatenate([np.asarray(normed[int(i)], dtype=np.float64) for i in np.flatnonzero(speakers == speaker)])
        np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=2e-3)
        np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=2e-3)
    # the store itself is untouched, the copy is made once, and other norms read the store as it is
    assert not np.allclose(np.asarray(store.features[:50], dtype=np.float64), expected[:50], atol=0.1)
    assert speaker_normalised(store) is normed and model_inputs(store, "speaker") is normed
    assert model_inputs(store, "global") is store and model_inputs(store, "none") is store


class _Utterances:
    """A minimal store: utterances of [T, F] frames, some without a speaker."""

    def __init__(self, utts, speakers):
        self.offsets = np.concatenate([[0], np.cumsum([len(u) for u in utts])]).astype(np.int64)
        self.features = np.concatenate(utts).astype(np.float16)
        self.speakers = speakers

    def __getitem__(self, i):
        return self.features[self.offsets[i]:self.offsets[i + 1]]


def test_an_utterance_without_a_speaker_is_standardised_alone():
    rng = np.random.default_rng(0)
    utts = [rng.normal(3.0 * k, 1.0 + k, size=(20 + 5 * k, 4)) for k in range(4)]
    normed = speaker_normalised(_Utterances(utts, ["a", "", "a", ""]))
    for k in (1, 3):  # alone: its own mean and std
        x = np.asarray(utts[k], dtype=np.float16).astype(np.float64)
        np.testing.assert_allclose(normed[k].astype(np.float64), (x - x.mean(0)) / x.std(0), atol=4e-3)
    both = np.concatenate([np.asarray(utts[k], dtype=np.float16).astype(np.float64) for k in (0, 2)])
    np.testing.assert_allclose(normed[2].astype(np.float64),
                               (np.asarray(utts[2], dtype=np.float16) - both.mean(0)) / both.std(0), atol=4e-3)


def test_training_probing_and_cross_testing_read_the_speaker_normalised_frames(synth_mel_dir, tmp_path):
    """A speaker-normalised run equals a run without normalisation on a store whose features.npy
    holds the speaker-normalised frames: same training history, scores, probes and cross-test."""
    from ser_cl.eval.cross_corpus import cross_test
    from ser_cl.eval.run_probe import probe_fold
    from ser_cl.train.loop import train_fold

    store = FeatureStore(synth_mel_dir)
    on_disk = tmp_path / "normed-store"
    shutil.copytree(synth_mel_dir, on_disk, ignore=shutil.ignore_patterns("cache"))
    np.save(on_disk / "features.npy", speaker_normalised(store).features)
    disk_store = FeatureStore(on_disk)
    fold = make_folds(store)[0]
    cpu = torch.device("cpu")
    runs = {}
    for name, norm, data in (("speaker", "speaker", store), ("disk", "none", disk_store)):
        cfg = tiny_stage(model={"input_norm": norm}, optim={"epochs": 2},
                         augment={"enabled": True, "mixup_alpha": 0.2})
        fold_dir = tmp_path / name
        metrics = train_fold(cfg, data, fold, fold_dir, cpu, progress=False)
        history = [json.loads(line) for line in (fold_dir / "metrics.jsonl").read_text().splitlines()]
        probe = probe_fold(fold_dir, FeatureStore(data.data_dir), True, cpu)
        cross = cross_test(fold_dir, FeatureStore(data.data_dir), device="cpu")
        runs[name] = (metrics, [(h["train_loss"], h["val_loss"], h["val_ua"]) for h in history],
                      probe["svm"]["test"]["ua"], cross["ua"])
    assert runs["speaker"][1] == runs["disk"][1]
    for part in ("val", "test"):
        assert runs["speaker"][0][part]["ua"] == runs["disk"][0][part]["ua"]
    assert runs["speaker"][2:] == runs["disk"][2:]
    # ...and differs from a run on the raw frames
    raw = train_fold(tiny_stage(optim={"epochs": 2}, augment={"enabled": True, "mixup_alpha": 0.2}),
                     store, fold, tmp_path / "raw", cpu, progress=False)
    raw_history = [json.loads(line)["train_loss"] for line in (tmp_path / "raw" / "metrics.jsonl").read_text().splitlines()]
    assert raw_history != [h[0] for h in runs["speaker"][1]]


def test_predict_same_speaker_standardises_the_files_of_one_call_together(synth_corpus_dir, synth_mel_dir, tmp_path):
    from ser_cl.data.frontends.audio import load_audio
    from ser_cl.data.frontends.features import SAMPLE_RATE, compute_features
    from ser_cl.predict import predict_files
    from ser_cl.train.checkpoint import load_model
    from ser_cl.train.loop import train_fold

    store = FeatureStore(synth_mel_dir)
    train_fold(tiny_stage(model={"input_norm": "speaker"}, optim={"epochs": 1}), store, make_folds(store)[0],
               tmp_path / "fold", torch.device("cpu"), progress=False)
    wavs = sorted(synth_corpus_dir.glob("Session1/sentences/wav/*/*.wav"))[:3]
    results = predict_files(tmp_path / "fold" / "best.pt", wavs, "cpu", same_speaker=True)
    assert all(r["normalisation"] == "same-speaker (3 files)" for r in results)

    model, ckpt = load_model(tmp_path / "fold" / "best.pt", torch.device("cpu"))
    feats = [compute_features(load_audio(w, SAMPLE_RATE), ckpt["features"]).astype(np.float64) for w in wavs]
    frames = np.concatenate(feats)
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    with torch.no_grad():
        for r, f in zip(results, feats):
            x = torch.from_numpy(((f - mean) / std).astype(np.float32))[None]
            probs = torch.softmax(model(x, torch.tensor([x.shape[1]])), dim=1)[0].numpy()
            got = np.array([r["probabilities"][c] for c in ckpt["classes"]])
            np.testing.assert_allclose(got, probs, atol=2e-4)
            assert r["emotion"] == ckpt["classes"][int(np.argmax(probs))]
