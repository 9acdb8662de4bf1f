"""A stage's configuration: plain dataclasses, built from a merged TOML table and validated
with errors that name the key and the file (``stage_from_dict``), and written back as TOML
(``to_toml``). Reading experiment files, presets, overrides and sweeps: ``ser_cl.experiment``.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, get_type_hints

import tomli_w

STAGE_KINDS = ("train", "pretrain", "finetune", "baseline")


class ConfigError(ValueError):
    """A bad experiment file or override; the message names the key and the file."""


@dataclass
class DataConfig:
    dir: str = "data/synth"  # a DATA_DIR written by `ser-cl prepare`
    protocol: str = "auto"  # session10 | session5 | speaker | holdout | speaker_groups | file | auto
    max_frames: int = 0  # crop training batches to at most this many frames (0 = no cap)
    eval_batch_size: int = 64
    store_on_device: Optional[bool] = None  # hold the whole store on the GPU (unset: when it fits easily)
    prefetch: int = 3  # batches gathered ahead of the step by the background thread
    # self-supervised pretraining on a pool of stores (docs/training.md, "Pretraining pools and unlabeled audio"): these
    # DATA_DIRs (unlabeled ones too; data.dir may be one of them) replace data.dir's training
    # speakers; each fold's validation and test speakers of data.dir are never in it. Read by
    # pretrain stages only (train / finetune stages read data.dir)
    pool: List[str] = field(default_factory=list)
    pool_weights: List[float] = field(default_factory=list)  # per pool store; unset: by size
    pool_epoch_size: int = 0  # utterances a pool epoch draws (by pool_weights); 0 = the pool's size
    pool_val_fraction: float = 0.1  # a pool that serves every fold validates on this share of its speakers
    # train / finetune stages: stores of data.dir's recordings perturbed (prepare --speed); each
    # fold also trains on the copies of its training utterances, each copy's speaker a speaker of
    # its own (ser_cl.data.batches.copies)
    train_copies: List[str] = field(default_factory=list)
    # cross-corpus testing (docs/evaluation.md, "Cross-corpus evaluation"): after training, each fold's model is also
    # tested on these DATA_DIRs, its classes mapped onto the shared ones by class_map
    test_on: List[str] = field(default_factory=list)
    class_map: Dict[str, str] = field(default_factory=dict)  # class name -> shared name, e.g. hap = "happy"
    holdout_speakers: int = 2  # protocol "holdout": speakers kept out of training for validation
    # protocols speaker, speaker_groups, and file where the file gives no validation set: the
    # validation speakers per fold, taken from the training speakers (never the test ones)
    val_speakers: int = 1
    n_folds: int = 5  # protocol "speaker_groups": K groups of speakers, each the test set once
    folds_file: str = ""  # protocol "file": an EmoBox folder (fold_K/*_train_fold_K.jsonl) or a utt_id,fold,part CSV


@dataclass
class ModelSection:
    preset: str = "thesis"  # thesis | small | upstream | functionals | layer_weighted; the fields below override the preset when set
    conv_channels: Optional[int] = None
    gru_hidden: Optional[int] = None
    gru_layers: Optional[int] = None
    gru_dropout: Optional[float] = None
    transformer_layers: Optional[int] = None
    n_heads: Optional[int] = None
    d_ff: Optional[int] = None
    transformer_dropout: Optional[float] = None
    normalize: Optional[bool] = None  # None: True for contrastive pretraining, False otherwise
    proj_dim: Optional[int] = None
    input_norm: Optional[str] = None  # none (thesis) | utterance | global (the fold's training speakers' stats) | speaker (each speaker's own) | pooled_speaker
    pooling: Optional[str] = None  # mean (thesis) | attention | stats
    gru_impl: Optional[str] = None  # auto (padded on CUDA, packed on CPU) | packed | padded: exact, speed only
    conv1_kernel: Optional[List[int]] = None  # [freq, time]; thesis [41, 21]
    conv2_kernel: Optional[List[int]] = None  # thesis [21, 11]
    freq_kernels: str = "fixed"  # fixed | scaled: frequency kernels x n_freq / 257 (for log-mel front-ends)
    input_dropout: Optional[float] = None  # dropout on the input values while training (functionals preset: 0.2)
    # the MLP of the "functionals" preset (a projection front-end without Transformer layers):
    # its hidden width (preset: 256; an even number, held as 2 x gru_hidden) and the dropout
    # after it (preset: 0.5, held as transformer_dropout). Other presets refuse them
    mlp_hidden: Optional[int] = None
    mlp_dropout: Optional[float] = None


@dataclass
class LossConfig:
    name: str = "ce"  # ce | triplet | smooth_triplet | ntxent | supcon | selfsup_ntxent | barlow_twins | vicreg
    margin: float = 0.2  # triplet
    mining: str = "all"  # triplet: all | semihard | hard | semihard-hard
    hard_fraction: float = 0.2  # semihard-hard: the last fraction of epochs uses hard triplets
    tau: float = 0.1  # smooth_triplet, ntxent, supcon, selfsup_ntxent
    supcon_weight: float = 0.0  # lambda in L = CE + lambda * SupCon (thesis 4.4.3)
    supcon_tau: float = 0.1
    selfsup_weight: float = 0.0  # beta in L = CE + lambda * SupCon + beta * NT-Xent (4.4.5)
    selfsup_tau: float = 0.5
    barlow_lambda: float = 5e-3  # barlow_twins: weight of the off-diagonal terms (Zbontar et al. 2021)
    vicreg_sim: float = 25.0  # vicreg: invariance weight (lambda of Bardes et al. 2022)
    vicreg_var: float = 25.0  # vicreg: variance weight (mu; multiplies the mean over the 2 views)
    vicreg_cov: float = 1.0  # vicreg: covariance weight (nu)
    gather_distributed: bool = True  # torchrun: contrastive negatives from every process's batch
    label_smoothing: float = 0.0  # ce: target (1 - eps) onehot + eps / C (thesis: 0)


@dataclass
class OptimConfig:
    epochs: int = 50
    # a budget in optimiser steps (0 = none): the epochs are capped at ceil(max_steps / steps per
    # epoch), so a corpus larger than the one a recipe was tuned on trains fewer epochs, same cost
    max_steps: int = 0
    batch_size: int = 32  # utterances per batch (a multi-view batch holds twice as many views)
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3  # epochs without improvement before lr is divided by 10 (thesis)
    lr_factor: float = 0.1
    # how the lr moves over a phase's epochs (it is set once per epoch): plateau (x lr_factor after
    # `patience` epochs without a better validation value; needs validation speakers) | step
    # (x lr_factor every `step_epochs` epochs) | cosine (lr x (1 + cos(pi e / E)) / 2 at epoch e
    # of the phase's E epochs: from lr towards 0)
    schedule: str = "plateau"
    step_epochs: int = 10  # schedule = "step": epochs between two steps of the lr
    monitor: str = "auto"  # auto | val_ua | val_loss (auto: val_ua with a classifier head)
    early_stop: int = 0  # stop after this many epochs without improvement (0 = never; thesis)
    # which weights the fold keeps in best.pt and is scored with: best (the best validation epoch;
    # thesis) | last (the last epoch's: one validation speaker picks an epoch noisily; validation
    # still drives the lr schedule and early_stop)
    keep: str = "best"
    amp: bool = True  # bf16 autocast on CUDA; ignored on the CPU
    seed: int = 0
    sync_batchnorm: bool = False  # torchrun: BatchNorm statistics over the global batch
    # beyond the thesis: validate, checkpoint and evaluate a moving average of the weights, with
    # this decay per optimiser step (0 = off: the weights themselves; ser_cl.train.averaging)
    ema_decay: float = 0.0
    # beyond the thesis: after training, refit the classifier head on the best checkpoint's
    # embeddings as a linear probe (logistic regression on the training speakers, C chosen on the
    # validation speakers' UA; ser_cl.train.head_fit), so the head is never a worse linear
    # classifier of its own embeddings than a probe; metrics.json keeps the trained head's scores
    refit_head: bool = False
    # TensorBoard logs of each fold under <fold dir>/tensorboard (docs/tensorboard.md): auto (when
    # the package is installed) | on (stop when it is not) | off. A mirror of metrics.jsonl: it does
    # not change what a fold learns, so it is not in the fingerprint
    tensorboard: str = "auto"


@dataclass
class AugmentConfig:
    enabled: bool = False  # SpecAugment on the training batches
    multiview: bool = False  # 2 augmented views per utterance (thesis 4.4.2.4)
    # beyond the thesis: with multiview, each view cut to at most this many frames at its own
    # random offset in the batch's crop (0 = both views are the same crop, masked twice: thesis)
    view_frames: int = 0
    time_mask_frac: float = 0.05
    freq_mask_width: int = 10
    mixup_alpha: float = 0.0  # mixup of training batches, lambda ~ Beta(a, a) (0 = off; CE only)
    time_stretch: float = 0.0  # speed perturbation: each batch resampled in time by 1 +- up to this (0 = off)


@dataclass
class FinetuneConfig:
    # TOML key `from`: a variant run dir, or the name of an earlier stage of this file. A finetune
    # stage needs it; a pretrain stage with it starts from that encoder (e.g. SupCon after NT-Xent)
    source: str = ""
    freeze_epochs: int = 10  # finetune: encoder frozen for these epochs, then all parameters train
    freeze_min_steps: int = 0  # ... and for at least this many optimiser steps (small corpora; 0 = off)
    head_lr: Optional[float] = None  # the classifier head's lr when fine-tuning (unset: optim.lr)
    head_init: str = "fit"  # fit: start the head as a linear probe of the frozen embeddings | random


@dataclass
class BaselineConfig:
    """A ``stage = "baseline"`` stage: openSMILE functionals + a linear SVM (no neural network)."""

    # ComParE_2016 (6,373 functionals) | eGeMAPSv02 (88) | store: the store's own frames, mean + std
    # pooled (a linear probe of any front-end, e.g. an upstream's)
    feature_set: str = "ComParE_2016"
    # none: the raw vectors; global: standardised with the fold's training speakers' statistics;
    # speaker: each speaker's standardised with that speaker's own statistics (as input_norm = speaker)
    norm: str = "global"
    # C by leave-one-speaker-out over the fold's training speakers, then refitted on all of them
    c_grid: List[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0])


@dataclass
class StageConfig:
    """Everything one training stage needs; written back as ``config.toml`` in each fold dir."""

    experiment: str = "experiment"
    name: str = "train"  # stage name, the first part of the variant directory name
    kind: str = "train"  # train | pretrain | finetune | baseline
    description: str = ""
    runs_dir: str = "runs"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    probe: bool = True  # `ser-cl run` probes this stage's folds after training
    # reference numbers (percent) for the report: val_ua, test_ua, note; a sub-table
    # variants."<swept values>" (e.g. variants."tau=0.5") gives a variant its own numbers
    thesis: Dict[str, Any] = field(default_factory=dict)
    sweep: Dict[str, List[Any]] = field(default_factory=dict)

    # -- derived ---------------------------------------------------------------------------
    @property
    def has_head(self) -> bool:
        """Whether training fits the linear classifier head (so its UA is meaningful)."""
        return self.kind in ("train", "finetune", "baseline")

    @property
    def monitor(self) -> str:
        if self.optim.monitor != "auto":
            return self.optim.monitor
        return "val_ua" if self.has_head else "val_loss"


SECTIONS = {
    "data": DataConfig,
    "model": ModelSection,
    "loss": LossConfig,
    "optim": OptimConfig,
    "augment": AugmentConfig,
    "finetune": FinetuneConfig,
    "baseline": BaselineConfig,
}
BASELINE_FEATURE_SETS = ("ComParE_2016", "eGeMAPSv02", "store")  # openSMILE's names; store: its own frames
BASELINE_NORMS = ("none", "global", "speaker")
SELF_SUPERVISED_LOSSES = ("selfsup_ntxent", "barlow_twins", "vicreg")  # no labels needed
STAGE_SCALARS = ("experiment", "name", "kind", "description", "runs_dir", "device", "probe")
LOSS_NAMES = ("ce", "triplet", "smooth_triplet", "ntxent", "supcon", "selfsup_ntxent", "barlow_twins", "vicreg")
MINING = ("all", "semihard", "hard", "semihard-hard")
PROTOCOLS = ("auto", "session10", "session5", "speaker", "holdout", "speaker_groups", "file")
TENSORBOARD_MODES = ("auto", "on", "off")  # optim.tensorboard
SCHEDULES = ("plateau", "step", "cosine")  # optim.schedule


# -- typed conversion -------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = getattr(tp, "__origin__", None)
    args = getattr(tp, "__args__", ())
    if origin is Optional or (origin is not None and type(None) in args):  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key, where)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
    elif origin in (dict, Dict) and isinstance(value, dict):
        return dict(value)
    elif origin in (list, List) and isinstance(value, list):
        return list(value)
    raise ConfigError(f"{where}: key '{key}' must be {_type_name(tp)}, got {value!r}")


def _toml_keys(cls: type) -> Dict[str, str]:
    """TOML key -> attribute; `from` is a Python keyword, so [finetune] from is `source`."""
    keys = {f.name: f.name for f in dataclasses.fields(cls)}
    if cls is FinetuneConfig:
        keys["from"] = keys.pop("source")
    return keys


def _section_from_dict(cls: type, table: Dict[str, Any], prefix: str, where: str) -> Any:
    hints = get_type_hints(cls)
    keys = _toml_keys(cls)
    kwargs = {}
    for key, value in table.items():
        if key not in keys:
            hint = difflib.get_close_matches(key, list(keys), n=1)
            extra = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'{extra}")
        kwargs[keys[key]] = _coerce(value, hints[keys[key]], prefix + key, where)
    return cls(**kwargs)


def as_table(cfg: "StageConfig") -> Dict[str, Any]:
    """A StageConfig as the plain dict of its TOML form (the inverse of stage_from_dict)."""
    table = dataclasses.asdict(cfg)
    table["stage"] = table.pop("kind")
    table["finetune"]["from"] = table["finetune"].pop("source")
    return table


def stage_from_dict(table: Dict[str, Any], where: str) -> StageConfig:
    """Build and validate one StageConfig from a merged plain dict."""
    known = set(SECTIONS) | set(STAGE_SCALARS) | {"thesis", "sweep", "stage", "stages"}
    kwargs: Dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"{where}: unknown key '{key}'{extra}")
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a table, e.g. [{key}]")
            kwargs[key] = _section_from_dict(SECTIONS[key], value, key + ".", where)
        elif key == "stage":
            kwargs["kind"] = _coerce(value, str, key, where)
        elif key in ("thesis", "sweep"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a table")
            kwargs[key] = dict(value)
        elif key != "stages":
            kwargs[key] = _coerce(value, get_type_hints(StageConfig)[key], key, where)
    cfg = StageConfig(**kwargs)
    validate(cfg, where)
    return cfg


def validate(cfg: StageConfig, where: str) -> None:
    def check(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(f"{where}: {msg}")

    check(cfg.kind in STAGE_KINDS, f"stage must be one of {', '.join(STAGE_KINDS)}, got '{cfg.kind}'")
    check(cfg.loss.name in LOSS_NAMES, f"loss.name must be one of {', '.join(LOSS_NAMES)}, got '{cfg.loss.name}'")
    check(cfg.loss.mining in MINING, f"loss.mining must be one of {', '.join(MINING)}, got '{cfg.loss.mining}'")
    check(cfg.data.protocol in PROTOCOLS, f"data.protocol must be one of {', '.join(PROTOCOLS)}")
    check(cfg.data.protocol != "file" or bool(cfg.data.folds_file),
          "data.protocol = 'file' needs data.folds_file = DIR (EmoBox fold_K/ folders) or FILE.csv")
    check(not cfg.data.folds_file or cfg.data.protocol == "file",
          "data.folds_file is read by data.protocol = 'file' only: set that too")
    check(cfg.data.val_speakers >= 0, "data.val_speakers must be >= 0 (0: train on every speaker but the test ones)")
    if cfg.data.val_speakers == 0 and cfg.kind != "baseline":  # no validation set: nothing to pick an epoch on
        # (a baseline chooses C by leave-one-speaker-out over its training speakers, whatever val_speakers)
        check(cfg.kind == "train", "data.val_speakers = 0 is for train and baseline stages (protocol holdout ignores it)")
        check(cfg.optim.keep == "last" and not cfg.optim.early_stop and not cfg.optim.refit_head,
              "data.val_speakers = 0 leaves no validation speakers: set optim.keep = \"last\", "
              "optim.early_stop = 0 and optim.refit_head = false")
        check(cfg.optim.schedule != "plateau" or cfg.data.protocol == "holdout",  # holdout validates anyway
              "data.val_speakers = 0 leaves no validation speakers for optim.schedule = \"plateau\": "
              "set optim.schedule = \"cosine\" or \"step\" (with optim.step_epochs)")
    check(not cfg.data.train_copies or cfg.kind in ("train", "finetune", "baseline"),
          "data.train_copies is for train and finetune stages and the baseline (pretraining reads data.pool)")
    check(cfg.data.n_folds >= 2, "data.n_folds must be >= 2 (protocol speaker_groups)")
    check(cfg.optim.monitor in ("auto", "val_ua", "val_loss"), "optim.monitor must be auto, val_ua or val_loss")
    check(cfg.optim.keep in ("best", "last"), "optim.keep must be best or last")
    check(cfg.optim.schedule in SCHEDULES, f"optim.schedule must be one of {', '.join(SCHEDULES)}, "
          f"got '{cfg.optim.schedule}'")
    check(cfg.optim.step_epochs >= 1, "optim.step_epochs must be >= 1")
    check(cfg.optim.epochs >= 1, "optim.epochs must be >= 1")
    check(cfg.optim.max_steps >= 0, "optim.max_steps must be >= 0 (0: no step budget)")
    check(cfg.optim.batch_size >= 2, "optim.batch_size must be >= 2")
    check(cfg.optim.lr > 0, "optim.lr must be > 0")
    check(cfg.augment.view_frames >= 0, "augment.view_frames must be >= 0 (0: off)")
    check(0 <= cfg.optim.ema_decay < 1, "optim.ema_decay must be in [0, 1) (0: off; e.g. 0.95)")
    check(cfg.data.prefetch >= 1, "data.prefetch must be >= 1")
    check(cfg.optim.tensorboard in TENSORBOARD_MODES,
          f"optim.tensorboard must be one of {', '.join(TENSORBOARD_MODES)}, got '{cfg.optim.tensorboard}'")
    check(cfg.model.freq_kernels in ("fixed", "scaled"), "model.freq_kernels must be fixed or scaled")
    check(cfg.finetune.head_lr is None or cfg.finetune.head_lr > 0, "finetune.head_lr must be > 0")
    check(cfg.finetune.head_init in ("fit", "random"), "finetune.head_init must be fit or random")
    for key in ("conv1_kernel", "conv2_kernel"):
        k = getattr(cfg.model, key)
        check(k is None or (len(k) == 2 and all(isinstance(v, int) and v >= 1 for v in k)),
              f"model.{key} must be [freq, time], two positive ints, e.g. [41, 21]")
    if cfg.kind == "baseline":
        check(cfg.baseline.feature_set in BASELINE_FEATURE_SETS,
              f"baseline.feature_set must be one of {', '.join(BASELINE_FEATURE_SETS)}, got '{cfg.baseline.feature_set}'")
        check(cfg.baseline.norm in BASELINE_NORMS,
              f"baseline.norm must be one of {', '.join(BASELINE_NORMS)}, got '{cfg.baseline.norm}'")
        check(bool(cfg.baseline.c_grid) and all(isinstance(c, (int, float)) and c > 0 for c in cfg.baseline.c_grid),
              "baseline.c_grid must be a non-empty list of numbers > 0, e.g. [1e-3, 1e-2, 1e-1]")
        check(not cfg.finetune.source and not cfg.data.pool and not cfg.data.test_on,
              "a baseline stage reads data.dir's audio only: finetune.from, data.pool and data.test_on do not apply")
    if cfg.kind in ("train", "finetune"):
        check(cfg.loss.name == "ce", f"a {cfg.kind} stage trains the classifier: loss.name must be 'ce' "
              "(add SupCon / NT-Xent with loss.supcon_weight / loss.selfsup_weight)")
    if cfg.kind == "pretrain":
        check(cfg.loss.name != "ce", "a pretrain stage needs a contrastive loss.name (e.g. supcon, selfsup_ntxent)")
        check(cfg.monitor == "val_loss", "a pretrain stage has no classifier: optim.monitor must be val_loss")
    if cfg.kind == "finetune":
        check(bool(cfg.finetune.source), "a finetune stage needs finetune.from = RUN_DIR or a stage name "
              "(or --from RUN_DIR on the command line)")
    needs_views = cfg.loss.name in ("selfsup_ntxent", "barlow_twins", "vicreg") or cfg.loss.selfsup_weight > 0
    if needs_views:
        check(cfg.augment.multiview, f"{cfg.loss.name if cfg.loss.name != 'ce' else 'self-supervised NT-Xent'} "
              "needs two views: set augment.multiview = true")
    if cfg.augment.multiview:
        check(cfg.augment.enabled, "augment.multiview = true needs augment.enabled = true")
    check(cfg.augment.mixup_alpha >= 0 and 0 <= cfg.augment.time_stretch < 1,
          "augment.mixup_alpha must be >= 0 and augment.time_stretch in [0, 1)")
    if cfg.augment.mixup_alpha > 0:
        check(cfg.has_head and cfg.loss.supcon_weight == 0 and cfg.loss.selfsup_weight == 0
              and not cfg.augment.multiview,
              "augment.mixup_alpha needs a cross-entropy-only stage without multi-view batches (mixed labels "
              "have no positives); set augment.mixup_alpha = 0 (e.g. --set augment.mixup_alpha=0 with --preset cpu)")
    if cfg.data.pool and cfg.kind == "pretrain":  # train / finetune stages read data.dir only
        check(cfg.loss.name in SELF_SUPERVISED_LOSSES,
              f"data.pool serves self-supervised pretraining only (loss.name = {' | '.join(SELF_SUPERVISED_LOSSES)}), "
              f"not loss.name = {cfg.loss.name}")
    weights = cfg.data.pool_weights
    check(not weights or len(weights) == len(cfg.data.pool),
          f"data.pool_weights needs one weight per data.pool entry ({len(cfg.data.pool)}), got {len(weights)}")
    check(all(isinstance(w, (int, float)) and w >= 0 for w in weights) and (not weights or sum(weights) > 0),
          "data.pool_weights must be numbers >= 0, not all 0")
    check(0 < cfg.data.pool_val_fraction < 1, "data.pool_val_fraction must be in (0, 1)")
    check(cfg.data.pool_epoch_size >= 0, "data.pool_epoch_size must be >= 0 (0: the pool's size)")
    for key, values in cfg.sweep.items():
        check(isinstance(values, list) and len(values) > 0, f"sweep.'{key}' must be a non-empty list")
        check("." in key and key.split(".")[0] in SECTIONS, f"sweep key '{key}' must be section.field, e.g. loss.tau")


def to_toml(cfg: StageConfig) -> str:
    """Serialise a StageConfig as TOML (the resolved ``config.toml`` of a fold), by ``tomli_w``:
    any string (newlines, quotes, backslashes, control characters, non-ASCII) and any key of the
    free-form tables is escaped, so ``stage_from_dict(tomllib.loads(to_toml(cfg)))`` gives ``cfg``
    back. Unset (None) fields are left out: reading the file back sets them to None again.

    Nothing reads this text to decide anything: the resume and fine-tuning checks compare
    ``fingerprint.json`` (``ser_cl.train.fingerprint.config_fingerprint``, from the config's data).
    """
    return tomli_w.dumps(_without_none(as_table(cfg)))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value
