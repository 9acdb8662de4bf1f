"""The BiGRU on the thesis shapes, three ways: packed with PyTorch sorting the batch
(``enforce_sorted=False``), packed on a batch already sorted longest first (what the loader
gives), and padded with each utterance reversed within its length for the backward direction
(``gru_impl = "padded"``). All three are exact; this times forward + backward.

Thesis shapes: batch 32 or 128, ~450 input frames -> ~113 GRU steps (two stride-2 convs), input
64 channels x 45 bins = 2880, hidden 128, 2 layers, bidirectional; lengths as mean-length
batching gives them (most at T, the rest shorter).

    python benchmarks/gru_impl.py --device cuda --steps 50
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ser_cl.models.layers import run_bigru


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-sizes", default="32,128")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default 3 on CPU, 50 on CUDA)")
    ap.add_argument("--frames", type=int, default=113, help="GRU steps (after the convs)")
    ap.add_argument("--input", type=int, default=2880)
    ap.add_argument("--hidden", type=int, default=128)
    args = ap.parse_args()
    device = torch.device(args.device)
    steps = args.steps or (50 if device.type == "cuda" else 3)
    torch.backends.cudnn.benchmark = True
    gru = nn.GRU(args.input, args.hidden, num_layers=2, dropout=0.2, bidirectional=True, batch_first=True).to(device)
    print(f"device {device}{' ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}, "
          f"{args.frames} steps, input {args.input}, hidden {args.hidden}")
    print(f"{'batch':>5s} {'impl':16s} {'ms/step':>8s} {'utt/s':>9s}")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        rng = np.random.default_rng(0)
        T = args.frames
        lengths = np.where(rng.random(batch) < 0.6, T, rng.integers(T // 2, T + 1, batch)).astype(np.int64)
        lengths[0] = T
        x = torch.randn(batch, T, args.input, device=device, requires_grad=True)
        sorted_lengths = np.sort(lengths)[::-1].copy()
        lengths_dev = torch.from_numpy(sorted_lengths).to(device)

        def packed_unsorted():
            out, _ = gru(pack_padded_sequence(x, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False))
            return pad_packed_sequence(out, batch_first=True, total_length=T)[0]

        def packed_sorted():
            return run_bigru(gru, x, sorted_lengths, lengths_dev, "packed")

        def padded():
            return run_bigru(gru, x, sorted_lengths, lengths_dev, "padded")

        for name, fn in (("packed-unsorted", packed_unsorted), ("packed-sorted", packed_sorted), ("padded", padded)):
            for _ in range(3):
                fn().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            ms = 1000 * (time.perf_counter() - t0) / steps
            print(f"{batch:5d} {name:16s} {ms:8.2f} {1000 * batch / ms:9.0f}", flush=True)


if __name__ == "__main__":
    main()
