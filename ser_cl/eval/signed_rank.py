"""The Wilcoxon signed-rank test of ``report --compare``'s per-fold differences, with the method
that gave p named (``wilcoxon_test``)."""

from __future__ import annotations

import warnings
from typing import Optional, Sequence, Tuple

import numpy as np


def _signflip_p(nonzero: np.ndarray) -> Tuple[float, float]:
    """(min(W+, W-), two-sided p) over the 2^n equally likely sign flips of the average ranks of
    |d| (exact with ties): the distribution of W+ by counting subset sums of the doubled ranks."""
    a = np.abs(nonzero)
    order = np.argsort(a, kind="stable")
    ranks2 = np.empty(a.size, dtype=np.int64)  # twice the average ranks: integers
    i = 0
    while i < a.size:
        j = i
        while j + 1 < a.size and a[order[j + 1]] == a[order[i]]:
            j += 1
        ranks2[order[i:j + 1]] = i + j + 2  # (i+1 + j+1) / 2, doubled
        i = j + 1
    counts = np.zeros(int(ranks2.sum()) + 1, dtype=np.float64)
    counts[0] = 1.0
    for r in ranks2:  # subsets with or without this rank
        counts[r:] = counts[r:] + counts[:-r].copy() if r else counts * 2
    probs = counts / counts.sum()
    w_plus = int(ranks2[nonzero > 0].sum())
    p = min(1.0, 2.0 * min(probs[:w_plus + 1].sum(), probs[w_plus:].sum()))
    return min(w_plus, int(ranks2.sum()) - w_plus) / 2.0, float(p)


def wilcoxon_test(diffs: Sequence[float]) -> Tuple[Optional[float], float, int, Optional[float], str]:
    """(statistic, two-sided p, n non-zero, smallest possible exact p, how) of the differences.

    Zero differences are dropped first, and the method is chosen here, not left to scipy's "auto"
    (which switches to the normal approximation on zeros in scipy 1.9-1.12 but not later): with
    n <= 50 non-zero differences p is exact (``scipy.stats.wilcoxon(method="exact")`` without
    ties; with ties, the exact sign-flip distribution of the average ranks), else scipy's normal
    approximation. ``how`` says which gave p."""
    d = np.asarray(diffs, dtype=np.float64)
    nonzero = d[d != 0]
    n = int(nonzero.size)
    if n == 0:
        return None, 1.0, 0, None, "not run: every difference is zero"
    from scipy.stats import wilcoxon

    ties = np.unique(np.abs(nonzero)).size < n
    zeros = f"; {d.size - n} zero difference{'s' if d.size - n != 1 else ''} dropped" if n < d.size else ""
    if n <= 50 and ties:
        statistic, p = _signflip_p(nonzero)
        return statistic, p, n, min(1.0, 2.0 / 2 ** n), "exact over the 2^n sign flips (tied ranks averaged)" + zeros
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns for small n with the approximation; the output says it
        result = wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided",
                          method="exact" if n <= 50 else "approx")
    how = ("exact" if n <= 50 else "normal approximation (n > 50)") + zeros
    return float(result.statistic), float(result.pvalue), n, min(1.0, 2.0 / 2 ** n), how
