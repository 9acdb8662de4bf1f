"""The ssl front-end's parameter dict (prepare.json "features") and its frame / chunk arithmetic:
which checkpoint directory, which layers, how long files are cut, how many frames N samples give.
Reads configs only (no weights, no torch); the model itself is ``ser_cl.data.frontends.upstream``, whose
docstring describes the front-end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

SAMPLE_RATE = 16000
SSL_VERSION = 1
DEFAULT_CHUNK_S = 20.0
DEFAULT_OVERLAP_S = 1.0
WHISPER_MAX_S = 30.0  # Whisper's encoder sees 30 s windows, no more
#: how a Whisper encoder sees a clip: "clip" (its own mel frames, the positional embeddings cut to
#: that length) or "30s" (padded to the 30 s window it was trained on, output trimmed). Default
#: "30s", chosen on EmoDB (linear probe on layer 4, speaker-normalised mean + std pooling,
#: leave-one-speaker-out: 89.36 UA in the 30 s window, 83.85 on the clips' frames), at about 14x
#: the CPU time of "clip" (docs/ssl_upstreams.md)
WHISPER_WINDOWS = ("clip", "30s")
DEFAULT_WHISPER_WINDOW = "30s"
#: model_type (config.json) -> family name in messages
FAMILIES = {
    "wavlm": "WavLM",
    "hubert": "HuBERT",
    "wav2vec2": "wav2vec 2.0 / XLS-R",
    "data2vec-audio": "data2vec-audio",
    "whisper": "Whisper (encoder)",
}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_INSTALL_HINT = 'the ssl front-end needs transformers: pip install "ser-cl[ssl]"'


# -- the parameter dict (prepare.json "features") ------------------------------------------------------

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"upstream {path.parent}: cannot read {path.name}: {err}") from None


def _check_dir(path: Path) -> None:
    """One-line errors for a directory that is not a supported checkpoint (no transformers needed)."""
    if not path.is_dir():
        raise FileNotFoundError(f"upstream {path}: no such directory; download the checkpoint into it first "
                                "(docs/ssl_upstreams.md)")
    if not (path / "config.json").is_file():
        raise ValueError(f"upstream {path}: not a Hugging Face checkpoint directory (no config.json)")
    model_type = _read_json(path / "config.json").get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(f"upstream {path}: model_type {model_type!r} is not supported; "
                         f"supported: {', '.join(FAMILIES)}")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ValueError(f"upstream {path}: no weights ({' or '.join(WEIGHT_FILES[::2])}) in the directory")
    if model_type == "whisper" and not (path / "preprocessor_config.json").is_file():
        raise ValueError(f"upstream {path}: a Whisper checkpoint needs its preprocessor_config.json "
                         "(the WhisperFeatureExtractor settings) in the directory")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment says now: HF_HUB_CACHE, else HF_HOME/hub,
    else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def resolve_upstream(upstream: str | os.PathLike) -> Path:
    """A checkpoint directory, or a Hugging Face model id (``openai/whisper-base``) found in the
    local Hugging Face cache: its snapshot directory. Nothing is downloaded (so HF_HUB_OFFLINE
    changes nothing); ``hf download ID`` fills the cache (docs/ssl_upstreams.md). A path that
    exists is always the directory, even if it also reads as a model id."""
    path = Path(upstream).expanduser()
    text = str(upstream)
    if path.exists() or not _HUB_ID.match(text):
        return path
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise ValueError(_INSTALL_HINT) from None
    cache = hub_cache_dir()
    try:
        return Path(snapshot_download(text, cache_dir=str(cache), local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise FileNotFoundError(
            f"upstream {text}: no such directory, and no Hugging Face model {text} in the cache {cache}; "
            f"download it first (hf download {text}) or give a checkpoint directory") from None


def config_hash(path: str | os.PathLike) -> str:
    """sha256 (16 hex digits) of config.json, preprocessor_config.json (if any) and the weight
    files' names and sizes: what the cache key and the checkpoint check compare (the weights
    themselves are not hashed: reading gigabytes for a key would cost more than it saves)."""
    path = Path(path)
    h = hashlib.sha256()
    for name in ("config.json", "preprocessor_config.json"):
        f = path / name
        h.update(name.encode() + b"\0" + (f.read_bytes() if f.is_file() else b"") + b"\0")
    for f in sorted(path.iterdir()):
        if f.name.endswith((".safetensors", ".bin", ".index.json")):
            h.update(f"{f.name}:{f.stat().st_size}\0".encode())
    return h.hexdigest()[:16]


def _auto_config(path: Path):
    try:
        from transformers import AutoConfig
    except ImportError:
        raise ValueError(_INSTALL_HINT) from None
    try:
        return AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"upstream {path}: cannot read its config: {str(err).splitlines()[0]}") from None


def describe_upstream(path: str | os.PathLike) -> dict:
    """The ``upstream`` record of an ssl parameter dict: what the checkpoint at ``path`` is and
    how its frames relate to samples. Reads the configs only, not the weights."""
    hub_id = str(path) if not Path(path).expanduser().exists() and _HUB_ID.match(str(path)) else None
    path = resolve_upstream(path).resolve()
    _check_dir(path)
    config = _auto_config(path)
    family = config.model_type
    pre = _read_json(path / "preprocessor_config.json") if (path / "preprocessor_config.json").is_file() else {}
    if family == "whisper":
        mel_hop = int(pre.get("hop_length", 160))
        n_layers, hidden = int(config.encoder_layers), int(config.d_model)
        # conv1 stride 1, conv2 stride 2 over the mel frames
        hop, receptive_field, padding = 2 * mel_hop, 2 * mel_hop, "whisper-30s"
        max_chunk_s = float(pre.get("chunk_length", WHISPER_MAX_S))
        normalize = bool(pre.get("do_normalize", False))
    else:
        kernels, strides = list(config.conv_kernel), list(config.conv_stride)
        hop, receptive_field = 1, 1
        for k, s in zip(kernels, strides):  # receptive field of the strided conv stack, in samples
            receptive_field += (k - 1) * hop
            hop *= s
        n_layers, hidden = int(config.num_hidden_layers), int(config.hidden_size)
        per_frame = getattr(config, "feat_extract_norm", "layer") == "layer"  # data2vec-audio: always layer norm
        padding = "attention-mask" if per_frame else "equal-length"
        max_chunk_s = None
        normalize = bool(pre.get("do_normalize", False))
    record = {
        "path": str(path),
        "family": family,
        "config_hash": config_hash(path),
        "n_layers": n_layers,
        "hidden_size": hidden,
        "hop_samples": hop,
        "receptive_field": receptive_field,
        "frame_rate": SAMPLE_RATE / hop,
        "do_normalize": normalize,
        "padding": padding,
        "max_chunk_s": max_chunk_s,
    }
    if hub_id is not None:  # where the directory came from: the model id, resolved in the hub cache
        record["hub_id"] = hub_id
    return record


def default_layer(n_layers: int) -> int:
    """Our default: two thirds up the stack (8 of 12, 16 of 24, 4 of 6); see the module doc."""
    return int(round(2 * n_layers / 3))


def whisper_window(params: dict) -> Optional[str]:
    """A Whisper store's window ("clip" or "30s"; parameters recorded before the choice existed:
    "30s"); None for the other families."""
    if params["upstream"]["family"] != "whisper":
        return None
    return params.get("whisper_window", "30s")


def ssl_params(upstream: str | os.PathLike, layer: Optional[int] = None, layers=None,
               chunk_s: Optional[float] = None, overlap_s: Optional[float] = None,
               window: Optional[str] = None) -> dict:
    """The parameter dict of the ssl front-end (what prepare.json's "features" records).

    ``layer``: one hidden state, 0 .. n_layers (None: ``default_layer``); ``layers``: "all"
    (every hidden state, 0 .. n_layers) or a list of layer numbers; not both. ``chunk_s`` /
    ``overlap_s``: how long files are cut (default 20 s / 1 s). ``window`` (Whisper only):
    "clip" or "30s" (``WHISPER_WINDOWS``; default ``DEFAULT_WHISPER_WINDOW``). One-line
    ``ValueError`` / ``FileNotFoundError`` for a bad directory or value.
    """
    record = describe_upstream(upstream)
    if window is not None and record["family"] != "whisper":
        raise ValueError(f"--whisper-window is only for a Whisper upstream, not {FAMILIES[record['family']]}")
    n = record["n_layers"]
    if layer is not None and layers is not None:
        raise ValueError("give --layer N or --layers all, not both")
    if layers == "all":
        chosen = list(range(n + 1))
    elif layers is not None:
        chosen = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
    else:
        chosen = [default_layer(n) if layer is None else layer]
    for value in chosen:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= n:
            raise ValueError(f"layer {value!r} is out of range: this {FAMILIES[record['family']]} upstream has "
                             f"layers 0..{n} (0 = the input of the first Transformer layer)")
    params = {
        "name": "ssl",
        "type": "ssl_upstream_hidden_states",
        "sample_rate": SAMPLE_RATE,
        "upstream": record,
        "layers": [int(v) for v in chosen],
        "n_stored_layers": len(chosen),
        "hidden_size": record["hidden_size"],
        "layout": "[T, n_stored_layers * hidden_size]: the layers' hidden states side by side, in 'layers' order",
        "chunk_s": float(DEFAULT_CHUNK_S if chunk_s is None else chunk_s),
        "overlap_s": float(DEFAULT_OVERLAP_S if overlap_s is None else overlap_s),
        "n_freq": len(chosen) * record["hidden_size"],
        "normalisation": "none",
        "dtype": "float16",
        "version": SSL_VERSION,
    }
    if record["family"] == "whisper":
        params["whisper_window"] = DEFAULT_WHISPER_WINDOW if window is None else window
    validate_ssl_params(params)
    return params


def validate_ssl_params(params: dict) -> None:
    """Raise a one-line ``ValueError`` unless ``params`` is a consistent ssl parameter dict
    (no file access: a store can be read where its upstream directory is not)."""
    up = params.get("upstream")
    keys = ("path", "family", "config_hash", "n_layers", "hidden_size", "hop_samples", "receptive_field")
    if not isinstance(up, dict) or any(k not in up for k in keys):
        raise ValueError("ssl feature parameters lack the 'upstream' record (path, family, config_hash, ...)")
    if up["family"] not in FAMILIES:
        raise ValueError(f"ssl feature parameters: family {up['family']!r} is not supported")
    layers = params.get("layers")
    if not layers or any(not 0 <= int(v) <= int(up["n_layers"]) for v in layers):
        raise ValueError(f"ssl feature parameters: layers {layers!r} outside 0..{up['n_layers']}")
    if int(params.get("n_freq", -1)) != len(layers) * int(up["hidden_size"]):
        raise ValueError(f"ssl feature parameters say n_freq={params.get('n_freq')}, but {len(layers)} layer(s) "
                         f"x {up['hidden_size']} values")
    if up["family"] == "whisper" and whisper_window(params) not in WHISPER_WINDOWS:
        raise ValueError(f"--whisper-window {params.get('whisper_window')!r}: expected one of {', '.join(WHISPER_WINDOWS)}")
    if up["family"] != "whisper" and "whisper_window" in params:
        raise ValueError("ssl feature parameters: whisper_window is only for a Whisper upstream")
    hop = int(up["hop_samples"])
    chunk, overlap = _chunk_samples(params)
    if chunk < 4 * hop:
        raise ValueError(f"chunk_s={params.get('chunk_s')} is too short (at least {4 * hop / SAMPLE_RATE:g} s)")
    if not 2 * hop <= overlap <= chunk // 2:
        raise ValueError(f"overlap_s={params.get('overlap_s')} must lie between {2 * hop / SAMPLE_RATE:g} s and "
                         f"half the chunk ({chunk / 2 / SAMPLE_RATE:g} s)")
    if up.get("max_chunk_s") is not None and chunk > float(up["max_chunk_s"]) * SAMPLE_RATE:
        raise ValueError(f"chunk_s={params['chunk_s']} exceeds this upstream's {up['max_chunk_s']:g} s window")


def _chunk_samples(params: dict) -> Tuple[int, int]:
    """(chunk, overlap) in samples, whole frames (multiples of the hop)."""
    hop = int(params["upstream"]["hop_samples"])
    chunk = int(round(float(params["chunk_s"]) * SAMPLE_RATE / hop)) * hop
    overlap = int(round(float(params["overlap_s"]) * SAMPLE_RATE / hop)) * hop
    return chunk, overlap


# -- frames and chunks ----------------------------------------------------------------------------------

def frame_count(upstream: dict, n_samples: int) -> int:
    """Frames the upstream gives for ``n_samples`` (Whisper: ``ceil((N // 160) / 2)``, the conv
    stack's output on the clip's own mel frames, which is also what is kept of a 30 s window)."""
    n_samples = int(n_samples)
    if upstream["family"] == "whisper":
        mel_frames = n_samples // (int(upstream["hop_samples"]) // 2)
        return (mel_frames + 1) // 2
    rf, hop = int(upstream["receptive_field"]), int(upstream["hop_samples"])
    return 0 if n_samples < rf else (n_samples - rf) // hop + 1


def chunk_bounds(n_samples: int, chunk: int, overlap: int, hop: int) -> List[Tuple[int, int]]:
    """Sample ranges [start, end) covering [0, n_samples): starts on the frame grid (multiples of
    ``hop``), ``chunk`` long, ``chunk - overlap`` apart; the last one ends at ``n_samples`` (it
    starts early enough to be at most ``chunk`` long, so it overlaps its neighbour by >= overlap)."""
    if n_samples <= chunk:
        return [(0, n_samples)]
    step = chunk - overlap
    n_chunks = 1 + -(-(n_samples - chunk) // step)
    last = -(-(n_samples - chunk) // hop) * hop
    starts = [k * step for k in range(n_chunks - 1)] + [last]
    return [(s, min(s + chunk, n_samples)) for s in starts]


def stitch(pieces: Sequence[np.ndarray], bounds: Sequence[Tuple[int, int]], hop: int, n_frames: int) -> np.ndarray:
    """Per-chunk frames -> the utterance's [n_frames, F]: chunk k's frame j is global frame
    start_k / hop + j; where two chunks overlap, the frames before the middle of the overlap come
    from the earlier chunk, the rest from the later one."""
    if len(pieces) == 1:
        return pieces[0][:n_frames]
    out = np.empty((n_frames, pieces[0].shape[1]), dtype=pieces[0].dtype)
    begin = 0
    for k, (piece, (start, _)) in enumerate(zip(pieces, bounds)):
        first = start // hop
        end = first + piece.shape[0]
        if k + 1 < len(pieces):
            next_first = bounds[k + 1][0] // hop
            end = (next_first + end) // 2  # the middle of the overlap
        end = min(end, n_frames)
        out[begin:end] = piece[begin - first:end - first]
        begin = end
    if begin != n_frames:  # cannot happen with chunk_bounds' overlap >= 2 hops; a bug, not bad input
        raise RuntimeError(f"chunks cover {begin} of {n_frames} frames")
    return out
