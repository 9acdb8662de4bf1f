"""Length-aware building blocks of the encoder: masked BatchNorm, the conv block, the BiGRU
runs and the pooling over time.

Every block keeps the encoder's contract: an utterance gives the same output (in eval mode)
alone or inside a zero-padded batch. Lengths live in two copies: on the CPU (what
``pack_padded_sequence`` needs) and on the device (masks); nothing here reads a device value
on the host, so a training step makes no host-device synchronisation.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

#: How the BiGRU runs over a padded batch (``ModelConfig.gru_impl``); all exact. "auto": padded
#: on CUDA (4.3x faster than packed for the thesis GRU at batch 32 on an H200,
#: benchmarks/gru_impl.py), packed on the CPU (1.6x faster there).
GRU_IMPLS = ("auto", "packed", "padded")
#: Pooling over time (``ModelConfig.pooling``).
POOLINGS = ("mean", "attention", "stats")


def conv_output_length(lengths, kernel: int, stride: int, padding: int):
    """Number of output frames of a conv over ``lengths`` input frames (PyTorch's formula).

    floor((L + 2 * padding - kernel) / stride) + 1, elementwise, for a tensor (any device, no
    synchronisation) or a numpy array.
    """
    if isinstance(lengths, np.ndarray):
        return (lengths + 2 * padding - kernel) // stride + 1
    return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, max_len] bool, True at the frames t < lengths[b]."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def utterance_standardize(x: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor,
                          eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance, per-frequency-bin mean/variance normalisation over the valid frames.

    x [B, T, F] (zero beyond ``lengths``), valid [B, T]; the result is zero beyond ``lengths``
    too, so an utterance gives the same output alone or inside a padded batch.
    """
    xf = x.float()
    w = valid[:, :, None].to(xf.dtype)  # [B, T, 1]
    n = lengths.to(xf.dtype)[:, None, None]  # [B, 1, 1]
    mean = (xf * w).sum(dim=1, keepdim=True) / n
    var = (((xf - mean) * w) ** 2).sum(dim=1, keepdim=True) / n
    y = (xf - mean) * torch.rsqrt(var + eps) * w
    return y.to(x.dtype)


class _AllReduceSum(torch.autograd.Function):
    """y = sum over processes of x; every process's loss uses y, so dL/dx = the sum of dL_q/dy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _sync_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the processes of a data-parallel run, with gradients (SyncBatchNorm)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _AllReduceSum.apply(t)
    return t


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode statistics count only the valid time frames.

    Input [B, C, F, T] and ``valid`` [B, T] (bool). In eval mode, or without ``valid``, it is
    exactly ``nn.BatchNorm2d`` (same parameters and buffers, so checkpoints are interchangeable).
    Statistics are computed in float32 even under autocast; the output has the input's dtype.
    ``sync = True`` (set by data-parallel training) sums the statistics over all processes with
    gradients, so the step equals one process on the whole batch (SyncBatchNorm).
    """

    sync: bool = False

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if valid is None or not self.training:
            return super().forward(x)
        xf = x.float()
        weight_bt = valid[:, None, None, :].to(xf.dtype)  # [B, 1, 1, T]
        count = weight_bt.sum() * x.shape[2]  # valid (b, f, t) positions per channel
        total = (xf * weight_bt).sum(dim=(0, 2, 3))
        if self.sync:
            stats = _sync_sum(torch.cat([count.reshape(1), total]))
            count, total = stats[0], stats[1:]
        mean = total / count
        centered = (xf - mean[None, :, None, None]) * weight_bt
        sq = centered.pow(2).sum(dim=(0, 2, 3))
        if self.sync:
            sq = _sync_sum(sq)
        var = sq / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
                if self.momentum is None:  # cumulative moving average, as nn.BatchNorm
                    factor: Any = 1.0 / self.num_batches_tracked.to(torch.float32)  # type: ignore[union-attr]
                else:
                    factor = self.momentum
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), factor)
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


class ConvBlock(nn.Module):
    """Conv2D -> BatchNorm2D -> Hardtanh(0, 20) over [B, C, F, T], length-aware on the time axis."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Tuple[int, int],
                 stride: Tuple[int, int], masked_batchnorm: bool) -> None:
        super().__init__()
        self.kernel_t = kernel[1]
        self.stride_t = stride[1]
        self.pad_t = (kernel[1] - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel, stride=stride,
                              padding=(0, self.pad_t))
        self.bn = MaskedBatchNorm2d(out_channels)
        self.masked_batchnorm = masked_batchnorm
        self.act = nn.Hardtanh(0.0, 20.0)

    def output_length(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_length(lengths, self.kernel_t, self.stride_t, self.pad_t)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, F, T] with zeros beyond ``lengths``; returns (y, out_lengths), y zero beyond them."""
        y = self.conv(x)
        out_lengths = self.output_length(lengths)
        valid = valid_mask(out_lengths, y.shape[-1])
        y = self.bn(y, valid if self.masked_batchnorm else None)
        y = self.act(y)
        y = y.masked_fill(~valid[:, None, None, :], 0.0)
        return y, out_lengths


# -- the BiGRU over a padded batch ---------------------------------------------------------------
#: Whether ``torch._VF.gru`` (the private op under ``nn.GRU``, which "padded" calls once per layer
#: and direction) exists and matches ``nn.GRU``: None until the first "padded" run probes it.
_PRIVATE_GRU_OK: Optional[bool] = None


def _private_gru(inp: torch.Tensor, h0: torch.Tensor, weights: list, train: bool) -> torch.Tensor:
    """One layer, one direction, batch-first, with biases, no dropout: the output [B, T, H].
    ``train`` as ``nn.GRU`` passes it (cuDNN keeps what its backward needs only in training)."""
    return torch._VF.gru(inp, h0, weights, True, 1, 0.0, train, False, True)[0]


def _probe_private_gru() -> bool:
    """A tiny call of the private op against ``nn.GRU`` with the same weights (CPU, float32).

    False when the op is missing, rejects the call (a changed signature: TypeError,
    RuntimeError ...) or returns something else. The probe's ``nn.GRU`` is initialised inside
    ``fork_rng`` (CPU only: nothing here touches a device's generator), so training draws the
    same random numbers with or without the probe.
    """
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            ref = nn.GRU(3, 2, num_layers=1, batch_first=True)
            x = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
            h0 = torch.zeros(1, 2, 2)
            expected = ref(x, h0)[0]
            weights = [ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0]
            got = _private_gru(x, h0, weights, False)
            return (isinstance(got, torch.Tensor) and got.shape == expected.shape
                    and bool(torch.allclose(got, expected, atol=1e-6, rtol=1e-5)))
    except Exception:  # noqa: BLE001 -- any failure of a private op means: do not use it
        return False


def private_gru_ok() -> bool:
    """Probe ``torch._VF.gru`` once per process (at first use); warn once when it is unusable."""
    global _PRIVATE_GRU_OK
    if _PRIVATE_GRU_OK is None:
        _PRIVATE_GRU_OK = _probe_private_gru()
        if not _PRIVATE_GRU_OK:
            warnings.warn(
                f"torch._VF.gru is missing or no longer matches nn.GRU in PyTorch {torch.__version__}: "
                "gru_impl 'padded' runs as 'packed' (the public nn.GRU; same results, slower on CUDA)",
                RuntimeWarning, stacklevel=3,
            )
    return _PRIVATE_GRU_OK


def run_bigru(gru: nn.GRU, y: torch.Tensor, lengths_host: np.ndarray, lengths_dev: torch.Tensor,
              impl: str = "packed") -> torch.Tensor:
    """Run a bidirectional, batch-first ``gru`` over y [B, T, D]; outputs beyond a length are arbitrary.

    ``lengths_host``: numpy int64 [B]; ``lengths_dev``: the same on y's device.

    * "packed": one cuDNN call on a ``PackedSequence``. A batch sorted longest first (what
      ``ser_cl.data.batches.loader`` gives) packs without any permutation; otherwise PyTorch sorts it
      (an index copied to the device each step).
    * "padded": per layer, the forward direction runs on the padded batch (padding comes after
      the valid frames, so it cannot reach them) and the backward direction on each utterance
      reversed within its own length (so its padding also comes last), with the GRU's own
      weights: exact, no packing, 2 x layers cuDNN calls. It calls the private
      ``torch._VF.gru``, so only after a one-time probe (``private_gru_ok``) has shown that
      the op exists and matches ``nn.GRU``; otherwise it runs "packed" (with a warning).
    """
    if impl == "auto":
        impl = "padded" if y.device.type == "cuda" else "packed"
    if impl == "padded" and not private_gru_ok():
        impl = "packed"
    if impl == "packed":
        is_sorted = bool(np.all(lengths_host[:-1] >= lengths_host[1:]))
        packed = pack_padded_sequence(y, torch.from_numpy(lengths_host), batch_first=True, enforce_sorted=is_sorted)
        out, _ = gru(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=y.shape[1])[0]
    if impl != "padded":
        raise ValueError(f"gru_impl must be one of {GRU_IMPLS}, got {impl!r}")
    batch, max_len, _ = y.shape
    t = torch.arange(max_len, device=y.device)[None, :]
    flip = torch.where(t < lengths_dev[:, None], lengths_dev[:, None] - 1 - t, t)  # an involution
    flip = flip[:, :, None]

    def reverse(v: torch.Tensor) -> torch.Tensor:
        return v.gather(1, flip.expand(-1, -1, v.shape[2]))

    h0 = y.new_zeros(1, batch, gru.hidden_size)
    for layer in range(gru.num_layers):
        outs = []
        for suffix, rev in (("", False), ("_reverse", True)):
            weights = [getattr(gru, f"{kind}_l{layer}{suffix}") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            inp = reverse(y) if rev else y
            with warnings.catch_warnings():  # cuDNN copies the 4 weights per call: cheap at this size
                warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
                out = _private_gru(inp, h0, weights, gru.training)
            outs.append(reverse(out) if rev else out)
        y = torch.cat(outs, dim=2)
        if layer < gru.num_layers - 1 and gru.dropout > 0:
            y = F.dropout(y, gru.dropout, gru.training)
    return y


# -- pooling over time -----------------------------------------------------------------------------
class Pooling(nn.Module):
    """Frames [B, T, D] (zero beyond lengths) -> one vector per utterance.

    * "mean" (thesis): the mean of the valid frames -> [B, D];
    * "attention": softmax(w . tanh(W y_t + b)) over the valid frames, the weighted mean -> [B, D];
    * "stats": the mean and the standard deviation of the valid frames -> [B, 2D].
    """

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {kind!r}")
        self.kind = kind
        if kind == "attention":
            self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.out_dim = 2 * dim if kind == "stats" else dim

    def forward(self, y: torch.Tensor, lengths_dev: torch.Tensor) -> torch.Tensor:
        y = y.float()
        valid = valid_mask(lengths_dev, y.shape[1])[:, :, None]
        n = lengths_dev[:, None].to(torch.float32)
        if self.kind == "attention":
            s = self.score(y).masked_fill(~valid, float("-inf"))
            return (torch.softmax(s, dim=1) * y).sum(dim=1)
        mean = y.sum(dim=1) / n
        if self.kind == "mean":
            return mean
        var = ((y - mean[:, None, :]) * valid).pow(2).sum(dim=1) / n
        return torch.cat([mean, torch.sqrt(var + 1e-5)], dim=1)
