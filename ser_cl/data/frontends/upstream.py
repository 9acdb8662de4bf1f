"""Self-supervised upstreams as a front-end: hidden states of WavLM, HuBERT, wav2vec 2.0 / XLS-R,
data2vec-audio or a Whisper encoder, read from a local Hugging Face checkpoint directory.

``ser-cl prepare --features ssl --upstream DIR [--layer N | --layers all]``. DIR holds
``config.json`` and the weights (``model.safetensors`` or ``pytorch_model.bin``, possibly
sharded), optionally ``preprocessor_config.json``; everything is loaded from DIR only
(``local_files_only=True``: nothing is downloaded). Needs the ``ssl`` extra
(``pip install "ser-cl[ssl]"``: transformers).

What is stored, per frame: ``hidden_states[l]`` of the model's own ``output_hidden_states``
for each chosen layer ``l`` (0 = the input of the first Transformer layer: the projected CNN
features with the positional embedding added, for every family; ``n_layers`` = the output of
the last layer), concatenated layer after layer: ``[T, n_stored * D]`` with
``D`` the hidden size. The frame rate is the upstream's (50 frames/s for every supported
family: one frame per 320 samples). Default layer: ``round(2 * n_layers / 3)`` (8 of 12, 16 of
24, 4 of 6), for every family. That is our choice, not a measured optimum: this project has not
compared layers on real weights; the common SUPERB practice is a learned weighted sum of all
layers, which ``--layers all`` makes possible downstream (at n_layers + 1 times the disk).

How the waveform reaches the model, as the checkpoint says:

- wav2vec family: ``preprocessor_config.json``'s feature extractor (``do_normalize``:
  zero mean, unit variance per chunk); without one, the raw waveform. Utterances are batched by
  length with zero padding and an attention mask only when that changes nothing for the valid
  frames: a per-frame ("layer") normalised CNN (``feat_extract_norm = "layer"``; data2vec-audio
  always). A "group"-normalised CNN (e.g. wav2vec2-base, hubert-base, wavlm-base) normalises over
  the whole (padded) input, so there only chunks of equal length share a batch.
- Whisper: the encoder only (the decoder's weights are read past, not kept), input through the
  ``WhisperFeatureExtractor`` of the same directory (``preprocessor_config.json`` required).
  ``whisper_window = "clip"``: the encoder runs on the clip's own log-mel frames
  (``N // 160`` of them for N samples, computed for the clip alone), its positional embeddings
  cut to the ``ceil((N // 160) / 2)`` frames the convolutions give; Whisper's encoder has no
  padding mask, so only clips of equal mel length share a batch (no padding at all).
  ``"30s"`` (the default, chosen on EmoDB: ``upstream_params.DEFAULT_WHISPER_WINDOW``): every
  clip padded to the 30 s window the model was trained on (1500 frames per forward pass however
  short the clip, about 14x the CPU time of "clip") and the output trimmed to the
  same ``ceil((N // 160) / 2)`` frames. The two give different features (attention over the
  padding's frames, the mel's range clamp over the whole window); docs/ssl_upstreams.md measures both.

Long files go in chunks (default 20 s, 1 s overlap; chunk starts on the frame grid, so chunk
frames are global frames): each frame of an overlap is taken from the chunk whose edge is
farther (the overlap is split at its middle). A file no longer than one chunk is one forward
pass, so its features are exactly the model's output on the whole file.

Device: CUDA when available (weights and activations in bfloat16), else the CPU (float32).
Features are stored as float16 (up to |x| = 65504; a non-finite value is refused, as for the
other front-ends).

This module is the loaded model (``Upstream``); the parameter dict and the frame / chunk
arithmetic are ``ser_cl.data.frontends.upstream_params`` (re-exported here).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np

from ser_cl.data.frontends.upstream_params import (DEFAULT_CHUNK_S, DEFAULT_OVERLAP_S, FAMILIES, SAMPLE_RATE, SSL_VERSION,
                                         WEIGHT_FILES, WHISPER_MAX_S, WHISPER_WINDOWS, _INSTALL_HINT, _check_dir,
                                         _chunk_samples, chunk_bounds, config_hash, default_layer, describe_upstream,
                                         frame_count, ssl_params, stitch, validate_ssl_params, whisper_window)

# the parameter API is re-exported here: ``from ser_cl.data.frontends.upstream import ssl_params`` keeps working
__all__ = ["BATCH_SECONDS", "DEFAULT_CHUNK_S", "DEFAULT_OVERLAP_S", "FAMILIES", "SAMPLE_RATE", "SSL_VERSION",
           "Upstream", "WEIGHT_FILES", "WHISPER_MAX_S", "WHISPER_WINDOWS", "chunk_bounds", "compute_ssl", "config_hash",
           "default_layer", "describe_upstream", "frame_count", "get_upstream", "ssl_params", "stitch",
           "validate_ssl_params", "whisper_window"]

#: audio per forward pass (padded samples of a batch): larger on a GPU, where batching pays
BATCH_SECONDS = {"cuda": 160.0, "cpu": 40.0}


# -- the model -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' load reports and progress bars off while loading (the decoder weights a
    Whisper encoder leaves unused are expected), restored afterwards."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _resolve_device(device=None):
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Upstream:
    """A loaded upstream: ``extract(waves)`` -> each waveform's stored features (float32)."""

    def __init__(self, params: dict, device=None) -> None:
        import torch

        validate_ssl_params(params)
        up = params["upstream"]
        path = Path(up["path"])
        _check_dir(path)
        if config_hash(path) != up["config_hash"]:
            raise ValueError(f"upstream {path}: its config or weight files differ from the ones the features were "
                             f"made with (hash {config_hash(path)}, recorded {up['config_hash']})")
        try:
            import transformers
        except ImportError:
            raise ValueError(_INSTALL_HINT) from None
        self.params, self.up = params, up
        self.layers = [int(v) for v in params["layers"]]
        self.hop = int(up["hop_samples"])
        self.chunk, self.overlap = _chunk_samples(params)
        self.device = _resolve_device(device)
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.whisper = up["family"] == "whisper"
        self.clip = whisper_window(params) == "clip"  # Whisper on the clip's own frames
        with _quiet_transformers():
            has_pre = (path / "preprocessor_config.json").is_file()
            self.extractor = (transformers.AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
                              if has_pre else None)
            if self.whisper:
                # the encoder of a WhisperModel / ForConditionalGeneration checkpoint, without its decoder
                model, info = transformers.WhisperForAudioClassification.from_pretrained(
                    str(path), local_files_only=True, output_loading_info=True)
                missing = [k for k in info["missing_keys"] if k.startswith("encoder.")]
                model = model.encoder
            else:
                model, info = transformers.AutoModel.from_pretrained(
                    str(path), local_files_only=True, output_loading_info=True)
                # masked_spec_embed is only used when masking during pre-training
                missing = [k for k in info["missing_keys"] if "masked_spec_embed" not in k]
        if missing:
            raise ValueError(f"upstream {path}: the weights lack {len(missing)} tensor(s) of the model "
                             f"(e.g. {sorted(missing)[0]}); not a complete {FAMILIES[up['family']]} checkpoint")
        self.model = model.to(self.device, self.dtype).eval()
        self._drop_layers_above(max(self.layers))
        self.batch_samples = int(BATCH_SECONDS.get(self.device.type, 40.0) * SAMPLE_RATE)

    def _drop_layers_above(self, top: int) -> None:
        """Remove the Transformer layers above layer ``top``: never needed, and a third of the
        compute for the default layer. hidden_states[l] is recorded as the input of layer l
        (index l), so keeping layers 0..top leaves hidden_states[0..top] unchanged, also in
        models whose last hidden state gets a final LayerNorm (that one is at index >= top + 1)."""
        stack = self.model.layers if self.whisper else self.model.encoder.layers
        if top + 1 < len(stack):
            del stack[top + 1:]

    # ------------------------------------------------------------------------------------------
    def _inputs(self, chunks: List[np.ndarray]) -> dict:
        """The model's keyword inputs for a batch of chunks, on the device."""
        import torch

        if self.whisper:
            feats = self.extractor(chunks, sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_features"]
            return {"input_features": feats.to(self.device, self.dtype)}
        masked = self.up["padding"] == "attention-mask"
        if self.extractor is not None:
            batch = self.extractor(chunks, sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt",
                                   return_attention_mask=masked)
            values = batch["input_values"]
            mask = batch.get("attention_mask") if masked else None
        else:
            longest = max(c.size for c in chunks)
            values = torch.zeros(len(chunks), longest)
            mask = torch.zeros(len(chunks), longest, dtype=torch.long)
            for i, c in enumerate(chunks):
                values[i, :c.size] = torch.from_numpy(c)
                mask[i, :c.size] = 1
            mask = mask if masked else None
        out = {"input_values": values.to(self.device, self.dtype)}
        if mask is not None:
            out["attention_mask"] = mask.to(self.device)
        return out

    def _whisper_clip(self, chunks: List[np.ndarray]) -> List[np.ndarray]:
        """Whisper on the chunks' own mel frames (all of one mel length): the encoder's forward
        pass with the positional embeddings cut to the frames the convolutions give. Hidden state
        l < n_layers is layer l's input, n_layers the last layer's output after the final
        LayerNorm, as the model's ``output_hidden_states`` records them."""
        import torch
        import torch.nn.functional as F

        enc = self.model
        # each clip alone: [1, n_mels, N // 160]; one shorter than the STFT window (25 ms), whose
        # reflection padding cannot be made, gets zeros up to it and keeps its N // 160 frames
        n_fft = int(getattr(self.extractor, "n_fft", 400))
        mels = [self.extractor(np.pad(c, (0, max(0, n_fft - c.size))), sampling_rate=SAMPLE_RATE, padding="longest",
                               return_tensors="pt")["input_features"][..., :c.size // (int(self.up["hop_samples"]) // 2)]
                for c in chunks]
        with torch.inference_mode():
            x = torch.cat(mels).to(self.device, self.dtype)
            x = F.gelu(enc.conv2(F.gelu(enc.conv1(x)))).permute(0, 2, 1)
            x = x + enc.embed_positions.weight[:x.shape[1]]
            hidden = [x]
            for layer in enc.layers[:max(self.layers)]:
                out = layer(x, None)
                x = out[0] if isinstance(out, tuple) else out
                hidden.append(x)
            if len(hidden) == int(self.up["n_layers"]) + 1:
                hidden[-1] = enc.layer_norm(hidden[-1])
            stacked = torch.cat([hidden[l] for l in self.layers], dim=-1).float().cpu().numpy()
        return [stacked[i, :frame_count(self.up, c.size)] for i, c in enumerate(chunks)]

    def _forward(self, chunks: List[np.ndarray]) -> List[np.ndarray]:
        """Chunks -> each chunk's chosen hidden states, float32 [frames, n_freq], trimmed."""
        import torch

        if self.whisper and self.clip:
            return self._whisper_clip(chunks)
        with torch.inference_mode():
            hidden = self.model(**self._inputs(chunks), output_hidden_states=True).hidden_states
            stacked = torch.cat([hidden[l] for l in self.layers], dim=-1).float().cpu().numpy()
        return [stacked[i, :frame_count(self.up, c.size)] for i, c in enumerate(chunks)]

    def _batches(self, lengths: Sequence[int]) -> Iterator[List[int]]:
        """Indices of chunks, longest first, grouped into batches within the sample budget; chunks
        share a batch only where padding changes nothing (module doc)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        mel_hop = int(self.up["hop_samples"]) // 2
        batch: List[int] = []
        for i in order:
            if self.whisper and not self.clip:
                cost = int(WHISPER_MAX_S * SAMPLE_RATE)
            else:
                cost = lengths[batch[0]] if batch else lengths[i]
            fits = (len(batch) + 1) * cost <= self.batch_samples
            if self.whisper and self.clip:  # no padding mask: equal mel lengths only
                same = not batch or lengths[i] // mel_hop == lengths[batch[0]] // mel_hop
            else:
                same = self.up["padding"] != "equal-length" or not batch or lengths[i] == lengths[batch[0]]
            if batch and not (fits and same):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def extract(self, waves: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Mono 16 kHz waveforms -> their features, float32 [frame_count(N), n_freq] each."""
        chunks, owners = [], []
        bounds_of = []
        for u, wave in enumerate(waves):
            wave = np.ascontiguousarray(wave, dtype=np.float32)
            if wave.ndim != 1:
                raise ValueError(f"the ssl front-end expects a 1-D waveform, got shape {wave.shape}")
            bounds = chunk_bounds(wave.size, self.chunk, self.overlap, self.hop)
            bounds_of.append(bounds)
            for start, end in bounds:
                chunks.append(wave[start:end])
                owners.append(u)
        outputs: List[Optional[np.ndarray]] = [None] * len(chunks)
        runnable = [i for i, c in enumerate(chunks) if frame_count(self.up, c.size) > 0]
        for i in set(range(len(chunks))) - set(runnable):  # shorter than one frame: nothing to run
            outputs[i] = np.zeros((0, int(self.params["n_freq"])), dtype=np.float32)
        for sub in self._batches([chunks[i].size for i in runnable]):
            batch = [runnable[j] for j in sub]
            for i, frames in zip(batch, self._forward([chunks[i] for i in batch])):
                outputs[i] = frames
        results = []
        k = 0
        for u, wave in enumerate(waves):
            n = len(bounds_of[u])
            pieces = outputs[k:k + n]
            k += n
            results.append(stitch(pieces, bounds_of[u], self.hop, frame_count(self.up, np.asarray(wave).size)))
        return results


_LOADED: dict = {}


def get_upstream(params: dict, device=None) -> Upstream:
    """The loaded upstream for ``params`` (kept for the process: predict calls it per file)."""
    key = (params["upstream"]["path"], params["upstream"]["config_hash"], tuple(params["layers"]),
           params["chunk_s"], params["overlap_s"], whisper_window(params), str(_resolve_device(device)))
    if key not in _LOADED:
        _LOADED.clear()  # one upstream at a time: they are large
        _LOADED[key] = Upstream(params, device)
    return _LOADED[key]


def compute_ssl(wave_16k: np.ndarray, params: dict, device=None) -> np.ndarray:
    """One waveform's ssl features, float32 [frame_count(N), n_freq] (``compute_features`` for "ssl")."""
    return get_upstream(params, device).extract([wave_16k])[0]
