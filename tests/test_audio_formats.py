"""Formats other than WAV (FLAC, OGG Vorbis, AIFF) read through libsndfile: the same samples as
the WAV of the same signal, broken files skipped with a reason, corpus listings that find them,
and ``prepare`` / ``predict`` end to end on FLAC."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.frontends.audio import AudioError, load_audio, write_wav

RATE = 16000


def _signal(seconds: float = 0.6, rate: int = RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A tone plus a little noise, quantised to 16-bit values (so 16-bit files hold it exactly)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1000 * t)
    x = x[:, None] + 0.01 * rng.standard_normal((t.size, channels))
    return np.round(x * 32767) / 32768  # 16-bit grid, read back as int / 32768


def _twins(tmp_path, x, rate, fmt, subtype, ext):
    """The same signal as a 16-bit WAV (stdlib writer) and as ``fmt``/``subtype`` through libsndfile."""
    wav = tmp_path / f"x{rate}.wav"
    write_wav(wav, x * 32768 / 32767, rate)  # write_wav scales by 32767: recovers the same integers
    other = tmp_path / f"x{rate}.{ext}"
    sf.write(other, x, rate, format=fmt, subtype=subtype)
    return wav, other


@pytest.mark.parametrize("rate,channels", [(16000, 1), (44100, 2)])
def test_flac_reads_exactly_like_the_wav(tmp_path, rate, channels):
    x = _signal(rate=rate, channels=channels)
    wav, flac = _twins(tmp_path, x, rate, "FLAC", "PCM_16", "flac")
    from_wav, from_flac = load_audio(wav), load_audio(flac)
    assert from_flac.dtype == np.float32 and from_flac.shape == from_wav.shape
    np.testing.assert_array_equal(from_flac, from_wav)


def test_aiff_reads_exactly_like_the_wav(tmp_path):
    x = _signal()
    wav, aiff = _twins(tmp_path, x, RATE, "AIFF", "PCM_16", "aiff")
    np.testing.assert_array_equal(load_audio(aiff), load_audio(wav))


def test_ogg_vorbis_reads_close_to_the_wav(tmp_path):
    x = _signal(seconds=1.0)
    wav, ogg = _twins(tmp_path, x, RATE, "OGG", "VORBIS", "ogg")
    from_wav, from_ogg = load_audio(wav), load_audio(ogg)
    assert from_ogg.shape == from_wav.shape  # no codec delay left in the output
    err = from_ogg - from_wav
    assert np.sqrt(np.mean(err ** 2)) < 0.02 and np.max(np.abs(err)) < 0.1  # lossy, but the same signal
    assert np.corrcoef(from_ogg, from_wav)[0, 1] > 0.99


def test_broken_flac_and_ogg_raise_audio_error_with_a_reason(tmp_path):
    x = _signal(seconds=1.0)
    sf.write(tmp_path / "good.flac", x, RATE, format="FLAC", subtype="PCM_16")
    full = (tmp_path / "good.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(full[: len(full) // 2])
    (tmp_path / "empty.flac").write_bytes(b"")
    (tmp_path / "text.flac").write_text("this is not audio at all, just text")
    sf.write(tmp_path / "good.ogg", x, RATE, format="OGG", subtype="VORBIS")
    (tmp_path / "header.ogg").write_bytes((tmp_path / "good.ogg").read_bytes()[:60])

    cases = {"cut.flac": "truncated", "empty.flac": "empty", "text.flac": "not a WAV", "header.ogg": "OGG"}
    for name, word in cases.items():
        with pytest.raises(AudioError, match=word) as info:
            load_audio(tmp_path / name)
        assert "\n" not in str(info.value)
    assert load_audio(tmp_path / "good.flac").size == RATE


def test_corpus_readers_list_flac_ogg_and_aiff(tmp_path):
    from ser_cl.data.corpora import read_corpus

    root = tmp_path / "pool"
    (root / "spk1").mkdir(parents=True)
    (root / "spk2").mkdir()
    x = _signal(seconds=0.3)
    write_wav(root / "spk1" / "a.wav", x)
    sf.write(root / "spk1" / "b.flac", x, RATE, format="FLAC")
    sf.write(root / "spk2" / "c.ogg", x, RATE, format="OGG", subtype="VORBIS")
    sf.write(root / "spk2" / "d.aiff", x, RATE, format="AIFF", subtype="PCM_16")
    (root / "spk2" / "notes.txt").write_text("not audio")
    listing = read_corpus(root, "unlabeled", speaker_level=0)
    assert [(u.utt_id, os.path.basename(u.path), u.speaker) for u in listing.utterances] == [
        ("spk1/a", "a.wav", "spk1"), ("spk1/b", "b.flac", "spk1"), ("spk2/c", "c.ogg", "spk2"), ("spk2/d", "d.aiff", "spk2")]

    emodb = tmp_path / "emodb"
    emodb.mkdir()
    sf.write(emodb / "03a01Fa.flac", x, RATE, format="FLAC")
    write_wav(emodb / "08b02Wc.wav", x)
    listing = read_corpus(emodb)  # detected from the file names
    assert listing.corpus == "emodb" and not listing.skipped
    assert [(u.utt_id, u.label) for u in listing.utterances] == [("03a01Fa", "happy"), ("08b02Wc", "angry")]


def test_prepare_an_unlabeled_flac_pool_from_the_cli(tmp_path):
    from ser_cl.data.frontends.features import FEATURE_PARAMS, compute_features
    from ser_cl.data.stores.store import FeatureStore

    root = tmp_path / "librispeech"
    twins = tmp_path / "wav"
    twins.mkdir()
    signals = {}
    for k, (speaker, rate) in enumerate([("19", 16000), ("19", 16000), ("26", 22050)]):
        (root / speaker).mkdir(parents=True, exist_ok=True)
        x = _signal(seconds=0.5 + 0.1 * k, rate=rate, seed=k)
        sf.write(root / speaker / f"{speaker}-{k}.flac", x, rate, format="FLAC", subtype="PCM_16")
        write_wav(twins / f"{k}.wav", x * 32768 / 32767, rate)
        signals[f"{speaker}/{speaker}-{k}"] = twins / f"{k}.wav"
    good = (root / "26" / "26-2.flac").read_bytes()
    (root / "26" / "broken.flac").write_bytes(good[: len(good) // 2])

    out = tmp_path / "data"
    res = CliRunner().invoke(app, ["prepare", str(root), "--out", str(out), "--corpus", "unlabeled",
                                   "--speaker-level", "0", "--jobs", "1", "--quiet"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    info = json.loads((out / "prepare.json").read_text())
    assert [os.path.basename(s["path"]) for s in info["skipped"]] == ["broken.flac"]
    assert "truncated" in info["skipped"][0]["reason"]
    store = FeatureStore(out)
    assert store.utt_ids == sorted(signals) and store.speakers == ["19", "19", "26"]
    for i, utt in enumerate(store.utt_ids):  # the FLAC's features are the WAV twin's
        ref = compute_features(load_audio(signals[utt]), FEATURE_PARAMS).astype(np.float16)
        np.testing.assert_array_equal(store[i], ref)


def test_predict_reads_flac_like_the_wav(tmp_path):
    from ser_cl.models import ModelConfig, SERModel
    from ser_cl.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(n_freq=257, conv_channels=2, gru_hidden=4, gru_layers=1, n_heads=2, d_ff=8)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, SERModel(cfg, 4).eval(), cfg, ["neutral", "happy", "sad", "angry"], n_freq=257,
                    epoch=0, value=0.5, has_head=True)
    x = _signal(seconds=0.5, rate=22050)
    wav, flac = _twins(tmp_path, x, 22050, "FLAC", "PCM_16", "flac")
    res = CliRunner().invoke(app, ["predict", str(ckpt), str(wav), str(flac), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    from_wav, from_flac = json.loads(res.output)
    assert "error" not in from_flac, from_flac
    assert from_flac["probabilities"] == from_wav["probabilities"]


def test_wav_encodings_the_parser_does_not_decode_go_to_libsndfile(tmp_path):
    """mu-law / A-law / IMA ADPCM WAVs: complete files decode (through libsndfile), close to the signal."""
    x = _signal(seconds=0.5)[:, 0]
    for subtype in ("ULAW", "ALAW", "IMA_ADPCM"):
        path = tmp_path / f"{subtype}.wav"
        sf.write(path, x, RATE, format="WAV", subtype=subtype)
        y = load_audio(path)
        assert y.size >= x.size  # ADPCM pads its last block
        assert np.sqrt(np.mean((y[: x.size] - x) ** 2)) < 0.01, subtype
    full = (tmp_path / "ULAW.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[: len(full) // 2])
    with pytest.raises(AudioError, match="truncated"):  # the RIFF parser still checks the size first
        load_audio(tmp_path / "cut.wav")


def test_truncated_aiff_is_refused_not_read_short(tmp_path):
    sf.write(tmp_path / "good.aiff", _signal(seconds=1.0), RATE, format="AIFF", subtype="PCM_16")
    full = (tmp_path / "good.aiff").read_bytes()
    (tmp_path / "cut.aiff").write_bytes(full[: len(full) // 2])
    with pytest.raises(AudioError, match="truncated: SSND chunk declares"):
        load_audio(tmp_path / "cut.aiff")


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("fmt", ["WAV", "WAVEX"])
def test_the_riff_parser_and_libsndfile_agree_bit_for_bit(tmp_path, fmt, subtype):
    """Why WAVs may keep their own parser: it reads every PCM/float encoding exactly as libsndfile does."""
    from ser_cl.data.frontends.audio import read_audio

    x = np.random.default_rng(3).uniform(-1, 1, size=(700, 3))
    path = tmp_path / "x.wav"
    sf.write(path, x, 22050, format=fmt, subtype=subtype)
    ours, rate = read_audio(path)
    theirs, their_rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == their_rate == 22050
    np.testing.assert_array_equal(ours, theirs)


def test_a_cached_not_a_wav_reason_from_the_old_reader_is_read_again(tmp_path, monkeypatch):
    """DATA_DIR/cache keeps each bad file's reason; the WAV-only reader's verdict on a FLAC listed in a
    CSV manifest ("not a WAV file"), or on a mu-law WAV, must not outlive it: the next prepare reads
    those files again (and still trusts the other cached reasons)."""
    from ser_cl.data.stores import feature_cache
    from ser_cl.data.stores import prepare as prepare_module

    root = tmp_path / "corpus"
    root.mkdir()
    lines = ["path,label,speaker"]
    for k in range(4):
        name = f"u{k}.flac" if k == 3 else f"u{k}.wav"
        x = _signal(seconds=0.5, seed=k)
        if name.endswith(".flac"):
            sf.write(root / name, x, RATE, format="FLAC", subtype="PCM_16")
        elif k == 2:
            sf.write(root / name, x, RATE, format="WAV", subtype="ULAW")
        else:
            write_wav(root / name, x)
        lines.append(f"{name},{'ab'[k % 2]},s{k % 2}")
    (root / "empty.wav").write_bytes(b"")
    lines.append("empty.wav,a,s0")
    (root / "list.csv").write_text("\n".join(lines) + "\n")

    real = feature_cache.load_audio

    def wav_only(path, *args, **kwargs):  # what the reader said before FLAC support
        if not open(path, "rb").read(4) == b"RIFF" and os.path.getsize(path):
            raise AudioError("not a WAV file (no RIFF/WAVE header)")
        if path.endswith("u2.wav"):
            raise AudioError("unsupported WAV encoding: format tag 0x0007, 8 bits in 1-byte samples")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(feature_cache, "load_audio", wav_only)
    first = prepare_module.prepare(root / "list.csv", tmp_path / "data", jobs=1, progress=False)
    assert first.n_utterances == 2
    monkeypatch.setattr(feature_cache, "load_audio", real)
    again = prepare_module.prepare(root / "list.csv", tmp_path / "data", jobs=1, progress=False)
    assert again.n_utterances == 4 and again.n_computed == 2 and again.n_cached == 3  # empty.wav's reason holds
    info = json.loads((tmp_path / "data" / "prepare.json").read_text())
    assert [(os.path.basename(s["path"]), s["reason"]) for s in info["skipped"]] == [("empty.wav", "empty file (0 bytes)")]
