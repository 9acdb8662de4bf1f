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
    from ser_cl.data.corpora.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("synth-raw")
    synthesize_corpus(root, per_speaker=SYNTH_PER_SPEAKER, seed=0, duration=SYNTH_DURATION, n_dropped=1)
    return root


@pytest.fixture(scope="session")
def tiny_emodb_raw(tmp_path_factory) -> Path:
    """An EmoDB-named corpus of 36 half-second clips (speakers 03, 08, 09, 10; classes W, T, N):
    pitch by class, level and pitch shift by speaker (the openSMILE tests' corpus)."""
    import numpy as np

    from ser_cl.data.frontends.audio import write_wav

    raw = tmp_path_factory.mktemp("tiny-emodb-raw")
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000.0
    for s, speaker in enumerate(("03", "08", "09", "10")):
        for letter, c in {"W": 0, "T": 1, "N": 2}.items():  # angry, sad, neutral
            for k in range(3):
                f0 = 120.0 * (1 + 0.35 * c) * (1 + 0.08 * s) * (1 + 0.03 * k)
                wave = (0.2 + 0.1 * s) * np.sin(2 * np.pi * f0 * t) * (1 + 0.3 * np.sin(2 * np.pi * (2 + c) * t))
                wave = wave + 0.02 * rng.standard_normal(t.size)
                write_wav(raw / f"{speaker}a0{k + 1}{letter}a.wav", wave.astype(np.float32))
    return raw


@pytest.fixture(scope="session")
def synth_mel_dir(synth_corpus_dir, tmp_path_factory) -> Path:
    """The same corpus with the 40-band log-mel front-end: the training tests' store (a tiny
    encoder on 40 bands trains several times faster than on 257 bins; the code is the same)."""
    from ser_cl.data.frontends.features import feature_params
    from ser_cl.data.stores.prepare import prepare

    data_dir = tmp_path_factory.mktemp("synth-mel")
    prepare(synth_corpus_dir, data_dir, jobs=1, progress=False, features=feature_params("mel", n_mels=40))
    return data_dir


@pytest.fixture(scope="session")
def other_speech(tmp_path_factory) -> Path:
    """Unlabeled speech that is not the target's: another synthetic corpus (seed 7), speakers
    unknown, prepared with 40 log-mel bands like ``synth_mel_dir`` (a pool of it serves every fold)."""
    from ser_cl.data.frontends.features import feature_params
    from ser_cl.data.stores.prepare import prepare
    from ser_cl.data.corpora.synth import synthesize_corpus

    raw = tmp_path_factory.mktemp("other-raw")
    synthesize_corpus(raw, per_speaker=1, seed=7, duration=(0.6, 0.9), n_dropped=0)
    out = tmp_path_factory.mktemp("other-unlabeled")
    prepare(raw, out, corpus="unlabeled", jobs=1, progress=False, features=feature_params("mel", n_mels=40))
    return out


@pytest.fixture(scope="session")
def synth_data_dir(synth_corpus_dir, tmp_path_factory) -> Path:
    from ser_cl.data.stores.prepare import prepare

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


def one_at_a_time_probabilities(checkpoint, store, rows):
    """Softmax probabilities (float64 [len(rows), classes]) of a checkpoint's model on store rows,
    each utterance alone (no batching, padding or length sorting), inputs normalised as the model
    was trained, by numpy here (not ser_cl.data.stores.normalize): input_norm "speaker" standardises each
    frame with its speaker's statistics as ``prepare`` stored them (``speaker_stats.npz``: all of
    the speaker's audio), in the store's dtype; any other input_norm
    is the model's own. The reference the batched evaluation is checked against."""
    import numpy as np
    import torch

    from ser_cl.train.checkpoint import load_model

    model, _ = load_model(checkpoint, "cpu")
    out = []
    with torch.no_grad():
        for i in rows:
            frames = np.asarray(store[i], dtype=np.float32)
            if model.cfg.input_norm == "speaker":
                mean, std = store.speaker_band_stats[store.speakers[i]]  # KeyError: no stored statistics
                frames = ((frames - mean) / std).astype(store.features.dtype).astype(np.float32)
            x = torch.tensor(frames)[None]
            out.append(torch.softmax(model.classify(model.embed(x, torch.tensor([x.shape[1]]))).double(), 1)[0].numpy())
    return np.array(out)


def save_tiny_whisper(path: Path) -> Path:
    """A randomly initialised 2-layer Whisper (d_model 32) with its feature extractor, saved in
    Hugging Face layout at ``path``: an upstream checkpoint for tests (needs transformers)."""
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(
        d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500,
        max_target_positions=16, vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=3)
    transformers.WhisperModel(cfg).save_pretrained(path)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return path


def plant_fold_lock(fold_dir: Path, pid: int) -> None:
    """Write ``fold_dir``'s lock as held by the live process ``pid`` on this host."""
    import json
    import socket

    from ser_cl.train.fold_lock import LOCK_FILE, Holder, process_start

    Path(fold_dir).mkdir(parents=True, exist_ok=True)
    holder = Holder(pid, socket.gethostname(), "2026-01-02 03:04:05", process_start(pid), token="t")
    (Path(fold_dir) / LOCK_FILE).write_text(json.dumps(holder.__dict__))
