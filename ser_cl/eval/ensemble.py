"""``ser-cl ensemble``: average the class probabilities of several trained runs, fold by fold.

Members are variant dirs (``runs/<experiment>/<variant>/``) of models with a classifier head
trained over the same folds: seeds of one recipe, or recipes on different stores of one corpus
(a log-mel store and a functionals store). For each fold the members' best checkpoints give
softmax probabilities p_m(c | x) for the fold's validation and test utterances; the ensemble
predicts

    y(x) = argmax_c  (1 / M) * sum_m p_m(c | x)

and is scored like any run. It is written as a variant dir of its own (``run.json``, and per fold
``split.json``, ``metrics.json``, ``predictions.json``), so ``ser-cl report`` lists it beside its
members and ``report --compare`` pairs it with any of them.

No value is chosen here: the members were each selected on their fold's validation speakers, and
the ensemble adds nothing chosen on any labels, so its test UA is as held out as its members'.
Reads only files: each member's ``run.json``, ``fold-NN/split.json`` and ``fold-NN/best.pt``, and
the store each member names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from ser_cl.data.stores.normalize import model_inputs
from ser_cl.data.batches.pool import serves_every_fold
from ser_cl.data.stores.store import FeatureStore
from ser_cl.io import write_json
from ser_cl.metrics import classification_report
from ser_cl.models.embed import class_probabilities
from ser_cl.eval.run_probe import row_index, split_rows
from ser_cl.progress import progress_bar
from ser_cl.train.build import resolve_device
from ser_cl.train.checkpoint import load_model
from ser_cl.train.fingerprint import fold_is_complete

SPLITS = ("val", "test")


class EnsembleError(ValueError):
    """Members that cannot be averaged (one line, naming the file and what to do)."""


def _member_run(path: Path) -> Dict[str, Any]:
    run_file = path / "run.json"
    if not run_file.is_file():
        raise EnsembleError(f"{path}: no run.json; a member is a variant dir runs/<experiment>/<variant>/")
    run = json.loads(run_file.read_text())
    if run.get("stage") == "baseline" or not run.get("head"):
        raise EnsembleError(f"{run_file}: stage {run.get('stage')!r} has no classifier head to average; "
                            "members are train or finetune runs")
    if serves_every_fold(run):
        raise EnsembleError(f"{run_file}: a pool pretraining serves every fold; name its fine-tuning instead")
    return run


def _check_members(members: Sequence[Path]) -> List[Dict[str, Any]]:
    if not members:
        raise EnsembleError("no members: name two or more variant dirs (runs/<experiment>/<variant>)")
    runs = [_member_run(Path(m)) for m in members]
    first = runs[0]
    for path, run in zip(members[1:], runs[1:]):
        if list(run["classes"]) != list(first["classes"]):
            raise EnsembleError(f"{Path(path) / 'run.json'}: classes {run['classes']} differ from "
                                f"{Path(members[0]) / 'run.json'}'s {first['classes']}")
        if list(run["folds"]) != list(first["folds"]):
            raise EnsembleError(f"{Path(path) / 'run.json'}: folds {run['folds']} differ from "
                                f"{Path(members[0]) / 'run.json'}'s {first['folds']}; members share one protocol")
    return runs


def _split_ids(fold_dir: Path) -> Dict[str, List[str]]:
    return json.loads((fold_dir / "split.json").read_text())


def member_probabilities(fold_dir: Path, store: FeatureStore, index_of: Dict[str, int],
                         device: torch.device) -> Dict[str, np.ndarray]:
    """A member fold's softmax probabilities of its val and test utterances (rows in split.json's
    order), from its best checkpoint on its own store (normalised as the model was trained);
    ``index_of``: the store's row of each utterance id (``row_index``)."""
    split = _split_ids(fold_dir)
    model, ckpt = load_model(fold_dir / "best.pt", device)
    if list(ckpt["classes"]) != list(store.classes):
        raise EnsembleError(f"{fold_dir / 'best.pt'}: classes {ckpt['classes']} differ from {store.data_dir}'s")
    inputs = model_inputs(store, model.cfg.input_norm)
    out = {}
    for part in SPLITS:
        idx = split_rows(fold_dir, split[part], index_of, store)
        out[part] = (class_probabilities(model, inputs, idx, device) if idx.size
                     else np.zeros((0, len(store.classes))))
    return out


def ensemble_fold(member_dirs: Sequence[Path], stores: Sequence[FeatureStore], device: torch.device
                  ) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, List[str]]]:
    """metrics, predictions and split of one fold: the members' mean probabilities, scored."""
    splits = [_split_ids(d) for d in member_dirs]
    for d, split in zip(member_dirs[1:], splits[1:]):
        if sorted(split["test"]) != sorted(splits[0]["test"]):
            raise EnsembleError(f"{d / 'split.json'}: its test utterances differ from "
                                f"{member_dirs[0] / 'split.json'}'s; members must share the folds")
    # validation: scored when every member validated on the same utterances; members trained
    # with data.val_speakers = 0 (or on other validation speakers) leave the ensemble without one
    shared_val = all(sorted(split["val"]) == sorted(splits[0]["val"]) for split in splits[1:])
    ref = {"test": splits[0]["test"], "val": splits[0]["val"] if shared_val else []}
    classes = list(stores[0].classes)
    indexes = [row_index(store) for store in stores]
    labels = {part: stores[0].labels[split_rows(member_dirs[0], ref[part], indexes[0], stores[0])] for part in SPLITS}
    mean = {part: np.zeros((len(ref[part]), len(classes))) for part in SPLITS}
    member_scores = []
    for d, split, store, index_of in zip(member_dirs, splits, stores, indexes):
        probs = member_probabilities(d, store, index_of, device)
        scores: Dict[str, Any] = {part: None for part in SPLITS}
        for part in SPLITS:
            if not ref[part]:
                continue
            if not np.array_equal(store.labels[split_rows(d, ref[part], index_of, store)], labels[part]):
                raise EnsembleError(f"{store.data_dir}: labels of fold {d.name}'s {part} utterances differ from "
                                    f"{stores[0].data_dir}'s; members must be stores of one corpus")
            row_of = {u: i for i, u in enumerate(split[part])}
            aligned = probs[part][[row_of[u] for u in ref[part]]]  # the first member's order
            mean[part] += aligned / len(member_dirs)
            scores[part] = classification_report(labels[part], aligned.argmax(1), len(classes))["ua"]
        member_scores.append({"member": str(d.parent), **scores})
    metrics: Dict[str, Any] = {"status": "complete", "fold": member_dirs[0].name, "classes": classes,
                               "members": member_scores}
    predictions: Dict[str, Any] = {"probabilities": {}}
    for part in SPLITS:
        pred = mean[part].argmax(1)
        metrics[part] = classification_report(labels[part], pred, len(classes)) if ref[part] else None
        predictions[part] = {u: classes[p] for u, p in zip(ref[part], pred)}
        predictions["probabilities"][part] = {u: [round(float(v), 6) for v in row]
                                              for u, row in zip(ref[part], mean[part])}
    split_out = dict(splits[0]) if shared_val else {**splits[0], "val": [], "val_speakers": []}
    return metrics, predictions, split_out


def ensemble_runs(members: Sequence[str | Path], out: str | Path, device_spec: str = "auto",
                  progress: bool = True) -> Path:
    """Write the ensemble of ``members`` as the variant dir ``out``; returns it.

    Folds are those every member completed (an incomplete one is skipped and named by the
    report as missing). ``out`` is rewritten from scratch each time: it is cheap to remake.
    """
    members = [Path(m) for m in members]
    out = Path(out)
    if any(out.resolve() == m.resolve() for m in members):
        raise EnsembleError(f"{out}: the output would overwrite a member; name a new variant dir")
    runs = _check_members(members)
    device = resolve_device(device_spec)
    stores: Dict[str, FeatureStore] = {}
    for run in runs:
        stores.setdefault(run["data_dir"], FeatureStore(run["data_dir"]))
    first = runs[0]
    write_json(out / "run.json", {
        "experiment": out.parent.name, "variant": out.name, "stage": "ensemble",
        "description": f"mean class probabilities of {len(members)} runs: " + ", ".join(str(m) for m in members),
        "data_dir": first["data_dir"], "corpus": first.get("corpus"), "protocol": first.get("protocol"),
        "folds": list(first["folds"]), "sweep": {}, "thesis": {}, "classes": list(first["classes"]),
        "head": True, "source": None, "members": [str(m) for m in members],
    })
    for name in progress_bar(first["folds"], desc=f"ensemble {out.name}", unit="fold", disable=not progress):
        dirs = [m / name for m in members]
        if not all(fold_is_complete(d) for d in dirs):
            continue
        metrics, predictions, split = ensemble_fold(dirs, [stores[r["data_dir"]] for r in runs], device)
        write_json(out / name / "split.json", split)
        write_json(out / name / "predictions.json", predictions)
        write_json(out / name / "metrics.json", metrics)  # last: the fold's completion marker
    return out


def ensemble_summary(out: Path) -> List[str]:
    """Lines for the terminal: per fold the members' and the ensemble's test UA, then the means."""
    run = json.loads((out / "run.json").read_text())
    lines, ens, per_member = [], [], None
    for name in run["folds"]:
        path = out / name / "metrics.json"
        if not path.is_file():
            lines.append(f"{name}: not every member completed it; skipped")
            continue
        m = json.loads(path.read_text())
        part = "test" if m["test"] is not None else "val"
        ens.append(m[part]["ua"])
        members = [s[part] for s in m["members"]]
        per_member = [[] for _ in members] if per_member is None else per_member
        for k, value in enumerate(members):
            per_member[k].append(value)
        lines.append(f"{name}: {part} UA members " + " ".join(f"{100 * v:.2f}" for v in members)
                     + f" -> ensemble {100 * m[part]['ua']:.2f}")
    if ens and per_member:
        member_means = np.array([np.mean(v) for v in per_member]) * 100
        lines.append(f"members' mean UA {member_means.mean():.2f} (spread over members +- "
                     f"{member_means.std(ddof=0):.2f}); ensemble UA {100 * np.mean(ens):.2f} "
                     f"+- {100 * np.std(ens, ddof=0):.2f} over {len(ens)} folds")
    return lines
