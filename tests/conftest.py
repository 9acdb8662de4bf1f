"""Shared fixtures: a small synthetic corpus, raw and prepared, built once per test session.

``synth_corpus_dir``: the raw corpus (IEMOCAP layout, 5 sessions x 2 speakers, 4 utterances
per speaker per class of 0.6-1.0 s, plus 1 dropped fru utterance per speaker).
``synth_data_dir``: that corpus prepared (DATA_DIR with manifest.csv, features.npy, ...):
160 utterances, classes neutral/happy/sad/angry (40 each), protocol session10 (10 folds,
128 train / 16 val / 16 test). Treat both as read-only: they are shared by all tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SYNTH_PER_SPEAKER = 4
SYNTH_DURATION = (0.6, 1.0)


@pytest.fixture(scope="session")
def synth_corpus_dir(tmp_path_factory) -> Path:
    from ser_cl.data.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("synth-raw")
    synthesize_corpus(root, per_speaker=SYNTH_PER_SPEAKER, seed=0, duration=SYNTH_DURATION, n_dropped=1)
    return root


@pytest.fixture(scope="session")
def synth_mel_dir(synth_corpus_dir, tmp_path_factory) -> Path:
    """The same corpus with the 40-band log-mel front-end: the training tests' store (a tiny
    encoder on 40 bands trains several times faster than on 257 bins; the code is the same)."""
    from ser_cl.data.features import feature_params
    from ser_cl.data.prepare import prepare

    data_dir = tmp_path_factory.mktemp("synth-mel")
    prepare(synth_corpus_dir, data_dir, jobs=1, progress=False, features=feature_params("mel", n_mels=40))
    return data_dir


@pytest.fixture(scope="session")
def other_speech(tmp_path_factory) -> Path:
    """Unlabeled speech that is not the target's: another synthetic corpus (seed 7), speakers
    unknown, prepared with 40 log-mel bands like ``synth_mel_dir`` (a pool of it serves every fold)."""
    from ser_cl.data.features import feature_params
    from ser_cl.data.prepare import prepare
    from ser_cl.data.synth import synthesize_corpus

    raw = tmp_path_factory.mktemp("other-raw")
    synthesize_corpus(raw, per_speaker=1, seed=7, duration=(0.6, 0.9), n_dropped=0)
    out = tmp_path_factory.mktemp("other-unlabeled")
    prepare(raw, out, corpus="unlabeled", jobs=1, progress=False, features=feature_params("mel", n_mels=40))
    return out


@pytest.fixture(scope="session")
def synth_data_dir(synth_corpus_dir, tmp_path_factory) -> Path:
    from ser_cl.data.prepare import prepare

    data_dir = tmp_path_factory.mktemp("synth-data")
    prepare(synth_corpus_dir, data_dir, jobs=1, progress=False)
    return data_dir


#: A tiny encoder for training tests (seconds per epoch on the synthetic corpus).
TINY = {"preset": "small", "conv_channels": 4, "gru_hidden": 16, "n_heads": 2, "d_ff": 32, "freq_kernels": "scaled"}


def tiny_stage(**tables):
    """A validated StageConfig with the tiny encoder, 2 epochs, batch 16; ``tables`` update it
    (dict values are merged into that section, other values set as they are)."""
    from ser_cl.config import stage_from_dict

    table = {"stage": "train", "model": dict(TINY), "optim": {"epochs": 2, "batch_size": 16, "lr": 3e-3}}
    for key, value in tables.items():
        if isinstance(value, dict):
            table.setdefault(key, {}).update(value)
        else:
            table[key] = value
    return stage_from_dict(table, "test")
