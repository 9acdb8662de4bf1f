"""Whisper on the clip's own frames vs in the padded 30 s window, in one run on the same files:
wall and CPU seconds (CPU time is the fairer figure on a machine shared with other jobs).

    python benchmarks/whisper_window_speed.py ../shared/upstreams/whisper-base ../shared/data/emodb --files 40 --layer 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("upstream")
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--files", type=int, default=40, help="every k-th .wav of the corpus, this many")
    ap.add_argument("--layer", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from ser_cl.data.frontends.audio import load_audio
    from ser_cl.data.frontends.features import feature_params
    from ser_cl.data.frontends.upstream import Upstream

    torch.set_num_threads(args.threads)
    files = sorted(args.corpus.rglob("*.wav"))
    files = files[:: max(1, len(files) // args.files)][: args.files]
    waves = [load_audio(f, 16000) for f in files]
    audio = sum(w.size for w in waves) / 16000
    cpu = {}
    for window in ("clip", "30s"):
        params = feature_params("ssl", upstream=args.upstream, layer=args.layer, whisper_window=window)
        upstream = Upstream(params, "cpu")
        c0, t0 = time.process_time(), time.perf_counter()
        upstream.extract(waves)
        wall, cpu[window] = time.perf_counter() - t0, time.process_time() - c0
        print(f"{window}: {len(waves)} files, {audio:.1f} s of audio: wall {wall:.1f} s, CPU {cpu[window]:.1f} s "
              f"({audio / wall:.1f}x real time)")
    print(f"30s / clip CPU time: {cpu['30s'] / cpu['clip']:.1f}x")


if __name__ == "__main__":
    main()
