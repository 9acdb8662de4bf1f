"""How fast is the ssl front-end (``prepare --features ssl``), and how much memory does it take?

For each base-size architecture (random weights: speed and memory do not depend on the values),
a checkpoint directory is written with ``save_pretrained`` and read back by the real loading
code (``ser_cl.data.frontends.upstream.Upstream``), which then extracts the default layer from
``--seconds`` of utterances of 2-8 s (like IEMOCAP's, mean ~4.5 s) plus one 25 s file (two
chunks: 20 s chunks, 1 s overlap).
Each architecture runs in its own process, so that its peak resident memory (ru_maxrss) is its
own. Prints, per architecture: parameters, load time, audio seconds, wall seconds, the
real-time factor RTF (compute seconds per audio second; < 1 is faster than real time) and the
peak RSS. The device is the CPU unless --device cuda.

    .venv/bin/python benchmarks/ssl_extract.py [--seconds 60] [--threads 2] [--only wavlm,whisper] [--large]

--large adds the 24-layer / 1024-wide models (WavLM large, wav2vec 2.0 large / XLS-R 300M
shape) and Whisper small; on 2 CPU cores each takes minutes, so they are off by default.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# name -> (transformers config class, model class, config kwargs); defaults are the base sizes
BASE = {
    "wavlm-base": ("WavLMConfig", "WavLMModel", {}),
    "hubert-base": ("HubertConfig", "HubertModel", {}),
    "wav2vec2-base": ("Wav2Vec2Config", "Wav2Vec2Model", {}),
    "data2vec-audio-base": ("Data2VecAudioConfig", "Data2VecAudioModel", {}),
    "whisper-base": ("WhisperConfig", "WhisperModel", {"d_model": 512, "encoder_layers": 6, "decoder_layers": 1,
                                                       "encoder_attention_heads": 8, "decoder_attention_heads": 8,
                                                       "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048}),
}
LARGE = {
    "wavlm-large": ("WavLMConfig", "WavLMModel", {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                                                  "intermediate_size": 4096, "feat_extract_norm": "layer",
                                                  "do_stable_layer_norm": True}),
    "wav2vec2-large": ("Wav2Vec2Config", "Wav2Vec2Model", {"hidden_size": 1024, "num_hidden_layers": 24,
                                                           "num_attention_heads": 16, "intermediate_size": 4096,
                                                           "feat_extract_norm": "layer", "do_stable_layer_norm": True}),
    "whisper-small": ("WhisperConfig", "WhisperModel", {"d_model": 768, "encoder_layers": 12, "decoder_layers": 1,
                                                        "encoder_attention_heads": 12, "decoder_attention_heads": 12,
                                                        "encoder_ffn_dim": 3072, "decoder_ffn_dim": 3072}),
}


def _write_checkpoint(name: str, spec, path: Path) -> int:
    """A random-weight checkpoint directory (config, weights, feature extractor); its parameter count."""
    import torch
    import transformers

    config_cls, model_cls, kwargs = spec
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs))
    model.save_pretrained(path)
    if name.startswith("whisper"):
        transformers.WhisperFeatureExtractor(feature_size=model.config.num_mel_bins).save_pretrained(path)
    else:
        transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(path)
    if name.startswith("whisper"):
        return sum(p.numel() for p in model.encoder.parameters())
    return sum(p.numel() for p in model.parameters())


def _one(name: str, seconds: float, threads: int, device: str) -> dict:
    """Run one architecture in this process; its figures as a dict."""
    import numpy as np
    import torch

    from ser_cl.data.frontends.features import feature_params
    from ser_cl.data.frontends.upstream import Upstream

    torch.set_num_threads(threads)
    spec = {**BASE, **LARGE}[name]
    with tempfile.TemporaryDirectory(prefix="ssl-bench-") as tmp:
        n_params = _write_checkpoint(name, spec, Path(tmp))
        params = feature_params("ssl", upstream=tmp)
        t0 = time.perf_counter()
        upstream = Upstream(params, device)
        load_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        waves, total = [0.1 * rng.standard_normal(25 * 16000).astype(np.float32)], 0.0  # one long, chunked file
        while total < seconds:
            n = int(rng.uniform(2.0, 8.0) * 16000)
            waves.append(0.1 * rng.standard_normal(n).astype(np.float32))
            total += n / 16000
        upstream.extract(waves[1:2])  # warm-up: first-call allocations are not the steady state
        t0 = time.perf_counter()
        feats = upstream.extract(waves)
        if device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        total += 25.0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"name": name, "params_M": round(n_params / 1e6, 1), "layer": params["layers"][0],
           "load_s": round(load_s, 2), "audio_s": round(total, 1), "wall_s": round(wall, 2),
           "rtf": round(wall / total, 4), "peak_rss_mb": round(peak_mb), "frames": int(sum(f.shape[0] for f in feats))}
    if device == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per architecture (default 60 s)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--only", default=None, help="comma-separated architecture names")
    parser.add_argument("--large", action="store_true", help="also the large architectures (slow on a CPU)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child process' mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.seconds, args.threads, args.device)))
        return
    names = list(BASE) + (list(LARGE) if args.large else [])
    if args.only:
        names = [n.strip() for n in args.only.split(",")]
    print(f"{'architecture':22s} {'params':>8s} {'layer':>5s} {'load s':>7s} {'audio s':>8s} {'wall s':>7s} "
          f"{'RTF':>7s} {'x real time':>11s} {'peak RSS':>9s}")
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--seconds", str(args.seconds), "--threads", str(args.threads),
               "--device", args.device]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name:22s} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        extra = f" (GPU peak {r['peak_cuda_mb']} MB)" if "peak_cuda_mb" in r else ""
        print(f"{name:22s} {r['params_M']:>7.1f}M {r['layer']:>5d} {r['load_s']:>7.2f} {r['audio_s']:>8.1f} {r['wall_s']:>7.2f} "
              f"{r['rtf']:>7.4f} {1 / r['rtf']:>10.1f}x {r['peak_rss_mb']:>6d} MB{extra}", flush=True)


if __name__ == "__main__":
    main()
