"""A linear head fitted to frozen embeddings before fine-tuning (``finetune.head_init = "fit"``).

A randomly initialised head on a pretrained encoder starts from chance and, at the thesis'
fine-tuning lr (1e-4) on a small corpus (EmoDB: ~14 steps per epoch), barely moves in the
frozen epochs. So the head starts where a linear probe would: multinomial logistic regression
on the training utterances' embeddings, standardised, with sklearn's default penalty,

    min_{W, b}  1/n sum_i CE(W s_i + b, y_i) + 1/(2 C n) ||W||^2,   s_i = (h_i - mu) / sigma,  C = 1

solved with L-BFGS (the problem is convex, so this is the same solution as
``sklearn.linear_model.LogisticRegression(C=1)`` on the standardised embeddings), and folded
back to raw embeddings: W' = W / sigma, b' = b - W' mu, so the model stays h -> W' h + b'.
``select_linear_head`` picks C from the linear SVM probe's grid by the validation speakers' UA,
as the probe does, so the head starts where the probe's SVM stands.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def fit_linear_head(X: np.ndarray, y: np.ndarray, n_classes: int, C: float = 1.0,
                    max_iter: int = 500) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weight [n_classes, D], bias [n_classes]) in float32 for raw embeddings ``X`` [n, D].

    Runs on one CPU thread: the problem is tiny, and several fold workers sharing a machine
    would otherwise oversubscribe its cores with spinning threads (measured: minutes, not seconds).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(X, y, n_classes, C, max_iter)
    finally:
        torch.set_num_threads(threads)


def _fit(X: np.ndarray, y: np.ndarray, n_classes: int, C: float, max_iter: int) -> Tuple[torch.Tensor, torch.Tensor]:
    X64 = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    y64 = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    n, d = X64.shape
    mu, sigma = X64.mean(0), X64.std(0, unbiased=False).clamp(min=1e-8)
    S = (X64 - mu) / sigma
    W = torch.zeros(n_classes, d, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")
    penalty = 1.0 / (2.0 * C * n)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(S @ W.T + b, y64) + penalty * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        W_raw = W / sigma
        b_raw = b - W_raw @ mu
    return W_raw.float(), b_raw.float()


def select_linear_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                       n_classes: int, C_grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0)
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``fit_linear_head`` for each C of the grid; the fit with the best validation UA (ties: smaller C)."""
    best = None
    val_y = np.asarray(val_y)
    for C in C_grid:
        W, b = fit_linear_head(train_x, train_y, n_classes, C=C)
        pred = (torch.as_tensor(np.asarray(val_x), dtype=torch.float32) @ W.T + b).argmax(1).numpy()
        recalls = [float(np.mean(pred[val_y == c] == c)) for c in np.unique(val_y)]
        ua = float(np.mean(recalls)) if recalls else 0.0
        if best is None or ua > best[0]:
            best = (ua, W, b)
    assert best is not None
    return best[1], best[2]
