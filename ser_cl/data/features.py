"""The thesis' input features: a log-power spectrogram of 16 kHz speech.

Definition (thesis 4.3.1): frames of 400 samples (25 ms) every 160 samples (10 ms), no
centring or padding, so a signal of N samples gives 1 + (N - 400) // 160 frames (0 when
N < 400); each frame is multiplied by a periodic Hamming window
(w[n] = 0.54 - 0.46 cos(2 pi n / 400)), zero-padded to 512 and transformed with a real FFT,
giving 257 bins (0 .. 8 kHz). The value stored is the natural log of the power plus a floor:

    S[t, f] = ln(|X_t(f)|^2 + 1e-10)

with the waveform scaled to [-1, 1) (16-bit PCM divided by 32768). The floor 1e-10 lies
below the power of 16-bit quantisation noise (~1e-8 per bin), so it only matters for
digital silence, where it caps the value at ln(1e-10) ~ -23. No mean/variance
normalisation is applied (the thesis uses none; the model's BatchNorm copes).

The computation is vectorised: the frames are a strided view of the signal, windowed
and transformed in one ``scipy.fft.rfft`` call (float32 in, complex64 out).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import rfft

SAMPLE_RATE = 16000
N_FFT = 512
WIN_LENGTH = 400
HOP_LENGTH = 160
N_FREQ = N_FFT // 2 + 1  # 257
LOG_FLOOR = 1e-10
# bump when the computation changes, so that cached features are not reused
FEATURE_VERSION = 1

FEATURE_PARAMS = {
    "type": "log_power_spectrogram",
    "formula": "ln(|rfft(frame * window, 512)|^2 + 1e-10)",
    "sample_rate": SAMPLE_RATE,
    "n_fft": N_FFT,
    "win_length": WIN_LENGTH,
    "hop_length": HOP_LENGTH,
    "window": "hamming (periodic)",
    "center": False,
    "log": "natural",
    "floor": LOG_FLOOR,
    "n_freq": N_FREQ,
    "normalisation": "none",
    "dtype": "float16",
    "version": FEATURE_VERSION,
}

_WINDOW = (0.54 - 0.46 * np.cos(2.0 * np.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)).astype(np.float32)


def frame_count(n_samples: int) -> int:
    """Number of frames ``log_spectrogram`` gives for a signal of ``n_samples`` (no centring)."""
    return 0 if n_samples < WIN_LENGTH else 1 + (n_samples - WIN_LENGTH) // HOP_LENGTH


def log_spectrogram(wave_16k: np.ndarray) -> np.ndarray:
    """Mono 16 kHz waveform [N] -> log-power spectrogram float32 [T, 257], T = frame_count(N)."""
    x = np.ascontiguousarray(wave_16k, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"log_spectrogram expects a 1-D waveform, got shape {x.shape}")
    n_frames = frame_count(x.size)
    if n_frames == 0:
        return np.zeros((0, N_FREQ), dtype=np.float32)
    frames = np.lib.stride_tricks.as_strided(
        x, shape=(n_frames, WIN_LENGTH), strides=(HOP_LENGTH * x.itemsize, x.itemsize), writeable=False
    )
    padded = np.zeros((n_frames, N_FFT), dtype=np.float32)  # window and zero-pad in one pass
    np.multiply(frames, _WINDOW, out=padded[:, :WIN_LENGTH])
    spectrum = rfft(padded, axis=1, overwrite_x=True)
    power = np.square(spectrum.real)
    power += np.square(spectrum.imag)
    power += np.float32(LOG_FLOOR)
    return np.log(power, out=power)
