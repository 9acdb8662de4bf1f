"""collate (pad/crop to the batch's mean or max length) and batch_indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_cl.data.batches.batching import batch_indices, batch_length, collate


def _seqs(lengths, n_freq=7, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, n_freq)).astype(np.float16) for n in lengths]


def test_collate_mean_pads_and_crops_from_start():
    seqs = _seqs([3, 10, 5])  # mean 6
    x, lengths = collate(seqs)
    assert x.dtype == torch.float32 and lengths.dtype == torch.int64
    assert tuple(x.shape) == (3, 6, 7)
    assert lengths.tolist() == [3, 6, 5]
    for i, s in enumerate(seqs):
        n = lengths[i].item()
        np.testing.assert_array_equal(x[i, :n].numpy(), s[:n].astype(np.float32))
        assert torch.all(x[i, n:] == 0)


def test_collate_max_keeps_everything():
    seqs = _seqs([3, 10, 5])
    x, lengths = collate(seqs, target="max")
    assert tuple(x.shape) == (3, 10, 7)
    assert lengths.tolist() == [3, 10, 5]
    np.testing.assert_array_equal(x[1].numpy(), seqs[1].astype(np.float32))


def test_batch_length_rounds_mean_half_up():
    assert batch_length([1, 2]) == 2  # 1.5 -> 2
    assert batch_length([1, 1, 2]) == 1  # 1.33 -> 1
    assert batch_length([4, 5], "max") == 5
    with pytest.raises(ValueError):
        batch_length([1], "median")
    with pytest.raises(ValueError):
        collate([])


def test_collate_random_crop_is_a_contiguous_window_and_reproducible():
    seqs = _seqs([2, 30])  # mean 16: the long one is cropped
    offsets = set()
    for seed in range(20):
        x, lengths = collate(seqs, rng=np.random.default_rng(seed))
        x_again, _ = collate(seqs, rng=np.random.default_rng(seed))
        assert torch.equal(x, x_again)
        long = seqs[1].astype(np.float32)
        matches = [o for o in range(30 - 16 + 1) if np.array_equal(long[o : o + 16], x[1].numpy())]
        assert len(matches) == 1
        offsets.add(matches[0])
        np.testing.assert_array_equal(x[0, :2].numpy(), seqs[0].astype(np.float32))  # short one untouched
    assert len(offsets) > 1  # really random
    assert min(offsets) >= 0 and max(offsets) <= 14


def test_collate_accepts_memmapped_float16_views(tmp_path):
    data = np.arange(40 * 5, dtype=np.float16).reshape(40, 5)
    np.save(tmp_path / "f.npy", data)
    mm = np.load(tmp_path / "f.npy", mmap_mode="r")
    x, lengths = collate([mm[0:10], mm[10:14], mm[14:40]], target="max")
    assert lengths.tolist() == [10, 4, 26]
    np.testing.assert_array_equal(x[2, :26].numpy(), data[14:40].astype(np.float32))


def test_collate_rejects_mismatched_feature_sizes():
    with pytest.raises(ValueError):
        collate([np.zeros((3, 4)), np.zeros((3, 5))])


def test_batch_indices_covers_all_in_order_without_shuffle():
    idx = np.arange(10) * 3
    batches = batch_indices(idx, 4, shuffle=False, rng=None)
    assert [b.tolist() for b in batches] == [[0, 3, 6, 9], [12, 15, 18, 21], [24, 27]]
    assert [len(b) for b in batch_indices(idx, 4, False, None, drop_last=True)] == [4, 4]
    assert batch_indices(np.arange(0), 4, False, None) == []


def test_batch_indices_shuffles_reproducibly_with_the_generator():
    idx = np.arange(100)
    a = batch_indices(idx, 32, shuffle=True, rng=np.random.default_rng(1))
    b = batch_indices(idx, 32, shuffle=True, rng=np.random.default_rng(1))
    c = batch_indices(idx, 32, shuffle=True, rng=np.random.default_rng(2))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))
    assert sorted(np.concatenate(a).tolist()) == list(range(100))
    assert not np.array_equal(np.concatenate(a), idx)
    with pytest.raises(ValueError):
        batch_indices(idx, 32, shuffle=True, rng=None)
    with pytest.raises(ValueError):
        batch_indices(idx, 0, shuffle=False, rng=None)
