"""Training throughput of the thesis encoder: utterances per second for CE, SupCon and
self-supervised NT-Xent, on the CPU and (when present) the GPU.

Data are random log-spectrogram-like batches already on the device (~450 frames, 257 bins), so
the figure is the model's speed, not the data pipeline's. One step = forward + backward + Adam.
A self-supervised NT-Xent step counts each utterance once (it runs 2 augmented views of it).

    python benchmarks/train_throughput.py                      # CPU, and CUDA if available
    python benchmarks/train_throughput.py --devices cuda --steps 30 --batch-sizes 32,128
    python benchmarks/train_throughput.py --preset small       # the fast CPU encoder
"""

from __future__ import annotations

import argparse
import time

import torch

from ser_cl.config import AugmentConfig, LossConfig, StageConfig
from ser_cl.models import PRESETS, SERModel
from ser_cl.train.checkpoint import model_config_from_dict
from ser_cl.train.loop import _augment
from ser_cl.train.objective import compute_loss

LOSSES = {
    "ce": (LossConfig(name="ce"), True, AugmentConfig()),
    "supcon": (LossConfig(name="supcon", tau=0.1), False, AugmentConfig()),
    "selfsup_ntxent": (LossConfig(name="selfsup_ntxent", tau=0.5), False, AugmentConfig(enabled=True, multiview=True)),
}


def measure(device: torch.device, loss_name: str, batch: int, frames: int, steps: int, warmup: int,
            preset: str, amp: bool) -> float:
    loss_cfg, with_head, aug = LOSSES[loss_name]
    fields = dict(PRESETS[preset])
    fields["normalize"] = not with_head
    model = SERModel(model_config_from_dict(fields), n_classes=4).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, frames, 257, device=device) - 5.0
    # mean-length batching (thesis): lengths near the batch length, some padded
    lengths = torch.randint(int(0.7 * frames), frames + 1, (batch,))  # on the CPU, as in training
    lengths[0] = frames
    labels = torch.randint(0, 4, (batch,), device=device)
    stage = StageConfig(augment=aug, loss=loss_cfg)
    use_amp = amp and device.type == "cuda"

    def step() -> None:
        xb, lb, yb = _augment(x, lengths, labels, stage, gen)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = compute_loss(model, xb, lb, yb, loss_cfg, 0, 1, with_head)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", default="auto", help="comma list of cpu,cuda (auto: cpu and cuda if present)")
    ap.add_argument("--losses", default="ce,supcon,selfsup_ntxent")
    ap.add_argument("--batch-sizes", default="32,128")
    ap.add_argument("--frames", type=int, default=450)
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: 2 on CPU, 30 on CUDA)")
    ap.add_argument("--preset", default="thesis", choices=sorted(PRESETS))
    ap.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" \
        else args.devices.split(",")
    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, preset {args.preset}, "
          f"{args.frames} frames")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    print(f"{'device':6s} {'loss':15s} {'batch':>5s} {'utt/s':>9s}")
    for dev in devices:
        device = torch.device(dev)
        steps = args.steps or (30 if device.type == "cuda" else 2)
        warmup = 5 if device.type == "cuda" else 1
        for loss_name in args.losses.split(","):
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                ups = measure(device, loss_name, batch, args.frames, steps, warmup, args.preset, not args.no_amp)
                print(f"{dev:6s} {loss_name:15s} {batch:5d} {ups:9.1f}", flush=True)


if __name__ == "__main__":
    main()
