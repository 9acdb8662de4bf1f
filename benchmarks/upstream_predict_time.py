"""Time of predict's front-end with an ssl store's upstream: loading the upstream once, then
each file's features as predict computes them (``ser_cl.predict.model_input``: read, resample,
upstream alone on the file, float16 rounding). The classifier head on top costs well under a
millisecond per file and is left out.

    python benchmarks/upstream_predict_time.py data/emovo-whisper --files 30 --device cpu
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path, help="a prepared ssl store (its prepare.json names the upstream)")
    ap.add_argument("--files", type=int, default=30, help="files to time (every k-th of the store's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from ser_cl.data.frontends.audio import load_audio
    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.data.frontends.upstream import get_upstream
    from ser_cl.predict import model_input

    torch.set_num_threads(args.threads)
    params = json.loads((args.store / "prepare.json").read_text())["features"]
    store = FeatureStore(args.store)
    rows = store.rows[:: max(1, len(store) // args.files)][: args.files]
    started = time.perf_counter()
    get_upstream(params, args.device)
    load_s = time.perf_counter() - started
    times, audio = [], []
    for row in rows:
        t0 = time.perf_counter()
        wave = load_audio(row["path"], 16000)
        model_input(wave, {"features": params}, args.device)
        times.append(time.perf_counter() - t0)
        audio.append(wave.size / 16000)
    print(f"{args.store.name} on {args.device} ({args.threads} threads): upstream load {load_s:.1f} s; "
          f"{len(times)} files of {np.mean(audio):.2f} s on average: {1000 * np.mean(times):.0f} ms per file "
          f"(median {1000 * np.median(times):.0f}, max {1000 * np.max(times):.0f}), "
          f"{np.sum(audio) / np.sum(times):.1f}x real time")


if __name__ == "__main__":
    main()
