"""Pretraining pools: several feature stores read as one training set by self-supervised
pretraining, with the target corpus' held-out speakers kept out by construction.

Terms: the *target* is ``data.dir``, the labelled corpus whose folds the encoder is fine-tuned
and tested on; the *pool* is ``data.pool``, the stores that pretraining reads (unlabelled ones
too; the target itself may be one of them, for its training speakers).

Leakage rule. A pool utterance *is of the target* when it is one of the target's recordings --
the same audio file (resolved path) or the same frames (an 8-byte hash of its features: the
front-ends must be equal, so a copy of the file gives the same frames) -- or when its store is
the same named corpus (not ``csv``/``unlabeled``, whose speaker ids mean nothing across stores)
and its speaker is one of the target's speakers.

- No pool utterance is of the target: pretraining runs once (run folder ``pool``) and serves
  every fold; it validates on ``pool_val_fraction`` of the pool's speakers (of its utterances
  when the speakers are unknown).
- Otherwise it runs per fold, and each fold's pool leaves out every utterance of that fold's
  validation and test speakers; it validates on the fold's validation speakers, like any
  per-fold pretraining.

Either way the run records what it trained on (``seen.json``: stores, speakers and counts;
``trained_keys.npy``: the frame hashes), and fine-tuning refuses a fold whose validation or
test utterances are among them (``check_not_seen``).

The pooled frames are copied into memory (float16, float32 for functionals): a pool should fit in RAM.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..corpora import GENERIC_CORPORA
from ..splits.folds import Fold
from ..stores.store import FeatureStore

__all__ = ["PooledStore", "PoolUnit", "utterance_keys", "pool_units", "check_not_seen", "check_source_fold", "SEEN_FILE", "KEYS_FILE"]

SEEN_FILE = "seen.json"
KEYS_FILE = "trained_keys.npy"
POOL_FOLD = "pool"  # the run folder (and run.json "folds") of a pool pretraining that serves every fold


def serves_every_fold(run_info: dict) -> bool:
    """Whether a run.json is a pool pretraining's that serves every fold (one run folder ``pool``)."""
    pool = run_info.get("pool")
    return isinstance(pool, dict) and pool.get("per_fold") is False


def utterance_keys(store, indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """uint64 hash of each utterance's frames (blake2b, 8 bytes): equal audio, equal key."""
    rows = range(len(store)) if indices is None else indices
    out = np.empty(len(rows), dtype=np.uint64)
    for k, i in enumerate(rows):
        frames = np.ascontiguousarray(store[int(i)])
        digest = hashlib.blake2b(frames.tobytes(), digest_size=8, person=b"ser-cl-utt")
        out[k] = np.frombuffer(digest.digest(), dtype=np.uint64)[0]
    return out


class PooledStore:
    """Rows of several stores as one store (the ``FeatureStore`` attributes training reads).

    ``parts``: (store, row indices) pairs, in order. Ids are ``<store name>:<id>`` and speakers
    ``<store name>:<speaker>`` so that they stay unique (a part named "" keeps its own). Labels
    are all -1 (a pretraining pool only serves self-supervised losses) unless ``labels`` gives
    each row's class index (``ser_cl.data.batches.copies``).
    """

    def __init__(self, parts: Sequence[Tuple[FeatureStore, np.ndarray]], names: Sequence[str],
                 classes: Sequence[str], info: dict, labels: Optional[np.ndarray] = None):
        lengths = np.concatenate([s.lengths[rows] for s, rows in parts]).astype(np.int64)
        self.offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.lengths = lengths
        self.n_freq = int(parts[0][0].n_freq)
        dtype = np.result_type(*[s.features.dtype for s, _ in parts])  # float16, float32 for functionals
        self.features = np.empty((int(self.offsets[-1]), self.n_freq), dtype=dtype)
        self.utt_ids: List[str] = []
        self.speakers: List[str] = []
        prefixes = [f"{name}:" if name else "" for name in names]
        k = 0
        for (store, rows), prefix in zip(parts, prefixes):
            for i in rows:
                self.features[self.offsets[k]:self.offsets[k + 1]] = store[int(i)]
                self.utt_ids.append(f"{prefix}{store.utt_ids[i]}")
                self.speakers.append(f"{prefix}{store.speakers[i]}" if store.speakers[i] else "")
                k += 1
        # each part's stored speaker statistics (over all of a speaker's audio), under the pool's names
        self.speaker_band_stats = {prefix + speaker: stats for (store, _), prefix in zip(parts, prefixes)
                                   for speaker, stats in (getattr(store, "speaker_band_stats", None) or {}).items()}
        self.labeled = labels is not None
        self.labels = np.full(len(lengths), -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.info = dict(info)
        self.feature_params = dict(self.info.get("features") or {})
        self.data_dir = Path("pool")
        self.rows = [{"utt_id": u, "speaker": s} for u, s in zip(self.utt_ids, self.speakers)]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.features[self.offsets[i]:self.offsets[i + 1]]


@dataclass
class PoolUnit:
    """One pretraining run over the pool: its run folder name (``pool`` or the target fold's),
    the pooled store, the fold over it (train = pool, val, no test), and what to record."""

    name: str
    store: PooledStore
    fold: Fold
    seen: dict
    trained_keys: np.ndarray


def store_names(stores: Sequence[FeatureStore]) -> List[str]:
    """Each store's folder name, numbered ``#k`` where two stores share one (the prefix of its
    ids and speakers in a ``PooledStore``)."""
    names = [s.data_dir.resolve().name for s in stores]
    return [n if names.count(n) == 1 else f"{n}#{k + 1}" for k, n in enumerate(names)]


def check_front_ends(stores: Sequence[FeatureStore], target: Optional[FeatureStore]) -> None:
    """Every pool store (and the target) must hold the same front-end's frames."""
    from ..frontends.features import front_end_differences  # here: the report reads this module and needs no scipy

    everyone = list(stores) + ([target] if target is not None else [])
    first = everyone[0]
    for s in everyone[1:]:
        diffs = front_end_differences(s.feature_params, s.n_freq, first.feature_params, first.n_freq)
        if diffs:
            raise ValueError(f"{s.data_dir} and {first.data_dir} hold different front-ends ({'; '.join(diffs[:3])}); "
                             "prepare every store of a pool with the same --features options")


class _TargetIndex:
    """Which pool rows are recordings or speakers of the target (see the module doc)."""

    def __init__(self, target: FeatureStore):
        self.target = target
        self.by_key = {int(k): i for i, k in enumerate(utterance_keys(target))}
        self.by_path = {r.get("path", ""): i for i, r in enumerate(target.rows) if r.get("path")}
        self.corpus = target.info.get("corpus")
        self.named = self.corpus not in GENERIC_CORPORA

    def match(self, store: FeatureStore, keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Per pool row (``keys``: its ``utterance_keys``): the target row it records (-1: none),
        and whether its speaker is a target speaker of the same named corpus (the id, else "")."""
        rows = np.array([self.by_key.get(int(k), self.by_path.get(r.get("path", ""), -1))
                         for k, r in zip(keys, store.rows)], dtype=np.int64)
        same_corpus = self.named and store.info.get("corpus") == self.corpus
        speakers = np.array([s if same_corpus else "" for s in store.speakers], dtype=object)
        return rows, speakers


def _draw(train_parts: List[np.ndarray], weights: Sequence[float], epoch_size: int = 0) -> Optional[list]:
    """Per store (its rows in the pooled store, utterances drawn per epoch), or None: each once.

    An epoch draws ``epoch_size`` utterances (0: as many as the pool has), shared out in
    proportion to ``weights`` (unset: to the stores' sizes)."""
    if not weights and not epoch_size:
        return None
    total = epoch_size or sum(len(p) for p in train_parts)
    w = np.asarray(weights or [len(p) for p in train_parts], dtype=np.float64)
    counts = [int(round(total * x / w.sum())) if x > 0 else 0 for x in w]
    return [(rows, max(c, 1)) for rows, c in zip(train_parts, counts) if len(rows) and c > 0]


def _holdout(speakers: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Rows held out for validation: whole speakers (unknown ones count one per utterance),
    drawn in a seeded order until ``fraction`` of the rows; at least one row, never all."""
    groups: Dict[str, List[int]] = {}
    for i, s in enumerate(speakers):
        groups.setdefault(s or f"utterance {i}", []).append(i)
    names = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    want, held = max(1, round(fraction * len(speakers))), []
    for j in order:
        if len(held) >= want:
            break
        if len(held) + len(groups[names[j]]) < len(speakers):
            held.extend(groups[names[j]])
    if not held:
        raise ValueError("the pool is too small to hold out validation utterances; add stores to data.pool")
    return np.array(sorted(held), dtype=np.int64)


def pool_units(pool_dirs: Sequence[str], weights: Sequence[float], target: Optional[FeatureStore],
               target_folds: Sequence[Fold], val_fraction: float, seed: int,
               epoch_size: int = 0) -> Tuple[bool, List[Tuple[str, Callable[[], PoolUnit]]]]:
    """The pretraining runs of a pool: (per_fold, [(run folder name, build its PoolUnit)]).
    See the module doc for the rule. Units are built on demand (each copies its frames).

    ``target_folds``: the target's (selected) folds; ignored when the pool holds none of it.
    """
    stores = [FeatureStore(d) for d in pool_dirs]
    check_front_ends(stores, target)
    names = store_names(stores)
    keys = [utterance_keys(s) for s in stores]  # once: matching and what each run trained on
    index = _TargetIndex(target) if target is not None else None
    matches = [index.match(s, k) if index is not None else (np.full(len(s), -1), np.full(len(s), "", dtype=object))
               for s, k in zip(stores, keys)]
    per_fold = any((rows >= 0).any() or (spk != "").any() for rows, spk in matches)
    info = {"corpus": "pool", "features": stores[0].info.get("features"),
            "pool": [str(s.data_dir.resolve()) for s in stores]}
    # the encoder's checkpoint needs a class list; a pretrained encoder has no head to use it
    classes = list(target.classes) if target is not None and target.labeled else ["(unlabeled)"]

    def record(kept: List[np.ndarray], excluded: List[np.ndarray], val: dict) -> dict:
        return {"per_fold": per_fold, "target": str(target.data_dir.resolve()) if target is not None else None,
                "target_corpus": target.info.get("corpus") if target is not None else None,
                "stores": [{"dir": str(s.data_dir.resolve()), "name": n, "corpus": s.info.get("corpus"),
                            "n_utterances": int(len(k)), "n_excluded": int(len(e)),
                            "speakers": _counts(s.speakers[i] for i in k)}
                           for s, n, k, e in zip(stores, names, kept, excluded)],
                "validation": val}

    def whole_pool() -> PoolUnit:
        everything = [np.arange(len(s), dtype=np.int64) for s in stores]
        pooled = PooledStore(list(zip(stores, everything)), names, classes, info)
        val = _holdout(pooled.speakers, val_fraction, seed)
        train_mask = np.ones(len(pooled), dtype=bool)
        train_mask[val] = False
        bounds = np.cumsum([0] + [len(s) for s in stores])
        parts = [np.flatnonzero(train_mask[a:b]) + a for a, b in zip(bounds[:-1], bounds[1:])]
        kept = [np.flatnonzero(train_mask[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        fold = Fold(POOL_FOLD, np.flatnonzero(train_mask), val, np.zeros(0, dtype=np.int64), [], [],
                    train_draw=_draw(parts, weights, epoch_size))
        seen = record(kept, [np.zeros(0)] * len(stores),
                      {"from": "pool", "n": int(len(val)), "speakers": _counts(pooled.speakers[i] for i in val)})
        return PoolUnit(POOL_FOLD, pooled, fold, seen, np.concatenate([k[i] for k, i in zip(keys, kept)]))

    if not per_fold:
        return per_fold, [(POOL_FOLD, whole_pool)]

    def fold_pool(tfold: Fold) -> PoolUnit:
        assert target is not None
        held_out = set(tfold.val_speakers) | set(tfold.test_speakers)
        kept, excluded = [], []
        for s, (rows, spk) in zip(stores, matches):
            of_held = np.array([(r >= 0 and target.speakers[r] in held_out) or (sp in held_out)
                                for r, sp in zip(rows, spk)], dtype=bool)
            kept.append(np.flatnonzero(~of_held))
            excluded.append(np.flatnonzero(of_held))
        if not sum(len(k) for k in kept):
            raise ValueError(f"{tfold.name}: nothing is left in the pool once its validation and test "
                             "speakers are left out")
        parts_in = [(s, k) for s, k in zip(stores, kept)] + [(target, tfold.val)]
        pooled = PooledStore(parts_in, list(names) + ["target"], classes, info)
        bounds = np.cumsum([0] + [len(k) for k in kept])
        parts = [np.arange(a, b, dtype=np.int64) for a, b in zip(bounds[:-1], bounds[1:])]
        n_train = int(bounds[-1])
        fold = Fold(tfold.name, np.arange(n_train, dtype=np.int64),
                    np.arange(n_train, len(pooled), dtype=np.int64), np.zeros(0, dtype=np.int64),
                    list(tfold.val_speakers), list(tfold.test_speakers),
                    train_draw=_draw(parts, weights, epoch_size))
        seen = record(kept, excluded, {"from": "target", "speakers": list(tfold.val_speakers),
                                       "n": int(len(tfold.val))})
        seen["excluded_speakers"] = sorted(held_out)
        return PoolUnit(tfold.name, pooled, fold, seen, np.concatenate([k[i] for k, i in zip(keys, kept)]))

    return per_fold, [(f.name, (lambda f=f: fold_pool(f))) for f in target_folds]


def _counts(items) -> Dict[str, int]:
    return dict(sorted(Counter(items).items()))


def check_not_seen(pretrained_dir: Path, target: FeatureStore, fold: Fold) -> None:
    """Refuse to fine-tune ``fold`` from a pool pretraining that trained on any of the fold's
    validation or test utterances, or on its speakers in the same named corpus."""
    pretrained_dir = Path(pretrained_dir)
    keys_path, seen_path = pretrained_dir / KEYS_FILE, pretrained_dir / SEEN_FILE
    if not keys_path.is_file():
        return
    held = np.concatenate([fold.val, fold.test])
    overlap = np.isin(utterance_keys(target, held), np.load(keys_path))
    speakers = set(fold.val_speakers) | set(fold.test_speakers)
    if overlap.any():
        who = sorted({target.speakers[i] for i in held[overlap]})
        raise ValueError(f"{pretrained_dir}: its pretraining trained on {int(overlap.sum())} validation/test "
                         f"utterance(s) of {fold.name} (speakers {', '.join(who)}); pretrain the pool with "
                         f"data.dir = {target.data_dir} so that they are left out")
    seen = json.loads(seen_path.read_text()) if seen_path.is_file() else {}
    corpus = target.info.get("corpus")
    for entry in seen.get("stores", []):
        if corpus not in GENERIC_CORPORA and entry.get("corpus") == corpus:
            both = speakers & set(entry.get("speakers", {}))
            if both:
                raise ValueError(f"{pretrained_dir}: its pretraining trained on {corpus} speaker(s) "
                                 f"{', '.join(sorted(both))}, held out by {fold.name}; pretrain the pool with "
                                 f"data.dir = {target.data_dir} so that they are left out")


def check_source_fold(source_fold_dir: Path, source_data_dir: Optional[str], target: FeatureStore, fold: Fold) -> None:
    """Refuse to fine-tune ``fold`` from a per-fold pretraining whose fold trained on any of
    ``fold``'s validation or test speakers or utterances, or validated on its test speakers.

    Fold names alone do not say this: two protocols can both number fold-01..10 on one corpus
    with other speakers in each. The source's ``split.json`` names its utterances; their
    speakers are read from the source's store (``source_data_dir``, run.json's ``data_dir``), or
    from the target's where the source store is gone. Stores of different corpora are not
    compared (their utterance ids and speakers are not the same people).
    """
    split_path = Path(source_fold_dir) / "split.json"
    if not split_path.is_file():
        raise ValueError(f"{split_path}: missing; it names what the pretraining trained on, so fine-tuning "
                         f"cannot check {fold.name}'s speakers against it: pretrain {Path(source_fold_dir).parent} again")
    split = json.loads(split_path.read_text(encoding="utf-8"))
    source = target
    if source_data_dir and Path(source_data_dir).resolve() != Path(target.data_dir).resolve():
        try:
            source = FeatureStore(source_data_dir)
        except (OSError, ValueError):
            source = target  # gone: its utterance ids are matched in the target's store instead
        if source is not target and (source.info.get("corpus") != target.info.get("corpus")
                                     or target.info.get("corpus") in GENERIC_CORPORA):
            return
    speaker_of = dict(zip(source.utt_ids, source.speakers))
    target_ids = {target.utt_ids[i] for i in np.concatenate([fold.val, fold.test])}

    def speakers(part: str) -> set:
        return {speaker_of[u] for u in split.get(part, []) if u in speaker_of}

    held = set(fold.val_speakers) | set(fold.test_speakers)
    leaked = (speakers("train") & held) | (speakers("val") & set(fold.test_speakers))
    leaked |= {speaker_of.get(u, u) for u in set(split.get("train", [])) & target_ids}
    if leaked:
        raise ValueError(f"{source_fold_dir}: the pretrained {split.get('fold', '?')} trained or validated on "
                         f"speaker(s) {', '.join(sorted(leaked))}, held out by {fold.name} here (the two stages' "
                         f"protocols differ?); pretrain with this stage's data.protocol")
