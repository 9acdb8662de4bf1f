"""Per-band feature statistics for normalisation without leakage.

``band_stats(store, indices)`` gives the mean and standard deviation of every feature band
(spectrogram bin or mel band) over ALL frames of the given utterances, typically a fold's
training speakers only, so that nothing about the validation or test speakers enters the
normalisation. The model keeps them (as buffers) and applies ``(x - mean) / std`` in
training and in ``predict`` alike.

The store is streamed utterance by utterance (``store[i]`` is a view of the memory-mapped
float16 features), never concatenated: each utterance's mean and sum of squared deviations
are computed in float64 and merged with Chan et al.'s pairwise update, which is exact in
exact arithmetic and does not suffer the cancellation of sum(x^2) / n - mean^2.
"""

from __future__ import annotations

from typing import Iterable, Tuple

import numpy as np

STD_FLOOR = 1e-5


def band_stats(store, indices: Iterable[int], std_floor: float = STD_FLOOR) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per band over all frames of utterances ``indices`` of ``store``.

    ``store``: a ``FeatureStore`` (or anything where ``store[i]`` is a [T_i, F] array).
    ``indices``: utterance indices (an index repeated counts twice). Returns
    ``(mean [F] float32, std [F] float32)``; std is the population std (ddof 0) over frames,
    floored at ``std_floor`` so that dividing by it is safe for constant bands.
    Raises ``ValueError`` when the utterances hold no frame at all.
    """
    idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices).reshape(-1)
    if idx.size == 0:
        raise ValueError("band_stats needs at least one utterance index, got none")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"band_stats needs integer utterance indices, got dtype {idx.dtype}")
    count = 0
    mean = None
    m2 = None  # sum of squared deviations from the running mean, per band
    for i in idx.tolist():
        x = np.asarray(store[i], dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"utterance {i} has features of shape {x.shape}, expected [frames, bands]")
        n = x.shape[0]
        if mean is None:
            mean = np.zeros(x.shape[1])
            m2 = np.zeros(x.shape[1])
        elif x.shape[1] != mean.shape[0]:
            raise ValueError(f"utterance {i} has {x.shape[1]} bands, earlier ones {mean.shape[0]}")
        if n == 0:
            continue
        u_mean = x.mean(axis=0)
        u_m2 = np.square(x - u_mean).sum(axis=0)
        total = count + n
        delta = u_mean - mean
        mean = mean + delta * (n / total)
        m2 = m2 + u_m2 + np.square(delta) * (count * n / total)
        count = total
    if count == 0:
        raise ValueError(f"band_stats: the {idx.size} utterance(s) given hold no frame")
    std = np.sqrt(m2 / count)
    return mean.astype(np.float32), np.maximum(std, std_floor).astype(np.float32)
