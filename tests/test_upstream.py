"""The ssl front-end (``prepare --features ssl``) on tiny random-initialised upstreams, offline.

Each upstream is built from its transformers config (hidden size 32, 2 layers, a narrow CNN),
saved with ``save_pretrained`` into a temporary directory and read back by the real loading
code. The reference is always the in-memory model's own ``output_hidden_states``: whole files,
or (chunking) each chunk as the model sees it alone, stitched here independently.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from ser_cl.cli import app  # noqa: E402
from ser_cl.data.frontends import upstream as up  # noqa: E402
from ser_cl.data.frontends.audio import load_audio  # noqa: E402
from ser_cl.data.frontends.features import compute_features, feature_params, frames_for  # noqa: E402
from ser_cl.data.splits.folds import make_folds  # noqa: E402
from ser_cl.data.stores.prepare import prepare  # noqa: E402
from ser_cl.data.stores.store import FeatureStore  # noqa: E402
from ser_cl.models import ModelConfig, SERModel  # noqa: E402
from ser_cl.predict import predict_files  # noqa: E402
from ser_cl.train.loop import train_fold  # noqa: E402

from conftest import tiny_stage  # noqa: E402

HIDDEN = 32
W2V_TINY = dict(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _build(family: str):
    """(model, feature extractor or None) of a tiny random upstream of ``family``."""
    torch.manual_seed(0)
    if family == "whisper":
        cfg = transformers.WhisperConfig(
            d_model=HIDDEN, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500,
            max_target_positions=16, vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=3)
        return transformers.WhisperModel(cfg).eval(), transformers.WhisperFeatureExtractor(feature_size=80)
    if family == "wavlm":  # group-normalised CNN, normalising extractor
        cfg = transformers.WavLMConfig(**W2V_TINY, num_buckets=16, max_bucket_distance=100)
        return transformers.WavLMModel(cfg).eval(), transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    if family == "hubert":  # layer-normalised CNN: batched with padding and an attention mask; raw input
        cfg = transformers.HubertConfig(**W2V_TINY, feat_extract_norm="layer", do_stable_layer_norm=True)
        return transformers.HubertModel(cfg).eval(), None
    if family == "wav2vec2":
        cfg = transformers.Wav2Vec2Config(**W2V_TINY)
        return transformers.Wav2Vec2Model(cfg).eval(), transformers.Wav2Vec2FeatureExtractor(do_normalize=False)
    raise AssertionError(family)


FAMILIES = ("wavlm", "hubert", "wav2vec2", "whisper")


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory):
    """family -> (checkpoint dir, in-memory model, extractor or None)."""
    out = {}
    for family in FAMILIES:
        model, extractor = _build(family)
        path = tmp_path_factory.mktemp(family)
        model.save_pretrained(path)
        if extractor is not None:
            extractor.save_pretrained(path)
        out[family] = (path, model, extractor)
    return out


def _whisper_cut(model, extractor, wave):
    """transformers' own WhisperEncoder run on the clip's own mel frames: a fresh encoder whose
    max_source_positions is what the model's convolutions give for them, its embed_positions the
    first rows of the model's. The encoder insists on an even mel length: an odd one gets a zero
    mel frame (what conv1's zero padding sees there) and conv1's output at that frame set to zero
    (what conv2's zero padding sees), so the result is the clip's alone. All hidden states, [1, T, D] each."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    mel = extractor(wave, sampling_rate=16000, padding="longest", return_tensors="pt")["input_features"]
    n_mel = mel.shape[-1]
    with torch.no_grad():
        n = model.encoder.conv2(model.encoder.conv1(mel)).shape[-1]
        config = model.config.__class__.from_dict(model.config.to_dict())
        config.max_source_positions = n
        encoder = WhisperEncoder(config).eval()
        state = dict(model.encoder.state_dict())
        state["embed_positions.weight"] = state["embed_positions.weight"][:n]
        encoder.load_state_dict(state)
        hook = None
        if n_mel % 2:
            mel = torch.nn.functional.pad(mel, (0, 1))
            hook = encoder.conv1.register_forward_hook(lambda mod, inp, out: torch.cat(
                [out[..., :n_mel], torch.zeros_like(out[..., n_mel:])], dim=-1))
        hidden = encoder(mel, output_hidden_states=True).hidden_states
        if hook is not None:
            hook.remove()
    return hidden


def _reference(model, extractor, wave, layer, window="clip"):
    """The model's own hidden state ``layer`` for one waveform, [frames, D] float32 (Whisper:
    on the clip's own frames, or in the 30 s window cut to as many frames as those)."""
    with torch.no_grad():
        if isinstance(model, transformers.WhisperModel):
            cut = _whisper_cut(model, extractor, wave)[layer][0]
            if window == "clip":
                return cut.numpy()
            feats = extractor(wave, sampling_rate=16000, return_tensors="pt")["input_features"]
            assert feats.shape[-1] == 3000  # the 30 s window
            hidden = model.encoder(feats, output_hidden_states=True).hidden_states[layer][0]
            return hidden[:cut.shape[0]].numpy()  # the clip's frames, without Whisper's 30 s padding
        values = (extractor(wave, sampling_rate=16000, return_tensors="pt")["input_values"] if extractor is not None
                  else torch.from_numpy(wave)[None])
        return model(values, output_hidden_states=True).hidden_states[layer][0].numpy()


def _waves(seed=0, seconds=(0.5, 1.3, 2.1, 1.3)):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in seconds]


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("family", FAMILIES + ("whisper-30s",))
def test_features_are_the_models_own_hidden_states(upstreams, family, layer):
    family, _, window = family.partition("-")
    path, model, extractor = upstreams[family]
    params = feature_params("ssl", upstream=str(path), layer=layer,
                            whisper_window=(window or "clip") if family == "whisper" else None)
    assert params["n_freq"] == HIDDEN and params["upstream"]["family"] == family
    waves = _waves()
    got = up.Upstream(params, "cpu").extract(waves)  # batched by length where the family allows it
    for wave, feats in zip(waves, got):
        want = _reference(model, extractor, wave, layer, window or "clip")
        assert feats.shape == want.shape == (frames_for(params, wave.size), HIDDEN)
        np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-4)


#: odd and even mel lengths (N // 160), two clips of one mel length but different sample counts
#: (they share a batch), one of 3 mel frames
WHISPER_SECONDS = (0.51, 1.3, 1.306, 0.8137, 0.03, 2.0)


@pytest.mark.parametrize("window", ["clip", "30s"])
def test_whisper_clip_and_window_features_are_the_encoders_own_on_a_cut_input(upstreams, window):
    path, model, extractor = upstreams["whisper"]
    params = feature_params("ssl", upstream=str(path), layers="all", whisper_window=window)
    assert params["whisper_window"] == window
    waves = _waves(3, WHISPER_SECONDS)
    assert {w.size // 160 % 2 for w in waves} == {0, 1}
    got = up.Upstream(params, "cpu").extract(waves)
    for wave, feats in zip(waves, got):
        assert feats.shape == (frames_for(params, wave.size), 3 * HIDDEN)
        for layer in range(3):  # 2 = the last layer's output after the final LayerNorm
            want = _reference(model, extractor, wave, layer, window)
            assert want.shape[0] == feats.shape[0]
            np.testing.assert_allclose(feats[:, layer * HIDDEN:(layer + 1) * HIDDEN], want, rtol=1e-4, atol=1e-4)


def test_a_whisper_clip_shorter_than_the_stft_window_gives_its_frame(upstreams):
    params = feature_params("ssl", upstream=str(upstreams["whisper"][0]), layers="all", whisper_window="clip")
    wave = _waves(6, (0.01,))[0]  # 160 samples: one mel frame, too short for the STFT's reflection padding
    with pytest.raises(RuntimeError):
        _whisper_cut(*upstreams["whisper"][1:], wave)
    [feats] = up.Upstream(params, "cpu").extract([wave])
    assert feats.shape == (1, 3 * HIDDEN) and np.isfinite(feats).all()


def test_whisper_clip_and_window_differ_and_a_store_without_the_choice_was_made_in_the_window(upstreams):
    path, model, extractor = upstreams["whisper"]
    assert feature_params("ssl", upstream=str(path), layer=2)["whisper_window"] == "30s"  # the default
    clip = feature_params("ssl", upstream=str(path), layer=2, whisper_window="clip")
    legacy = {k: v for k, v in feature_params("ssl", upstream=str(path), layer=2, whisper_window="30s").items()
              if k != "whisper_window"}
    wave = _waves(4, (1.7,))[0]
    a = up.Upstream(clip, "cpu").extract([wave])[0]
    b = up.Upstream(legacy, "cpu").extract([wave])[0]
    assert np.abs(a - b).max() > 1e-2  # attention over 30 s of padding changes the features
    np.testing.assert_allclose(b, _reference(model, extractor, wave, 2, "30s"), rtol=1e-4, atol=1e-4)


REAL_WHISPER = Path(__file__).resolve().parents[2] / "shared" / "upstreams" / "whisper-base"


@pytest.mark.skipif(not (REAL_WHISPER / "model.safetensors").is_file(), reason="../shared/upstreams/whisper-base absent")
def test_real_whisper_base_on_the_clips_own_frames():
    model = transformers.WhisperModel.from_pretrained(str(REAL_WHISPER)).float().eval()  # stored as float16
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(str(REAL_WHISPER))
    params = feature_params("ssl", upstream=str(REAL_WHISPER), layers="all", whisper_window="clip")
    rng = np.random.default_rng(5)
    t = np.arange(int(1.234 * 16000)) / 16000
    waves = [(0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
              + 0.01 * rng.standard_normal(t.size)).astype(np.float32), (0.05 * rng.standard_normal(16000)).astype(np.float32)]
    got = up.Upstream(params, "cpu").extract(waves)
    for wave, feats in zip(waves, got):
        for layer in (0, 4, 6):
            want = _reference(model, extractor, wave, layer, "clip")
            assert feats.shape == (want.shape[0], 7 * 512)
            np.testing.assert_allclose(feats[:, layer * 512:(layer + 1) * 512], want, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES + ("whisper-30s",))
def test_long_files_in_chunks_are_stitched_at_the_middle_of_each_overlap(upstreams, family):
    family, _, window = family.partition("-")
    path, model, extractor = upstreams[family]
    params = feature_params("ssl", upstream=str(path), layers="all", chunk_s=0.4, overlap_s=0.1,
                            whisper_window=(window or "clip") if family == "whisper" else None)
    wave = _waves(1, (2.17,))[0]
    feats = compute_features(wave, params)
    assert feats.shape == (frames_for(params, wave.size), 3 * HIDDEN)
    bounds = up.chunk_bounds(wave.size, 6400, 1600, 320)
    assert len(bounds) > 3
    for layer in range(3):
        pieces = [(s // 320, _reference(model, extractor, wave[s:e], layer, window or "clip")) for s, e in bounds]
        want = np.empty((feats.shape[0], HIDDEN), np.float32)
        for k, (first, piece) in enumerate(pieces):
            cut_lo = 0 if k == 0 else (first + pieces[k - 1][0] + len(pieces[k - 1][1])) // 2
            cut_hi = feats.shape[0] if k + 1 == len(pieces) else (pieces[k + 1][0] + first + len(piece)) // 2
            want[cut_lo:cut_hi] = piece[cut_lo - first:cut_hi - first]
        np.testing.assert_allclose(feats[:, layer * HIDDEN:(layer + 1) * HIDDEN], want, rtol=1e-4, atol=1e-4)


def test_chunk_bounds_cover_the_file_on_the_frame_grid():
    for n in (6400, 6401, 7999, 20000, 34567, 160000):
        bounds = up.chunk_bounds(n, 6400, 1600, 320)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(s % 320 == 0 and 0 < e - s <= 6400 for s, e in bounds)
        assert all(b[0] > a[0] and a[1] - b[0] >= 1600 for a, b in zip(bounds, bounds[1:]))


@pytest.fixture(scope="module")
def wavlm_store(upstreams, synth_corpus_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("wavlm-store")
    params = feature_params("ssl", upstream=str(upstreams["wavlm"][0]), layer=2)
    lines = []
    result = prepare(synth_corpus_dir, data, jobs=1, progress=False, features=params, notify=lines.append)
    return data, result, lines


def test_prepare_stores_the_layer_as_float16_and_records_the_upstream(wavlm_store, upstreams):
    data, result, lines = wavlm_store
    path, model, extractor = upstreams["wavlm"]
    store = FeatureStore(data)
    assert store.n_freq == HIDDEN and store.features.dtype == np.float16
    rec = json.loads((data / "prepare.json").read_text())["features"]
    assert rec["name"] == "ssl" and rec["layers"] == [2]
    assert {k: rec["upstream"][k] for k in ("path", "family", "frame_rate")} == {
        "path": str(path.resolve()), "family": "wavlm", "frame_rate": 50.0}
    assert rec["upstream"]["config_hash"] == up.config_hash(path)
    assert len(lines) == 1 and "GB in features.npy" in lines[0]
    for i in (0, len(store) // 2, len(store) - 1):
        wave = load_audio(store.rows[i]["path"], 16000)
        want = _reference(model, extractor, wave, 2)
        assert store[i].shape == want.shape and store.lengths[i] == want.shape[0]
        np.testing.assert_allclose(store[i].astype(np.float32), want, rtol=2e-3, atol=2e-3)  # float16


def test_a_second_prepare_reuses_the_cache(wavlm_store, synth_corpus_dir, upstreams, tmp_path):
    data, first, _ = wavlm_store
    again = prepare(synth_corpus_dir, data, jobs=1, progress=False,
                    features=feature_params("ssl", upstream=str(upstreams["wavlm"][0]), layer=2))
    assert again.n_computed == 0 and again.n_cached == first.n_computed + first.n_cached


def test_a_store_beyond_max_store_gb_is_refused_before_anything_is_written(upstreams, synth_corpus_dir, tmp_path):
    params = feature_params("ssl", upstream=str(upstreams["hubert"][0]), layers="all")
    with pytest.raises(ValueError, match="--max-store-gb"):
        prepare(synth_corpus_dir, tmp_path / "big", jobs=1, progress=False, features=params, max_store_gb=1e-6)
    assert not (tmp_path / "big").exists()


@pytest.fixture(scope="module")
def checkpoint(wavlm_store, tmp_path_factory):
    """A CE model (the tiny conv encoder, frequency kernels scaled to 32 values) trained 1 epoch."""
    store = FeatureStore(wavlm_store[0])
    fold_dir = tmp_path_factory.mktemp("ce") / "fold"
    metrics = train_fold(tiny_stage(optim={"epochs": 1}), store, make_folds(store)[0], fold_dir,
                         torch.device("cpu"), progress=False)
    return fold_dir / "best.pt", metrics


def _check_predict(ckpt, store):
    [result] = predict_files(ckpt, [store.rows[0]["path"]], "cpu")
    assert result["emotion"] in store.classes and abs(sum(result["probabilities"].values()) - 1) < 1e-3


def test_ce_training_on_the_store_and_predict_from_the_checkpoint(checkpoint, wavlm_store):
    ckpt, metrics = checkpoint
    assert np.isfinite(metrics["test"]["ua"])
    _check_predict(ckpt, FeatureStore(wavlm_store[0]))


def test_the_upstream_preset_trains_with_ce_and_supcon_and_predicts(wavlm_store, tmp_path):
    store = FeatureStore(wavlm_store[0])
    fold = make_folds(store)[0]
    ce = tiny_stage(optim={"epochs": 1}, model={"preset": "upstream"})
    assert np.isfinite(train_fold(ce, store, fold, tmp_path / "ce", torch.device("cpu"), progress=False)["test"]["ua"])
    _check_predict(tmp_path / "ce" / "best.pt", store)
    # the losses act on the embedding, whatever computes it
    supcon = tiny_stage(stage="pretrain", optim={"epochs": 1}, model={"preset": "upstream"}, loss={"name": "supcon"})
    metrics = train_fold(supcon, store, fold, tmp_path / "supcon", torch.device("cpu"), progress=False)
    assert np.isfinite(metrics["best_value"])


def test_predict_says_in_one_line_that_the_upstream_directory_is_missing(checkpoint, wavlm_store, tmp_path):
    from ser_cl.io import torch_save
    from ser_cl.train.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint[0])
    state["features"]["upstream"]["path"] = str(tmp_path / "moved-away")
    torch_save(tmp_path / "best.pt", state)
    wav = FeatureStore(wavlm_store[0]).rows[0]["path"]
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "best.pt"), wav, "--device", "cpu"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "no such directory" in lines[0], result.output


def test_bad_upstreams_are_refused_in_one_line(upstreams, synth_corpus_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    whisper_alone = tmp_path / "whisper-no-preprocessor"
    shutil.copytree(upstreams["whisper"][0], whisper_alone)
    (whisper_alone / "preprocessor_config.json").unlink()
    cases = [
        (["--upstream", str(tmp_path / "nowhere")], "no such directory"),
        (["--upstream", str(empty)], "not a Hugging Face checkpoint directory"),
        (["--upstream", str(bert)], "model_type 'bert' is not supported"),
        (["--upstream", str(whisper_alone)], "preprocessor_config.json"),
        (["--upstream", str(upstreams["hubert"][0]), "--layer", "3"], "layer 3 is out of range"),
        (["--upstream", str(upstreams["hubert"][0]), "--layers", "some"], "--layers"),
        (["--features", "mel", "--upstream", str(upstreams["hubert"][0])], "only for the ssl front-end"),
        (["--upstream", str(upstreams["hubert"][0]), "--whisper-window", "30s"], "only for a Whisper upstream"),
        (["--upstream", str(upstreams["whisper"][0]), "--whisper-window", "10s"], "--whisper-window '10s'"),
        ([], "needs --upstream"),
    ]
    for extra, message in cases:
        args = ["prepare", str(synth_corpus_dir), "-o", str(tmp_path / "out"), "--features", "ssl", *extra]
        result = CliRunner().invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (extra, result.output)


def test_the_upstream_preset_embeds_an_utterance_alike_alone_and_in_a_padded_batch():
    torch.manual_seed(0)
    model = SERModel(ModelConfig.preset("upstream", n_freq=48), n_classes=4).eval()
    assert model.conv1 is None and model.gru is None
    x = torch.randn(3, 40, 48)
    lengths = torch.tensor([40, 23, 7])
    batch = model.embed(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = model.embed(x[i:i + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(batch[i], alone[0], rtol=1e-5, atol=1e-5)
