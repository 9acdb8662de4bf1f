"""WAV reading: every encoding against files written by independent writers (stdlib ``wave``,
hand-packed headers), channel mix-down, resampling, and clear errors for bad files."""

from __future__ import annotations

import struct
import wave

import numpy as np
import pytest

from ser_cl.data.frontends.audio import AudioError, load_audio, read_wav, resample


def _write_stdlib(path, ints: np.ndarray, width: int, rate: int) -> None:
    """Integer samples [n, ch] -> PCM WAV through the stdlib wave module (8-bit is unsigned)."""
    ints = np.asarray(ints)
    n, ch = ints.shape
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        u = ints.astype(np.int64) & 0xFFFFFF
        raw = np.stack([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF], axis=-1).astype(np.uint8).tobytes()
    else:
        raw = ints.astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(ch)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def _write_float_wav(path, samples: np.ndarray, rate: int, extensible: bool = False) -> None:
    """Float32 WAV with a hand-packed header (format 3, or WAVE_FORMAT_EXTENSIBLE with the float GUID)."""
    samples = np.asarray(samples, dtype="<f4")
    if samples.ndim == 1:
        samples = samples[:, None]
    ch = samples.shape[1]
    data = samples.tobytes()
    if extensible:
        guid = struct.pack("<H", 3) + bytes.fromhex("000000001000800000aa00389b71")
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, ch, rate, rate * 4 * ch, 4 * ch, 32, 22, 32, 0) + guid
    else:
        fmt = struct.pack("<HHIIHH", 3, ch, rate, rate * 4 * ch, 4 * ch, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"  # an extra chunk before the data, as some tools write
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_widths_decode_exactly(tmp_path, width):
    rng = np.random.default_rng(width)
    full = 1 << (8 * width - 1)
    ints = rng.integers(-full, full, size=(1000, 1))
    ints[:4, 0] = [-full, full - 1, 0, -1]  # extremes exercise sign extension
    path = tmp_path / f"pcm{width}.wav"
    _write_stdlib(path, ints, width, 16000)
    samples, rate = read_wav(path)
    assert rate == 16000 and samples.shape == (1000, 1) and samples.dtype == np.float32
    np.testing.assert_allclose(samples[:, 0], ints[:, 0] / full, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("extensible", [False, True])
def test_float32_and_extensible(tmp_path, extensible):
    x = np.random.default_rng(0).uniform(-1, 1, size=(800, 2)).astype(np.float32)
    path = tmp_path / "f.wav"
    _write_float_wav(path, x, 22050, extensible=extensible)
    samples, rate = read_wav(path)
    assert rate == 22050
    np.testing.assert_array_equal(samples, x)


def test_extensible_pcm24(tmp_path):
    ints = np.array([[-(1 << 23)], [1], [(1 << 23) - 1], [-5]])
    data = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints[:, 0])
    guid = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 48000, 3, 24, 22, 24, 4) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    (tmp_path / "e.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    samples, _ = read_wav(tmp_path / "e.wav")
    np.testing.assert_allclose(samples[:, 0], ints[:, 0] / (1 << 23))


def test_stereo_is_averaged_to_mono(tmp_path):
    left = np.full(8000, 1000)
    right = np.full(8000, -3000)
    _write_stdlib(tmp_path / "st.wav", np.stack([left, right], axis=1), 2, 16000)
    mono = load_audio(tmp_path / "st.wav")
    assert mono.shape == (8000,)
    np.testing.assert_allclose(mono, -1000 / 32768, rtol=1e-6)


@pytest.mark.parametrize("rate", [48000, 22050, 8000])
def test_resampling_preserves_a_tone(tmp_path, rate):
    freq = 440.0
    t = np.arange(int(rate * 0.5)) / rate
    ints = np.round(16000 * np.sin(2 * np.pi * freq * t)).astype(np.int64)[:, None]
    _write_stdlib(tmp_path / "tone.wav", ints, 2, rate)
    y = load_audio(tmp_path / "tone.wav")
    assert y.size == int(np.ceil(t.size * 16000 / rate))
    expected = 16000 / 32768 * np.sin(2 * np.pi * freq * np.arange(y.size) / 16000)
    inner = slice(400, y.size - 400)  # away from the filter's edge transients
    assert np.max(np.abs(y[inner] - expected[inner])) < 5e-3


def test_resampling_removes_content_above_new_nyquist():
    rate = 48000
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * 12000 * t).astype(np.float32)  # above 8 kHz: must not alias into the output
    y = resample(x, rate, 16000)
    assert np.sqrt(np.mean(y[500:-500] ** 2)) < 0.01


def test_bad_files_raise_audio_error_with_reason(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio at all, just text")
    _write_stdlib(tmp_path / "good.wav", np.zeros((16000, 1), dtype=np.int64), 2, 16000)
    full = (tmp_path / "good.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[: len(full) // 2])
    (tmp_path / "header_only.wav").write_bytes(full[:20])
    _write_stdlib(tmp_path / "short.wav", np.zeros((1600, 1), dtype=np.int64), 2, 16000)

    cases = {"empty.wav": "empty", "text.wav": "not a WAV", "cut.wav": "truncated", "header_only.wav": "truncated"}
    for name, word in cases.items():
        with pytest.raises(AudioError, match=word):
            read_wav(tmp_path / name)
    with pytest.raises(AudioError, match="too short"):
        load_audio(tmp_path / "short.wav", min_duration=0.25)
    with pytest.raises(AudioError, match="cannot read"):
        read_wav(tmp_path / "missing.wav")


def test_streaming_wav_with_unpatched_sizes_reads_to_the_end(tmp_path):
    """A WAV written by a stream that never patched its header (RIFF and data sizes 0xFFFFFFFF)."""
    ints = np.arange(-500, 500)[:, None] * 30
    _write_stdlib(tmp_path / "s.wav", ints, 2, 16000)
    data = bytearray((tmp_path / "s.wav").read_bytes())
    assert data[36:40] == b"data"
    data[4:8] = data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    (tmp_path / "s.wav").write_bytes(bytes(data))
    samples, rate = read_wav(tmp_path / "s.wav")
    assert rate == 16000
    np.testing.assert_array_equal(samples[:, 0], ints[:, 0] / 32768)


def test_nan_float_wav_is_refused(tmp_path):
    x = np.array([0.1, np.nan, 0.2], dtype=np.float32)
    _write_float_wav(tmp_path / "nan.wav", x, 16000)
    with pytest.raises(AudioError, match="NaN"):
        read_wav(tmp_path / "nan.wav")
