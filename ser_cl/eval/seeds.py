"""Seed groups: the variants of one experiment that differ only by their seed.

An experiment sweeps the seed like any other key (``[sweep] "optim.seed" = [0, 1, 2]``;
``ser_cl.experiment.expand`` names the variants ``<stage>_seed=0`` ...). The report groups such
variants: a *seed group* is named after its variants less their ``_seed=N`` part (``ft_seed=1``
-> ``ft``; ``pretrain_tau=0.1_seed=2`` -> ``pretrain_tau=0.1``), and holds the variants of one
experiment, stage kind and scoring method with that name. Its numbers: per seed the mean over
the seed's complete folds, then the mean and the std (population, ddof=0) of those seed means.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np

from ser_cl.experiment import SEED_KEY, _fmt, _short


def seed_base(variant: str, sweep: Dict[str, Any]) -> Optional[str]:
    """The seed group's name of a variant (its name less ``_seed=N``), None when the seed was not swept."""
    if SEED_KEY not in sweep:
        return None
    part = f"_{_short(SEED_KEY)}={_fmt(sweep[SEED_KEY])}"
    if part in variant:
        return variant.replace(part, "", 1)
    return re.sub(rf"_{_short(SEED_KEY)}=[^_]*", "", variant, count=1)  # renamed by hand: best effort


def seed_key(experiment: str, variant: str, sweep: Dict[str, Any], stage: Any, method: str) -> Optional[Tuple]:
    """What the variants of one seed group share (None: not seed-swept)."""
    base = seed_base(variant, sweep)
    if base is None:
        return None
    others = tuple(sorted((key, repr(value)) for key, value in sweep.items() if key != SEED_KEY))
    return (experiment, base, stage, method, others)


def group_in_order(keys: Sequence[Optional[Hashable]]) -> Dict[Hashable, List[int]]:
    """Indices of ``keys`` per (non-None) key, groups in order of first appearance."""
    groups: Dict[Hashable, List[int]] = {}
    for index, key in enumerate(keys):
        if key is not None:
            groups.setdefault(key, []).append(index)
    return groups


def seed_stats(seed_means: Sequence[Optional[float]]) -> Tuple[Optional[float], Optional[float], int]:
    """Mean and population std (ddof=0) of the seeds' fold means (None: a seed without a value,
    left out), and how many seeds had one."""
    values = np.asarray([value for value in seed_means if value is not None], dtype=np.float64)
    if values.size == 0:
        return None, None, 0
    return float(np.mean(values)), float(np.std(values, ddof=0)), int(values.size)
