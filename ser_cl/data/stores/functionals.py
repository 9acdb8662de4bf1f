"""openSMILE functionals of a store's utterances: the classical baseline's input.

One fixed-length vector per utterance (``eGeMAPSv02``: 88 values; ``ComParE_2016``: 6,373),
computed by the ``opensmile`` package (the optional extra ``pip install "ser-cl[baseline]"``;
audEERING's openSMILE, the toolkit these feature sets were defined in, so the numbers are the
ones the literature reports rather than a re-implementation of them) from the audio files the
store's manifest lists, read as 16 kHz mono like ``prepare`` reads them.

Each utterance's vector is cached in ``DATA_DIR/cache/functionals/`` under a key made of the
file's absolute path, size and modification time, the feature set and the opensmile version,
written atomically, so a second run (another fold, another classifier) reads them back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ser_cl.data.frontends.audio import AudioError, load_audio
from ser_cl.data.frontends.opensmile_features import check_feature_set, functionals_vector, opensmile_version
from ser_cl.data.stores.feature_cache import cache_key
from ser_cl.io import save_npy

def store_functionals(store, feature_set: str, progress: bool = True) -> np.ndarray:
    """[n_utterances, D] float32 functionals of every utterance of ``store`` (its manifest's
    ``path`` column), cached per utterance. A listed file that is gone or unreadable stops the
    run with a one-line error naming it."""
    return functionals_of([row["path"] for row in store.rows], feature_set,
                          Path(store.data_dir) / "cache" / "functionals", progress)


def functionals_of(paths: Sequence[str], feature_set: str, cache_dir: Path, progress: bool = True) -> np.ndarray:
    """See ``store_functionals``; ``paths`` are audio files, ``cache_dir`` where vectors are kept."""
    from ser_cl.progress import progress_bar

    check_feature_set(feature_set)
    version = opensmile_version()
    out = []
    with progress_bar(total=len(paths), desc=f"openSMILE {feature_set}", unit="utt", disable=not progress,
                      leave=False) as bar:
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: listed in the store's manifest.csv but missing; restore it or "
                                        "prepare the corpus again from where it now lies")
            key = cache_key(str(Path(path).resolve()), os.stat(path), f"opensmile|{feature_set}|{version}")
            cached = cache_dir / f"{key}.npy"
            if cached.is_file():
                out.append(np.load(cached))
            else:
                try:
                    wave = load_audio(path)
                except AudioError as err:
                    raise ValueError(f"{path}: cannot read it for openSMILE ({err})") from None
                vector = functionals_vector(wave, feature_set)
                save_npy(cached, vector)
                out.append(vector)
            bar.update(1)
    return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)
