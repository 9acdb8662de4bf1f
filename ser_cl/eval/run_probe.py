"""``ser-cl probe``: embed each fold's train/val/test with its best checkpoint, then score them.

Reads only files: ``run.json`` (data dir, classes), ``fold-NN/split.json`` (utterance ids of the
three parts) and ``fold-NN/best.pt``. Writes ``fold-NN/embeddings/`` and ``fold-NN/probe.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ser_cl.data.batches.pool import serves_every_fold
from ser_cl.data.stores.normalize import model_inputs
from ser_cl.data.stores.store import FeatureStore
from ser_cl.models.embed import embed_utterances
from ser_cl.eval.probe import probe_embeddings
from ser_cl.io import save_npy, write_json, write_text
from ser_cl.progress import progress_bar
from ser_cl.train.checkpoint import load_model
from ser_cl.train.build import resolve_device
from ser_cl.train.fingerprint import fold_is_complete

PARTS = ("train", "val", "test")


def find_variant_dirs(path: str | Path) -> List[Path]:
    """A variant dir itself, or every variant dir below an experiment dir or a runs dir."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory (train something first: `ser-cl train ...`)")
    if (path / "run.json").is_file():
        return [path]
    found = sorted(p.parent for p in list(path.glob("*/run.json")) + list(path.glob("*/*/run.json")))
    if not found:
        raise FileNotFoundError(f"{path}: no run.json below it; expected runs/<experiment>/<variant>/run.json")
    return found


def row_index(store: FeatureStore) -> Dict[str, int]:
    """The store's row of each utterance id (what ``split_rows`` looks ids up in)."""
    return {u: i for i, u in enumerate(store.utt_ids)}


def split_rows(fold_dir: Path, ids: Sequence[str], index_of: Dict[str, int], store: FeatureStore) -> np.ndarray:
    """The store rows of utterance ids from ``fold_dir``'s split.json; one line naming both files
    when the store lacks one (re-prepared data: the run must be trained again)."""
    try:
        return np.array([index_of[u] for u in ids], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"{fold_dir / 'split.json'}: utterance {err} is not in {store.data_dir}; "
                         "was the data re-prepared? re-train this run") from None


def probe_fold(fold_dir: Path, store: FeatureStore, has_head: bool, device: torch.device,
               seed: int = 0) -> Dict:
    """Embed, save embeddings, fit the probes; write and return probe.json."""
    split = json.loads((fold_dir / "split.json").read_text())
    index_of = row_index(store)
    model, ckpt = load_model(fold_dir / "best.pt", device)
    store = model_inputs(store, model.cfg.input_norm)
    if list(ckpt["classes"]) != list(store.classes):
        raise ValueError(f"{fold_dir / 'best.pt'}: classes {ckpt['classes']} differ from the data's {store.classes}")
    data, preds = {}, {}
    for part in PARTS:
        idx = split_rows(fold_dir, split[part], index_of, store)
        if idx.size:
            X, p = embed_utterances(model, store, idx, device)
        else:  # an empty part (protocol holdout's test): empty arrays, null scores in probe.json
            X, p = np.zeros((0, model.embed_dim), dtype=np.float32), np.zeros(0, dtype=np.int64)
        y = store.labels[idx]
        save_npy(fold_dir / "embeddings" / f"{part}.npy", X)
        save_npy(fold_dir / "embeddings" / f"{part}_labels.npy", y)
        write_text(fold_dir / "embeddings" / f"{part}_ids.txt", "".join(u + "\n" for u in split[part]))
        data[part], preds[part] = (X, y), p
    result = probe_embeddings(data["train"], data["val"], data["test"], list(store.classes),
                              classifier_preds={"val": preds["val"], "test": preds["test"]} if has_head else None,
                              seed=seed)
    write_json(fold_dir / "probe.json", result)
    return result


def complete_fold_dirs(vdir: Path, names: Sequence[str], folds: Optional[Sequence[int]], desc: str,
                       progress: bool) -> Iterator[Path]:
    """The variant's fold dirs among ``names`` (those numbered in ``folds``, 1-based; all when
    None) that finished training; an unfinished one is named and skipped, a missing one (never
    started: a run with --fold) silently."""
    chosen = [name for k, name in enumerate(names, 1) if not folds or k in folds]
    for name in progress_bar(chosen, desc=desc, unit="fold", leave=False, disable=not progress):
        fdir = vdir / name
        if not fdir.is_dir():
            continue
        if not fold_is_complete(fdir):
            tqdm.write(f"{fdir}: not trained to completion (no complete metrics.json); skipped")
            continue
        yield fdir


def probe_run(path: str | Path, folds: Optional[Sequence[int]] = None, device_spec: str = "auto",
              progress: bool = True, skip_done: bool = False) -> List[Path]:
    """Probe every complete fold of every variant under ``path``; returns the probe.json paths.

    A fold without a complete metrics.json is reported by name and skipped (silently when its
    directory does not exist: a partial run).
    """
    device = resolve_device(device_spec)
    written: List[Path] = []
    for vdir in find_variant_dirs(path):
        info = json.loads((vdir / "run.json").read_text())
        if serves_every_fold(info):  # one encoder for every fold
            tqdm.write(f"{vdir}: a pool pretraining for every fold is probed through its fine-tuning stages; skipped")
            continue
        store = FeatureStore(info["data_dir"])
        for fdir in complete_fold_dirs(vdir, info["folds"], folds, f"probe {vdir.name}", progress):
            if not json.loads((fdir / "split.json").read_text()).get("val"):
                tqdm.write(f"{fdir}: no validation speakers (data.val_speakers = 0) to choose the probe's C on; skipped")
                continue
            if skip_done and (fdir / "probe.json").is_file():
                written.append(fdir / "probe.json")
                continue
            res = probe_fold(fdir, store, bool(info.get("head")), device)
            written.append(fdir / "probe.json")
            if progress:
                split = "test" if res["svm"]["test"] is not None else "val"  # holdout: no test set
                tqdm.write(f"{fdir}: svm {split} UA {100 * res['svm'][split]['ua']:.2f}%")
    return written
