"""Training throughput of the thesis encoder, utterances per second, two ways:

* model: batches already on the device (random ~450-frame log-spectrograms), so the figure is
  the model's speed alone (forward + backward + Adam);
* e2e:   end to end from a prepared feature store, exactly as ``ser-cl train`` runs: epoch
  planning, the background gather (or the store held on the GPU), the copies, SpecAugment /
  2 views, the step. It also prints the share of the step time spent waiting for data.

CE, SupCon and self-supervised NT-Xent (2 views per utterance, counted once), at batch 32 and
128, on the CPU and on CUDA (bf16 autocast there). ``--parallel N`` runs N processes at once
on the device (as ``ser-cl run --devices cuda:0,cuda:0,...`` does with folds) and sums them.

    python benchmarks/train_throughput.py                       # CPU, and CUDA if present
    python benchmarks/train_throughput.py --devices cuda --steps 40 --data data/emodb
    python benchmarks/train_throughput.py --devices cuda --losses ce --batch-sizes 32 --parallel 4
    python benchmarks/train_throughput.py --preset small --devices cpu
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ser_cl.config import stage_from_dict
from ser_cl.data.batches.loader import BatchLoader, plan_epoch, store_fits_on_device
from ser_cl.data.stores.store import FeatureStore
from ser_cl.models import SERModel
from ser_cl.train.build import model_config_for
from ser_cl.train.loop import TrainStep, make_optimizer, phases_of, set_trainable, train_step
from ser_cl.train.objective import Objective

LOSSES = {
    "ce": {"stage": "train"},
    "supcon": {"stage": "pretrain", "loss": {"name": "supcon", "tau": 0.1}},
    "selfsup_ntxent": {"stage": "pretrain", "loss": {"name": "selfsup_ntxent", "tau": 0.5},
                       "augment": {"enabled": True, "multiview": True}},
}


def random_store(root: Path, n_utts: int = 600, mean_frames: int = 450, seed: int = 0) -> Path:
    """A feature store of random log-spectrogram-like frames (lengths ~ mean +- 30%), 4 classes."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(int(0.7 * mean_frames), int(1.3 * mean_frames) + 1, n_utts)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    feats = (rng.standard_normal((int(offsets[-1]), 257), dtype=np.float32) * 2 - 8).astype(np.float16)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "features.npy", feats)
    np.save(root / "offsets.npy", offsets)
    classes = ["neutral", "happy", "sad", "angry"]
    rows = ["utt_id,path,speaker,session,gender,label,n_frames,duration_s,corpus_label"]
    for i, n in enumerate(lengths):
        c = classes[i % 4]
        rows.append(f"u{i},u{i}.wav,s{i % 10},,,{c},{n},{n / 100:.2f},{c}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    (root / "prepare.json").write_text(json.dumps({"classes": classes, "corpus": "random"}))
    return root


def measure(store: FeatureStore, device: torch.device, loss: str, batch: int, steps: int, warmup: int,
            preset: str, amp: bool, mode: str, gru_impl: str, on_device) -> dict:
    table = {"model": {"preset": preset, "gru_impl": gru_impl}, "optim": {"batch_size": batch, "amp": amp},
             **LOSSES[loss]}
    cfg = stage_from_dict(table, "benchmark")
    torch.manual_seed(0)
    model = SERModel(model_config_for(cfg, store.n_freq), len(store.classes)).to(device).train()
    objective = Objective(cfg.loss, cfg.has_head)
    set_trainable(model, cfg, phases_of(cfg, 1)[0], objective)
    optimizer, _ = make_optimizer(model, cfg, device)
    step_module = TrainStep(model, objective)
    gen = torch.Generator(device=device).manual_seed(0)
    rng = np.random.default_rng(0)
    indices = np.arange(len(store))
    on_device = store_fits_on_device(store, device) if on_device is None else on_device
    loader = BatchLoader(store, device, on_device=on_device)

    def plans(n):
        out = []
        while len(out) < n:
            out += [p for p in plan_epoch(store.lengths, indices, batch, rng) if len(p.rows) == batch]
        return out[:n]

    if mode == "model":  # the same batches, gathered once and kept on the device
        fixed = list(loader(plans(4)))

        def batches(n):
            return (fixed[i % len(fixed)] for i in range(n))
    else:
        def batches(n):
            return loader(plans(n))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for b in batches(warmup):
        train_step(step_module, optimizer, b, cfg, gen, device)
    sync()
    loader.wait_seconds = 0.0
    t0 = time.perf_counter()
    for b in batches(steps):
        train_step(step_module, optimizer, b, cfg, gen, device)
    sync()
    wall = time.perf_counter() - t0
    return {"utt_s": batch * steps / wall, "wait": loader.wait_seconds / wall if mode == "e2e" else 0.0,
            "store": "gpu" if loader.on_device else "host"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", default="auto", help="comma list of cpu,cuda (auto: cpu and cuda if present)")
    ap.add_argument("--losses", default="ce,supcon,selfsup_ntxent")
    ap.add_argument("--batch-sizes", default="32,128")
    ap.add_argument("--modes", default="model,e2e")
    ap.add_argument("--data", help="a prepared DATA_DIR for e2e (default: a random ~450-frame store)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: 3 on CPU, 40 on CUDA)")
    ap.add_argument("--preset", default="thesis")
    ap.add_argument("--gru-impl", default="auto", choices=["auto", "packed", "padded"])
    ap.add_argument("--store-on-device", choices=["auto", "yes", "no"], default="auto")
    ap.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    ap.add_argument("--parallel", type=int, default=1, help="N processes at once on the device; sums their utt/s")
    ap.add_argument("--json", action="store_true", help="one JSON line per measurement (used by --parallel)")
    args = ap.parse_args()
    devices = (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])) if args.devices == "auto" \
        else args.devices.split(",")
    tmp = None  # cudnn.benchmark stays off, as in training: every batch has its own length
    if args.data:
        data = Path(args.data)
    else:
        tmp = tempfile.TemporaryDirectory()
        data = random_store(Path(tmp.name) / "store")
    store = FeatureStore(data)
    on_device = {"auto": None, "yes": True, "no": False}[args.store_on_device]
    if not args.json:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, preset {args.preset}, "
              f"gru {args.gru_impl}, store {data} ({len(store)} utterances, mean {store.lengths.mean():.0f} frames)")
        if torch.cuda.is_available():
            print(f"GPU: {torch.cuda.get_device_name(0)}")
        print(f"{'device':6s} {'loss':15s} {'batch':>5s} {'mode':5s} {'procs':>5s} {'utt/s':>9s} {'data wait':>9s} store")
    for dev in devices:
        device = torch.device(dev)
        steps = args.steps or (40 if device.type == "cuda" else 3)
        warmup = 8 if device.type == "cuda" else 1
        for loss in args.losses.split(","):
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                for mode in args.modes.split(","):
                    if args.parallel > 1:
                        res = _parallel(args, dev, loss, batch, mode, str(data))
                    else:
                        res = measure(store, device, loss, batch, steps, warmup, args.preset, not args.no_amp,
                                      mode, args.gru_impl, on_device)
                    if args.json:
                        print(json.dumps(res), flush=True)
                    else:
                        print(f"{dev:6s} {loss:15s} {batch:5d} {mode:5s} {args.parallel:5d} {res['utt_s']:9.1f} "
                              f"{100 * res['wait']:8.1f}% {res['store']}", flush=True)


def _parallel(args, dev: str, loss: str, batch: int, mode: str, data: str) -> dict:
    """Run the same measurement in N processes at once; the sum of their utt/s."""
    cmd = [sys.executable, __file__, "--json", "--devices", dev, "--losses", loss, "--batch-sizes", str(batch),
           "--modes", mode, "--data", data, "--preset", args.preset, "--gru-impl", args.gru_impl,
           "--store-on-device", args.store_on_device] + (["--steps", str(args.steps)] if args.steps else []) \
        + (["--no-amp"] if args.no_amp else [])
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(args.parallel)]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {"utt_s": sum(r["utt_s"] for r in results), "wait": max(r["wait"] for r in results),
            "store": results[0]["store"]}


if __name__ == "__main__":
    main()
