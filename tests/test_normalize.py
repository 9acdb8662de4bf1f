"""``band_stats``: per-band mean/std against numpy on the concatenated frames, and no leakage
from the utterances it is not given (test speakers)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.normalize import band_stats
from ser_cl.data.stores.store import FeatureStore


def _numpy_stats(store, indices):
    frames = np.concatenate([np.asarray(store[i], dtype=np.float64) for i in indices])
    return frames.mean(axis=0), frames.std(axis=0)


def test_matches_numpy_on_a_fold(synth_data_dir):
    store = FeatureStore(synth_data_dir)
    fold = make_folds(store)[0]
    mean, std = band_stats(store, fold.train)
    ref_mean, ref_std = _numpy_stats(store, fold.train)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (store.n_freq,)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std, ref_std, rtol=1e-6, atol=1e-6)


def test_streaming_merge_is_exact_for_awkward_inputs():
    """Utterances of very different lengths (one empty), a large offset (where sum(x^2)/n - mean^2
    would cancel), a constant band (std floored) and a repeated index (counted twice)."""
    rng = np.random.default_rng(0)
    utts = [1e5 + rng.standard_normal((n, 3)) * [1e-2, 1.0, 0.0] for n in (1, 500, 0, 7, 64)]
    indices = [0, 1, 2, 3, 4, 3]
    mean, std = band_stats(utts, indices)
    frames = np.concatenate([utts[i] for i in indices])
    np.testing.assert_allclose(mean, frames.mean(axis=0).astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(std[:2], frames.std(axis=0)[:2], rtol=1e-5)
    assert std[2] == np.float32(1e-5)  # constant band: the floor, not 0
    with pytest.raises(ValueError, match="no frame"):
        band_stats(utts, [2])
    with pytest.raises(ValueError, match="at least one"):
        band_stats(utts, [])


def test_no_leakage_from_test_speakers(synth_data_dir, tmp_path):
    store = FeatureStore(synth_data_dir)
    fold = make_folds(store)[3]
    test_speakers = set(fold.test_speakers)
    assert test_speakers and not test_speakers & {store.speakers[i] for i in fold.train}
    mean, std = band_stats(store, fold.train)

    # including the test speakers changes the statistics...
    with_test = np.concatenate([fold.train, fold.test])
    leaky_mean, leaky_std = band_stats(store, with_test)
    assert np.abs(leaky_mean - mean).max() > 1e-2 and np.abs(leaky_std - std).max() > 1e-2

    # ...but changing the test speakers' frames (x10) cannot change the training statistics
    copy = tmp_path / "copy"
    shutil.copytree(synth_data_dir, copy, ignore=shutil.ignore_patterns("cache"))
    feats = np.load(copy / "features.npy", mmap_mode="r+")
    for i in fold.test:
        feats[store.offsets[i] : store.offsets[i + 1]] *= 10
    feats.flush()
    del feats
    changed = FeatureStore(copy)
    assert not np.array_equal(np.asarray(changed[int(fold.test[0])]), np.asarray(store[int(fold.test[0])]))
    mean2, std2 = band_stats(changed, fold.train)
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(std2, std)
    leaky_mean2, _ = band_stats(changed, with_test)
    assert np.abs(leaky_mean2 - leaky_mean).max() > 1.0  # the copy really differs where it was changed
