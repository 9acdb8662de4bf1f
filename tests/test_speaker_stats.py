"""Speaker statistics come from all of a speaker's audio, before class selection.

``prepare`` computes each speaker's per-band mean and std over every readable utterance of that
speaker, the ones whose labels the class spec drops included, and stores them
(``speaker_stats.npz``); speaker normalisation reads those. So the labels never choose which
of a speaker's recordings shape the normalisation. The corpus here makes the dropped class
loud, so leaving it out would shift the statistics by several log units.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ser_cl.data.frontends.audio import load_audio, write_wav
from ser_cl.data.frontends.features import compute_features, feature_params
from ser_cl.data.stores.normalize import speaker_normalised
from ser_cl.data.stores.prepare import prepare
from ser_cl.data.stores.store import FeatureStore

PARAMS = feature_params("mel", n_mels=16)


@pytest.fixture(scope="module")
def loud_dropped_corpus(tmp_path_factory):
    """Two speakers; neu/ang quiet, fru (dropped by the class spec) loud."""
    root = tmp_path_factory.mktemp("loud")
    rng = np.random.default_rng(0)
    rows = []
    for speaker in ("s1", "s2"):
        for k, (label, gain) in enumerate([("neu", 0.02)] * 3 + [("ang", 0.05)] * 3 + [("fru", 0.7)] * 3):
            path = root / f"{speaker}_{label}_{k}.wav"
            t = np.arange(int(16000 * rng.uniform(0.5, 0.8))) / 16000
            wave = gain * (np.sin(2 * np.pi * (150 + 40 * k) * t) + 0.3 * rng.standard_normal(t.size))
            write_wav(path, np.clip(wave, -1, 1))
            rows.append({"path": path.name, "label": label, "speaker": speaker})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path_factory.mktemp("loud-store")
    prepare(root / "manifest.csv", out, classes="neu,ang", jobs=1, progress=False, features=PARAMS)
    return root, rows, out


def _reference(root, rows, speaker, labels):
    frames = np.concatenate([compute_features(load_audio(root / r["path"]), PARAMS).astype(np.float16)
                             for r in rows if r["speaker"] == speaker and r["label"] in labels]).astype(np.float64)
    return frames.mean(axis=0), frames.std(axis=0)


def test_speaker_stats_cover_the_dropped_classes(loud_dropped_corpus):
    root, rows, out = loud_dropped_corpus
    store = FeatureStore(out)
    assert sorted(set(r["label"] for r in store.rows)) == ["ang", "neu"]  # fru is not in the store
    stats = store.speaker_band_stats
    assert stats is not None and sorted(stats) == ["s1", "s2"]
    for speaker in ("s1", "s2"):
        mean, std = _reference(root, rows, speaker, {"neu", "ang", "fru"})
        np.testing.assert_allclose(stats[speaker][0], mean, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(stats[speaker][1], std, rtol=1e-5, atol=1e-4)
        kept_mean, _ = _reference(root, rows, speaker, {"neu", "ang"})
        assert np.abs(kept_mean - mean).max() > 0.5  # the dropped class does shift them
    assert store.info["speaker_stats"]["utterances"] == len(rows)


def test_speaker_normalisation_reads_the_stored_statistics(loud_dropped_corpus):
    root, rows, out = loud_dropped_corpus
    store = FeatureStore(out)
    normed = speaker_normalised(store)
    for i in range(len(store)):
        mean, std = store.speaker_band_stats[store.speakers[i]]
        expected = (np.asarray(store[i], dtype=np.float32) - mean) / std
        np.testing.assert_allclose(np.asarray(normed[i], dtype=np.float32), expected, atol=2e-2, rtol=2e-3)


def test_a_corpus_folder_given_as_data_dir_is_named_a_corpus(loud_dropped_corpus):
    root, _, _ = loud_dropped_corpus
    with pytest.raises(FileNotFoundError) as err:
        FeatureStore(root)
    message = str(err.value)
    assert "is a corpus" in message and f"ser-cl prepare {root} --out data/{root.name}" in message
    assert f"--out {root}`" not in message and "incomplete" not in message and "\n" not in message
