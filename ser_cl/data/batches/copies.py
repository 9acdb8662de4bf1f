"""Training copies: stores of the target corpus' own recordings, perturbed (``prepare --speed``),
whose copies of a fold's training utterances join that fold's training set (``data.train_copies``).

A copy keeps its utterance id and label; its speaker becomes ``<copy store>:<speaker>``, a
speaker of its own, so that speaker normalisation standardises it with the statistics of that
speaker's perturbed audio (the copy store's speaker_stats.npz): a slower copy of a voice is a
lower voice, a new pseudo-speaker. Only copies of the fold's training utterances are added,
matched by utterance id, so no copy of a validation or test utterance is ever trained on;
validation and test read the target's rows unchanged. The combined store holds every frame in
memory (the target's and the added copies'), like a pretraining pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from ..splits.folds import Fold
from .pool import PooledStore, check_front_ends, store_names
from ..stores.store import FeatureStore

__all__ = ["copy_dirs", "load_copies", "with_copies", "DATA_DIR_FIELD"]

#: in a data.train_copies entry, stands for data.dir (a preset's entries: "{data.dir}-sp0.9")
DATA_DIR_FIELD = "{data.dir}"


def _prepare_options(target: FeatureStore) -> str:
    """The ``prepare`` options of the target's front-end (those a copy store needs too)."""
    params = target.feature_params
    name = params.get("name")
    if name == "functionals":
        return f"--features functionals --feature-set {params.get('feature_set')}"
    if name == "mel":
        return f"--features mel --n-mels {params.get('n_mels')} --f-min {params.get('f_min'):g} --f-max {params.get('f_max'):g}"
    if name in (None, "spectrogram"):
        return "--features spectrogram"
    return "(data.dir's --features options)"


def copy_dirs(entries: Sequence[str], data_dir: str) -> List[str]:
    """data.train_copies with ``{data.dir}`` replaced by ``data_dir`` as a path: without its
    trailing separator, so that ``data/x/`` gives ``data/x-sp0.9``, not ``data/x/-sp0.9``."""
    base = str(Path(data_dir))
    return [entry.replace(DATA_DIR_FIELD, base) for entry in entries]


def load_copies(target: FeatureStore, entries: Sequence[str]) -> List[FeatureStore]:
    """The copy stores of ``target`` (``copy_dirs``: ``{data.dir}`` is the target's dir), checked:
    prepared with a speed, same corpus, classes and front-end, and every copy's utterance id one
    of the target's, with the same speaker and label. ``ValueError`` (one line) otherwise."""
    dirs = copy_dirs(entries, target.data_dir)
    for d in dirs:
        if not (Path(d) / "prepare.json").is_file():
            speed = d.rsplit("-sp", 1)[-1] if "-sp" in d else "FACTOR"
            raise ValueError(f"data.train_copies: {d} is not a prepared store; prepare it with: ser-cl prepare "
                             f"{target.info.get('source', 'CORPUS_DIR')} -o {d} {_prepare_options(target)} --speed {speed}")
    copies = [FeatureStore(d) for d in dirs]
    check_front_ends(copies, target)
    speaker_of = dict(zip(target.utt_ids, target.speakers))
    label_of = dict(zip(target.utt_ids, target.labels.tolist()))
    for store in copies:
        where = f"data.train_copies: {store.data_dir}"
        if store.data_dir.resolve() == target.data_dir.resolve():
            raise ValueError(f"{where} is data.dir itself; give stores prepared with --speed")
        if store.info.get("corpus") != target.info.get("corpus"):
            raise ValueError(f"{where} holds corpus {store.info.get('corpus')!r}, data.dir {target.info.get('corpus')!r}; "
                             "copies are the same recordings, prepared again with --speed")
        if "speed" not in store.info:
            raise ValueError(f"{where}/prepare.json records no speed: a training copy is data.dir's recordings "
                             f"prepared again with --speed (ser-cl prepare ... --speed 0.9)")
        if list(store.classes) != list(target.classes):
            raise ValueError(f"{where} has classes {list(store.classes)}, data.dir {list(target.classes)}; "
                             "prepare both with the same --classes")
        for utt, speaker, label in zip(store.utt_ids, store.speakers, store.labels):
            if utt not in speaker_of:
                raise ValueError(f"{where}: utterance {utt} is not in data.dir {target.data_dir}; "
                                 "copies are the same recordings, prepared with the same selection")
            if speaker_of[utt] != speaker:
                raise ValueError(f"{where}: utterance {utt} has speaker {speaker!r}, in data.dir {speaker_of[utt]!r}")
            if label_of[utt] != label:
                raise ValueError(f"{where}: utterance {utt} has label {store.classes[label]!r}, in data.dir "
                                 f"{target.classes[label_of[utt]]!r}; prepare both from the same labels")
    return copies


def with_copies(target: FeatureStore, fold: Fold, copies: Sequence[FeatureStore]) -> Tuple[PooledStore, Fold]:
    """``target`` with the copies of ``fold``'s training utterances appended, and the fold over it:
    the target's rows keep their indices (validation and test are unchanged), the copies' rows
    join the training rows. The store's ``n_target`` is the number of target rows."""
    train_ids = {target.utt_ids[i] for i in fold.train}
    parts = [(target, np.arange(len(target), dtype=np.int64))]
    labels = [target.labels]
    for store in copies:
        rows = np.array([j for j, utt in enumerate(store.utt_ids) if utt in train_ids], dtype=np.int64)
        parts.append((store, rows))
        labels.append(store.labels[rows])
    combined = PooledStore(parts, [""] + store_names(copies), target.classes, target.info, labels=np.concatenate(labels))
    combined.data_dir = Path(target.data_dir)
    combined.n_target = len(target)
    added = np.arange(len(target), len(combined), dtype=np.int64)
    return combined, Fold(fold.name, np.concatenate([fold.train, added]), fold.val, fold.test,
                          fold.val_speakers, fold.test_speakers, fold.train_draw)
