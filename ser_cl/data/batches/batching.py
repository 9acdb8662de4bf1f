"""Turning variable-length utterances into padded batches, and splitting indices into batches.

The thesis (4.3.2.1) pads or crops every batch to the MEAN length of its sequences: short
utterances are not drowned in padding and long ones lose only part of their frames; it also
shows the network different lengths. For evaluation one usually pads to the MAX length instead,
so that nothing is cropped.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np
import torch

__all__ = ["collate", "batch_indices", "batch_length", "COLLATE_TARGETS"]

COLLATE_TARGETS = ("mean", "max")


def batch_length(lengths: Sequence[int], target: str = "mean") -> int:
    """The padded length T of a batch: round(mean) (half up) or max of ``lengths``; at least 1."""
    if target not in COLLATE_TARGETS:
        raise ValueError(f"collate target must be one of {COLLATE_TARGETS}, got {target!r}")
    if len(lengths) == 0:
        raise ValueError("cannot collate an empty batch")
    if target == "max":
        return max(1, int(max(lengths)))
    return max(1, int(math.floor(sum(int(n) for n in lengths) / len(lengths) + 0.5)))


def collate(
    seqs: Sequence[np.ndarray],
    target: str = "mean",
    rng: Optional[np.random.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad or crop ``seqs`` (each [T_i, F], any float dtype) to one float32 batch.

    Returns ``(x [B, T, F] float32, lengths [B] int64)``, both on the CPU, with
    T = :func:`batch_length` of the T_i and lengths = min(T_i, T). Shorter sequences are
    zero-padded at the end; longer ones are cropped to T frames, starting at a random offset
    drawn from ``rng`` when one is given (training), else at frame 0 (deterministic).

    Fast on memory-mapped float16 views: one preallocated float32 array is filled slice by slice
    (the only copy and the only dtype conversion) and wrapped with ``torch.from_numpy``.
    """
    if len(seqs) == 0:
        raise ValueError("cannot collate an empty batch")
    n_frames = [int(s.shape[0]) for s in seqs]
    n_freq = int(seqs[0].shape[1]) if seqs[0].ndim == 2 else -1
    for s in seqs:
        if s.ndim != 2 or s.shape[1] != n_freq:
            raise ValueError(f"every sequence must be [T_i, {n_freq}], got {tuple(s.shape)}")
    max_len = batch_length(n_frames, target)
    out = np.zeros((len(seqs), max_len, n_freq), dtype=np.float32)
    lengths = np.minimum(np.asarray(n_frames, dtype=np.int64), max_len)
    for i, (s, n) in enumerate(zip(seqs, n_frames)):
        start = 0
        if n > max_len and rng is not None:
            start = int(rng.integers(0, n - max_len + 1))
        out[i, : lengths[i]] = s[start : start + lengths[i]]
    return torch.from_numpy(out), torch.from_numpy(lengths)


def batch_indices(
    indices: np.ndarray,
    batch_size: int,
    shuffle: bool,
    rng: Optional[np.random.Generator],
    drop_last: bool = False,
) -> List[np.ndarray]:
    """Split ``indices`` into consecutive batches of ``batch_size`` (the last may be smaller).

    With ``shuffle`` the order is first permuted with ``rng`` (required then, so that runs are
    reproducible). ``drop_last`` drops a final batch smaller than ``batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    indices = np.asarray(indices)
    if shuffle:
        if rng is None:
            raise ValueError("batch_indices(shuffle=True) needs an np.random.Generator for reproducibility")
        indices = rng.permutation(indices)
    n_full = len(indices) // batch_size
    stop = n_full * batch_size if drop_last else len(indices)
    return [indices[i : i + batch_size] for i in range(0, stop, batch_size)]
