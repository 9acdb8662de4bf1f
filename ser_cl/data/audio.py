"""WAV reading, mono mix-down and resampling to 16 kHz.

A small RIFF parser of our own (instead of ``scipy.io.wavfile``) so that every
encoding the corpora use is read the same way, including 24-bit PCM and
WAVE_FORMAT_EXTENSIBLE, and so that a broken file fails with a reason a person can
act on (``AudioError``) rather than a stack trace from deep inside a library.

Supported: PCM 8 (unsigned), 16, 24, 32 bit; IEEE float 32 and 64 bit; plain or
WAVE_FORMAT_EXTENSIBLE headers; any sample rate; any channel count. Samples are
scaled to [-1, 1) (PCM divided by 2**(bits-1)), channels averaged to mono, and the
result resampled with ``scipy.signal.resample_poly`` (polyphase, anti-aliased).
"""

from __future__ import annotations

import os
import struct
import wave
from math import gcd
from pathlib import Path

import numpy as np

TARGET_SAMPLE_RATE = 16000

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE
_STREAMING_SIZE = 0xFFFFFFFF  # data size of a WAV written by a stream that never patched its header


class AudioError(ValueError):
    """A file that cannot be used as audio; ``str(err)`` is the reason (one line)."""


class AudioReadError(AudioError):
    """The file could not be read at all (missing, permissions, I/O): possibly transient."""


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV file -> (samples float32 [n_samples, n_channels] in [-1, 1), sample_rate).

    Raises ``AudioError`` for an empty, truncated, non-WAV or unsupported file.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise AudioReadError(f"cannot read file: {err.strerror or err}") from err
    return parse_wav_bytes(data)


def parse_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode the bytes of a WAV file; see ``read_wav``."""
    size = len(data)
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    if size < 12:
        raise AudioError(f"truncated: {size} bytes, too small for a RIFF/WAVE header")
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[:4] in (b"RIFX", b"RF64"):
            raise AudioError(f"unsupported WAV variant {data[:4].decode()} (only little-endian RIFF)")
        raise AudioError("not a WAV file (no RIFF/WAVE header)")

    fmt: bytes | None = None
    data_offset = data_size = -1
    pos = 12
    while pos + 8 <= size:
        chunk_id = data[pos : pos + 4]
        (chunk_size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"data":
            if chunk_size == _STREAMING_SIZE:
                chunk_size = size - body
            data_offset, data_size = body, chunk_size
            if fmt is not None:
                break  # everything needed is known; skip trailing chunks
        elif chunk_id == b"fmt ":
            if body + chunk_size > size:
                raise AudioError("truncated: the file ends inside the fmt chunk")
            fmt = data[body : body + chunk_size]
            if data_offset >= 0:
                break
        pos = body + chunk_size + (chunk_size & 1)

    if fmt is None:
        if data_offset >= 0:
            raise AudioError("no fmt chunk (not a valid WAV file)")
        raise AudioError("truncated: the file ends before the fmt chunk")
    if data_offset < 0:
        raise AudioError("truncated: no data chunk (the file ends before the audio data)")
    if len(fmt) < 16:
        raise AudioError(f"malformed fmt chunk ({len(fmt)} bytes, need 16)")

    format_tag, n_channels, sample_rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if format_tag == _FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise AudioError("malformed WAVE_FORMAT_EXTENSIBLE fmt chunk (shorter than 40 bytes)")
        (format_tag,) = struct.unpack_from("<H", fmt, 24)  # first 2 bytes of the SubFormat GUID
    if n_channels < 1:
        raise AudioError("malformed fmt chunk: 0 channels")
    if sample_rate < 1:
        raise AudioError("malformed fmt chunk: sample rate 0")
    if block_align < n_channels or block_align % n_channels:
        block_align = n_channels * ((bits + 7) // 8)
    width = block_align // n_channels  # bytes per sample in the container

    available = size - data_offset
    if data_size > available:
        raise AudioError(
            f"truncated: data chunk declares {data_size} bytes but only {available} are present"
        )
    n_frames = data_size // block_align
    raw = np.frombuffer(data, dtype=np.uint8, count=n_frames * block_align, offset=data_offset)
    samples = _decode(raw, format_tag, width, bits)
    samples = samples.reshape(n_frames, n_channels)
    if format_tag == _FORMAT_FLOAT and not np.isfinite(samples).all():
        raise AudioError("float samples contain NaN or infinity")
    return samples, int(sample_rate)


def _decode(raw: np.ndarray, format_tag: int, width: int, bits: int) -> np.ndarray:
    """Bytes of interleaved samples -> float32 values in [-1, 1)."""
    if format_tag == _FORMAT_PCM:
        if width == 1:  # 8-bit WAV is unsigned, centred on 128
            return (raw.astype(np.float32) - 128.0) / 128.0
        if width == 2:
            return raw.view("<i2").astype(np.float32) / 32768.0
        if width == 3:
            # place the 3 little-endian bytes in the top of an int32 and shift back: sign-extends
            wide = np.zeros((raw.size // 3, 4), dtype=np.uint8)
            wide[:, 1:] = raw.reshape(-1, 3)
            return (wide.view("<i4").reshape(-1) >> 8).astype(np.float32) / float(1 << 23)
        if width == 4:
            return (raw.view("<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    elif format_tag == _FORMAT_FLOAT:
        if width == 4:
            return raw.view("<f4").astype(np.float32)
        if width == 8:
            return raw.view("<f8").astype(np.float32)
    names = {_FORMAT_PCM: "PCM", _FORMAT_FLOAT: "float"}
    kind = names.get(format_tag, f"format tag 0x{format_tag:04x}")
    raise AudioError(f"unsupported WAV encoding: {kind}, {bits} bits in {width}-byte samples")


def to_mono(samples: np.ndarray) -> np.ndarray:
    """[n, channels] -> [n] float32, the mean of the channels."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    if samples.shape[1] == 1:
        return samples[:, 0].astype(np.float32, copy=False)
    return samples.mean(axis=1, dtype=np.float32)


def resample(wave_in: np.ndarray, sample_rate: int, target_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Resample a mono float signal with ``scipy.signal.resample_poly`` (up/down reduced by their gcd).

    Output length is ceil(n * target_rate / sample_rate).
    """
    if sample_rate == target_rate:
        return wave_in.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(int(sample_rate), int(target_rate))
    up, down = target_rate // g, sample_rate // g
    return resample_poly(wave_in.astype(np.float32, copy=False), up, down).astype(np.float32, copy=False)


def load_audio(
    path: str | os.PathLike, sample_rate: int = TARGET_SAMPLE_RATE, min_duration: float = 0.0
) -> np.ndarray:
    """Read a WAV file as mono float32 at ``sample_rate`` (default 16 kHz).

    Raises ``AudioError`` for unusable files, including ones shorter than ``min_duration`` seconds.
    """
    samples, rate = read_wav(path)
    mono = resample(to_mono(samples), rate, sample_rate)
    if mono.size == 0:
        raise AudioError("no audio samples (empty data chunk)")
    duration = mono.size / sample_rate
    if duration < min_duration:
        raise AudioError(f"too short: {duration:.3f} s (< {min_duration:g} s)")
    return mono


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = TARGET_SAMPLE_RATE) -> None:
    """Write float samples ([n] or [n, channels], in [-1, 1]) as 16-bit PCM with the stdlib ``wave`` module."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(pcm.shape[1])
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
