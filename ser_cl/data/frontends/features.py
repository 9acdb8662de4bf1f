"""Front-ends: the thesis' log-power spectrogram (default), a log-mel filterbank, a
self-supervised upstream's hidden states and openSMILE functionals.

Both start from the same STFT of 16 kHz speech (thesis 4.3.1): frames of 400 samples
(25 ms) every 160 samples (10 ms), no centring or padding, so a signal of N samples gives
1 + (N - 400) // 160 frames (0 when N < 400); each frame is multiplied by a periodic
Hamming window (w[n] = 0.54 - 0.46 cos(2 pi n / 400)), zero-padded to 512 and transformed
with a real FFT, giving the power P[t, k] = |X_t(k)|^2 of 257 bins k (f_k = k * 31.25 Hz,
0 .. 8 kHz). The waveform is scaled to [-1, 1) (16-bit PCM divided by 32768).

``spectrogram`` (the thesis): S[t, k] = ln(P[t, k] + 1e-10), 257 values per frame.
The floor 1e-10 lies below the power of 16-bit quantisation noise (~1e-8 per bin), so it
only matters for digital silence, where it caps the value at ln(1e-10) ~ -23.

``mel``: M[t, m] = ln(sum_k H[m, k] P[t, k] + 1e-10), m = 0 .. n_mels - 1, with triangular
filters H on the HTK mel scale mel(f) = 2595 log10(1 + f / 700): the n_mels + 2 edge
frequencies e_0 .. e_{n_mels+1} are equally spaced in mel between f_min and f_max, and

    H[m, k] = max(0, min((f_k - e_m) / (e_{m+1} - e_m), (e_{m+2} - f_k) / (e_{m+2} - e_{m+1})))

(triangles linear in Hz, peak 1 at the centre e_{m+1}, NOT area-normalised; the same as
librosa ``filters.mel(htk=True, norm=None)`` and torchaudio ``melscale_fbanks(norm=None,
mel_scale="htk")``). Every filter must contain at least one FFT bin with a positive
weight, else the parameters are refused (too many bands for the 31.25 Hz bin spacing).

``ssl``: the hidden states of a self-supervised upstream (WavLM, HuBERT, wav2vec 2.0,
data2vec-audio, a Whisper encoder) from a local checkpoint directory, at the upstream's own
frame rate (50 frames/s); computed in ``ser_cl.data.frontends.upstream`` (needs transformers), which
documents it. Its frames are not the STFT frames above: use ``frames_for(params, N)``.

``functionals``: one frame per utterance holding its openSMILE functionals (``eGeMAPSv02``: 88
values, ``ComParE_2016``: 6,373; ``ser_cl.data.frontends.opensmile_features``, needs the ``[baseline]``
extra), stored as float32: some ComParE values exceed float16's range (up to ~1e12). The
models see them standardised (``input_norm`` "speaker" or "global"), never raw.

No mean/variance normalisation is applied here (the thesis uses none); per-band statistics
of the training speakers are in ``ser_cl.data.stores.normalize``. The parameter dicts
(``feature_params``) are what prepare.json's "features" records and what
``compute_features`` takes, so a reader can recompute exactly the same front-end.

The computation is vectorised: the frames are a strided view of the signal, windowed
and transformed in one ``scipy.fft.rfft`` call (float32 in, complex64 out); the mel
filterbank is one float32 matrix product.
"""

from __future__ import annotations

import functools
import json
from typing import Optional

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

FEATURE_KINDS = ("spectrogram", "mel", "ssl", "functionals")
DEFAULT_N_MELS = 64
DEFAULT_F_MIN = 0.0
DEFAULT_F_MAX = SAMPLE_RATE / 2  # 8000 Hz


def feature_params(
    kind: str = "spectrogram",
    n_mels: Optional[int] = None,
    f_min: Optional[float] = None,
    f_max: Optional[float] = None,
    *,
    upstream: Optional[str] = None,
    layer: Optional[int] = None,
    layers=None,
    chunk_s: Optional[float] = None,
    overlap_s: Optional[float] = None,
    feature_set: Optional[str] = None,
    whisper_window: Optional[str] = None,
) -> dict:
    """The parameter dict of a front-end (what prepare.json's "features" records).

    ``kind``: "spectrogram" (the thesis' 257-bin log-power spectrogram; takes no other
    argument), "mel" (log-mel filterbank; ``n_mels`` default 64, ``f_min`` default 0 Hz,
    ``f_max`` default 8000 Hz) or "ssl" (a self-supervised upstream's hidden states: the
    checkpoint directory ``upstream``, ``layer`` or ``layers="all"``, ``chunk_s`` /
    ``overlap_s``; see ``ser_cl.data.frontends.upstream.ssl_params``) or "functionals" (openSMILE's
    ``feature_set``, default "ComParE_2016"; one frame per utterance). Raises ``ValueError`` (one line)
    for invalid values, ``FileNotFoundError`` for a missing upstream directory.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; expected one of {', '.join(FEATURE_KINDS)}")
    ssl_given = [name for name, v in (("upstream", upstream), ("layer", layer), ("layers", layers),
                                      ("chunk_s", chunk_s), ("overlap_s", overlap_s),
                                      ("whisper_window", whisper_window)) if v is not None]
    if feature_set is not None and kind != "functionals":
        raise ValueError(f"feature_set: only for the functionals front-end (--features functionals), not for {kind!r}")
    if kind == "functionals":
        given = [name for name, v in (("n_mels", n_mels), ("f_min", f_min), ("f_max", f_max))
                 if v is not None] + ssl_given
        if given:
            raise ValueError(f"{', '.join(given)}: not for the functionals front-end (it takes --feature-set)")
        return functionals_params(feature_set or "ComParE_2016")
    if kind == "ssl":
        stft_given = [name for name, v in (("n_mels", n_mels), ("f_min", f_min), ("f_max", f_max)) if v is not None]
        if stft_given:
            raise ValueError(f"{', '.join(stft_given)}: only for the mel front-end (kind 'mel'), not for 'ssl'")
        if upstream is None:
            raise ValueError("the ssl front-end needs --upstream DIR: a local Hugging Face checkpoint directory")
        from ser_cl.data.frontends.upstream import ssl_params

        return ssl_params(upstream, layer=layer, layers=layers, chunk_s=chunk_s, overlap_s=overlap_s,
                          window=whisper_window)
    if ssl_given:
        raise ValueError(f"{', '.join(ssl_given)}: only for the ssl front-end (--features ssl), not for {kind!r}")
    common = {
        "sample_rate": SAMPLE_RATE,
        "n_fft": N_FFT,
        "win_length": WIN_LENGTH,
        "hop_length": HOP_LENGTH,
        "window": "hamming (periodic)",
        "center": False,
        "log": "natural",
        "floor": LOG_FLOOR,
    }
    if kind == "mel":
        n_mels = DEFAULT_N_MELS if n_mels is None else n_mels
        if isinstance(n_mels, bool) or not isinstance(n_mels, (int, np.integer)):
            raise ValueError(f"n_mels must be an integer >= 1, got {n_mels!r}")
        n_mels = int(n_mels)
    if kind == "spectrogram":
        given = [name for name, v in (("n_mels", n_mels), ("f_min", f_min), ("f_max", f_max)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only for the mel front-end (kind 'mel'), not for 'spectrogram'")
        params = {
            "name": "spectrogram",
            "type": "log_power_spectrogram",
            "formula": "ln(|rfft(frame * window, 512)|^2 + 1e-10)",
            **common,
            "n_freq": N_FREQ,
        }
    else:
        params = {
            "name": "mel",
            "type": "log_mel_filterbank",
            "formula": "ln(sum_k H[m, k] |rfft(frame * window, 512)[k]|^2 + 1e-10)",
            **common,
            "n_mels": n_mels,
            "f_min": float(f_min) if f_min is not None else DEFAULT_F_MIN,
            "f_max": float(f_max) if f_max is not None else DEFAULT_F_MAX,
            "mel_scale": "htk: mel(f) = 2595 log10(1 + f / 700)",
            "filters": "triangular, linear in Hz, peak 1 (not area-normalised)",
            "n_freq": n_mels,
        }
    params.update({"normalisation": "none", "dtype": "float16", "version": FEATURE_VERSION})
    validate_params(params)
    return params


def functionals_params(feature_set: str) -> dict:
    """The parameter dict of the ``functionals`` front-end for an openSMILE feature set."""
    from ser_cl.data.frontends.opensmile_features import DIMS, check_feature_set

    check_feature_set(feature_set)
    return {"name": "functionals", "type": "opensmile_functionals", "feature_set": feature_set,
            "sample_rate": SAMPLE_RATE, "frames": "one per utterance", "n_freq": DIMS[feature_set],
            "normalisation": "none", "dtype": "float32", "version": FEATURE_VERSION}


def feature_kind(params: dict) -> str:
    """"spectrogram", "mel", "ssl" or "functionals" for a parameter dict (dicts written before "name" existed are spectrograms)."""
    name = params.get("name")
    if name is None and params.get("type") == "log_power_spectrogram":
        return "spectrogram"
    if name not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {name!r} in the feature parameters; expected one of {', '.join(FEATURE_KINDS)}")
    return name


def canonical_params(params: dict) -> dict:
    """The ``feature_params`` dict equivalent to ``params`` (e.g. a prepare.json's or a
    checkpoint's, possibly written before "name" existed); ``ValueError`` if invalid."""
    validate_params(params)
    if feature_kind(params) == "ssl":  # made from a checkpoint directory: kept as recorded
        return json.loads(json.dumps(params))
    if feature_kind(params) == "functionals":
        return functionals_params(params["feature_set"])
    if feature_kind(params) == "spectrogram":
        return feature_params("spectrogram")
    return feature_params("mel", n_mels=int(params["n_mels"]), f_min=float(params["f_min"]), f_max=float(params["f_max"]))


def _as_canonical(params) -> dict:
    """A recorded front-end as ``feature_params`` writes it (none recorded: the thesis' spectrogram)."""
    if not params:
        return feature_params("spectrogram")
    try:
        return canonical_params(dict(params))
    except ValueError:
        return dict(params)


def front_end_differences(a, n_freq_a, b, n_freq_b) -> list:
    """What differs between two recorded front-ends (prepare.json / checkpoint ``features`` and
    the frames' width), e.g. ``["n_freq 64 vs 257", "name 'mel' vs 'spectrogram'"]``; [] if none."""
    ca, cb = _as_canonical(a), _as_canonical(b)
    n_freq_a = ca.get("n_freq") if n_freq_a is None else n_freq_a
    n_freq_b = cb.get("n_freq") if n_freq_b is None else n_freq_b
    diffs = []
    if n_freq_a is not None and n_freq_b is not None and int(n_freq_a) != int(n_freq_b):
        diffs.append(f"n_freq {int(n_freq_a)} vs {int(n_freq_b)}")
    diffs += [f"{k} {ca.get(k)!r} vs {cb.get(k)!r}" for k in sorted(set(ca) | set(cb))
              if k not in ("n_freq", "formula", "type", "filters") and ca.get(k) != cb.get(k)]
    return diffs


def validate_params(params: dict) -> None:
    """Raise ``ValueError`` (one line) unless ``params`` describe a front-end this module computes."""
    kind = feature_kind(params)
    if kind == "ssl":
        from ser_cl.data.frontends.upstream import validate_ssl_params

        validate_ssl_params(params)
        return
    if kind == "functionals":
        from ser_cl.data.frontends.opensmile_features import DIMS

        feature_set = params.get("feature_set")
        if feature_set not in DIMS:
            raise ValueError(f"functionals feature parameters name feature_set={feature_set!r}; "
                             f"expected one of {', '.join(DIMS)}")
        if params.get("n_freq", DIMS[feature_set]) != DIMS[feature_set]:
            raise ValueError(f"functionals feature parameters say n_freq={params['n_freq']}, but {feature_set} "
                             f"has {DIMS[feature_set]} values")
        return
    fixed = {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "win_length": WIN_LENGTH, "hop_length": HOP_LENGTH}
    for key, value in fixed.items():
        if key in params and params[key] != value:
            raise ValueError(f"feature parameter {key}={params[key]!r} is not supported (only {value})")
    if "floor" in params and float(params["floor"]) != LOG_FLOOR:
        raise ValueError(f"feature parameter floor={params['floor']!r} is not supported (only {LOG_FLOOR:g})")
    if kind == "spectrogram":
        if params.get("n_freq", N_FREQ) != N_FREQ:
            raise ValueError(f"spectrogram feature parameters say n_freq={params['n_freq']}, but it has {N_FREQ} bins")
        return
    for key in ("n_mels", "f_min", "f_max"):
        if key not in params:
            raise ValueError(f"mel feature parameters lack {key!r}")
    n_mels, f_min, f_max = params["n_mels"], float(params["f_min"]), float(params["f_max"])
    if isinstance(n_mels, bool) or not isinstance(n_mels, (int, np.integer)) or n_mels < 1:
        raise ValueError(f"n_mels must be an integer >= 1, got {n_mels!r}")
    if not (np.isfinite(f_min) and np.isfinite(f_max)):
        raise ValueError(f"f_min and f_max must be finite, got {f_min:g} and {f_max:g}")
    if f_min < 0:
        raise ValueError(f"f_min must be >= 0 Hz, got {f_min:g}")
    if f_max > SAMPLE_RATE / 2:
        raise ValueError(f"f_max must be <= {SAMPLE_RATE / 2:g} Hz (the Nyquist frequency at {SAMPLE_RATE} Hz), got {f_max:g}")
    if f_min >= f_max:
        raise ValueError(f"f_min must be below f_max, got f_min={f_min:g} Hz >= f_max={f_max:g} Hz")
    if params.get("n_freq", n_mels) != n_mels:
        raise ValueError(f"mel feature parameters say n_freq={params['n_freq']} but n_mels={n_mels}")
    n_mels = int(n_mels)
    # even-numbered bands have disjoint supports, so more than 2 * 257 bands can never all hold a bin
    empty = [0] if n_mels > 2 * N_FREQ else _empty_bands(n_mels, f_min, f_max)
    if empty:
        fit = _most_bands(min(n_mels - 1, 2 * N_FREQ), f_min, f_max)
        hint = f"use at most {fit} bands for {f_min:g}-{f_max:g} Hz" if fit else "widen f_min..f_max"
        if n_mels > 2 * N_FREQ:
            raise ValueError(f"n_mels={n_mels} is too many: some bands would contain no FFT bin; {hint}")
        m = empty[0]
        edges = mel_edges(n_mels, f_min, f_max)
        raise ValueError(
            f"mel band {m} ({edges[m]:.1f}-{edges[m + 2]:.1f} Hz) contains no FFT bin "
            f"(bins are {SAMPLE_RATE / N_FFT:g} Hz apart; {len(empty)} of {n_mels} bands empty); {hint}"
        )


def _most_bands(upper: int, f_min: float, f_max: float) -> int:
    """A large n <= upper for which no band is empty (0 if none): bisection, each candidate checked."""
    lo, hi = 0, upper  # lo: known to work (0 trivially)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _empty_bands(mid, f_min, f_max):
            hi = mid - 1
        else:
            lo = mid
    return lo


def _empty_bands(n_mels: int, f_min: float, f_max: float) -> list[int]:
    """Indices of the mel bands without an FFT bin of positive weight (> 1e-6: not a rounding error)."""
    return np.flatnonzero(_mel_weights_uncached(n_mels, f_min, f_max).max(axis=0) <= 1e-6).tolist()


def hz_to_mel(f):
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of ``hz_to_mel``: 700 (10^(m / 2595) - 1)."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_edges(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """The n_mels + 2 filter edge frequencies (Hz), equally spaced in mel; filter m has centre edges[m + 1]."""
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    edges[0], edges[-1] = f_min, f_max  # exact, not through the round trip
    return edges


def mel_centers(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Centre frequency (Hz) of each mel band, [n_mels]."""
    return mel_edges(n_mels, f_min, f_max)[1:-1]


def _mel_weights_uncached(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Filter weights H^T, float64 [257, n_mels]; see the module doc (no validation)."""
    edges = mel_edges(n_mels, f_min, f_max)
    freqs = np.arange(N_FREQ) * (SAMPLE_RATE / N_FFT)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (center - lower)
    falling = (upper - freqs[:, None]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling))


@functools.lru_cache(maxsize=16)
def _filterbank(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Validated filters, float32 [n_mels, 257], read-only and cached (one per parameter set)."""
    feature_params("mel", n_mels=n_mels, f_min=f_min, f_max=f_max)  # raises ValueError when invalid
    filters = np.ascontiguousarray(_mel_weights_uncached(n_mels, f_min, f_max).T, dtype=np.float32)
    filters.flags.writeable = False
    return filters


def mel_filterbank(n_mels: int = DEFAULT_N_MELS, f_min: float = DEFAULT_F_MIN, f_max: float = DEFAULT_F_MAX) -> np.ndarray:
    """The triangular mel filters H as float32 [n_mels, 257]; ``ValueError`` if a filter is empty."""
    if isinstance(n_mels, bool) or not isinstance(n_mels, (int, np.integer)):
        raise ValueError(f"n_mels must be an integer >= 1, got {n_mels!r}")
    return _filterbank(int(n_mels), float(f_min), float(f_max)).copy()


# the thesis' spectrogram: the default front-end (keys as before, plus "name")
FEATURE_PARAMS = feature_params("spectrogram")


_WINDOW = (0.54 - 0.46 * np.cos(2.0 * np.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)).astype(np.float32)


def frame_count(n_samples: int) -> int:
    """Number of frames ``log_spectrogram`` gives for a signal of ``n_samples`` (no centring)."""
    return 0 if n_samples < WIN_LENGTH else 1 + (n_samples - WIN_LENGTH) // HOP_LENGTH


def frames_for(params: Optional[dict], n_samples: int) -> int:
    """Number of frames the front-end ``params`` gives for ``n_samples`` (None: the spectrogram)."""
    if params and feature_kind(params) == "ssl":
        from ser_cl.data.frontends.upstream import frame_count as upstream_frames

        return upstream_frames(params["upstream"], n_samples)
    if params and feature_kind(params) == "functionals":
        return 1 if n_samples > 0 else 0
    return frame_count(n_samples)


def _power_spectrum(wave_16k: np.ndarray, who: str) -> np.ndarray:
    """Mono 16 kHz waveform [N] -> STFT power |X_t(k)|^2, float32 [T, 257], T = frame_count(N)."""
    x = np.ascontiguousarray(wave_16k, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"{who} expects a 1-D waveform, got shape {x.shape}")
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
    return power


def log_spectrogram(wave_16k: np.ndarray) -> np.ndarray:
    """Mono 16 kHz waveform [N] -> log-power spectrogram float32 [T, 257], T = frame_count(N)."""
    power = _power_spectrum(wave_16k, "log_spectrogram")
    power += np.float32(LOG_FLOOR)
    return np.log(power, out=power)


def log_mel(
    wave_16k: np.ndarray, n_mels: int = DEFAULT_N_MELS, f_min: float = DEFAULT_F_MIN, f_max: float = DEFAULT_F_MAX
) -> np.ndarray:
    """Mono 16 kHz waveform [N] -> log-mel filterbank float32 [T, n_mels], T = frame_count(N)."""
    if isinstance(n_mels, bool) or not isinstance(n_mels, (int, np.integer)):
        raise ValueError(f"n_mels must be an integer >= 1, got {n_mels!r}")
    filters = _filterbank(int(n_mels), float(f_min), float(f_max))  # validates
    power = _power_spectrum(wave_16k, "log_mel")
    energy = power @ filters.T
    energy += np.float32(LOG_FLOOR)
    return np.log(energy, out=energy)


def compute_features(wave_16k: np.ndarray, params: Optional[dict] = None, device=None) -> np.ndarray:
    """Mono 16 kHz waveform [N] -> the front-end ``params`` describe (``feature_params``; None:
    the thesis' spectrogram), float32 [T, params["n_freq"]], T = frames_for(params, N).

    Accepts the "features" dict of a prepare.json (also one written before "name" existed).
    "ssl" loads the upstream once per process (``ser_cl.data.frontends.upstream.get_upstream``) on
    ``device`` (None: CUDA when available, else the CPU); the other front-ends ignore it.
    """
    if params is None:
        return log_spectrogram(wave_16k)
    validate_params(params)
    if feature_kind(params) == "ssl":
        from ser_cl.data.frontends.upstream import compute_ssl

        return compute_ssl(wave_16k, params, device)
    if feature_kind(params) == "functionals":
        from ser_cl.data.frontends.opensmile_features import functionals_vector

        return functionals_vector(wave_16k, params["feature_set"])[None, :]
    if feature_kind(params) == "spectrogram":
        return log_spectrogram(wave_16k)
    return log_mel(wave_16k, int(params["n_mels"]), float(params["f_min"]), float(params["f_max"]))
