"""Leave-one-speaker-out figures on a prepared ssl store's pooled frames: the linear probe and
small learned heads, for exploring which recipe to keep (the in-project probe is the
``baseline`` stage; this script is for development measurements, docs/ssl_upstreams.md).

Each utterance -> the mean and standard deviation of its frames for each chosen layer, side by
side; ``--norm speaker``: each speaker's vectors standardised with that speaker's own statistics
(labels unused); ``global``: with the training speakers' statistics. Heads:

* ``svm``: a linear SVM (scikit-learn LinearSVC), C in {0.001, 0.01, 0.1} chosen on the
  training speakers only (3 speaker groups inside the fold's training speakers, mean UA, ties to the smaller C), or fixed
  with ``--C``;
* ``mlp``: Linear(D, 256) -> LayerNorm -> GELU -> Dropout(0.5) -> Linear, 20% input dropout,
  CE with label smoothing 0.1, AdamW lr 1e-3, weight decay 1e-3, batch 32, ``--epochs`` (60)
  epochs, last epoch kept (the ``cpu-functionals`` head on pooled vectors);
* ``wsum``: the same MLP on a learned softmax-weighted sum of the layers' pooled vectors (needs
  a store of several layers);
* ``supcon``: the ``wsum`` head (one chosen layer: the ``mlp`` head) trained with CE + 0.5 x
  SupCon (temperature 0.1) on two dropout views of each batch;
* ``ntxent``: the ``wsum`` head's body first trained 30 epochs without labels with NT-Xent
  (temperature 0.1, batch 64) on two dropout views of the training speakers' utterances, then
  the whole head with CE as ``wsum``.

    python benchmarks/upstream_probe.py data/emodb-whisper --layers 4 --head svm
    python benchmarks/upstream_probe.py data/emovo-whisper --layers all --head mlp --seeds 0,1,2

Prints one line per seed: mean UA over the folds and each fold's UA (speaker: value).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np


def pooled(store_dir: Path, layers):
    from ser_cl.data.stores.store import FeatureStore

    store = FeatureStore(store_dir)
    params = json.loads((store_dir / "prepare.json").read_text())["features"]
    stored, hidden = [int(v) for v in params["layers"]], int(params["hidden_size"])
    chosen = stored if layers == "all" else [int(v) for v in layers.split(",")]
    cols = [stored.index(l) for l in chosen]
    X = np.empty((len(store), len(cols), 2 * hidden), np.float32)
    for i in range(len(store)):
        f = np.asarray(store[i], dtype=np.float32).reshape(-1, len(stored), hidden)[:, cols]
        X[i, :, :hidden], X[i, :, hidden:] = f.mean(0), f.std(0)
    speakers = np.array([r["speaker"] for r in store.rows])
    return X, store.labels, speakers, len(store.classes)


def normalise(X, speakers, train, how):
    X = X.copy()
    if how == "speaker":
        for s in np.unique(speakers):
            m = speakers == s
            X[m] = (X[m] - X[m].mean(0)) / (X[m].std(0) + 1e-6)
    elif how == "global":
        X = (X - X[train].mean(0)) / (X[train].std(0) + 1e-6)
    return X


def ua(y, p, n):
    return float(np.mean([np.mean(p[y == c] == c) for c in range(n) if (y == c).any()]))


def svm(Xtr, ytr, Xte, C):
    from sklearn.svm import LinearSVC

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LinearSVC(C=C, max_iter=5000).fit(Xtr, ytr).predict(Xte)


def choose_c(X, y, spk, n, grid):
    groups = np.array_split(np.unique(spk), 3)
    scores = []
    for C in grid:
        s = [ua(y[np.isin(spk, g)], svm(X[~np.isin(spk, g)], y[~np.isin(spk, g)], X[np.isin(spk, g)], C), n)
             for g in groups]
        scores.append(np.mean(s))
    return grid[int(np.argmax(scores))]


def mlp(Xtr, ytr, Xte, n, seed, head, epochs):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(seed)
    L, D = Xtr.shape[1], Xtr.shape[2]

    weighted = head in ("wsum", "supcon", "ntxent")

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(L)) if weighted else None
            width = D if weighted else L * D
            self.body = nn.Sequential(nn.Dropout(0.2), nn.Linear(width, 256), nn.LayerNorm(256), nn.GELU(),
                                      nn.Dropout(0.5))
            self.out = nn.Linear(256, n)

        def embed(self, x):
            x = (torch.softmax(self.w, 0)[None, :, None] * x).sum(1) if self.w is not None else x.flatten(1)
            return self.body(x)

    def contrastive(h1, h2, labels=None):
        """SupCon over the two views (labels) or NT-Xent (labels None: only the other view is positive)."""
        z = torch.stack([F.normalize(h1, dim=1), F.normalize(h2, dim=1)], 1).flatten(0, 1)
        ids = (labels if labels is not None else torch.arange(len(h1))).repeat_interleave(2)
        sim = (z @ z.T / 0.1).masked_fill(torch.eye(len(z), dtype=torch.bool), -1e9)
        pos = (ids[:, None] == ids[None]) & ~torch.eye(len(z), dtype=torch.bool)
        logp = sim - torch.logsumexp(sim, 1, keepdim=True)
        return -((logp * pos).sum(1) / pos.sum(1).clamp(min=1)).mean()

    model = Head()
    xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(seed)
    if head == "ntxent":  # self-supervised: no labels
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
        model.train()
        for _ in range(30):
            for idx in torch.randperm(len(xt), generator=gen).split(64):
                loss = contrastive(model.embed(xt[idx]), model.embed(xt[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(32):
            h = model.embed(xt[idx])
            loss = F.cross_entropy(model.out(h), yt[idx], label_smoothing=0.1)
            if head == "supcon":
                loss = loss + 0.5 * contrastive(h, model.embed(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return model.out(model.embed(torch.from_numpy(Xte))).argmax(1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--layers", default="all", help="'all' or comma-separated stored layer numbers")
    ap.add_argument("--norm", default="speaker", choices=["speaker", "global", "none"])
    ap.add_argument("--head", default="svm", choices=["svm", "mlp", "wsum", "supcon", "ntxent"])
    ap.add_argument("--C", type=float, default=None, help="svm: a fixed C (default: chosen on training speakers)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # small heads: one thread is as fast and leaves the other core free
    X3, y, spk, n = pooled(args.store, args.layers)
    grid = [1e-3, 1e-2, 1e-1]
    seeds = [0] if args.head == "svm" else [int(s) for s in args.seeds.split(",")]
    for seed in seeds:
        started, folds = time.perf_counter(), []
        for s in np.unique(spk):
            test = spk == s
            Xn = normalise(X3.reshape(len(X3), -1), spk, ~test, args.norm).reshape(X3.shape)
            if args.head == "svm":
                Xf = Xn.reshape(len(Xn), -1)
                C = args.C if args.C is not None else choose_c(Xf[~test], y[~test], spk[~test], n, grid)
                pred = svm(Xf[~test], y[~test], Xf[test], C)
            else:
                pred = mlp(Xn[~test], y[~test], Xn[test], n, seed, args.head, args.epochs)
            folds.append((s, 100 * ua(y[test], pred, n)))
        vals = [v for _, v in folds]
        print(f"{args.store.name} layers={args.layers} norm={args.norm} head={args.head} seed={seed}: "
              f"UA {np.mean(vals):.2f} +- {np.std(vals):.2f} [{' '.join(f'{k}:{v:.1f}' for k, v in folds)}] "
              f"{time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
