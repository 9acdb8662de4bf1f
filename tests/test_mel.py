"""The log-mel front-end against a plain per-frame, per-filter computation written from the
formulas; a tone lands in the band centred nearest to it; parameter validation; and
``prepare --features mel`` end to end on the synthetic corpus (store, prepare.json, cache)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.frontends.audio import load_audio
from ser_cl.data.frontends.features import (
    FEATURE_PARAMS,
    canonical_params,
    compute_features,
    feature_params,
    frame_count,
    hz_to_mel,
    log_spectrogram,
    mel_centers,
    mel_filterbank,
)
from ser_cl.data.stores.store import FeatureStore


def _reference_log_mel(x: np.ndarray, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """From the formulas, independently of the package: HTK mel 2595 log10(1 + f/700), n_mels + 2
    edges equally spaced in mel, triangles linear in Hz with peak 1 (built point by point), a
    periodic Hamming window, full complex FFT in float64, one frame and one filter at a time."""
    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    lo, hi = mel(f_min), mel(f_max)
    edges = [hz(lo + i * (hi - lo) / (n_mels + 1)) for i in range(n_mels + 2)]
    weights = np.zeros((n_mels, 257))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for k in range(257):
            f = k * 16000 / 512
            if left < f <= centre:
                weights[m, k] = (f - left) / (centre - left)
            elif centre < f < right:
                weights[m, k] = (right - f) / (right - centre)
    window = [0.54 - 0.46 * math.cos(2 * math.pi * n / 400) for n in range(400)]
    out = []
    start = 0
    while start + 400 <= len(x):
        padded = np.zeros(512)
        padded[:400] = x[start : start + 400] * window
        power = np.abs(np.fft.fft(padded)[:257]) ** 2
        out.append([math.log(float(np.dot(weights[m], power)) + 1e-10) for m in range(n_mels)])
        start += 160
    return np.array(out).reshape(-1, n_mels)


@pytest.fixture
def speechlike():
    rng = np.random.default_rng(1)
    t = np.arange(8000 + 77) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
    x += 0.05 * np.sin(2 * np.pi * 3100 * t)
    x[3000:4000] = 0.0  # digital silence: exercises the floor
    return x.astype(np.float32)


@pytest.mark.parametrize("n_mels,f_min,f_max", [(64, 0.0, 8000.0), (40, 300.0, 6000.0), (1, 100.0, 7000.0)])
def test_log_mel_matches_formula_loop(speechlike, n_mels, f_min, f_max):
    params = feature_params("mel", n_mels=n_mels, f_min=f_min, f_max=f_max)
    ours = compute_features(speechlike, params)
    ref = _reference_log_mel(speechlike.astype(np.float64), n_mels, f_min, f_max)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (frame_count(speechlike.size), n_mels)
    # a difference of 1e-4 in the log is a relative error of 1e-4 in the band energy
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    assert np.isclose(ours.min(), np.log(1e-10), atol=1e-4)  # silent frames sit on the floor


def test_filterbank_shape_and_known_values():
    assert float(hz_to_mel(1000.0)) == pytest.approx(999.9856, abs=1e-4)  # HTK: 1000 Hz ~ 1000 mel
    assert float(hz_to_mel(700.0)) == pytest.approx(2595 * math.log10(2), rel=1e-12)
    fb = mel_filterbank(64, 0.0, 8000.0)
    assert fb.shape == (64, 257) and fb.dtype == np.float32
    assert (fb >= 0).all() and (fb <= 1).all() and (fb.max(axis=1) > 0).all()
    # peak 1, not area-normalised: one band centred on bin 32 (1000 Hz) has weight 1 there,
    # and its neighbours (linear in Hz) 1 - 31.25 / (1000 - 0) and 1 - 31.25 / (f_max - 1000)
    f_max = 700.0 * (10 ** (2 * 2595 * math.log10(1 + 1000 / 700) / 2595) - 1)  # mel(f_max) = 2 mel(1000)
    one = mel_filterbank(1, 0.0, f_max)
    assert one[0, 32] == pytest.approx(1.0, abs=1e-6)
    assert one[0, 31] == pytest.approx(1 - 31.25 / 1000, abs=1e-6)
    assert one[0, 33] == pytest.approx(1 - 31.25 / (f_max - 1000), abs=1e-6)
    assert one[0].sum() > 2  # an area-normalised filter (sum ~ 2 / width) would be far below


@pytest.mark.parametrize("n_mels,f_min,f_max", [(64, 0.0, 8000.0), (23, 300.0, 3400.0), (40, 0.0, 8000.0)])
def test_tone_peaks_in_band_centred_nearest(n_mels, f_min, f_max):
    """A sine at f gives its largest band value in the band whose centre is nearest to f.

    Tested where the property is well posed: bands wider than the FFT bins (centres at least
    40 Hz apart, so the 31.25 Hz bin grid resolves them) and f not within 10% of the spacing of
    the midpoint between two centres (there the two bands tie up to the bin grid)."""
    params = feature_params("mel", n_mels=n_mels, f_min=f_min, f_max=f_max)
    centres = mel_centers(n_mels, f_min, f_max)
    rng = np.random.default_rng(n_mels)
    freqs = np.concatenate([centres, rng.uniform(f_min, f_max, 60)])
    t = np.arange(2400) / 16000
    checked = 0
    for f in freqs:
        j = int(np.searchsorted(centres, f))
        if j == 0 or j == n_mels:
            continue
        spacing = centres[j] - centres[j - 1]
        if spacing < 40 or abs((f - centres[j - 1]) / spacing - 0.5) < 0.1:
            continue
        feats = compute_features(np.sin(2 * np.pi * f * t).astype(np.float32), params)
        assert feats.mean(axis=0).argmax() == np.abs(centres - f).argmin(), f"tone at {f:.1f} Hz"
        checked += 1
    assert checked >= 40


def test_spectrogram_params_and_old_dicts():
    x = np.random.default_rng(0).standard_normal(3000).astype(np.float32)
    assert FEATURE_PARAMS == feature_params() and FEATURE_PARAMS["name"] == "spectrogram"
    assert FEATURE_PARAMS["n_freq"] == 257 and FEATURE_PARAMS["type"] == "log_power_spectrogram"
    np.testing.assert_array_equal(compute_features(x, FEATURE_PARAMS), log_spectrogram(x))
    old = {k: v for k, v in FEATURE_PARAMS.items() if k != "name"}  # a prepare.json from before "name"
    np.testing.assert_array_equal(compute_features(x, old), log_spectrogram(x))
    assert canonical_params(old) == FEATURE_PARAMS
    assert canonical_params({"name": "mel", "n_mels": 40, "f_min": 0, "f_max": 8000}) == feature_params("mel", n_mels=40)
    mel = feature_params("mel")
    assert (mel["name"], mel["n_mels"], mel["f_min"], mel["f_max"], mel["n_freq"]) == ("mel", 64, 0.0, 8000.0, 64)
    assert json.loads(json.dumps(mel)) == mel  # survives prepare.json / a checkpoint
    np.testing.assert_array_equal(compute_features(x, json.loads(json.dumps(mel))), compute_features(x, mel))
    assert compute_features(np.zeros(100, np.float32), mel).shape == (0, 64)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kind="mel", f_max=9000), "f_max must be <= 8000"),
        (dict(kind="mel", f_min=4000, f_max=4000), "f_min must be below f_max"),
        (dict(kind="mel", f_min=-5), "f_min must be >= 0"),
        (dict(kind="mel", n_mels=0), "n_mels must be an integer >= 1"),
        (dict(kind="mel", n_mels=2.5), "n_mels must be an integer"),
        (dict(kind="mel", n_mels=128), r"mel band 0 \(0.0-27.9 Hz\) contains no FFT bin.*use at most \d+ bands"),
        (dict(kind="mel", n_mels=100000), r"too many.*use at most \d+ bands"),
        (dict(kind="spectrogram", n_mels=40), "only for the mel front-end"),
        (dict(kind="mfcc"), "unknown feature kind"),
    ],
)
def test_invalid_params_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        feature_params(**kwargs)
    assert "\n" not in str(err.value)


def test_empty_band_hint_is_usable():
    with pytest.raises(ValueError) as err:
        feature_params("mel", n_mels=100, f_min=0, f_max=2000)
    fit = int(str(err.value).rsplit("at most ", 1)[1].split()[0])
    assert 1 <= fit < 100
    fb = mel_filterbank(fit, 0.0, 2000.0)  # the suggestion works: every band holds a bin
    assert (fb.max(axis=1) > 1e-6).all()
    with pytest.raises(ValueError):
        compute_features(np.zeros(1000, np.float32), {**feature_params("mel"), "n_mels": 100, "n_freq": 100, "f_max": 2000.0})


def test_prepare_mel_end_to_end(synth_corpus_dir, synth_data_dir, tmp_path):
    out = tmp_path / "synth-mel40"
    ok = CliRunner().invoke(app, ["prepare", str(synth_corpus_dir), "--out", str(out), "-q", "--jobs", "1",
                                  "--features", "mel", "--n-mels", "40", "--f-min", "50", "--f-max", "7600"])
    assert ok.exit_code == 0, ok.output
    params = feature_params("mel", n_mels=40, f_min=50, f_max=7600)
    info = json.loads((out / "prepare.json").read_text())
    assert info["features"] == params
    mel = FeatureStore(out)
    assert mel.n_freq == 40 and mel.features.shape[1] == 40 and mel.feature_params == params
    for i in (0, len(mel) // 2, len(mel) - 1):  # the store holds compute_features of the audio, as float16
        ref = compute_features(load_audio(mel.rows[i]["path"]), params).astype(np.float16)
        np.testing.assert_array_equal(mel[i], ref)

    # side by side with the spectrogram store of the same corpus (another DATA_DIR): both intact
    spec = FeatureStore(synth_data_dir)
    assert spec.n_freq == 257 and spec.feature_params["name"] == "spectrogram"
    assert spec.utt_ids == mel.utt_ids and (spec.lengths == mel.lengths).all() and (spec.labels == mel.labels).all()
    # same files, same paths and mtimes, but the feature parameters are part of every cache key
    mel_keys, spec_keys = set(os.listdir(out / "cache")), set(os.listdir(synth_data_dir / "cache"))
    # every readable utterance is cached, the classes the store drops too (they feed the speaker statistics)
    n_read = int(np.load(out / "speaker_stats.npz")["utterances"].sum())
    assert n_read == 170 and len(mel) == 160
    assert len(mel_keys) == len(spec_keys) == n_read and not mel_keys & spec_keys
