"""The training loop: one fold of one stage, readable top to bottom (nanoGPT style).

    build model -> (resume from last.pt) -> for each epoch:
        train: batches padded/cropped to the mean length -> SpecAugment / 2 views on the device
               -> loss (ser_cl.train.objective) -> Adam step
        validate: loss (and UA/WA when there is a classifier head)
        lr /= 10 after `patience` epochs without improvement; keep best.pt; write last.pt
    -> evaluate best.pt on val and test -> metrics.json (the "complete" marker)

Every file is written atomically, so a kill at any moment leaves either the previous epoch's
state or the new one; re-running the same command continues after the last finished epoch.
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

from ser_cl.config import StageConfig, to_toml
from ser_cl.data.augment import spec_augment, two_views
from ser_cl.data.batching import batch_indices, collate
from ser_cl.data.folds import Fold
from ser_cl.data.store import FeatureStore
from ser_cl.eval.embed import embed_utterances
from ser_cl.eval.metrics import classification_report
from ser_cl.io import write_json, write_text
from ser_cl.models import PRESETS, ModelConfig, SERModel
from ser_cl.train import distributed
from ser_cl.train.checkpoint import load_checkpoint, model_config_from_dict, save_checkpoint
from ser_cl.train.objective import compute_loss


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def resolve_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{spec}' requested but CUDA is not available; use --device cpu")
    return device


def model_config_for(cfg: StageConfig, n_freq: int) -> ModelConfig:
    """The ModelConfig of a train/pretrain stage: preset, then the fields set in [model]."""
    if cfg.model.preset not in PRESETS:
        raise ValueError(f"model.preset must be one of {', '.join(PRESETS)}, got '{cfg.model.preset}'")
    fields = dict(PRESETS[cfg.model.preset])
    for key, value in vars(cfg.model).items():
        if key != "preset" and value is not None:
            fields[key] = value
    if cfg.model.normalize is None:  # thesis: L2-normalised outputs when training contrastively
        fields["normalize"] = cfg.kind == "pretrain"
    fields["n_freq"] = n_freq
    return model_config_from_dict(fields)


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def _batches(store: FeatureStore, indices: np.ndarray, batch_size: int, rng: Optional[np.random.Generator],
             target: str, max_frames: int, device: torch.device):
    """Yield (x, lengths, labels) on ``device``; shuffled and randomly cropped when ``rng`` is given."""
    for idx in batch_indices(indices, batch_size, shuffle=rng is not None, rng=rng):
        x, lengths = collate([store[i] for i in idx], target=target, rng=rng)
        if max_frames and x.shape[1] > max_frames:  # a cap for CPU presets; thesis: none
            x, lengths = x[:, :max_frames], lengths.clamp(max=max_frames)
        labels = torch.from_numpy(store.labels[idx])
        # lengths stay on the CPU: pack_padded_sequence wants them there (no device->host sync)
        yield x.to(device, non_blocking=True), lengths, labels.to(device, non_blocking=True)


def _augment(x, lengths, labels, cfg: StageConfig, generator: Optional[torch.Generator]):
    aug = dict(time_mask_frac=cfg.augment.time_mask_frac, freq_mask_width=cfg.augment.freq_mask_width,
               generator=generator)
    if cfg.augment.multiview:
        x, lengths = two_views(x, lengths, **aug)
        return x, lengths, labels.repeat_interleave(2)
    if cfg.augment.enabled:
        x = spec_augment(x, lengths, **aug)
    return x, lengths, labels


@torch.no_grad()
def evaluate(model: SERModel, store: FeatureStore, indices: np.ndarray, cfg: StageConfig, device: torch.device,
             epoch: int, with_loss: bool = True) -> Dict[str, Any]:
    """The validation loss and, with a classifier head, UA/WA/confusion.

    The loss is the training objective on batches shaped like the training ones (mean length,
    cropped from the start, only the 2 views that self-supervision needs), in a fixed shuffled
    order so contrastive batches mix classes and speakers the same way every epoch. UA/WA come
    from whole, uncropped utterances.
    """
    model.eval()
    result: Dict[str, Any] = {}
    if with_loss:
        order = np.random.default_rng(12345).permutation(indices)
        gen = torch.Generator(device=device).manual_seed(12345)
        total, n_batches = torch.zeros((), device=device), 0
        for x, lengths, labels in _batches(store, order, cfg.optim.batch_size, None, "mean", cfg.data.max_frames,
                                           device):
            if cfg.augment.multiview:
                x, lengths, labels = _augment(x, lengths, labels, cfg, gen)
            with _autocast(device, cfg.optim.amp):
                total += compute_loss(model, x, lengths, labels, cfg.loss, epoch, cfg.optim.epochs,
                                      cfg.has_head).loss.detach().float()
            n_batches += 1
        result["loss"] = float(total) / max(n_batches, 1)
    if cfg.has_head:
        _, preds = embed_utterances(model, store, indices, device, cfg.data.eval_batch_size, cfg.optim.amp)
        result.update(classification_report(store.labels[indices], preds, len(store.classes)))
    return result


def _rng_state(np_rng: np.random.Generator, aug_gen: torch.Generator) -> Dict[str, Any]:
    return {"numpy": np_rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate(),
            "aug": aug_gen.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: Dict[str, Any], np_rng: np.random.Generator, aug_gen: torch.Generator) -> None:
    np_rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    aug_gen.set_state(state["aug"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _set_encoder_trainable(model: SERModel, trainable: bool) -> None:
    for p in model.encoder_parameters():
        p.requires_grad_(trainable)


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
    """Train one fold; return (and write) its metrics.json. Skips a fold that is already complete."""
    fold_dir = Path(fold_dir)
    metrics_path, last_path, best_path = fold_dir / "metrics.json", fold_dir / "last.pt", fold_dir / "best.pt"
    if metrics_path.exists():
        done = json.loads(metrics_path.read_text())
        if done.get("status") == "complete":
            return done
    rank, world = distributed.rank_and_world()  # (0, 1) unless launched by torchrun
    main = rank == 0  # only rank 0 writes files
    progress = progress and main
    if main:
        fold_dir.mkdir(parents=True, exist_ok=True)
        write_text(fold_dir / "config.toml", to_toml(cfg))
        write_json(fold_dir / "split.json", {
            "fold": fold.name, "val_speakers": fold.val_speakers, "test_speakers": fold.test_speakers,
            **{part: [store.utt_ids[i] for i in getattr(fold, part)] for part in ("train", "val", "test")}})

    # -- seeds and model -------------------------------------------------------------------
    seed = cfg.optim.seed
    random.seed(seed)
    torch.manual_seed(seed)
    np_rng = np.random.default_rng(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed)
    if source_checkpoint is not None:  # the encoder (and its architecture) come from the pretrained fold
        source = load_checkpoint(source_checkpoint)
        if list(source["classes"]) != list(store.classes):
            raise ValueError(f"{source_checkpoint}: classes {source['classes']} differ from {store.classes}")
        model_cfg = model_config_from_dict(source["model_config"])
        model = SERModel(model_cfg, len(store.classes))
        encoder_state = {k: v for k, v in source["model"].items() if not k.startswith("classifier.")}
        missing, unexpected = model.load_state_dict(encoder_state, strict=False)
        if unexpected or any(not k.startswith("classifier.") for k in missing):
            raise ValueError(f"{source_checkpoint}: encoder weights do not match the model ({missing}, {unexpected})")
    else:
        model_cfg = model_config_for(cfg, store.n_freq)
        model = SERModel(model_cfg, len(store.classes))
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    mode = "max" if cfg.monitor == "val_ua" else "min"
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=cfg.optim.lr_factor,
                                                           patience=cfg.optim.patience)
    history: List[Dict[str, Any]] = []
    best_value, best_epoch, bad_epochs, start_epoch = None, -1, 0, 0

    # -- resume ----------------------------------------------------------------------------
    if last_path.exists():
        last = load_checkpoint(last_path)
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        scheduler.load_state_dict(last["scheduler"])
        history, best_value, best_epoch = last["history"], last["best_value"], last["best_epoch"]
        bad_epochs, start_epoch = last["bad_epochs"], last["epoch"] + 1
        _set_rng_state(last["rng"], np_rng, aug_gen)
        if progress:
            tqdm.write(f"{fold_dir}: resuming after epoch {start_epoch} of {cfg.optim.epochs}")

    n_epochs = cfg.optim.epochs
    for epoch in range(start_epoch, n_epochs):
        if bad_epochs and cfg.optim.early_stop and bad_epochs >= cfg.optim.early_stop:
            break
        t0 = time.time()
        frozen = cfg.kind == "finetune" and epoch < cfg.finetune.freeze_epochs
        _set_encoder_trainable(model, not frozen)
        # a frozen encoder keeps its BatchNorm statistics and runs without dropout
        model.train(not frozen)
        sums: Dict[str, torch.Tensor] = {}
        n_steps = 0
        batches = _batches(store, fold.train, cfg.optim.batch_size, np_rng, "mean", cfg.data.max_frames, device)
        n_total = math.ceil(len(fold.train) / cfg.optim.batch_size)
        bar = tqdm(batches, total=n_total, desc=f"{fold.name} epoch {epoch + 1}/{n_epochs}", leave=False,
                   disable=not progress, unit="batch")
        for step, (x, lengths, labels) in enumerate(bar):
            if world > 1:  # torchrun: this process's share of the batch
                if len(labels) < world:
                    continue
                x, lengths, labels = x[rank::world], lengths[rank::world], labels[rank::world]
            x, lengths, labels = _augment(x, lengths, labels, cfg, aug_gen)
            with _autocast(device, cfg.optim.amp):
                out = compute_loss(model, x, lengths, labels, cfg.loss, epoch, n_epochs, cfg.has_head)
            if not distributed.all_finite(out.loss):
                raise TrainingDiverged(
                    f"{fold_dir}: the loss is {float(out.loss.detach())} at epoch {epoch + 1}, step {step + 1}; "
                    "lower optim.lr or raise loss.tau, then delete last.pt to restart this fold")
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            distributed.average_gradients(model)
            optimizer.step()
            for key, value in out.parts.items():
                sums[key] = sums.get(key, 0.0) + value
            sums["loss"] = sums.get("loss", 0.0) + out.loss.detach()
            n_steps += 1
        train_stats = {f"train_{k}": float(v) / max(n_steps, 1) for k, v in sums.items()}
        distributed.average_buffers(model)

        val = evaluate(model, store, fold.val, cfg, device, epoch)
        value = distributed.broadcast_float(val["ua"] if cfg.monitor == "val_ua" else val["loss"], device)
        improved = best_value is None or (value > best_value if mode == "max" else value < best_value)
        if improved:
            best_value, best_epoch, bad_epochs = value, epoch, 0
            if main:
                save_checkpoint(best_path, model, model_cfg, store.classes, n_freq=store.n_freq, epoch=epoch,
                                value=value, has_head=cfg.has_head)
        else:
            bad_epochs += 1
        scheduler.step(value)
        record = {"epoch": epoch + 1, **train_stats, "val_loss": val.get("loss"), "val_ua": val.get("ua"),
                  "val_wa": val.get("wa"), "lr": optimizer.param_groups[0]["lr"], "frozen_encoder": frozen,
                  "best_epoch": best_epoch + 1, "seconds": round(time.time() - t0, 2)}
        history.append(record)
        if main:
            save_checkpoint(last_path, model, model_cfg, store.classes, n_freq=store.n_freq, epoch=epoch,
                            value=value, has_head=cfg.has_head, optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), history=history, best_value=best_value,
                            best_epoch=best_epoch, bad_epochs=bad_epochs, rng=_rng_state(np_rng, aug_gen))
            write_text(fold_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        if progress:
            shown = " ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float) and k != "seconds")
            tqdm.write(f"{fold.name} epoch {epoch + 1}/{n_epochs} {shown}{' *' if improved else ''}")
        if on_epoch_end is not None:
            on_epoch_end(epoch)

    # -- final evaluation of the best checkpoint -----------------------------------------------
    distributed.barrier()
    if not main:  # rank 0 evaluates and writes metrics.json
        distributed.barrier()
        return json.loads(metrics_path.read_text())
    best = load_checkpoint(best_path)
    model.load_state_dict(best["model"])
    metrics: Dict[str, Any] = {
        "status": "complete", "fold": fold.name, "epochs_run": len(history), "best_epoch": best_epoch + 1,
        "monitor": cfg.monitor, "best_value": best_value, "classes": list(store.classes),
        "val": None, "test": None,
    }
    if cfg.has_head:
        for part in ("val", "test"):
            metrics[part] = evaluate(model, store, getattr(fold, part), cfg, device, best_epoch, with_loss=False)
    write_json(metrics_path, metrics)
    distributed.barrier()
    return metrics
