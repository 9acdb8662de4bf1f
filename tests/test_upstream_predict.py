"""predict with a model trained on an ssl store: the features of a file are the ones prepare
stored for it (same front-end, same window, the store's float16 rounding), computed on predict's
--device. A tiny random Whisper (clip window: files of equal mel length share a batch in
prepare, each file runs alone in predict)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import save_tiny_whisper  # noqa: E402

transformers = pytest.importorskip("transformers")

from ser_cl.data.frontends import upstream as up  # noqa: E402
from ser_cl.data.frontends.audio import load_audio  # noqa: E402
from ser_cl.data.frontends.features import feature_params  # noqa: E402
from ser_cl.data.stores.prepare import prepare  # noqa: E402
from ser_cl.data.stores.store import FeatureStore  # noqa: E402
from ser_cl.predict import model_input  # noqa: E402


@pytest.fixture(scope="module")
def whisper_store(synth_corpus_dir, tmp_path_factory):
    path = save_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))
    data = tmp_path_factory.mktemp("whisper-store")
    params = feature_params("ssl", upstream=str(path), layers="all", whisper_window="clip")
    prepare(synth_corpus_dir, data, jobs=1, progress=False, features=params)
    return FeatureStore(data), params


def test_predict_computes_each_files_store_row(whisper_store):
    store, params = whisper_store
    mel_lengths = [load_audio(r["path"], 16000).size // 160 for r in store.rows]
    shared = [i for i, n in enumerate(mel_lengths) if mel_lengths.count(n) > 1]
    assert shared  # some files were batched with others in prepare
    for i in sorted({0, len(store) - 1, *shared[:4]}):
        wave = load_audio(store.rows[i]["path"], 16000)
        got = model_input(wave, {"features": params}, device="cpu")
        want = np.asarray(store[i])
        assert got.dtype == np.float32 and got.shape == want.shape
        # float16 rounding of the same float32 values; a batch's arithmetic may differ in the last float32
        # bit, which moves a value across a float16 rounding boundary at most one float16 step
        step = np.spacing(np.abs(want).astype(np.float16)).astype(np.float32)
        assert np.all(np.abs(got - want.astype(np.float32)) <= step)
        assert np.mean(got == want.astype(np.float32)) > 0.99


def test_predicts_device_reaches_the_upstream(whisper_store, monkeypatch):
    store, params = whisper_store
    seen = []
    real = up.get_upstream
    monkeypatch.setattr(up, "get_upstream", lambda p, device=None: seen.append(device) or real(p, device))
    model_input(load_audio(store.rows[0]["path"], 16000), {"features": params}, device="cpu")
    assert seen == ["cpu"]
