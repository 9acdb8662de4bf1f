"""The thesis' sequence encoder f, its linear classifier g and an optional projection head.

Architecture (thesis 4.3.2, the same as Li et al. 2019)::

    x [B, T, F] -> [B, 1, F, T]
    Conv2D(C, k=(41, 21), s=(2, 2)) -> BatchNorm2D -> Hardtanh(0, 20)
    Conv2D(C, k=(21, 11), s=(2, 2)) -> BatchNorm2D -> Hardtanh(0, 20)
    -> [B, T'', C * F''] -> BiGRU(H, 2 layers, dropout 0.2)
    -> TransformerEncoder(d_model 2H, d_ff, n_heads) -> mean over the valid frames -> h [B, 2H]

Kernels and strides are (freq, time). The frequency axis is not padded (257 -> 109 -> 45 bins
for the thesis kernels); the time axis is padded by (k_t - 1) // 2 on each side so that any
utterance of at least one frame gives at least one output frame.

Variable lengths are handled exactly, so that an utterance gives the same embedding (in eval
mode) whether it is embedded alone or inside a zero-padded batch:

* the input is zeroed beyond each utterance's length (zeros are what the conv's own padding
  would put there if the utterance were alone);
* each conv block's output lengths are computed with the conv arithmetic, and the invalid
  positions are zeroed after the activation, so the next conv sees zeros there too;
* BatchNorm in training mode takes its batch statistics over the valid positions only
  (``ModelConfig.masked_batchnorm``; off = plain ``nn.BatchNorm2d`` statistics that also count
  the padding); in eval mode it uses the running statistics, as usual;
* the BiGRU runs on a ``PackedSequence``, so the backward direction starts at each utterance's
  last valid frame;
* the Transformer gets a key padding mask, and the pooling averages the valid frames only.

Device notes: everything is torch ops and works under ``torch.autocast`` (CUDA bf16/fp16, CPU
bf16); the BatchNorm statistics, the BiGRU and the pooling run in float32 regardless.
``pack_padded_sequence`` needs the lengths on the CPU; pass ``lengths`` as a CPU tensor
(``collate`` returns one) and the forward makes no host-device synchronisation. Lengths given
on the GPU work too, at the cost of one copy to the host.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = [
    "ModelConfig",
    "PRESETS",
    "SERModel",
    "INPUT_NORMS",
    "MaskedBatchNorm2d",
    "conv_output_length",
]


#: Choices of ``ModelConfig.input_norm``.
INPUT_NORMS = ("none", "utterance")


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`SERModel`; the defaults are the thesis encoder.

    ``conv1_kernel`` / ``conv2_kernel`` / ``conv_stride`` are (freq, time). ``proj_dim`` > 0 adds
    a projection head (Linear(D, D) -> ReLU -> Linear(D, proj_dim), as in SimCLR) used only by
    :meth:`SERModel.contrastive`; the thesis uses none (0). ``masked_batchnorm`` makes training-
    mode BatchNorm statistics ignore the padded frames (see the module docstring).
    ``input_norm`` = "utterance" standardises each utterance's input per frequency bin (mean 0,
    variance 1 over its valid frames) before the first conv; the thesis uses no feature
    normalisation ("none", the default). It is an opt-in for small corpora / short CPU runs.
    """

    n_freq: int = 257
    conv_channels: int = 64
    conv1_kernel: Tuple[int, int] = (41, 21)
    conv2_kernel: Tuple[int, int] = (21, 11)
    gru_hidden: int = 128
    gru_layers: int = 2
    gru_dropout: float = 0.2
    transformer_layers: int = 1
    n_heads: int = 8
    d_ff: int = 512
    transformer_dropout: float = 0.1
    normalize: bool = False
    proj_dim: int = 0
    conv_stride: Tuple[int, int] = (2, 2)
    masked_batchnorm: bool = True
    input_norm: str = "none"


    def __post_init__(self) -> None:
        # TOML / JSON give lists; keep tuples so configs compare and hash consistently.
        for name in ("conv1_kernel", "conv2_kernel", "conv_stride"):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != 2 or min(value) < 1:
                raise ValueError(f"ModelConfig.{name} must be two positive ints (freq, time), got {value}")
            setattr(self, name, value)
        for name in ("n_freq", "conv_channels", "gru_hidden", "gru_layers", "n_heads", "d_ff"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"ModelConfig.input_norm must be one of {INPUT_NORMS}, got {self.input_norm!r}")
        if self.transformer_layers < 0 or self.proj_dim < 0:
            raise ValueError("ModelConfig.transformer_layers and proj_dim must be >= 0")
        if self.embed_dim % self.n_heads != 0:
            raise ValueError(
                f"ModelConfig: d_model = 2 * gru_hidden = {self.embed_dim} is not divisible by n_heads = {self.n_heads}"
            )
        if self.conv_freq_bins[1] < 1:
            raise ValueError(
                f"ModelConfig: n_freq = {self.n_freq} is too small for the frequency kernels "
                f"{self.conv1_kernel[0]}, {self.conv2_kernel[0]}"
            )

    @property
    def embed_dim(self) -> int:
        """Dimension D of the embedding h (= d_model of the Transformer = 2 * gru_hidden)."""
        return 2 * self.gru_hidden

    @property
    def conv_freq_bins(self) -> Tuple[int, int]:
        """Frequency bins after conv1 and after conv2 (no frequency padding)."""
        f1 = (self.n_freq - self.conv1_kernel[0]) // self.conv_stride[0] + 1
        f2 = (f1 - self.conv2_kernel[0]) // self.conv_stride[0] + 1
        return f1, f2

    @property
    def gru_input_size(self) -> int:
        """Features per time step entering the GRU: channels x frequency bins after conv2."""
        return self.conv_channels * self.conv_freq_bins[1]

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict (tuples as lists), e.g. for a checkpoint or a TOML/JSON file."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
        """Build from a mapping; unknown keys are an error (a typo should not pass silently).

        A ``"preset"`` key starts from that preset and the other keys override it.
        """
        values = dict(values)
        preset = values.pop("preset", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model option(s) {unknown}; known: {sorted(known)}")
        if preset is not None:
            return cls.preset(str(preset), **values)
        return cls(**values)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """A named configuration from :data:`PRESETS` ("thesis", "small"), with overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


#: Named configurations, as complete field dicts (``ModelConfig(**PRESETS[name])``; copy with
#: ``dict(...)`` before editing). "thesis" is the thesis encoder (~4.1 M parameters). "small" is
#: the same code with narrower layers (~0.27 M parameters, ~10x fewer multiply-adds per frame)
#: for fast CPU runs and smoke tests; its numbers are not comparable with the thesis.
PRESETS: Dict[str, Dict[str, Any]] = {
    "thesis": dataclasses.asdict(ModelConfig()),
    "small": dataclasses.asdict(ModelConfig(conv_channels=16, gru_hidden=32, n_heads=4, d_ff=128)),
}


def conv_output_length(lengths: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Number of output frames of a conv over ``lengths`` input frames (PyTorch's formula).

    floor((L + 2 * padding - kernel) / stride) + 1, elementwise; works on any device without a
    synchronisation.
    """
    return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1


def _valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, max_len] bool, True at the frames t < lengths[b]."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def _utterance_standardize(x: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor,
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


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode statistics count only the valid time frames.

    Input [B, C, F, T] and ``valid`` [B, T] (bool). In eval mode, or without ``valid``, it is
    exactly ``nn.BatchNorm2d`` (same parameters and buffers, so checkpoints are interchangeable).
    Statistics are computed in float32 even under autocast; the output has the input's dtype.
    """

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if valid is None or not self.training:
            return super().forward(x)
        xf = x.float()
        weight_bt = valid[:, None, None, :].to(xf.dtype)  # [B, 1, 1, T]
        count = weight_bt.sum() * x.shape[2]  # valid (b, f, t) positions per channel
        mean = (xf * weight_bt).sum(dim=(0, 2, 3)) / count
        centered = (xf - mean[None, :, None, None]) * weight_bt
        var = centered.pow(2).sum(dim=(0, 2, 3)) / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
                if self.momentum is None:  # cumulative moving average, as nn.BatchNorm
                    factor: Any = 1.0 / self.num_batches_tracked.to(torch.float32)  # type: ignore[union-attr]
                else:
                    factor = self.momentum
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


class _ConvBlock(nn.Module):
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
        valid = _valid_mask(out_lengths, y.shape[-1])
        y = self.bn(y, valid if self.masked_batchnorm else None)
        y = self.act(y)
        y = y.masked_fill(~valid[:, None, None, :], 0.0)
        return y, out_lengths


class SERModel(nn.Module):
    """Encoder f, linear classifier g (h = g(f(x))) and optional projection head.

    * :meth:`embed` -> h [B, D], D = 2 * gru_hidden (L2-normalised iff ``cfg.normalize``)
    * :meth:`contrastive` -> z, always L2-normalised (after the projection head if any)
    * :meth:`classify` -> logits; :meth:`forward` = classify(embed(x))
    * :meth:`encoder_parameters` / :meth:`head_parameters` partition the parameters
      (heads = classifier + projection head), for freezing f during fine-tuning.
    """

    def __init__(self, cfg: ModelConfig, n_classes: int) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.cfg = cfg
        self.n_classes = n_classes
        d_model = cfg.embed_dim
        self.conv1 = _ConvBlock(1, cfg.conv_channels, cfg.conv1_kernel, cfg.conv_stride, cfg.masked_batchnorm)
        self.conv2 = _ConvBlock(cfg.conv_channels, cfg.conv_channels, cfg.conv2_kernel, cfg.conv_stride,
                                cfg.masked_batchnorm)
        self.gru = nn.GRU(
            input_size=cfg.gru_input_size,
            hidden_size=cfg.gru_hidden,
            num_layers=cfg.gru_layers,
            dropout=cfg.gru_dropout if cfg.gru_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )
        if cfg.transformer_layers > 0:
            layer = nn.TransformerEncoderLayer(
                d_model=d_model,
                nhead=cfg.n_heads,
                dim_feedforward=cfg.d_ff,
                dropout=cfg.transformer_dropout,
                batch_first=True,
            )
            self.transformer: nn.Module | None = nn.TransformerEncoder(
                layer, num_layers=cfg.transformer_layers, enable_nested_tensor=False
            )
        else:
            self.transformer = None
        self.classifier = nn.Linear(d_model, n_classes)
        if cfg.proj_dim > 0:
            self.projection: nn.Module | None = nn.Sequential(
                nn.Linear(d_model, d_model), nn.ReLU(inplace=True), nn.Linear(d_model, cfg.proj_dim)
            )
        else:
            self.projection = None

    # ----------------------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames per utterance entering the GRU / Transformer / pooling, for input ``lengths``."""
        return self.conv2.output_length(self.conv1.output_length(lengths))

    def frames(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-frame encoder outputs before pooling: ([B, T'', D], lengths'' [B] on x's device).

        Frames at t >= lengths''[b] are zero.
        """
        if x.dim() != 3:
            raise ValueError(f"expected x of shape [B, T, F], got {tuple(x.shape)}")
        batch, max_len, n_freq = x.shape
        if n_freq != self.cfg.n_freq:
            raise ValueError(f"expected {self.cfg.n_freq} frequency bins, got {n_freq}")
        if lengths.shape != (batch,):
            raise ValueError(f"expected lengths of shape [{batch}], got {tuple(lengths.shape)}")
        lengths_cpu = lengths.detach().to("cpu", torch.int64)  # no sync when already on the CPU
        if batch > 0 and (int(lengths_cpu.min()) < 1 or int(lengths_cpu.max()) > max_len):
            raise ValueError(f"lengths must lie in [1, {max_len}], got {lengths_cpu.tolist()}")
        lengths_dev = lengths_cpu.to(x.device, non_blocking=True)

        valid = _valid_mask(lengths_dev, max_len)
        x = x.masked_fill(~valid[:, :, None], 0.0)
        if self.cfg.input_norm == "utterance":
            x = _utterance_standardize(x, valid, lengths_dev)
        y = x.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        y, lengths_dev = self.conv1(y, lengths_dev)
        y, lengths_dev = self.conv2(y, lengths_dev)
        out_len = y.shape[-1]
        y = y.permute(0, 3, 1, 2).reshape(batch, out_len, -1)  # [B, T'', C * F'']

        gru_lengths = self.output_lengths(lengths_cpu)
        # The GRU runs in float32 even under autocast: cuDNN RNNs reject bfloat16 before cuDNN
        # 9.13, and the recurrence is latency-bound, so low precision would buy little here.
        with torch.autocast(device_type=y.device.type, enabled=False):
            packed = pack_padded_sequence(y.float(), gru_lengths, batch_first=True, enforce_sorted=False)
            packed_out, _ = self.gru(packed)
            y, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=out_len)

        valid = _valid_mask(lengths_dev, out_len)
        if self.transformer is not None:
            y = self.transformer(y, src_key_padding_mask=~valid)
        y = y.masked_fill(~valid[:, :, None], 0.0)
        return y, lengths_dev

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Utterance embeddings h [B, D]: the mean of the valid frames (float32)."""
        y, lengths_dev = self.frames(x, lengths)
        h = y.float().sum(dim=1) / lengths_dev[:, None].to(torch.float32)
        if self.cfg.normalize:
            h = F.normalize(h, dim=-1)
        return h

    def contrastive(self, h: torch.Tensor) -> torch.Tensor:
        """z for the contrastive losses: projection head (if any), then L2 normalisation."""
        z = self.projection(h) if self.projection is not None else h
        return F.normalize(z.float(), dim=-1)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Logits [B, n_classes] of the linear classifier g."""
        return self.classifier(h)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x, lengths))

    # ----------------------------------------------------------------------------------------
    def _head_modules(self) -> List[nn.Module]:
        return [m for m in (self.classifier, self.projection) if m is not None]

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the classifier g and of the projection head (if any)."""
        for module in self._head_modules():
            yield from module.parameters()

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the encoder f (convs, BatchNorms, GRU, Transformer): all but the heads."""
        head_ids = {id(p) for p in self.head_parameters()}
        for p in self.parameters():
            if id(p) not in head_ids:
                yield p

    def n_parameters(self) -> Dict[str, int]:
        """Parameter counts: {"encoder", "heads", "total"}."""
        enc = sum(p.numel() for p in self.encoder_parameters())
        heads = sum(p.numel() for p in self.head_parameters())
        return {"encoder": enc, "heads": heads, "total": enc + heads}
