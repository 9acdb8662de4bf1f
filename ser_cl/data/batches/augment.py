"""SpecAugment time and frequency masking (thesis 4.4.2.4, after Park et al. 2019).

Per sample: one time mask of w_t consecutive frames, w_t uniform in {0, ..., floor(frac * L)}
(L = the sample's valid length), placed uniformly inside the valid part; and one frequency mask
of w_f consecutive bins, w_f uniform in {0, ..., freq_mask_width}, placed uniformly within the
bins. The frequency mask covers only the valid frames, so the padding is left as it was.

Masked values are set to ZERO, as the thesis does ("zero-ed out"). Note the features are
unnormalised log-spectrograms, so 0 is not their mean (Park et al. mask normalised features,
where 0 is the mean); we keep zero to reproduce the thesis. A model that standardises its input
with fixed per-bin statistics (``input_norm = "global"``) passes ``fill`` = those means instead.

Beyond the thesis, for small corpora: ``view_crops`` (the two views of a multi-view batch cut
from the utterance at independent offsets, so that a positive pair is two segments of one
recording, as in COLA (Saeed et al. 2021) and BYOL-A (Niizumi et al. 2021), not one segment
masked twice), ``time_stretch`` (speed perturbation of a whole batch on
the features: linear interpolation along time, each row stretched within its own frames) and
``mixup`` (mixed inputs, soft targets).

Everything is vectorised on the input's device (masks from ``arange`` comparisons, no loop over
the batch); the random numbers come from ``generator`` when one is given (reproducible).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch

from ser_cl.data.batches.transfer import host_to_device

__all__ = ["spec_augment", "two_views", "view_crops", "time_stretch", "mixup"]


def _uniform_int(u: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Map u ~ U[0, 1) to an integer uniform in {0, ..., high} (elementwise, high >= 0)."""
    return torch.minimum(torch.floor(u * (high + 1).to(u.dtype)).to(torch.int64), high)


def spec_augment(
    x: torch.Tensor,
    lengths: torch.Tensor,
    time_mask_frac: float = 0.05,
    freq_mask_width: int = 10,
    generator: Optional[torch.Generator] = None,
    fill: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Return a masked copy of ``x`` [B, T, F]; ``x`` itself is not modified.

    ``lengths`` [B] are the valid frames of each row (clamped to T). The random draws are made on
    the generator's device (``x``'s device without one) and moved to ``x``'s device. ``fill``
    [F]: the masked value per bin instead of zero (e.g. the bins' mean, when the model
    standardises its input with fixed statistics, so that a mask reads as "average" there too).
    """
    if x.dim() != 3:
        raise ValueError(f"expected x of shape [B, T, F], got {tuple(x.shape)}")
    if time_mask_frac < 0 or freq_mask_width < 0:
        raise ValueError("time_mask_frac and freq_mask_width must be >= 0")
    batch, max_len, n_freq = x.shape
    device = x.device
    draw_device = generator.device if generator is not None else device
    u = torch.rand(batch, 4, generator=generator, device=draw_device, dtype=torch.float64)
    if u.device != device:  # a generator on another device than x
        u = u.to(device)
    lengths = torch.as_tensor(lengths)
    if lengths.device != device:  # give them on x's device to keep the step free of copies
        lengths = lengths.to(device)
    lengths = lengths.to(torch.int64).clamp(0, max_len)

    # Time mask: width in [0, floor(frac * L)], start in [0, L - width].
    max_time_width = torch.floor(lengths.to(torch.float64) * time_mask_frac).to(torch.int64)
    time_width = _uniform_int(u[:, 0], max_time_width)
    time_start = _uniform_int(u[:, 1], lengths - time_width)
    # Frequency mask: width in [0, min(W, F)], start in [0, F - width].
    max_freq_width = torch.full_like(lengths, min(int(freq_mask_width), n_freq))
    freq_width = _uniform_int(u[:, 2], max_freq_width)
    freq_start = _uniform_int(u[:, 3], n_freq - freq_width)

    t = torch.arange(max_len, device=device)[None, :]
    f = torch.arange(n_freq, device=device)[None, :]
    valid = t < lengths[:, None]  # [B, T]
    time_mask = (t >= time_start[:, None]) & (t < (time_start + time_width)[:, None])  # [B, T]
    freq_mask = (f >= freq_start[:, None]) & (f < (freq_start + freq_width)[:, None])  # [B, F]
    mask = (time_mask[:, :, None] | freq_mask[:, None, :]) & valid[:, :, None]
    if fill is not None:
        return torch.where(mask, fill.to(x.dtype)[None, None, :], x)
    return x.masked_fill(mask, 0.0)


def view_crops(x: torch.Tensor, lengths: torch.Tensor, view_frames: int,
               generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Two crops of every row of ``x`` [B, T, F]: rows 2k and 2k+1 of the result hold
    x[k, s : s + m] with m = min(L_k, V), V = min(view_frames, T), each with its own offset s
    uniform in {0, ..., L_k - m} (L_k = the row's valid length). Returns ([2B, V, F], the
    lengths m on the device); frames beyond m are zero. The lengths keep the order of ``lengths``
    (the host can compute them: ``min(L, V)``), so a batch sorted longest first stays sorted.
    """
    if view_frames < 1:
        raise ValueError(f"view_frames must be >= 1, got {view_frames}")
    batch, max_len, n_freq = x.shape
    device = x.device
    crop = min(int(view_frames), max_len)
    draw_device = generator.device if generator is not None else device
    u = torch.rand(2 * batch, generator=generator, device=draw_device, dtype=torch.float64)
    if u.device != device:
        u = u.to(device)
    lengths2 = torch.as_tensor(lengths).to(device=device, dtype=torch.int64).clamp(0, max_len).repeat_interleave(2)
    new_lengths = lengths2.clamp(max=crop)
    start = _uniform_int(u, lengths2 - new_lengths)
    t = torch.arange(crop, device=device)[None, :]
    frame = (start[:, None] + t).clamp(max=max_len - 1)  # [2B, V]
    x2 = x.repeat_interleave(2, dim=0).gather(1, frame[:, :, None].expand(-1, -1, n_freq))
    return x2.masked_fill(~(t < new_lengths[:, None])[:, :, None], 0.0), new_lengths


def two_views(x: torch.Tensor, lengths: torch.Tensor, view_frames: int = 0,
              **aug: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """The thesis' multi-view batch: rows 2k and 2k+1 are two independent augmentations of x[k].

    ``view_frames`` > 0 (beyond the thesis): each view is first cut from x[k] at its own offset
    (:func:`view_crops`). ``aug`` goes to :func:`spec_augment`. Repeat the labels with
    ``labels.repeat_interleave(2)``.
    """
    if view_frames:
        x2, lengths2 = view_crops(x, lengths, view_frames, aug.get("generator"))
    else:
        x2 = x.repeat_interleave(2, dim=0)
        lengths2 = lengths.repeat_interleave(2, dim=0)
    return spec_augment(x2, lengths2, **aug), lengths2


def time_stretch(x: torch.Tensor, lengths: np.ndarray, rate: float) -> Tuple[torch.Tensor, np.ndarray]:
    """Speed perturbation on the features: every row resampled along time by ``rate`` (linear
    interpolation; rate 1.1 = 10% faster = 10% fewer frames). Returns (x', lengths') with
    lengths' = max(1, round(lengths / rate)) on the host; frames beyond them are zero.
    """
    if rate <= 0:
        raise ValueError(f"time-stretch rate must be > 0, got {rate}")
    batch, max_len, n_bins = x.shape
    new_len = max(1, int(round(max_len / rate)))
    lengths = np.asarray(lengths, dtype=np.int64)
    new_lengths = np.minimum(np.maximum(1, np.round(lengths / rate).astype(np.int64)), new_len)
    # Each row's padding is replaced by its last valid frame first, so that the frames sampled
    # between frame L-1 and L (slowing down) interpolate the utterance, not its zero padding.
    last = host_to_device(np.maximum(lengths, 1) - 1, x.device)
    lengths_t = host_to_device(new_lengths, x.device)
    frame = torch.minimum(torch.arange(max_len, device=x.device)[None, :], last[:, None])
    x = x.gather(1, frame[:, :, None].expand(batch, max_len, n_bins))
    y = torch.nn.functional.interpolate(x.transpose(1, 2), size=new_len, mode="linear", align_corners=False)
    y = y.transpose(1, 2)
    valid = torch.arange(new_len, device=x.device)[None, :] < lengths_t[:, None]
    return y.masked_fill(~valid[:, :, None], 0.0), new_lengths


def mixup(x: torch.Tensor, lengths: np.ndarray, labels: torch.Tensor, n_classes: int, lam: float,
          perm: torch.Tensor, perm_host: np.ndarray) -> Tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """mixup (Zhang et al. 2018): x' = lam x + (1 - lam) x[perm], soft targets likewise.

    Rows keep the longer of the two lengths (the shorter is zero-padded, as in the batch).
    Returns (x', lengths', targets [B, n_classes] float) for a cross-entropy with soft targets.
    """
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(x.dtype)
    x_mix = lam * x + (1.0 - lam) * x[perm]
    targets = lam * onehot + (1.0 - lam) * onehot[perm]
    return x_mix, np.maximum(np.asarray(lengths), np.asarray(lengths)[perm_host]), targets
