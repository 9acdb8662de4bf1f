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

``speaker_normalised(store)`` is the other option (``model.input_norm = "speaker"``): every
utterance is standardised with its own speaker's per-band statistics, taken over all of that
speaker's readable recordings, whatever their label (``prepare`` stores them before class
selection; never the labels). The emotion then shows as a departure
from the speaker's own voice. For a test speaker this reads the speaker's unlabeled recordings,
as a system that enrols a speaker before judging them would; see the README ("Speaker
normalisation").
"""

from __future__ import annotations

import copy
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

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


def speaker_keys(speakers: Sequence[str]) -> List[str]:
    """Each utterance's speaker; one without a speaker ("") is a speaker of its own ("\0<index>")."""
    return [speaker if speaker else f"\0{i}" for i, speaker in enumerate(speakers)]


def _speaker_keys(store) -> list:
    return speaker_keys(store.speakers)


def grouped_stats(items, keys: Sequence[str]) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``band_stats`` of each group: key -> (mean, std) over the frames of the items ``i`` with
    ``keys[i] == key`` (``items[i]``: a [T_i, F] array, e.g. a store's utterance)."""
    groups: Dict[str, list] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return {key: band_stats(items, rows) for key, rows in groups.items()}


class VectorRows:
    """Per-utterance vectors ``[n, D]`` seen as a store of one frame per utterance (``rows[i]``
    is ``[1, D]``), with their ``speakers``: what ``speaker_stats`` reads for vectors that are
    not a store's frames (the classical baseline's openSMILE functionals)."""

    def __init__(self, vectors: np.ndarray, speakers: Sequence[str]):
        self.vectors = np.asarray(vectors)
        self.speakers = list(speakers)

    def __len__(self) -> int:
        return len(self.vectors)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.vectors[i : i + 1]


def speaker_stats(store, recorded: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]] = None
                  ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Per-band (mean, std) of every speaker of ``store`` (``_speaker_keys``).

    Where the store carries statistics that ``prepare`` took over all of a speaker's readable
    audio, before class selection (``store.speaker_band_stats``; or ``recorded``, taken the same
    way over other features of that audio), those are used, so the labels never choose which of
    a speaker's recordings shape them; otherwise (a store prepared before that, an utterance
    without a speaker) they are taken over the speaker's utterances in the store."""
    stored = (getattr(store, "speaker_band_stats", None) if recorded is None else recorded) or {}
    keys = _speaker_keys(store)
    missing = [i for i, key in enumerate(keys) if key not in stored]
    computed = grouped_stats(_Subset(store, missing), [keys[i] for i in missing]) if missing else {}
    return {key: stored[key] if key in stored else computed[key] for key in dict.fromkeys(keys)}


class _Subset:
    """``store`` restricted to ``rows`` (``grouped_stats`` reads ``subset[k]``)."""

    def __init__(self, store, rows: Sequence[int]):
        self.store, self.rows = store, list(rows)

    def __getitem__(self, k: int) -> np.ndarray:
        return self.store[self.rows[k]]


def typical_speaker_stats(store, rows: Iterable[int]) -> Tuple[np.ndarray, np.ndarray]:
    """The statistics of a typical speaker among the speakers of utterances ``rows`` (a fold's
    training rows): the mean of their per-band means and the root mean of their per-band
    variances (``speaker_stats``), each speaker weighted alike. A speaker-normalised model's
    checkpoint carries them, for ``predict`` to fall back on for a recording whose speaker it
    has no other recordings of. Rows of training copies (``data.train_copies``: a store with
    copies puts them past ``n_target``; their speakers are ``<copy store>:<speaker>``) are not
    speakers of the fold: they are left out."""
    keys = _speaker_keys(store)
    n_target = getattr(store, "n_target", len(store))
    wanted = sorted({keys[i] for i in np.asarray(list(rows)).reshape(-1).tolist() if i < n_target})
    if not wanted:
        raise ValueError("typical_speaker_stats needs at least one utterance")
    stats = speaker_stats(store)
    means = np.stack([stats[k][0] for k in wanted]).astype(np.float64)
    variances = np.square(np.stack([stats[k][1] for k in wanted]).astype(np.float64))
    return means.mean(axis=0).astype(np.float32), np.sqrt(variances.mean(axis=0)).astype(np.float32)


def speaker_normalised(store):
    """A copy of ``store`` whose frames are standardised per speaker (``speaker_stats``), held in
    memory in the store's dtype (float16; float32 for functionals); every other attribute is shared with ``store``.
    The copy is made once per store object and cached on it."""
    cached = getattr(store, "_speaker_normalised", None)
    if cached is not None:
        return cached
    stats = speaker_stats(store)
    features = np.empty(store.features.shape, dtype=store.features.dtype)
    for i, key in enumerate(_speaker_keys(store)):
        mean, std = stats[key]
        lo, hi = int(store.offsets[i]), int(store.offsets[i + 1])
        features[lo:hi] = (np.asarray(store.features[lo:hi], dtype=np.float32) - mean) / std
    out = copy.copy(store)
    out.features = features
    store._speaker_normalised = out
    return out


def mean_std(frames: np.ndarray) -> np.ndarray:
    """``[T, F]`` frames -> ``[2F]``: each band's mean over the frames, then its (population)
    standard deviation: the mean + std pooling of ``pooled`` and of the baseline's store probe."""
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)])


def pooled(store):
    """A copy of ``store`` with one frame per utterance: the mean over the utterance's frames of
    each band, then their standard deviations (population), ``[1, 2F]`` float32. Its speakers'
    statistics are taken over these vectors (not prepare's, which are over frames). Cached."""
    cached = getattr(store, "_pooled", None)
    if cached is not None:
        return cached
    n_freq = store.features.shape[1]
    features = np.empty((len(store.offsets) - 1, 2 * n_freq), dtype=np.float32)
    for i in range(len(features)):
        features[i] = mean_std(np.asarray(store.features[int(store.offsets[i]):int(store.offsets[i + 1])],
                                          dtype=np.float32))
    out = copy.copy(store)
    out.features, out.offsets = features, np.arange(len(features) + 1, dtype=np.int64)
    out.lengths = np.ones(len(features), dtype=np.int64)
    out.n_freq = 2 * n_freq
    out._speaker_band_stats = None  # frame statistics do not describe pooled vectors
    if "speaker_band_stats" in vars(out):  # a store of several (ser_cl.data.batches.pool) holds them as is
        out.speaker_band_stats = None
    for name in ("_speaker_normalised", "_pooled"):
        out.__dict__.pop(name, None)
    store._pooled = out
    return out


def model_inputs(store, input_norm: str):
    """The store a model with ``ModelConfig.input_norm`` = ``input_norm`` reads: the
    speaker-normalised copy for "speaker", its pooled vectors speaker-normalised for
    "pooled_speaker", else ``store`` itself (the model normalises)."""
    if input_norm == "pooled_speaker":
        return speaker_normalised(pooled(store))
    return speaker_normalised(store) if input_norm == "speaker" else store
