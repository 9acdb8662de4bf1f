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
* the BiGRU runs on a ``PackedSequence`` (or, ``gru_impl = "padded"``, with each utterance
  reversed within its own length for the backward direction), so the backward direction starts
  at each utterance's last valid frame;
* the Transformer gets a key padding mask, and the pooling sees the valid frames only.

Preset "functionals": the same projection with no Transformer, for one frame of openSMILE
functionals per utterance (an MLP with one hidden layer; ``input_dropout`` on its inputs).

Preset "upstream" (``frontend = "projection"``), for the frames of a self-supervised upstream
(``prepare --features ssl``: 768 or 1024 hidden-state values per 20 ms frame, whose order
carries no frequency neighbourhood for a 2-D conv to exploit, and which already hold the
context a BiGRU would add)::

    x [B, T, F] -> (input_norm "global": per-value standardisation, the training speakers')
    -> Linear(F, d_model) -> LayerNorm -> GELU -> Dropout
    -> TransformerEncoder (transformer_layers, may be 0) -> pooling -> h

No conv and no GRU (their fields are ignored); the frame lengths are unchanged.

Preset "layer_weighted" (``frontend = "layer_weighted"``, ``input_norm = "pooled_speaker"``): an
MLP on a learned softmax-weighted sum of a ``--layers all`` store's layers, read as each
utterance's mean + std pooled, speaker-standardised vector (``ser_cl.models.layer_weighted``).

Options beyond the thesis (defaults = the thesis): ``input_norm`` ("utterance": per-utterance
standardisation; "global": a fixed per-band mean/std, set from a fold's training speakers with
:meth:`SERModel.set_input_stats` and saved in the checkpoint; "speaker": inputs standardised per
speaker before they reach the model), ``pooling`` ("attention",
"stats"), ``gru_impl``. The layers live in ``ser_cl.models.layers``.

Device notes: everything is torch ops and works under ``torch.autocast`` (CUDA bf16/fp16, CPU
bf16); the BatchNorm statistics, the BiGRU and the pooling run in float32 regardless.
``pack_padded_sequence`` needs the lengths on the CPU; pass ``lengths`` as a CPU tensor
(``collate`` returns one; pass the device copy as ``lengths_dev`` too, as the training loader
does) and the forward makes no host-device synchronisation. Lengths given on the GPU work
too, at the cost of one copy to the host.

About 400 lines on purpose: one concern, the model and its config (~410 lines, a fifth of them this docstring).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ser_cl.data.batches.transfer import host_to_device
from ser_cl.models.layer_weighted import LayerWeighted
from ser_cl.models.layers import (
    GRU_IMPLS,
    POOLINGS,
    ConvBlock,
    MaskedBatchNorm2d,
    Pooling,
    conv_output_length,
    run_bigru,
    utterance_standardize,
    valid_mask,
)

__all__ = [
    "ModelConfig",
    "PRESETS",
    "SERModel",
    "INPUT_NORMS",
    "MaskedBatchNorm2d",
    "conv_output_length",
]


#: Choices of ``ModelConfig.input_norm``.
INPUT_NORMS = ("none", "utterance", "global", "speaker", "pooled_speaker")
#: Choices of ``ModelConfig.frontend``: the thesis' conv + BiGRU, or a per-frame projection.
FRONTENDS = ("conv", "projection", "layer_weighted")


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`SERModel`; the defaults are the thesis encoder.

    ``conv1_kernel`` / ``conv2_kernel`` / ``conv_stride`` are (freq, time). ``proj_dim`` > 0 adds
    a projection head (Linear(D, D) -> ReLU -> Linear(D, proj_dim), as in SimCLR) used only by
    :meth:`SERModel.contrastive`; the thesis uses none (0). ``masked_batchnorm`` makes training-
    mode BatchNorm statistics ignore the padded frames (see the module docstring).
    ``input_norm`` = "utterance" standardises each utterance's input per frequency bin (mean 0,
    variance 1 over its valid frames) before the first conv; "global" standardises with fixed
    per-bin statistics held in the model (the training speakers'); "speaker": the input arrives
    standardised with its speaker's own statistics (``ser_cl.data.stores.normalize.speaker_normalised``,
    applied by whoever feeds the model) and the model adds nothing; the thesis uses no feature
    normalisation ("none", the default). ``pooling``: "mean" (thesis), "attention" or "stats"
    (mean and std, doubling the embedding). ``gru_impl``: "auto" (padded on CUDA, packed on
    the CPU), "packed" or "padded" (all exact; a speed choice, see benchmarks/gru_impl.py).
    ``frontend``: "conv" (thesis: two 2-D convs and a BiGRU) or "projection" (a per-frame
    Linear(n_freq, d_model) instead of both, for upstream features; module doc).
    ``input_dropout``: dropout on the (normalised) input values while training (0 = off; the
    "functionals" preset's regulariser for 6,373 values per utterance).
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
    pooling: str = "mean"
    gru_impl: str = "auto"
    frontend: str = "conv"
    input_dropout: float = 0.0
    n_layers: int = 0  # layer_weighted: the store's layers (0: read from the store when the model is built)

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
        if self.pooling not in POOLINGS:
            raise ValueError(f"ModelConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.frontend not in FRONTENDS:
            raise ValueError(f"ModelConfig.frontend must be one of {FRONTENDS}, got {self.frontend!r}")
        if self.gru_impl not in GRU_IMPLS:
            raise ValueError(f"ModelConfig.gru_impl must be one of {GRU_IMPLS}, got {self.gru_impl!r}")
        if not 0.0 <= float(self.input_dropout) < 1.0:
            raise ValueError(f"ModelConfig.input_dropout must lie in [0, 1), got {self.input_dropout}")
        if self.frontend == "layer_weighted" and (self.input_norm != "pooled_speaker" or self.n_layers < 0):
            raise ValueError("ModelConfig: frontend 'layer_weighted' reads pooled vectors (input_norm 'pooled_speaker')")
        if self.transformer_layers < 0 or self.proj_dim < 0:
            raise ValueError("ModelConfig.transformer_layers and proj_dim must be >= 0")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"ModelConfig: d_model = 2 * gru_hidden = {self.d_model} is not divisible by n_heads = {self.n_heads}"
            )
        if self.frontend == "conv" and self.conv_freq_bins[1] < 1:
            raise ValueError(
                f"ModelConfig: n_freq = {self.n_freq} is too small for the frequency kernels "
                f"{self.conv1_kernel[0]}, {self.conv2_kernel[0]}"
            )

    @property
    def d_model(self) -> int:
        """Width of the per-frame outputs (BiGRU, Transformer): 2 * gru_hidden."""
        return 2 * self.gru_hidden

    @property
    def embed_dim(self) -> int:
        """Dimension D of the embedding h: d_model, doubled by "stats" pooling."""
        return 2 * self.d_model if self.pooling == "stats" else self.d_model

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
        """A named configuration from :data:`PRESETS` ("thesis", "small", "upstream"), with overrides."""
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
    # for upstream (ssl) features: projection to 128, one Transformer layer, attention pooling;
    # "global" standardisation because a few hidden-state values are orders of magnitude larger
    # than the rest and would dominate the projection (our choice; not tuned on real weights)
    "upstream": dataclasses.asdict(ModelConfig(frontend="projection", gru_hidden=64, n_heads=4, d_ff=256,
                                               pooling="attention", input_norm="global")),
    # for openSMILE functionals (prepare --features functionals: one frame per utterance): an MLP,
    # Linear(n_freq, 256) -> LayerNorm -> GELU -> Dropout(0.5), on speaker-normalised values with
    # 20% of them dropped while training; no Transformer (one frame has no context to model)
    "functionals": dataclasses.asdict(ModelConfig(frontend="projection", gru_hidden=128, transformer_layers=0,
                                                  transformer_dropout=0.5, input_norm="speaker",
                                                  input_dropout=0.2)),
    # for a store of all an upstream's layers (prepare --features ssl --layers all): the same MLP
    # on a learned softmax-weighted sum of the layers' mean + std pooled vectors, standardised per
    # speaker (benchmarks/upstream_probe.py's "wsum" head, chosen on EmoDB)
    "layer_weighted": dataclasses.asdict(ModelConfig(frontend="layer_weighted", gru_hidden=128, transformer_layers=0,
                                                     transformer_dropout=0.5, input_norm="pooled_speaker",
                                                     input_dropout=0.2)),
}


class SERModel(nn.Module):
    """Encoder f, linear classifier g (h = g(f(x))) and optional projection head.

    * :meth:`embed` -> h [B, D], D = ``cfg.embed_dim`` (L2-normalised iff ``cfg.normalize``)
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
        d_model = cfg.d_model
        if cfg.input_norm == "global":  # set from the training speakers before training
            self.register_buffer("input_mean", torch.zeros(cfg.n_freq))
            self.register_buffer("input_std", torch.ones(cfg.n_freq))
        if cfg.frontend == "projection":
            self.project_in: nn.Module | None = nn.Sequential(
                nn.Linear(cfg.n_freq, d_model), nn.LayerNorm(d_model), nn.GELU(), nn.Dropout(cfg.transformer_dropout))
            self.conv1 = self.conv2 = self.gru = None
        elif cfg.frontend == "layer_weighted":  # n_freq: the pooled width, 2 x layers x hidden
            self.project_in = LayerWeighted(cfg.n_freq, cfg.n_layers, d_model, cfg.input_dropout, cfg.transformer_dropout)
            self.conv1 = self.conv2 = self.gru = None
        else:
            self.project_in = None
            self.conv1 = ConvBlock(1, cfg.conv_channels, cfg.conv1_kernel, cfg.conv_stride, cfg.masked_batchnorm)
            self.conv2 = ConvBlock(cfg.conv_channels, cfg.conv_channels, cfg.conv2_kernel, cfg.conv_stride,
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
        self.pool = Pooling(cfg.pooling, d_model)
        self.classifier = nn.Linear(cfg.embed_dim, n_classes)
        if cfg.proj_dim > 0:
            self.projection: nn.Module | None = nn.Sequential(
                nn.Linear(cfg.embed_dim, cfg.embed_dim), nn.ReLU(inplace=True), nn.Linear(cfg.embed_dim, cfg.proj_dim)
            )
        else:
            self.projection = None

    # ----------------------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def set_input_stats(self, mean: Any, std: Any) -> None:
        """The per-band mean/std of ``input_norm = "global"`` (e.g. a fold's training speakers')."""
        if self.cfg.input_norm != "global":
            raise ValueError("set_input_stats needs ModelConfig.input_norm = 'global'")
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def set_sync_batchnorm(self, sync: bool) -> None:
        """Sum BatchNorm statistics over the processes of a data-parallel run (SyncBatchNorm)."""
        for m in self.modules():
            if isinstance(m, MaskedBatchNorm2d):
                m.sync = sync

    def output_lengths(self, lengths):
        """Frames per utterance entering the GRU / Transformer / pooling, for input ``lengths``
        (a tensor, or a numpy array on the host)."""
        if self.project_in is not None:  # per-frame projection: one output frame per input frame
            return lengths
        return self.conv2.output_length(self.conv1.output_length(lengths))

    def frames(self, x: torch.Tensor, lengths: torch.Tensor,
               lengths_dev: torch.Tensor | None = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-frame encoder outputs before pooling: ([B, T'', d_model], lengths'' [B] on x's device).

        ``lengths`` [B]: a numpy array or a CPU tensor; ``lengths_dev``, their copy on x's
        device, when the caller has one (else it is made here). Frames at t >= lengths''[b] are zero.
        """
        if x.dim() != 3:
            raise ValueError(f"expected x of shape [B, T, F], got {tuple(x.shape)}")
        batch, max_len, n_freq = x.shape
        if n_freq != self.cfg.n_freq:
            raise ValueError(f"expected {self.cfg.n_freq} frequency bins, got {n_freq}")
        if tuple(lengths.shape) != (batch,):
            raise ValueError(f"expected lengths of shape [{batch}], got {tuple(lengths.shape)}")
        # the lengths' host copy: numpy, so checks on it never read a device value
        lengths_np = lengths if isinstance(lengths, np.ndarray) else lengths.detach().cpu().numpy()
        lengths_np = lengths_np.astype(np.int64, copy=False)
        if batch > 0 and (lengths_np.min() < 1 or lengths_np.max() > max_len):
            raise ValueError(f"lengths must lie in [1, {max_len}], got {lengths_np.tolist()}")
        if lengths_dev is None:
            lengths_dev = host_to_device(lengths_np, x.device)

        valid = valid_mask(lengths_dev, max_len)
        x = x.masked_fill(~valid[:, :, None], 0.0)
        if self.cfg.input_norm == "utterance":
            x = utterance_standardize(x, valid, lengths_dev)
        elif self.cfg.input_norm == "global":
            x = ((x - self.input_mean) / self.input_std).masked_fill(~valid[:, :, None], 0.0)
        if self.cfg.input_dropout > 0 and self.cfg.frontend != "layer_weighted":  # it drops after the sum
            x = F.dropout(x, self.cfg.input_dropout, self.training)
        if self.project_in is not None:
            return self._transform(self.project_in(x), lengths_dev)
        y = x.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        y, lengths_dev = self.conv1(y, lengths_dev)
        y, lengths_dev = self.conv2(y, lengths_dev)
        out_len = y.shape[-1]
        y = y.permute(0, 3, 1, 2).reshape(batch, out_len, -1)  # [B, T'', C * F'']

        # The GRU runs in float32 even under autocast: cuDNN RNNs reject bfloat16 before cuDNN
        # 9.13, and the recurrence is latency-bound, so low precision would buy little here.
        with torch.autocast(device_type=y.device.type, enabled=False):
            y = y.float() if y.dtype in (torch.float16, torch.bfloat16) else y
            y = run_bigru(self.gru, y, self.output_lengths(lengths_np), lengths_dev, self.cfg.gru_impl)
        return self._transform(y, lengths_dev)

    def _transform(self, y: torch.Tensor, lengths_dev: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The Transformer (if any) over the valid frames of [B, T, d_model]; zero beyond them."""
        valid = valid_mask(lengths_dev, y.shape[1])
        if self.transformer is not None:
            y = self.transformer(y, src_key_padding_mask=~valid)
        y = y.masked_fill(~valid[:, :, None], 0.0)
        return y, lengths_dev

    def embed(self, x: torch.Tensor, lengths: torch.Tensor, lengths_dev: torch.Tensor | None = None) -> torch.Tensor:
        """Utterance embeddings h [B, D] (float32): the pooled frames, L2-normalised iff ``cfg.normalize``."""
        y, lengths_dev = self.frames(x, lengths, lengths_dev)
        h = self.pool(y, lengths_dev)
        if self.cfg.normalize:
            h = F.normalize(h, dim=-1)
        return h

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """The projection head's output (h itself without one), not normalised (float32):
        what Barlow Twins and VICReg take."""
        return (self.projection(h) if self.projection is not None else h).float()

    def contrastive(self, h: torch.Tensor) -> torch.Tensor:
        """z for the contrastive losses: projection head (if any), then L2 normalisation."""
        return F.normalize(self.project(h), dim=-1)

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
        """Parameters of the encoder f (convs, BatchNorms, GRU or projection, Transformer): all but the heads."""
        head_ids = {id(p) for p in self.head_parameters()}
        for p in self.parameters():
            if id(p) not in head_ids:
                yield p

    def n_parameters(self) -> Dict[str, int]:
        """Parameter counts: {"encoder", "heads", "total"}."""
        enc = sum(p.numel() for p in self.encoder_parameters())
        heads = sum(p.numel() for p in self.head_parameters())
        return {"encoder": enc, "heads": heads, "total": enc + heads}
