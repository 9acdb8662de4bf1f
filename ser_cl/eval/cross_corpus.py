"""Cross-corpus evaluation: a fold's model, trained on corpus A, tested on a prepared store of corpus B.

The two corpora meet through ``class_map`` (``data.class_map``; ``--map`` of ``ser-cl crosstest``):
a class name -> a shared name, applied to the classes of BOTH stores; a name that is not in the
map keeps its own. The *shared* classes are the mapped names that both stores have, in the
training store's class order. Then:

* test utterances whose class maps to no shared class are left out (``dropped_test_classes``,
  with their counts);
* training classes that map to no shared class are never predicted (``unused_train_classes``):
  the prediction is the argmax of the classifier's logits over the training classes that map to
  a shared class (ties: the lowest training class index), mapped to its shared name -- two
  training classes merged into one shared name both stand for it;
* UA (mean recall over the shared classes present in the test store), WA and the confusion
  matrix (rows true, columns predicted, in ``classes`` order) come from ``ser_cl.metrics``.

Both stores must have the same front-end (prepare.json ``features``, the frames' width): a model
cannot read features it was not trained on. Every test utterance is used (the test store's
speakers are not the training store's); a test dir that IS the training store is skipped, its
in-corpus score being the folds' own.

``cross_test_run`` writes ``fold-NN/cross.json`` = {resolved test DATA_DIR: ``cross_test``'s
result} for each complete fold of a variant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ser_cl.data.frontends.features import front_end_differences
from ser_cl.data.stores.normalize import model_inputs
from ser_cl.data.stores.store import FeatureStore
from ser_cl.metrics import classification_report
from ser_cl.eval.run_results import store_label

StoreLike = Union[FeatureStore, str, Path]


# ----------------------------------------------------------------------------- shared classes


def parse_class_map(items: Sequence[str]) -> Dict[str, str]:
    """``["hap=happy", "ang=angry"]`` -> ``{"hap": "happy", "ang": "angry"}`` (``--map`` items)."""
    out: Dict[str, str] = {}
    for item in items:
        name, sep, shared = item.partition("=")
        if not sep or not name.strip() or not shared.strip():
            raise ValueError(f"--map {item!r} must look like NAME=SHARED, e.g. --map hap=happy")
        out[name.strip()] = shared.strip()
    return out


@dataclass
class SharedClasses:
    """How a training store's classes and a test store's meet (see ``shared_classes``)."""

    names: List[str]  # shared names, in training class order
    train_index: Dict[str, List[int]]  # shared name -> the training class indices mapped to it
    test_index: Dict[str, List[int]]  # shared name -> the test class indices mapped to it
    dropped_test: List[str]  # test classes whose mapped name no training class has
    unused_train: List[str]  # training classes whose mapped name no test class has
    train_classes: List[str]
    test_classes: List[str]
    class_map: Dict[str, str]

    def notes(self, test_counts: Optional[Mapping[str, int]] = None) -> List[str]:
        """One line per dropped test class and per unused training class."""
        cmap = self.class_map
        lines = []
        for name in self.dropped_test:
            shown = f"'{name}'" + (f" (as '{cmap[name]}')" if cmap.get(name, name) != name else "")
            count = f" ({test_counts[name]} utterances)" if test_counts and name in test_counts else ""
            lines.append(f"test class {shown}{count} matches no training class: left out")
        for name in self.unused_train:
            shown = f"'{name}'" + (f" (as '{cmap[name]}')" if cmap.get(name, name) != name else "")
            lines.append(f"training class {shown} is not in the test store: never predicted")
        return lines


def shared_classes(train_classes: Sequence[str], test_classes: Sequence[str],
                   class_map: Optional[Mapping[str, str]] = None) -> SharedClasses:
    """The shared names of two class lists under ``class_map`` (applied to both; see the module doc)."""
    cmap = {str(k): str(v) for k, v in (class_map or {}).items()}
    train, test = [str(c) for c in train_classes], [str(c) for c in test_classes]
    train_mapped = [cmap.get(c, c) for c in train]
    test_mapped = [cmap.get(c, c) for c in test]
    names = [n for n in dict.fromkeys(train_mapped) if n in test_mapped]
    return SharedClasses(
        names=names,
        train_index={n: [i for i, m in enumerate(train_mapped) if m == n] for n in names},
        test_index={n: [i for i, m in enumerate(test_mapped) if m == n] for n in names},
        dropped_test=[c for c, m in zip(test, test_mapped) if m not in names],
        unused_train=[c for c, m in zip(train, train_mapped) if m not in names],
        train_classes=train, test_classes=test, class_map=cmap,
    )


# ----------------------------------------------------------------------------- checks


def _open(store: StoreLike) -> FeatureStore:
    return store if isinstance(store, FeatureStore) else FeatureStore(store)


def check_front_end(train_params: Optional[Mapping[str, Any]], train_n_freq: Optional[int], train_where: Any,
                    test_store: FeatureStore) -> None:
    """Raise a one-line ValueError naming both dirs when ``test_store``'s front-end is not the training one."""
    diffs = front_end_differences(train_params, train_n_freq, test_store.feature_params, test_store.n_freq)
    if diffs:
        raise ValueError(
            f"{test_store.data_dir} and {train_where} have different front-ends ({'; '.join(diffs[:3])}): "
            "the model reads only the features it was trained on; prepare both stores with the same one, "
            "e.g. `ser-cl prepare CORPUS --out DIR --features mel --n-mels 64`")


def _check_labeled(store: FeatureStore) -> None:
    if not getattr(store, "labeled", True) or not store.classes:
        raise ValueError(f"{store.data_dir} is an unlabeled store (no classes): there is nothing to score")


def _check_shared(shared: SharedClasses, train_where: Any, test_store: FeatureStore) -> None:
    if not shared.names:
        raise ValueError(
            f"no class is shared between {train_where} ({', '.join(shared.train_classes)}) and "
            f"{test_store.data_dir} ({', '.join(shared.test_classes)}): set data.class_map "
            "(or --map NAME=SHARED), e.g. hap = \"happy\"")


def check_cross_config(data_dir: StoreLike, test_dirs: Sequence[StoreLike],
                       class_map: Optional[Mapping[str, str]] = None) -> None:
    """Before training: every test store opens, has the training store's front-end and shares a class."""
    train = _open(data_dir)
    for test in test_dirs:
        store = _open(test)
        if store.data_dir.resolve() == train.data_dir.resolve():
            continue
        _check_labeled(store)
        check_front_end(train.feature_params, train.n_freq, train.data_dir, store)
        _check_shared(shared_classes(train.classes, store.classes, class_map), train.data_dir, store)


# ----------------------------------------------------------------------------- one fold, one store


def _checkpoint_path(checkpoint_or_fold_dir: Union[str, Path]) -> Path:
    path = Path(checkpoint_or_fold_dir)
    return path / "best.pt" if path.is_dir() else path


def _train_data_dir(ckpt_path: Path) -> Optional[str]:
    """The training store of a fold's checkpoint, from its variant's run.json (None when unknown)."""
    run = ckpt_path.parent.parent / "run.json"
    try:
        return str(json.loads(run.read_text(encoding="utf-8"))["data_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@torch.no_grad()
def _cross_test_model(model: Any, ckpt: Mapping[str, Any], where: Any, store: FeatureStore,
                      class_map: Optional[Mapping[str, str]], device: torch.device, batch_size: int,
                      amp: bool = True) -> Dict[str, Any]:
    from ser_cl.models.embed import embed_utterances

    _check_labeled(store)
    check_front_end(ckpt.get("features"), ckpt.get("n_freq"), where, store)
    train_classes = [str(c) for c in ckpt["classes"]]
    shared = shared_classes(train_classes, store.classes, class_map)
    _check_shared(shared, where, store)

    position = {c: k for k, name in enumerate(shared.names) for c in shared.test_index[name]}
    kept = np.flatnonzero(np.isin(store.labels, list(position))).astype(np.int64)
    counts = {c: int(np.sum(store.labels == i)) for i, c in enumerate(store.classes)}
    if kept.size == 0:
        raise ValueError(f"{store.data_dir} has no utterance of the shared classes {', '.join(shared.names)}")
    allowed = sorted(i for name in shared.names for i in shared.train_index[name])  # training class indices
    to_shared = np.array([shared.names.index(shared.class_map.get(train_classes[i], train_classes[i]))
                          for i in allowed], dtype=np.int64)

    embs, _ = embed_utterances(model, model_inputs(store, model.cfg.input_norm), kept, device, batch_size, amp)
    logits = model.classify(torch.from_numpy(embs).to(device)).float().cpu().numpy()
    y_pred = to_shared[np.argmax(logits[:, allowed], axis=1)]
    y_true = np.array([position[int(label)] for label in store.labels[kept]], dtype=np.int64)
    report = classification_report(y_true, y_pred, len(shared.names))
    return {
        "data_dir": str(store.data_dir.resolve()),
        "corpus": store.info.get("corpus"),
        "n": int(kept.size),
        "ua": report["ua"],
        "wa": report["wa"],
        "classes": list(shared.names),
        "confusion": report["confusion"],
        "dropped_test_classes": {c: counts[c] for c in shared.dropped_test},
        "unused_train_classes": list(shared.unused_train),
        "train_classes": train_classes,
        "test_classes": list(store.classes),
        "class_map": dict(shared.class_map),
        "notes": shared.notes(counts),
    }


def cross_test(checkpoint_or_fold_dir: Union[str, Path], test_store: StoreLike,
               class_map: Optional[Mapping[str, str]] = None, device: Union[str, torch.device] = "cpu",
               batch_size: int = 64) -> Dict[str, Any]:
    """Score one checkpoint (a ``.pt`` or a fold dir's ``best.pt``) on every utterance of
    ``test_store`` whose class maps to a shared class; see the module doc.

    Returns ``{"data_dir", "corpus", "n", "ua", "wa", "classes" (shared), "confusion",
    "dropped_test_classes": {name: n_utterances}, "unused_train_classes": [...], "train_classes",
    "test_classes", "class_map", "notes"}`` (ua/wa fractions in [0, 1]). One-line ValueErrors for a
    model without a classifier head, another front-end, or no shared class.
    """
    from ser_cl.train.checkpoint import load_model
    from ser_cl.train.build import resolve_device

    device = resolve_device(device) if isinstance(device, str) else device
    path = _checkpoint_path(checkpoint_or_fold_dir)
    model, ckpt = load_model(path, device)
    if not ckpt.get("has_head", True):
        raise ValueError(f"{path}: trained without a classifier head (a pretrain stage); cross-corpus testing "
                         "needs one: fine-tune it first (`ser-cl finetune EXP.toml --from RUN_DIR`)")
    where = _train_data_dir(path) or path
    return _cross_test_model(model, ckpt, where, _open(test_store), class_map, device, batch_size)


# ----------------------------------------------------------------------------- whole runs


def _read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def cross_test_run(variant_dir: Union[str, Path], test_dirs: Sequence[Union[str, Path]],
                   class_map: Optional[Mapping[str, str]] = None, device: Union[str, torch.device] = "auto",
                   folds: Optional[Sequence[int]] = None, progress: bool = True, skip_done: bool = True,
                   batch_size: int = 64) -> List[Path]:
    """Test every complete fold of a variant on each of ``test_dirs``; returns the cross.json paths.

    ``fold-NN/cross.json`` maps each resolved test DATA_DIR to ``cross_test``'s result; entries
    for other test dirs already there are kept. With ``skip_done`` a fold whose cross.json already
    holds every test dir under the same ``class_map`` is not tested again. ``folds``: 1-based fold
    numbers (default all). A test dir that is the variant's own training store is skipped.
    """
    from tqdm.auto import tqdm

    from ser_cl.eval.run_probe import complete_fold_dirs
    from ser_cl.io import write_json
    from ser_cl.train.checkpoint import load_model
    from ser_cl.train.build import resolve_device

    vdir = Path(variant_dir)
    info = _read_json(vdir / "run.json")
    if not isinstance(info, dict) or not isinstance(info.get("folds"), list):
        raise FileNotFoundError(f"{vdir}: no readable run.json; expected a variant dir runs/<experiment>/<variant>")
    if not info.get("head"):
        raise ValueError(f"{vdir}: trained without a classifier head (a pretrain stage); cross-corpus testing "
                         "needs one: fine-tune it first, or test a train/finetune variant")
    cmap = {str(k): str(v) for k, v in (class_map or {}).items()}
    device = resolve_device(device) if isinstance(device, str) else device
    train_dir = Path(str(info.get("data_dir", ""))).resolve()
    stores: Dict[str, FeatureStore] = {}
    for d in test_dirs:
        resolved = Path(d).resolve()
        if resolved == train_dir:
            tqdm.write(f"{d}: the training store of {vdir}: its in-corpus score is the folds' own (skipped)")
            continue
        stores.setdefault(str(resolved), FeatureStore(resolved))
    if not stores:
        return []
    written: List[Path] = []
    for fdir in complete_fold_dirs(vdir, info["folds"], folds, f"cross-test {vdir.name}", progress):
        path = fdir / "cross.json"
        existing = _read_json(path)
        results: Dict[str, Any] = existing if isinstance(existing, dict) else {}
        todo = [key for key in stores if not (skip_done and isinstance(results.get(key), dict)
                                              and results[key].get("class_map") == cmap and "ua" in results[key])]
        if todo:
            model, ckpt = load_model(fdir / "best.pt", device)
            where = info.get("data_dir") or fdir
            for key in todo:
                results[key] = res = _cross_test_model(model, ckpt, where, stores[key], cmap, device, batch_size)
                if progress:
                    tqdm.write(f"{fdir}: on {store_label(key, res['corpus'])} UA {100 * res['ua']:.2f}% "
                               f"over {res['n']} utterances ({', '.join(res['classes'])})")
            write_json(path, results)
        written.append(path)
    return written


def variants_with_head(path: Union[str, Path]) -> List[Path]:
    """The variant dir ``path`` itself, or every variant with a classifier head below it."""
    from ser_cl.eval.run_probe import find_variant_dirs

    found = find_variant_dirs(path)
    if (Path(path) / "run.json").is_file():
        return found  # one variant, named: cross_test_run says so if it has no head
    heads = [v for v in found if (_read_json(v / "run.json") or {}).get("head")]
    if not heads:
        raise ValueError(f"{path}: no variant with a classifier head below it (only pretraining?); "
                         "cross-corpus testing needs a train or finetune stage")
    return heads


def cross_test_path(path: Union[str, Path], test_dirs: Sequence[Union[str, Path]],
                    class_map: Optional[Mapping[str, str]] = None, device: Union[str, torch.device] = "auto",
                    folds: Optional[Sequence[int]] = None, progress: bool = True,
                    skip_done: bool = True) -> List[Path]:
    """``ser-cl crosstest``: ``cross_test_run`` on a variant dir, or on every head variant below a dir."""
    if not test_dirs:
        raise ValueError("give at least one test store: --on DATA_DIR")
    for d in test_dirs:
        FeatureStore(d)  # a missing or unprepared store: its one-line error before any model is loaded
    written: List[Path] = []
    for vdir in variants_with_head(path):
        written += cross_test_run(vdir, test_dirs, class_map, device, folds, progress, skip_done)
    return written


def summarize_cross(variant_dirs: Sequence[Union[str, Path]],
                    test_dirs: Optional[Sequence[Union[str, Path]]] = None) -> List[Dict[str, Any]]:
    """Per variant and test store: mean / std UA and WA (percent) over the folds' cross.json,
    their number, and the class notes. ``test_dirs`` limits the stores (default: all found)."""
    wanted = {str(Path(d).resolve()) for d in test_dirs} if test_dirs else None
    rows = []
    for vdir in variant_dirs:
        vdir = Path(vdir)
        info = _read_json(vdir / "run.json") or {}
        per_store: Dict[str, List[Dict[str, Any]]] = {}
        for name in info.get("folds") or sorted(p.name for p in vdir.glob("fold-*")):
            cross = _read_json(vdir / name / "cross.json")
            for key, res in (cross.items() if isinstance(cross, dict) else ()):
                if isinstance(res, dict) and "ua" in res and (wanted is None or key in wanted):
                    per_store.setdefault(key, []).append(res)
        for key, results in per_store.items():
            ua = np.array([r["ua"] for r in results], dtype=np.float64) * 100
            wa = np.array([r["wa"] for r in results], dtype=np.float64) * 100
            rows.append({
                "variant": f"{info.get('experiment') or vdir.parent.name}/{info.get('variant') or vdir.name}",
                "train": store_label(info.get("data_dir", ""), info.get("corpus")),
                "test": store_label(key, results[0].get("corpus")), "data_dir": key,
                "n_folds": len(results), "n_expected": len(info.get("folds") or []),
                "ua_mean": float(ua.mean()), "ua_std": float(ua.std(ddof=0)),
                "wa_mean": float(wa.mean()), "wa_std": float(wa.std(ddof=0)),
                "n": int(results[0].get("n", 0)), "classes": list(results[0].get("classes") or []),
                "notes": list(results[0].get("notes") or []),
            })
    return rows


def format_cross_table(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """The lines ``ser-cl crosstest`` prints: one per variant and test store, then the class notes."""
    if not rows:
        return ["no cross-corpus result (no complete fold?)"]
    header = ["variant", "trained on", "tested on", "folds", "n", "UA %", "WA %", "shared classes"]

    def pm(mean: float, std: float, n: int) -> str:
        return f"{mean:.2f} +- {std:.2f}" if n > 1 else f"{mean:.2f}"

    body = [[r["variant"], r["train"], r["test"], f"{r['n_folds']}/{r['n_expected']}", str(r["n"]),
             pm(r["ua_mean"], r["ua_std"], r["n_folds"]), pm(r["wa_mean"], r["wa_std"], r["n_folds"]),
             ",".join(r["classes"])] for r in rows]
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header] + body]
    notes = list(dict.fromkeys(f"{r['train']} -> {r['test']}: {note}" for r in rows for note in r["notes"]))
    return lines + [f"note: {note}" for note in notes]


def crosstest(path: Union[str, Path], test_dirs: Sequence[Union[str, Path]], maps: Sequence[str] = (),
              device: Union[str, torch.device] = "auto", folds: Optional[Sequence[int]] = None,
              skip_done: bool = True) -> List[str]:
    """``ser-cl crosstest``: the ``--map`` items (``parse_class_map``), ``cross_test_path``, then the
    table of every tested variant on ``test_dirs`` (``format_cross_table``)."""
    class_map = parse_class_map(maps)
    cross_test_path(path, test_dirs, class_map, device, folds, skip_done=skip_done)
    return format_cross_table(summarize_cross(variants_with_head(path), test_dirs))
