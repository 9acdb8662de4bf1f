"""Audio reading (WAV, FLAC, OGG, AIFF, ...), mono mix-down and resampling to 16 kHz.

Two readers, chosen by the file's first bytes (never by its name):

- RIFF/WAVE files go through a small RIFF parser of our own. It reads every encoding the
  corpora use (PCM 8-bit unsigned, 16, 24, 32 bit; IEEE float 32 and 64 bit; plain or
  WAVE_FORMAT_EXTENSIBLE headers; the 0xFFFFFFFF data size of a WAV written by a stream) and,
  unlike libsndfile, refuses a truncated file: libsndfile silently returns the samples that
  are there (half a file reads as a shorter recording), and passes NaN float samples through.
  Both readers give bit-identical samples for every encoding above (tests/test_audio_formats.py).
  The WAV encodings the parser does not decode (mu-law, A-law, ADPCM, GSM 6.10 ...) are
  handed to libsndfile once the parser has checked the file is complete.
- Everything else goes through ``soundfile`` (libsndfile): FLAC, OGG (Vorbis, Opus), AIFF/AIFC,
  RF64, big-endian RIFX, Wave64, CAF, MP3 and the rest of ``soundfile.available_formats()``.
  A file libsndfile cannot open, or that fails to decode part-way (a truncated FLAC loses
  sync), raises ``AudioError``; so does a file that decodes to fewer frames than its header
  declares, or an AIFF whose sound-data chunk runs past the end of the file. A truncated
  OGG that ends on a page boundary cannot be told from a shorter recording (OGG has no
  length in its header) and reads as one; so can a truncated RF64, Wave64 or CAF file
  (libsndfile trims their data size to the file without an error). ``soundfile`` is
  imported on first use, so WAV corpora read without it.

Broken files raise ``AudioError`` whose ``str`` is a one-line reason (empty, truncated, not
audio ...) a person can act on; a file that cannot be read at all (missing, permissions,
I/O) raises ``AudioReadError``. Samples are scaled to [-1, 1) (PCM divided by
2**(bits-1), as libsndfile does), channels averaged to mono, and the result resampled with
``scipy.signal.resample_poly`` (polyphase, anti-aliased).
"""

from __future__ import annotations

import io
import os
import struct
import wave
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np

TARGET_SAMPLE_RATE = 16000

#: File name suffixes the corpus readers list as audio (lower case). MP3 is readable but not
#: listed: some corpora (CREMA-D) ship MP3 copies next to their WAVs under the same names.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc")

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE
_STREAMING_SIZE = 0xFFFFFFFF  # data size of a WAV written by a stream that never patched its header
_NOT_AUDIO = "not a WAV, FLAC, OGG, AIFF or other audio file (format not recognised)"
_BLOCK_FRAMES = 1 << 16


class AudioError(ValueError):
    """A file that cannot be used as audio; ``str(err)`` is the reason (one line)."""


class AudioReadError(AudioError):
    """The file could not be read at all (missing, permissions, I/O): possibly transient."""


class _UnsupportedEncoding(AudioError):
    """A complete RIFF/WAVE file in an encoding the RIFF parser does not decode."""


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file -> (samples float32 [n_samples, n_channels] in [-1, 1), sample_rate).

    Raises ``AudioError`` for an empty, truncated, non-audio or unsupported file and
    ``AudioReadError`` for one that cannot be read (missing, permissions).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise AudioReadError(f"cannot read file: {err.strerror or err}") from err
    return decode_audio_bytes(data)


read_wav = read_audio  # the old name: it reads every format now


def decode_audio_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode the bytes of an audio file of any supported format; see ``read_audio``."""
    if not data:
        raise AudioError("empty file (0 bytes)")
    if data[:4] == b"RIFF":
        try:
            return parse_wav_bytes(data)
        except _UnsupportedEncoding as err:
            try:
                return _decode_libsndfile(data, "WAV")
            except AudioReadError:
                raise
            except AudioError:  # the parser's reason names the encoding
                raise AudioError(f"{err} (libsndfile cannot decode it either)") from None
    return _decode_libsndfile(data, _sniff(data))


def _sniff(data: bytes) -> str | None:
    """The container named by the first bytes (for messages), or None."""
    head = data[:12]
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] in (b"RF64", b"RIFX"):
        return f"WAV ({head[:4].decode()})"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    return None


class _Bytes(io.BytesIO):
    """The file's bytes for libsndfile; a corrupt header's seek before the start stays put instead
    of raising inside soundfile's callback (which only prints the exception)."""

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            return super().seek(offset, whence)
        except ValueError:
            return self.tell()


def _soundfile():
    try:
        import soundfile
    except (ImportError, OSError) as err:  # OSError: the libsndfile library itself is missing
        # not the file's fault: AudioReadError, so prepare does not cache it as a bad file
        raise AudioReadError(f"reading this format needs the soundfile package with libsndfile ({err})") from None
    return soundfile


def _decode_libsndfile(data: bytes, kind: str | None) -> tuple[np.ndarray, int]:
    """Decode with libsndfile, in blocks (a corrupt header's frame count never sizes an allocation)."""
    if kind == "AIFF":
        _check_aiff_complete(data)
    sf = _soundfile()
    parts = []
    try:
        with sf.SoundFile(_Bytes(data)) as f:
            declared, rate, channels = f.frames, f.samplerate, f.channels
            kind = kind or f.format
            if channels < 1 or rate < 1:
                raise AudioError(f"malformed {kind} header: {channels} channels at {rate} Hz")
            block = np.empty((_BLOCK_FRAMES, channels), dtype=np.float32)
            while True:
                got = f.read(dtype="float32", always_2d=True, out=block)
                if len(got) == 0:
                    break
                parts.append(got.copy())
    except AudioError:
        raise
    except sf.LibsndfileError as err:
        reason = _one_line(getattr(err, "error_string", "") or str(err))
        reason = reason.removeprefix("Error :").strip().rstrip(".") or f"libsndfile error {err.code}"
        reason = reason[:1].lower() + reason[1:]
        if kind is None:
            raise AudioError(_NOT_AUDIO if err.code == 1 else f"unreadable audio file ({reason})") from None
        raise AudioError(f"corrupt or truncated {kind} file ({reason})") from None
    except (RuntimeError, ValueError, TypeError, MemoryError, OverflowError) as err:
        raise AudioError(_one_line(f"cannot decode {kind or 'audio'} file ({type(err).__name__}: {err})")) from None
    samples = np.concatenate(parts) if parts else np.zeros((0, channels), dtype=np.float32)
    if len(samples) < declared:
        raise AudioError(
            f"truncated: the {kind} header declares {declared} frames but only {len(samples)} could be decoded"
        )
    if not np.isfinite(samples).all():
        raise AudioError("float samples contain NaN or infinity")
    return samples, int(rate)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_aiff_complete(data: bytes) -> None:
    """AudioError when the SSND chunk of an AIFF/AIFC (or a chunk before it) runs past the end of the
    file: libsndfile would read the samples that are there as a shorter recording."""
    size, pos = len(data), 12
    while pos + 8 <= size:
        chunk_id = data[pos : pos + 4]
        (chunk_size,) = struct.unpack_from(">I", data, pos + 4)
        end = pos + 8 + chunk_size
        if chunk_id == b"SSND":
            if end > size:
                raise AudioError(
                    f"truncated: SSND chunk declares {chunk_size} bytes but only {size - pos - 8} are present"
                )
            return
        if end > size:
            raise AudioError(f"truncated: the file ends inside the {chunk_id.decode('latin-1')!r} chunk, "
                             "before the sound data (SSND)")
        pos = end + (chunk_size & 1)


def parse_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode the bytes of a RIFF/WAVE file with the RIFF parser (WAV only; see the module doc)."""
    size = len(data)
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    if size < 12:
        raise AudioError(f"truncated: {size} bytes, too small for a RIFF/WAVE header")
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[:4] in (b"RIFX", b"RF64"):
            raise AudioError(f"unsupported WAV variant {data[:4].decode()} (only little-endian RIFF)")
        if data[:4] == b"RIFF":  # (worded apart from the line below: see prepare's stale cache reasons)
            raise AudioError(f"not a WAV file (a RIFF {data[8:12]!r} file, not RIFF/WAVE)")
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
    raise _UnsupportedEncoding(f"unsupported WAV encoding: {kind}, {bits} bits in {width}-byte samples")


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


def change_speed(wave: np.ndarray, speed: float) -> np.ndarray:
    """The signal played ``speed`` times as fast (tempo and pitch together, as sox's ``speed``
    effect and Kaldi's speed perturbation do): resampled by 1 / ``speed`` (to within 1/1000) and
    read at the same rate, so 0.9 gives a 10/9 longer, lower-pitched signal."""
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed:g}")
    ratio = Fraction(speed).limit_denominator(1000)
    if ratio == 1:
        return wave.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    return resample_poly(wave.astype(np.float32, copy=False), ratio.denominator, ratio.numerator).astype(
        np.float32, copy=False)


def load_audio(
    path: str | os.PathLike, sample_rate: int = TARGET_SAMPLE_RATE, min_duration: float = 0.0
) -> np.ndarray:
    """Read an audio file (any format ``read_audio`` reads) as mono float32 at ``sample_rate`` (default 16 kHz).

    Raises ``AudioError`` for unusable files, including ones shorter than ``min_duration`` seconds.
    """
    samples, rate = read_audio(path)
    mono = resample(to_mono(samples), rate, sample_rate)
    if mono.size == 0:
        raise AudioError("no audio samples (0 frames)")
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
