"""Triplet mining against brute-force enumeration and pytorch-metric-learning's miner."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ser_cl.losses.mining import (
    MINING_STRATEGIES,
    mine_triplets,
    mining_for_epoch,
    negative_mask,
    positive_mask,
    triplet_indices,
    valid_triplet_mask,
)

torch.set_num_threads(1)


def random_batch(seed, batch=12, dim=6, n_classes=3):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=1)
    return z, torch.randint(0, n_classes, (batch,), generator=g)


def brute_triplets(z, labels, margin, strategy):
    """Enumerate (a, p, n) with the thesis' region definitions (4.4.2.1); ties g == 0 as hard."""
    y = labels.tolist()
    found = set()
    for a in range(len(y)):
        for p in range(len(y)):
            if p == a or y[p] != y[a]:
                continue
            for n in range(len(y)):
                if y[n] == y[a]:
                    continue
                ap = float(z[a] @ z[p])
                an = float(z[a] @ z[n])
                semihard = an + margin > ap > an
                hard = ap <= an
                if strategy == "semihard":
                    keep = semihard
                elif strategy == "hard":
                    keep = hard
                else:
                    keep = ap < an + margin
                    assert keep == (semihard or hard)
                if keep:
                    found.add((a, p, n))
    return found


def as_set(mask):
    return set(zip(*(t.tolist() for t in triplet_indices(mask))))


def test_pair_masks():
    labels = torch.tensor([0, 1, 0, 2, 1])
    pos, neg = positive_mask(labels), negative_mask(labels)
    for a in range(5):
        assert {p for p in range(5) if pos[a, p]} == {p for p in range(5) if labels[p] == labels[a] and p != a}
        assert {n for n in range(5) if neg[a, n]} == {n for n in range(5) if labels[n] != labels[a]}
    valid = valid_triplet_mask(labels)
    assert int(valid.sum()) == sum(int(pos[a].sum()) * int(neg[a].sum()) for a in range(5))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("strategy", MINING_STRATEGIES)
@pytest.mark.parametrize("margin", [0.05, 0.2, 1.0])
def test_mining_matches_enumeration(seed, strategy, margin):
    z, labels = random_batch(seed)
    mined = as_set(mine_triplets(z, labels, margin, strategy))
    expected = brute_triplets(z, labels, margin, strategy)
    assert mined == expected
    if strategy == "all" and margin == 1.0:
        assert mined  # not vacuous


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_is_disjoint_union_of_semihard_and_hard(seed):
    z, labels = random_batch(seed)
    semi, hard, all_ = (mine_triplets(z, labels, 0.2, s) for s in ("semihard", "hard", "all"))
    assert not (semi & hard).any()
    assert torch.equal(semi | hard, all_)


def test_ties_count_as_hard():
    z = F.normalize(torch.ones(4, 3, dtype=torch.float64), dim=1)  # collapsed: s_ap == s_an
    labels = torch.tensor([0, 0, 1, 1])
    valid = valid_triplet_mask(labels)
    assert torch.equal(mine_triplets(z, labels, 0.2, "hard"), valid)
    assert torch.equal(mine_triplets(z, labels, 0.2, "all"), valid)
    assert not mine_triplets(z, labels, 0.2, "semihard").any()


@pytest.mark.parametrize("strategy", MINING_STRATEGIES)
def test_mining_equals_pml_triplet_margin_miner(strategy):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.miners import TripletMarginMiner

    for seed in range(4):
        z, labels = random_batch(seed)
        miner = TripletMarginMiner(margin=0.2, type_of_triplets=strategy, distance=CosineSimilarity())
        a, p, n = miner(z, labels)
        assert set(zip(a.tolist(), p.tolist(), n.tolist())) == as_set(mine_triplets(z, labels, 0.2, strategy))


def test_mining_is_not_differentiated():
    z, labels = random_batch(0)
    z.requires_grad_(True)
    assert not mine_triplets(z, labels, 0.2).requires_grad


def test_mining_rejects_unknown_strategy():
    z, labels = random_batch(0)
    with pytest.raises(ValueError, match="mining_for_epoch"):
        mine_triplets(z, labels, 0.2, "semihard-hard")
    with pytest.raises(ValueError, match="unknown"):
        mine_triplets(z, labels, 0.2, "easy")


def test_mining_for_epoch_schedule():
    plan = [mining_for_epoch("semihard-hard", e, 50) for e in range(50)]
    assert plan == ["semihard"] * 40 + ["hard"] * 10
    assert [mining_for_epoch("semihard-hard", e, 10, hard_fraction=0.5) for e in range(10)] == (
        ["semihard"] * 5 + ["hard"] * 5
    )
    assert mining_for_epoch("semihard-hard", 0, 1) == "semihard"
    assert mining_for_epoch("semihard-hard", 0, 5, hard_fraction=1.0) == "hard"
    for strategy in MINING_STRATEGIES:
        assert mining_for_epoch(strategy, 49, 50) == strategy
    with pytest.raises(ValueError):
        mining_for_epoch("random", 0, 50)
    with pytest.raises(ValueError):
        mining_for_epoch("semihard-hard", -1, 50)
