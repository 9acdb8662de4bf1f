"""SpecAugment masking (thesis: one time mask <= 5% of the length, one frequency mask <= 10 bins)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ser_cl.data.batches.augment import spec_augment, two_views


def _batch(lengths, max_len=None, n_freq=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    max_len = max_len or max(lengths)
    x = torch.rand(len(lengths), max_len, n_freq, generator=g) + 1.0  # no natural zeros
    lengths = torch.tensor(lengths)
    valid = torch.arange(max_len)[None, :] < lengths[:, None]
    x = x * valid[:, :, None]  # zero padding, as collate makes it
    return x, lengths


def _masked_runs(row_zero):
    """(start, width) of the zeroed run in a 1-D bool array; asserts it is contiguous."""
    where = np.flatnonzero(row_zero)
    if len(where) == 0:
        return 0, 0
    assert where[-1] - where[0] + 1 == len(where), f"mask not contiguous: {where}"
    return int(where[0]), len(where)


def test_mask_widths_and_positions_within_bounds():
    lengths = [200, 100, 61, 20, 19, 7, 1] * 20
    x, lens = _batch(lengths, max_len=220)
    out = spec_augment(x, lens, time_mask_frac=0.05, freq_mask_width=10,
                       generator=torch.Generator().manual_seed(3))
    time_widths, freq_widths = [], []
    for i, n in enumerate(lengths):
        valid = out[i, :n].numpy()
        zero = valid == 0
        # time mask = frames zero in every bin; freq mask = bins zero in every valid frame
        t_start, t_width = _masked_runs(zero.all(axis=1))
        f_start, f_width = _masked_runs(zero.all(axis=0))
        assert 0 <= t_width <= math.floor(0.05 * n)
        assert t_start + t_width <= n
        assert 0 <= f_width <= 10 and f_start + f_width <= 40
        # nothing else is zeroed, and unmasked values are unchanged
        expected = np.zeros_like(zero)
        expected[t_start : t_start + t_width, :] = True
        expected[:, f_start : f_start + f_width] = True
        np.testing.assert_array_equal(zero, expected)
        np.testing.assert_array_equal(valid[~zero], x[i, :n].numpy()[~zero])
        # padding untouched
        assert torch.equal(out[i, n:], x[i, n:])
        time_widths.append(t_width)
        freq_widths.append(f_width)
    # the full ranges are used (deterministic with the fixed generator)
    assert max(freq_widths) == 10 and min(freq_widths) == 0
    assert max(w for w, n in zip(time_widths, lengths) if n == 200) == 10


def test_padding_untouched_even_if_nonzero_and_input_not_modified():
    x, lens = _batch([30, 12], max_len=30)
    x[1, 12:] = 5.0  # odd padding values must survive
    before = x.clone()
    out = spec_augment(x, lens, freq_mask_width=40, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, before)
    assert torch.equal(out[1, 12:], before[1, 12:])
    assert out.data_ptr() != x.data_ptr()


def test_deterministic_with_generator():
    x, lens = _batch([50, 40, 30])
    a = spec_augment(x, lens, generator=torch.Generator().manual_seed(7))
    b = spec_augment(x, lens, generator=torch.Generator().manual_seed(7))
    c = spec_augment(x, lens, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_dtype_and_zero_width_options():
    x, lens = _batch([50, 40])
    out = spec_augment(x.to(torch.bfloat16), lens, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.bfloat16
    same = spec_augment(x, lens, time_mask_frac=0.0, freq_mask_width=0)
    assert torch.equal(same, x)


def test_two_views_layout():
    x, lens = _batch([80, 60, 40])
    x2, lens2 = two_views(x, lens, generator=torch.Generator().manual_seed(1), freq_mask_width=10)
    assert tuple(x2.shape) == (6, 80, 40)
    assert lens2.tolist() == [80, 80, 60, 60, 40, 40]
    for k in range(3):
        for row in (2 * k, 2 * k + 1):
            unmasked = x2[row] != 0
            assert torch.equal(x2[row][unmasked], x[k][unmasked])  # a view of sample k
    # the two views of a sample are augmented independently
    assert any(not torch.equal(x2[2 * k], x2[2 * k + 1]) for k in range(3))
    labels = torch.tensor([0, 3, 1])
    assert labels.repeat_interleave(2).tolist() == [0, 0, 3, 3, 1, 1]


def test_time_stretch_resamples_linearly_and_scales_lengths():
    from ser_cl.data.batches.augment import time_stretch

    T = 40
    ramp = torch.arange(T, dtype=torch.float32)[None, :, None].repeat(2, 1, 3)
    ramp[1, 30:] = 0
    same, same_len = time_stretch(ramp, np.array([40, 30]), 1.0)
    torch.testing.assert_close(same, ramp)
    assert same_len.tolist() == [40, 30]
    y, lengths = time_stretch(ramp, np.array([40, 30]), 1.25)  # 25% faster: 32 frames
    assert y.shape == (2, 32, 3) and lengths.tolist() == [32, 24]
    # linear interpolation with half-pixel centres (PyTorch's align_corners=False), by numpy
    src = np.clip((np.arange(32) + 0.5) * 1.25 - 0.5, 0, T - 1)
    np.testing.assert_allclose(y[0, :, 0].numpy(), np.interp(src, np.arange(T), np.arange(T, dtype=float)), atol=1e-5)
    assert torch.all(y[1, 24:] == 0)


def test_mixup_mixes_inputs_and_targets_with_the_same_lambda():
    from ser_cl.data.batches.augment import mixup

    x = torch.randn(4, 10, 5)
    labels = torch.tensor([0, 1, 2, 1])
    perm_host = np.array([2, 0, 3, 1])
    xm, lengths, targets = mixup(x, np.array([10, 7, 4, 9]), labels, 3, 0.7, torch.from_numpy(perm_host), perm_host)
    torch.testing.assert_close(xm[1], 0.7 * x[1] + 0.3 * x[0])
    torch.testing.assert_close(targets[0], torch.tensor([0.7, 0.0, 0.3]))
    torch.testing.assert_close(targets.sum(1), torch.ones(4))
    assert lengths.tolist() == [10, 10, 9, 9]


def test_masked_value_can_be_the_bins_mean():
    x = torch.zeros(3, 50, 8) + 5.0
    fill = torch.arange(8, dtype=torch.float32)
    y = spec_augment(x, torch.tensor([50, 50, 50]), time_mask_frac=0.2, freq_mask_width=4,
                     generator=torch.Generator().manual_seed(1), fill=fill)
    masked = y != 5.0
    assert masked.any()
    assert torch.equal(y[masked], fill.expand_as(y)[masked])


def test_time_stretch_never_blends_a_short_row_with_its_padding():
    # Slowing down (rate < 1) samples the last valid frames between frame L-1 and L; L is padding.
    # A row of constant value must stay that constant on every frame it keeps.
    from ser_cl.data.batches.augment import time_stretch

    x = torch.zeros(3, 50, 4)
    x[0] = 1.0
    x[1, :31] = 2.0
    x[2, :7] = -3.0
    lengths = np.array([50, 31, 7])
    for rate in (0.8, 0.9, 1.1):
        y, new_lengths = time_stretch(x, lengths, rate)
        for row, value in enumerate((1.0, 2.0, -3.0)):
            kept = y[row, : new_lengths[row]]
            torch.testing.assert_close(kept, torch.full_like(kept, value), msg=f"rate {rate}, row {row}")
            assert torch.all(y[row, new_lengths[row]:] == 0)


def test_view_crops_are_segments_of_the_row_at_independent_offsets():
    from ser_cl.data.batches.augment import view_crops

    torch.manual_seed(0)
    lengths = torch.tensor([40, 31, 12, 0])
    x = torch.randn(4, 40, 3)
    x[torch.arange(40)[None, :] >= lengths[:, None]] = 7.0  # padding that must never be cut into a view
    gen = torch.Generator().manual_seed(3)
    views, new_lengths = view_crops(x, lengths, view_frames=15, generator=gen)
    assert views.shape == (8, 15, 3)
    assert new_lengths.tolist() == [15, 15, 15, 15, 12, 12, 0, 0]  # min(L, V), rows 2k, 2k+1 from x[k]
    offsets = {}
    for row in range(8):
        k, m = row // 2, int(new_lengths[row])
        found = [s for s in range(int(lengths[k]) - m + 1) if torch.equal(views[row, :m], x[k, s:s + m])]
        assert found, f"view {row} is no segment of row {k}"
        offsets[row] = found[0]
        assert torch.all(views[row, m:] == 0)
    assert offsets[4] == offsets[5] == 0  # a row shorter than V is taken whole by both views
    # the offsets are independent draws: over many batches every start of row 0 turns up,
    # for both views, with the two views of one row apart in most batches
    starts, apart = set(), 0
    for _ in range(400):
        v, _ = view_crops(x[:1], lengths[:1], view_frames=15, generator=gen)
        s = [next(o for o in range(26) if torch.equal(v[i, :15], x[0, o:o + 15])) for i in (0, 1)]
        starts.update(s)
        apart += s[0] != s[1]
    assert starts == set(range(26)) and apart > 300
    # a crop longer than the batch is the batch
    whole, whole_lengths = view_crops(x, lengths, view_frames=100, generator=gen)
    assert torch.equal(whole[::2], torch.where(torch.arange(40)[None, :, None] < lengths[:, None, None], x, 0.0))
    assert whole_lengths.tolist() == [40, 40, 31, 31, 12, 12, 0, 0]


def test_the_loop_knows_the_view_lengths_on_the_host():
    from conftest import tiny_stage
    from ser_cl.data.batches.loader import Batch
    from ser_cl.train.loop import _augment

    cfg = tiny_stage(stage="pretrain", loss={"name": "selfsup_ntxent"},
                     augment={"enabled": True, "multiview": True, "view_frames": 20})
    lengths = np.array([50, 30, 10])
    x = torch.randn(3, 50, 8)
    batch = Batch(x=x, lengths=lengths, lengths_dev=torch.as_tensor(lengths), labels=torch.tensor([0, 1, 2]))
    views, host, dev, labels = _augment(batch, cfg, torch.Generator().manual_seed(0))
    assert views.shape == (6, 20, 8) and host.tolist() == dev.tolist() == [20, 20, 20, 20, 10, 10]
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
