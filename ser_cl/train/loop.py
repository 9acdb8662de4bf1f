"""The training loop: one fold of one stage, readable top to bottom (nanoGPT style).

One concern, kept whole on purpose: splitting the loop would hide its order (what trains in which
phase, and each phase's optimiser and schedule, are ser_cl.train.phases).

    build model (fresh, or the encoder of a pretrained fold) -> (resume from last.pt) ->
    for each phase (one; or, fine-tuning: encoder frozen, then everything):
        fresh Adam + ReduceLROnPlateau, so no phase inherits another's decayed lr
        for each epoch of the phase:
            train: batches planned from the seed, gathered ahead of the step
                   (ser_cl.data.batches.loader) -> SpecAugment / 2 views on the device
                   -> loss (ser_cl.train.objective) -> Adam step
            (optim.ema_decay: after each step, the moving average of the weights moves; it is
             what validation, best.pt and the final evaluation see: ser_cl.train.averaging)
            validate: the monitored value (UA with a head, else the validation loss with a
                      schedule-free objective), best.pt when it improves; write last.pt
                      and metrics.jsonl (mirrored to TensorBoard when installed: tensorboard_log)
    -> evaluate best.pt on val and test -> metrics.json (the "complete" marker)

No step reads a device value on the host: the loss terms are summed on the device, and a
non-finite loss is looked for once per epoch (the error names its first step). Every file is
written atomically, so a kill at any moment leaves the previous epoch's state or the new one;
re-running the same command continues after the last finished epoch (with the same config:
``ser_cl.train.run`` refuses a fold trained under another).
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ser_cl.config import StageConfig
from ser_cl.data.batches.augment import mixup, spec_augment, time_stretch, two_views
from ser_cl.data.splits.folds import Fold, epoch_train_indices
from ser_cl.data.batches.loader import Batch, BatchLoader, plan_epoch, store_fits_on_device
from ser_cl.data.stores.normalize import model_inputs, typical_speaker_stats
from ser_cl.data.stores.store import FeatureStore
from ser_cl.data.batches.transfer import host_to_device
from ser_cl.models.embed import embed_utterances
from ser_cl.metrics import classification_report
from ser_cl.io import write_json, write_text
from ser_cl.models import SERModel
from ser_cl.progress import progress_bar
from ser_cl.train import distributed
from ser_cl.train.averaging import WeightAverage
from ser_cl.train.build import build_model
from ser_cl.train.checkpoint import load_checkpoint, save_checkpoint
from ser_cl.train.objective import Objective, validation_objective
from ser_cl.train.fingerprint import begin_fold, complete_metrics
from ser_cl.train.phases import epochs_of, make_optimizer, phases_of, set_trainable
from ser_cl.train.tensorboard_log import FoldLog


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def _augment(batch: Batch, cfg: StageConfig, generator: Optional[torch.Generator],
             rng: Optional[np.random.Generator] = None, fill: Optional[torch.Tensor] = None, n_classes: int = 0):
    """The stage's augmentations on the device: (x, lengths, lengths_dev, labels or soft targets).

    Thesis: SpecAugment, or the 2-view batch. Beyond it (``rng`` given, training only): a speed
    perturbation of the batch, then mixup; their random numbers come from the host generator
    ``rng``, so nothing is read back from the device.
    """
    x, lengths, lengths_dev, labels = batch.x, batch.lengths, batch.lengths_dev, batch.labels
    a = cfg.augment
    if rng is not None and a.time_stretch > 0:
        x, lengths = time_stretch(x, lengths, float(rng.uniform(1 - a.time_stretch, 1 + a.time_stretch)))
        lengths_dev = host_to_device(lengths, x.device)
    aug = dict(time_mask_frac=a.time_mask_frac, freq_mask_width=a.freq_mask_width, generator=generator, fill=fill)
    if rng is not None and a.mixup_alpha > 0:
        perm_host = rng.permutation(len(lengths))
        perm = host_to_device(perm_host, x.device)
        x, lengths, labels = mixup(x, lengths, labels, n_classes, float(rng.beta(a.mixup_alpha, a.mixup_alpha)),
                                   perm, perm_host)
        order = np.argsort(-lengths, kind="stable")  # longest first again, so the GRU packs as is
        order_dev = host_to_device(order, x.device)
        x, lengths, labels = x[order_dev], lengths[order], labels[order_dev]
        lengths_dev = host_to_device(lengths, x.device)
    if cfg.augment.multiview:
        x, lengths_dev = two_views(x, lengths_dev, view_frames=a.view_frames, **aug)
        lengths = np.repeat(lengths, 2)
        if a.view_frames:  # what view_crops computed on the device, known here without a copy
            lengths = np.minimum(lengths, x.shape[1])
        return x, lengths, lengths_dev, labels.repeat_interleave(2)
    if cfg.augment.enabled:
        x = spec_augment(x, lengths_dev, **aug)
    return x, lengths, lengths_dev, labels


@torch.no_grad()
def evaluate(model: SERModel, store: FeatureStore, indices: np.ndarray, cfg: StageConfig, device: torch.device,
             objective: Optional[Objective] = None, loader: Optional[BatchLoader] = None) -> Dict[str, Any]:
    """The validation loss (with ``objective``) and, with a classifier head, UA/WA/confusion.

    The loss is taken on batches shaped like the training ones (mean length, cropped from the
    start, the 2 views that self-supervision needs), in a fixed shuffled order so contrastive
    batches mix classes and speakers the same way every epoch. UA/WA come from whole, uncropped
    utterances.
    """
    model.eval()
    result: Dict[str, Any] = {}
    if objective is not None:
        loader = loader or BatchLoader(store, device)
        order = np.random.default_rng(12345).permutation(indices)
        gen = torch.Generator(device=device).manual_seed(12345)
        plans = plan_epoch(store.lengths, order, cfg.optim.batch_size, None, "mean", cfg.data.max_frames)
        total, n_batches = torch.zeros((), device=device), 0
        for batch in loader(plans):
            x, lengths, lengths_dev, labels = batch.x, batch.lengths, batch.lengths_dev, batch.labels
            if cfg.augment.multiview:
                fill = model.input_mean if model.cfg.input_norm == "global" else None
                x, lengths, lengths_dev, labels = _augment(batch, cfg, gen, fill=fill)
            with _autocast(device, cfg.optim.amp):
                total += objective(model, x, lengths, labels, lengths_dev).loss.detach().float()
            n_batches += 1
        result["loss"] = float(total) / max(n_batches, 1)
    if cfg.has_head:
        _, preds = embed_utterances(model, store, indices, device, cfg.data.eval_batch_size, cfg.optim.amp)
        result.update(classification_report(store.labels[indices], preds, len(store.classes)))
    return result


def _rng_state(np_rng: np.random.Generator, aug_gen: torch.Generator) -> Dict[str, Any]:
    return {"numpy": np_rng.bit_generator.state, "torch": torch.get_rng_state(), "python": list(random.getstate()),
            "aug": aug_gen.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: Dict[str, Any], np_rng: np.random.Generator, aug_gen: torch.Generator) -> None:
    np_rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    aug_gen.set_state(state["aug"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainStep(torch.nn.Module):
    """model + objective as one module, so DistributedDataParallel sees the whole step."""

    def __init__(self, model: SERModel, objective: Objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, x, lengths, lengths_dev, labels, shard_sizes=None):
        out = self.objective(self.model, x, lengths, labels, lengths_dev, shard_sizes)
        return out.loss, out.parts


def train_step(step_module: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, cfg: StageConfig,
               aug_gen: Optional[torch.Generator], device: torch.device, rng: Optional[np.random.Generator] = None):
    """One optimiser step on one batch: augment, forward, backward, update. Returns the detached
    loss and its parts, still on the device: nothing here reads a device value on the host."""
    model = step_module.module.model if hasattr(step_module, "module") else step_module.model
    fill = model.input_mean if model.cfg.input_norm == "global" else None  # a mask reads as "average"
    x, lengths, lengths_dev, labels = _augment(batch, cfg, aug_gen, rng, fill, model.n_classes)
    sizes = batch.shard_sizes
    if sizes is not None and cfg.augment.multiview:
        sizes = tuple(2 * n for n in sizes)
    with _autocast(device, cfg.optim.amp):
        loss, parts = step_module(x, lengths, lengths_dev, labels, sizes)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), parts


def init_head(model: SERModel, store: FeatureStore, fold: Fold, cfg: StageConfig, device: torch.device) -> None:
    """Start the classifier as a linear probe of the frozen embeddings (head_fit.py): logistic
    regression on the training speakers, its C chosen on the validation speakers' UA."""
    from ser_cl.train.head_fit import select_linear_head

    model.eval()
    train_x, _ = embed_utterances(model, store, fold.train, device, cfg.data.eval_batch_size, cfg.optim.amp)
    val_x, _ = embed_utterances(model, store, fold.val, device, cfg.data.eval_batch_size, cfg.optim.amp)
    weight, bias = select_linear_head(train_x, store.labels[fold.train], val_x, store.labels[fold.val],
                                      len(store.classes))
    with torch.no_grad():
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(bias)


def train_fold(
    cfg: StageConfig,
    store: FeatureStore,
    fold: Fold,
    fold_dir: Path,
    device: torch.device,
    source_checkpoint: Optional[Path] = None,
    on_epoch_end: Optional[Callable[[int], None]] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Train one fold; return (and write) its metrics.json. Skips a fold that is already complete.

    With TensorBoard (``optim.tensorboard``), rank 0 mirrors each epoch's record and the final
    scores under ``fold_dir/tensorboard`` (ser_cl.train.tensorboard_log); metrics.jsonl and
    metrics.json stay the record.
    """
    fold_dir = Path(fold_dir)
    done = complete_metrics(fold_dir)
    if done is not None:
        return done
    rank, world = distributed.rank_and_world()  # (0, 1) unless launched by torchrun
    main = rank == 0  # only rank 0 writes files
    if main:
        begin_fold(cfg, store, fold, fold_dir)
    with FoldLog(fold_dir, cfg.optim.tensorboard, enabled=main) as tb:  # closed on errors too
        return _train_fold(cfg, store, fold, fold_dir, device, source_checkpoint, on_epoch_end,
                           progress and main, tb, rank, world)


def _train_fold(cfg: StageConfig, store: FeatureStore, fold: Fold, fold_dir: Path, device: torch.device,
                source_checkpoint: Optional[Path], on_epoch_end: Optional[Callable[[int], None]], progress: bool,
                tb: FoldLog, rank: int, world: int) -> Dict[str, Any]:
    """train_fold's body, from the seeds to metrics.json (``tb``: the fold's TensorBoard log)."""
    main = rank == 0  # only rank 0 writes files
    metrics_path, last_path, best_path = fold_dir / "metrics.json", fold_dir / "last.pt", fold_dir / "best.pt"

    # -- seeds, model, data, objective -----------------------------------------------------
    seed = cfg.optim.seed
    random.seed(seed)
    torch.manual_seed(seed)
    np_rng = np.random.default_rng(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed)
    model, model_cfg = build_model(cfg, store, fold, source_checkpoint)
    extra = {"n_freq": store.n_freq, "has_head": cfg.has_head, "features": store.info.get("features")}
    if model_cfg.input_norm == "speaker" and cfg.has_head:  # predict's fallback for a speaker it has no recordings of
        mean, std = typical_speaker_stats(store, fold.train)
        extra["speaker_fallback"] = {"mean": torch.from_numpy(mean), "std": torch.from_numpy(std),
                                     "speakers": len({store.speakers[i] for i in fold.train  # copies aside
                                                      if i < getattr(store, "n_target", len(store))})}
    store = model_inputs(store, model_cfg.input_norm)  # input_norm "speaker": each speaker's own statistics
    model.to(device)
    model.set_sync_batchnorm(world > 1 and cfg.optim.sync_batchnorm)
    on_device = cfg.data.store_on_device
    if on_device is None:
        on_device = store_fits_on_device(store, device)
    loader = BatchLoader(store, device, on_device=on_device, prefetch=cfg.data.prefetch)
    objective = Objective(cfg.loss, cfg.has_head, gather=world > 1 and cfg.loss.gather_distributed)
    val_objective = validation_objective(cfg.loss, cfg.has_head).eval()
    epoch_rows = len(fold.train) if fold.train_draw is None else sum(count for _, count in fold.train_draw)
    steps_per_epoch = math.ceil(epoch_rows / cfg.optim.batch_size)
    n_epochs = epochs_of(cfg, steps_per_epoch)
    phases = phases_of(cfg, steps_per_epoch)
    mode = "max" if cfg.monitor == "val_ua" else "min"
    history: List[Dict[str, Any]] = []
    best_value, best_epoch, bad_epochs, start_epoch = None, -1, 0, 0
    resume_state: Optional[Dict[str, Any]] = None
    if cfg.kind == "finetune" and cfg.finetune.head_init == "fit" and not last_path.exists():
        init_head(model, store, fold, cfg, device)

    # -- resume ----------------------------------------------------------------------------
    if last_path.exists():
        last = load_checkpoint(last_path)
        model.load_state_dict(last["model"])
        history, best_value, best_epoch = last["history"], last["best_value"], last["best_epoch"]
        bad_epochs, start_epoch = last["bad_epochs"], last["epoch"] + 1
        _set_rng_state(last["rng"], np_rng, aug_gen)
        resume_state = last
        if progress:
            tqdm.write(f"{fold_dir}: resuming after epoch {start_epoch} of {n_epochs}")
    averaged = WeightAverage(model, cfg.optim.ema_decay) if cfg.optim.ema_decay else None
    if averaged is not None and resume_state is not None:
        averaged.load_state_dict(resume_state["ema"])
    scored = averaged.model if averaged is not None else model  # what validation and best.pt see

    for phase in phases:
        if phase.end <= start_epoch:
            continue
        set_trainable(model, cfg, phase, objective)
        optimizer, scheduler = make_optimizer(model, cfg, device, phase.end - phase.start)
        if resume_state is not None and resume_state.get("phase", phase.name) == phase.name:
            optimizer.load_state_dict(resume_state["optimizer"])
            scheduler.load_state_dict(resume_state["scheduler"])
        else:
            bad_epochs = 0  # a new phase starts with a fresh patience
        resume_state = None
        step_module: torch.nn.Module = TrainStep(model, objective)
        if world > 1:
            step_module = distributed.wrap(step_module, device)

        for epoch in range(max(phase.start, start_epoch), phase.end):
            if bad_epochs and cfg.optim.early_stop and bad_epochs >= cfg.optim.early_stop:
                break
            t0 = time.time()
            objective.set_epoch(epoch, n_epochs)
            # a frozen encoder keeps its BatchNorm statistics and runs without dropout
            model.train(phase.encoder_trains)
            plans = plan_epoch(store.lengths, epoch_train_indices(fold, np_rng), cfg.optim.batch_size, np_rng, "mean",
                               cfg.data.max_frames)
            if world > 1:  # torchrun: this process's share of every batch
                plans = [p.shard(rank, world) for p in plans if len(p.rows) >= world]
            sums: Dict[str, torch.Tensor] = {}
            first_bad = torch.full((), -1, dtype=torch.int64, device=device)
            bar = progress_bar(loader(plans), total=len(plans), desc=f"{fold.name} epoch {epoch + 1}/{n_epochs}",
                       leave=False, disable=not progress, unit="batch")
            for step, batch in enumerate(bar):
                loss, parts = train_step(step_module, optimizer, batch, cfg, aug_gen, device, np_rng)
                if averaged is not None:
                    averaged.update(model)
                # remember the first non-finite step without reading the GPU (checked per epoch)
                bad = ~torch.isfinite(loss)
                first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value
                sums["loss"] = sums.get("loss", 0.0) + loss
            n_steps = len(plans)
            bad_step = distributed.max_int(first_bad)
            if bad_step >= 0:
                raise TrainingDiverged(
                    f"{fold_dir}: the loss is not finite at epoch {epoch + 1}, step {bad_step + 1}; "
                    "lower optim.lr or raise loss.tau, then delete last.pt to restart this fold")
            train_stats = {f"train_{k}": float(v) / max(n_steps, 1) for k, v in sums.items()}

            # data.val_speakers = 0: no validation; the lr follows optim.schedule (step or cosine, by
            # epoch), and optim.keep = "last" scores the last weights
            val = evaluate(scored, store, fold.val, cfg, device, val_objective, loader) if fold.val.size else {}
            value = distributed.broadcast_float(val.get("ua" if cfg.monitor == "val_ua" else "loss", math.nan), device)
            improved = math.isfinite(value) and (
                best_value is None or (value > best_value if mode == "max" else value < best_value))
            if improved:
                best_value, best_epoch, bad_epochs = value, epoch, 0
                if main and cfg.optim.keep == "best":  # keep "last": best.pt is written once, at the end
                    save_checkpoint(best_path, scored, model_cfg, store.classes, epoch=epoch, value=value, **extra)
            else:
                bad_epochs += 1
            lrs = {g.get("name", "encoder"): g["lr"] for g in optimizer.param_groups}  # what this epoch used
            if cfg.optim.schedule == "plateau":
                scheduler.step(value if math.isfinite(value) else (-math.inf if mode == "max" else math.inf))
            else:
                scheduler.step()
            record = {"epoch": epoch + 1, **train_stats, "val_loss": val.get("loss"), "val_ua": val.get("ua"),
                      "val_wa": val.get("wa"), "lr": lrs.get("encoder"), "head_lr": lrs.get("head"), "phase": phase.name,
                      "frozen_encoder": not phase.encoder_trains, "best_epoch": best_epoch + 1,
                      "seconds": round(time.time() - t0, 2)}
            history.append(record)
            if main:
                save_checkpoint(last_path, model, model_cfg, store.classes, epoch=epoch, value=value,
                                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), phase=phase.name,
                                history=history, best_value=best_value, best_epoch=best_epoch, bad_epochs=bad_epochs,
                                rng=_rng_state(np_rng, aug_gen),
                                **({"ema": averaged.state_dict()} if averaged is not None else {}), **extra)
                write_text(fold_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
                tb.epoch(record)
            if progress:
                shown = " ".join(f"{k}={v:.1e}" if k in ("lr", "head_lr") else f"{k}={v:.4f}"  # lr: 1.0e-05, not 0.0000
                                 for k, v in record.items() if isinstance(v, float) and k != "seconds")
                tqdm.write(f"{fold.name} epoch {epoch + 1}/{n_epochs} {shown}{' *' if improved else ''}")
            if on_epoch_end is not None:
                on_epoch_end(epoch)

    # -- final evaluation of the best checkpoint -----------------------------------------------
    distributed.barrier()
    if not main:  # rank 0 evaluates and writes metrics.json
        distributed.barrier()
        return json.loads(metrics_path.read_text())
    if cfg.optim.keep == "best" and best_path.exists():
        model.load_state_dict(load_checkpoint(best_path)["model"])
    else:  # keep "last", or no epoch gave a finite monitored value: the last weights
        model.load_state_dict(scored.state_dict())
        last_value = history[-1]["val_ua" if cfg.monitor == "val_ua" else "val_loss"] if history else None
        save_checkpoint(best_path, model, model_cfg, store.classes, epoch=len(history) - 1,
                        value=last_value if cfg.optim.keep == "last" else None, **extra)
    trained_head = None
    if cfg.optim.refit_head and cfg.has_head and fold.val.size:
        trained_head = {part: evaluate(model, store, getattr(fold, part), cfg, device) if getattr(fold, part).size
                        else None for part in ("val", "test")}
        init_head(model, store, fold, cfg, device)  # the same linear probe fine-tuning starts from
        kept = {k: v for k, v in load_checkpoint(best_path).items() if k not in ("model", "model_config", "classes")}
        save_checkpoint(best_path, model, model_cfg, store.classes, **{**kept, "refit_head": True})
    metrics: Dict[str, Any] = {
        "status": "complete", "fold": fold.name, "epochs_run": len(history),
        "best_epoch": best_epoch + 1 if best_epoch >= 0 else None,
        "monitor": cfg.monitor, "best_value": best_value, "kept": cfg.optim.keep,
        "kept_epoch": len(history) if cfg.optim.keep == "last" else (best_epoch + 1 if best_epoch >= 0 else None),
        "classes": list(store.classes),
        # torch's intra-op threads: on a CPU the float sums, and so the scores, can depend on them
        # (``--devices cpu,cpu`` gives each worker its share of the cores; docs/training.md)
        "threads": torch.get_num_threads(),
        "val": None, "test": None,
    }
    if cfg.has_head:
        for part in ("val", "test"):  # an empty part (protocol holdout's test) has no scores: null
            indices = getattr(fold, part)
            metrics[part] = evaluate(model, store, indices, cfg, device) if indices.size else None
    if trained_head is not None:  # val and test above: the refit head's; these: the trained head's
        metrics["trained_head"] = trained_head
    tb.final(metrics)  # before the "complete" marker, so a complete fold has its whole log
    write_json(metrics_path, metrics)
    distributed.barrier()
    return metrics
