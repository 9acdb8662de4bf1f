"""The log-spectrogram against independent computations (scipy.signal.stft, a plain per-frame loop)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from ser_cl.data.frontends.features import LOG_FLOOR, frame_count, log_spectrogram


def _loop_reference(x: np.ndarray) -> np.ndarray:
    """One frame at a time with a full complex FFT (float64), the window written out by hand."""
    n = np.arange(400)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * n / 400)
    frames = []
    start = 0
    while start + 400 <= len(x):
        padded = np.zeros(512)
        padded[:400] = x[start : start + 400] * window
        spectrum = np.fft.fft(padded)[:257]
        frames.append(np.log(np.abs(spectrum) ** 2 + 1e-10))
        start += 160
    return np.array(frames).reshape(-1, 257)


@pytest.fixture
def speechlike():
    rng = np.random.default_rng(1)
    t = np.arange(16000 + 123) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
    x[5000:6000] = 0.0  # digital silence: exercises the floor
    return x.astype(np.float32)


def test_shape_and_frame_count():
    for n in (0, 399, 400, 559, 560, 16000, 16123):
        out = log_spectrogram(np.zeros(n, dtype=np.float32))
        expected = 0 if n < 400 else 1 + (n - 400) // 160
        assert out.shape == (expected, 257) == (frame_count(n), 257)
        assert out.dtype == np.float32


def test_matches_plain_loop(speechlike):
    ours = log_spectrogram(speechlike)
    ref = _loop_reference(speechlike.astype(np.float64))
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)
    assert np.isclose(ours.min(), np.log(LOG_FLOOR), atol=1e-3)  # silent frames sit exactly on the floor


def test_matches_scipy_stft(speechlike):
    x = speechlike.astype(np.float64)
    window = signal.get_window("hamming", 400)  # scipy's periodic Hamming
    _, _, z = signal.stft(x, window=window, nperseg=400, noverlap=240, nfft=512,
                          boundary=None, padded=False, detrend=False, return_onesided=True)
    z = z * window.sum()  # scipy scales the spectrum by 1/sum(window); undo it
    ref = np.log(np.abs(z.T) ** 2 + 1e-10)
    np.testing.assert_allclose(log_spectrogram(speechlike), ref, atol=2e-3, rtol=1e-4)


def test_tone_peaks_in_its_bin():
    t = np.arange(4000) / 16000
    out = log_spectrogram(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    assert (out.argmax(axis=1) == 32).all()  # 1000 Hz / (16000 / 512) = bin 32


def test_rejects_multichannel():
    with pytest.raises(ValueError):
        log_spectrogram(np.zeros((1000, 2), dtype=np.float32))
