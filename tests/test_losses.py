"""Losses against brute-force loops written straight from the thesis formulas (values and
gradients), against pytorch-metric-learning where the definitions coincide, and edge cases.

The reference implementations here loop over anchors / positives / negatives in plain Python
and share no code with ``ser_cl.losses``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ser_cl.losses import (
    LOSS_NAMES,
    SelfSupNTXentLoss,
    SupConLoss,
    TripletLoss,
    build_loss,
    cross_entropy_loss,
    loss_parameters,
    selfsup_ntxent_loss,
    smooth_triplet_loss,
    supcon_loss,
    supervised_ntxent_loss,
    triplet_loss,
)

torch.set_num_threads(1)

SEEDS = (0, 1, 2, 3)
ATOL = 1e-10


# ----------------------------------------------------------------------------- data


def random_batch(seed: int, batch: int = 12, dim: int = 8, n_classes: int = 3, labels=None):
    """Random L2-normalised z (float64 leaf with grad) and random int64 labels."""
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=1)
    if labels is None:
        labels = torch.randint(0, n_classes, (batch,), generator=g)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    return z.detach().requires_grad_(True), labels


def raw_batch(seed: int, batch: int = 12, dim: int = 8, n_classes: int = 3, labels=None):
    """Unnormalised raw x (float64 leaf); z = normalize(x) is what the losses see."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    if labels is None:
        labels = torch.randint(0, n_classes, (batch,), generator=g)
    return x.requires_grad_(True), torch.as_tensor(labels, dtype=torch.int64)


def grad_of(fn, z):
    """(value, d value / d z) of a scalar function of a leaf tensor z."""
    z = z.detach().clone().requires_grad_(True)
    value = fn(z)
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


def assert_same_value_and_grad(fn_a, fn_b, z, atol=ATOL):
    va, ga = grad_of(fn_a, z)
    vb, gb = grad_of(fn_b, z)
    assert torch.allclose(va, vb, atol=atol, rtol=0), (va.item(), vb.item())
    assert torch.allclose(ga, gb, atol=atol, rtol=0), (ga - gb).abs().max().item()


# ----------------------------------------------------------------------------- brute force


def P(labels, a):
    return [p for p in range(len(labels)) if labels[p] == labels[a] and p != a]


def N(labels, a):
    return [n for n in range(len(labels)) if labels[n] != labels[a]]


def dot(z, i, j):
    return (z[i] * z[j]).sum()


def brute_triplet(z, labels, margin, mining):
    """Thesis 4.4.2.1: sum of max(0, s_an - s_ap + m) over mined triplets / number with loss > 0."""
    labels = labels.tolist()
    terms = []
    for a in range(len(labels)):
        for p in P(labels, a):
            for n in N(labels, a):
                s_ap, s_an = dot(z, a, p), dot(z, a, n)
                ap, an = s_ap.item(), s_an.item()
                if mining == "all":
                    chosen = ap < an + margin  # T'_a
                elif mining == "semihard":
                    chosen = an + margin > ap > an
                elif mining == "hard":
                    chosen = ap <= an  # thesis writes <, ties counted as hard (see mining.py)
                else:
                    raise AssertionError(mining)
                loss = torch.clamp(s_an - s_ap + margin, min=0.0)
                if chosen and loss.item() > 0:
                    terms.append(loss)
    if not terms:
        return z.sum() * 0.0
    return torch.stack(terms).sum() / len(terms)


def brute_smooth_triplet(z, labels, tau):
    """Thesis 4.4.2.2: mean over all (a, p, n) of log(1 + exp((s_an - s_ap) / tau))."""
    labels = labels.tolist()
    terms = []
    for a in range(len(labels)):
        for p in P(labels, a):
            for n in N(labels, a):
                terms.append(torch.log(1 + torch.exp((dot(z, a, n) - dot(z, a, p)) / tau)))
    if not terms:
        return z.sum() * 0.0
    return torch.stack(terms).mean()


def brute_supervised_ntxent(z, labels, tau):
    """Thesis 4.4.2.3 (anchors without positives left out of the 1/|A|)."""
    labels = labels.tolist()
    anchor_terms = []
    for a in range(len(labels)):
        positives = P(labels, a)
        if not positives:
            continue
        total = 0.0
        for p in positives:
            num = torch.exp(dot(z, a, p) / tau)
            den = num + sum((torch.exp(dot(z, a, n) / tau) for n in N(labels, a)), torch.zeros((), dtype=z.dtype))
            total = total - torch.log(num / den)
        anchor_terms.append(total / len(positives))
    if not anchor_terms:
        return z.sum() * 0.0
    return torch.stack(anchor_terms).mean()


def brute_pair_mean_ntxent(z, labels, tau):
    """pytorch-metric-learning's NTXentLoss with class labels: the same l_ap, but a plain mean
    over all positive pairs (a, p) instead of first over p per anchor, then over anchors."""
    labels = labels.tolist()
    terms = []
    for a in range(len(labels)):
        for p in P(labels, a):
            num = torch.exp(dot(z, a, p) / tau)
            den = num + sum((torch.exp(dot(z, a, n) / tau) for n in N(labels, a)), torch.zeros((), dtype=z.dtype))
            terms.append(-torch.log(num / den))
    return torch.stack(terms).mean()


def brute_supcon(z, labels, tau):
    """Thesis 3.1.4.2 L_out, mean over anchors that have a positive."""
    labels = labels.tolist()
    anchor_terms = []
    for a in range(len(labels)):
        positives = P(labels, a)
        if not positives:
            continue
        den = sum((torch.exp(dot(z, a, p) / tau) for p in positives), torch.zeros((), dtype=z.dtype))
        den = den + sum((torch.exp(dot(z, a, n) / tau) for n in N(labels, a)), torch.zeros((), dtype=z.dtype))
        total = 0.0
        for p in positives:
            total = total - torch.log(torch.exp(dot(z, a, p) / tau) / den)
        anchor_terms.append(total / len(positives))
    if not anchor_terms:
        return z.sum() * 0.0
    return torch.stack(anchor_terms).mean()


def brute_selfsup_ntxent(z, tau):
    """Thesis 3.1.4.1: rows 2k, 2k+1 are views of sample k; mean over the 2N rows."""
    n_rows = z.shape[0]
    terms = []
    for i in range(n_rows):
        j = i + 1 if i % 2 == 0 else i - 1
        den = sum(torch.exp(dot(z, i, k) / tau) for k in range(n_rows) if k != i)
        terms.append(-torch.log(torch.exp(dot(z, i, j) / tau) / den))
    return torch.stack(terms).mean()


# ----------------------------------------------------------------------------- vs brute force


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mining", ["all", "semihard", "hard"])
@pytest.mark.parametrize("margin", [0.05, 0.2, 1.0])
def test_triplet_matches_brute_force(seed, mining, margin):
    z, labels = random_batch(seed)
    ours = lambda z: triplet_loss(z, labels, margin=margin, mining=mining)  # noqa: E731
    ref = lambda z: brute_triplet(z, labels, margin, mining)  # noqa: E731
    assert_same_value_and_grad(ours, ref, z)
    assert ours(z).item() > 0  # the comparison is not vacuous


def test_triplet_module_follows_schedule():
    z, labels = random_batch(5)
    loss = TripletLoss(margin=0.2, mining="semihard-hard")
    assert loss.current_mining == "semihard"
    loss.set_epoch(39, 50)
    assert torch.allclose(loss(z, labels), brute_triplet(z, labels, 0.2, "semihard"), atol=ATOL, rtol=0)
    loss.set_epoch(40, 50)
    assert loss.current_mining == "hard"
    assert torch.allclose(loss(z, labels), brute_triplet(z, labels, 0.2, "hard"), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="schedule"):
        triplet_loss(z, labels, mining="semihard-hard")


def test_triplet_no_violating_triplet_is_connected_zero():
    # two tight, opposite clusters: every triplet satisfies the margin
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    value = triplet_loss(z, labels, margin=0.5)
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", [0.01, 0.1, 0.5, 2.0])
def test_smooth_triplet_matches_brute_force(seed, tau):
    z, labels = random_batch(seed)
    assert_same_value_and_grad(
        lambda z: smooth_triplet_loss(z, labels, tau), lambda z: brute_smooth_triplet(z, labels, tau), z
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", [0.01, 0.1, 0.5, 2.0])
def test_supervised_ntxent_matches_brute_force(seed, tau):
    z, labels = random_batch(seed)
    assert_same_value_and_grad(
        lambda z: supervised_ntxent_loss(z, labels, tau), lambda z: brute_supervised_ntxent(z, labels, tau), z
    )


def test_supervised_ntxent_leaves_out_anchors_without_positive():
    # class 2 has one sample: its anchor has no term and is not counted in the average
    z, labels = random_batch(7, batch=8, labels=[0, 0, 0, 1, 1, 2, 0, 1])
    assert_same_value_and_grad(
        lambda z: supervised_ntxent_loss(z, labels, 0.1), lambda z: brute_supervised_ntxent(z, labels, 0.1), z
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", [0.01, 0.1, 0.5, 2.0])
def test_supcon_matches_brute_force(seed, tau):
    z, labels = random_batch(seed)
    assert_same_value_and_grad(lambda z: supcon_loss(z, labels, tau), lambda z: brute_supcon(z, labels, tau), z)


def test_supcon_leaves_out_anchors_without_positive():
    z, labels = random_batch(8, batch=8, labels=[0, 0, 0, 1, 1, 2, 0, 1])
    assert_same_value_and_grad(lambda z: supcon_loss(z, labels, 0.1), lambda z: brute_supcon(z, labels, 0.1), z)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", [0.01, 0.1, 0.5, 2.0])
def test_selfsup_ntxent_matches_brute_force(seed, tau):
    z, _ = random_batch(seed, batch=12)
    assert_same_value_and_grad(lambda z: selfsup_ntxent_loss(z, tau), lambda z: brute_selfsup_ntxent(z, tau), z)


def test_selfsup_ntxent_uses_view_pairs_not_labels():
    z, labels = random_batch(3, batch=8)
    module = SelfSupNTXentLoss(tau=0.5)
    assert torch.equal(module(z, labels), module(z, torch.zeros_like(labels)))
    # swapping the rows of one pair keeps the loss; swapping across pairs changes it
    same = z.detach()[[1, 0, 2, 3, 4, 5, 6, 7]]
    other = z.detach()[[0, 2, 1, 3, 4, 5, 6, 7]]
    base = selfsup_ntxent_loss(z.detach(), 0.5)
    assert torch.allclose(selfsup_ntxent_loss(same, 0.5), base, atol=ATOL, rtol=0)
    assert not torch.allclose(selfsup_ntxent_loss(other, 0.5), base, atol=1e-6, rtol=0)


def test_losses_differ_from_each_other():
    """Guards against one loss silently computing another's formula."""
    z, labels = random_batch(11)
    values = [
        supervised_ntxent_loss(z, labels, 0.1).item(),
        supcon_loss(z, labels, 0.1).item(),
        brute_pair_mean_ntxent(z, labels, 0.1).item(),
    ]
    assert min(abs(a - b) for i, a in enumerate(values) for b in values[i + 1 :]) > 1e-4


def test_cross_entropy_matches_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    rows = logits.tolist()
    expected = -sum(math.log(math.exp(rows[i][labels[i]]) / sum(math.exp(u) for u in rows[i])) for i in range(6)) / 6
    assert abs(cross_entropy_loss(logits, labels).item() - expected) < 1e-12
    assert abs(build_loss("ce")(logits, labels).item() - expected) < 1e-12


# ----------------------------------------------------------------------------- stability


@pytest.mark.parametrize("name", ["smooth_triplet", "ntxent", "supcon", "selfsup_ntxent"])
def test_float32_at_tau_001_matches_float64(name):
    z64, labels = random_batch(4, batch=16)
    loss = build_loss(name, tau=0.01)
    v64 = loss(z64.detach(), labels)
    v32 = loss(z64.detach().float(), labels)
    assert torch.isfinite(v32)
    assert torch.allclose(v32.double(), v64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", [n for n in LOSS_NAMES if n != "ce"])
def test_losses_run_in_float32_under_bf16_autocast(name):
    """The training step runs under bf16 autocast; a loss must not let it turn z @ z.T into a
    bfloat16 product (8-bit mantissa: logits off by ~0.4 at tau = 0.01). The reference is the
    float64 brute force where there is one, else the loss's own float32 value without autocast."""
    x, labels = raw_batch(6, batch=12)
    loss = build_loss(name)
    z32 = F.normalize(x.detach().float(), dim=1)
    plain = loss(z32, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = loss(z32, labels)
    assert under.dtype == torch.float32
    assert torch.equal(under, plain), (under.item(), plain.item())
    reference = {
        "supcon": lambda z: brute_supcon(z, labels, 0.1),
        "ntxent": lambda z: brute_supervised_ntxent(z, labels, 0.1),
        "smooth_triplet": lambda z: brute_smooth_triplet(z, labels, 0.5),
        "selfsup_ntxent": lambda z: brute_selfsup_ntxent(z, 0.5),
    }.get(name)
    if reference is not None:
        want = reference(F.normalize(x.detach(), dim=1))
        assert abs(under.item() - want.item()) < 1e-5


# ----------------------------------------------------------------------------- pytorch-metric-learning


def test_supcon_equals_pml_supcon():
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.losses import SupConLoss as PmlSupCon

    for seed in SEEDS:
        x, labels = raw_batch(seed)
        for tau in (0.05, 0.1, 1.0):
            # pml normalises internally (CosineSimilarity); gradients compared w.r.t. the raw x
            assert_same_value_and_grad(
                lambda x: supcon_loss(F.normalize(x, dim=1), labels, tau),
                lambda x: PmlSupCon(temperature=tau)(x, labels),
                x,
                atol=1e-9,
            )
    assert pml.__version__


def test_selfsup_ntxent_equals_pml_ntxent_with_sample_labels():
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.losses import NTXentLoss

    for seed in SEEDS:
        x, _ = raw_batch(seed, batch=12)
        sample_ids = torch.arange(6).repeat_interleave(2)  # rows 2k, 2k+1 -> sample k
        for tau in (0.05, 0.5, 2.0):
            assert_same_value_and_grad(
                lambda x: selfsup_ntxent_loss(F.normalize(x, dim=1), tau),
                lambda x: NTXentLoss(temperature=tau)(x, sample_ids),
                x,
                atol=1e-9,
            )


def test_supervised_ntxent_vs_pml_ntxent_with_class_labels():
    """pml's NTXentLoss has the same per-pair term l_ap (positive + negatives of other classes in
    the denominator) but averages over all positive pairs, while the thesis averages over p within
    each anchor and then over anchors. They coincide iff every anchor has the same |P(a)|
    (balanced classes); otherwise pml equals the pair-mean variant, not the thesis loss."""
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.losses import NTXentLoss

    # balanced: 3 classes x 4 samples, shuffled -> identical values and gradients
    for seed in SEEDS:
        g = torch.Generator().manual_seed(100 + seed)
        balanced = torch.arange(3).repeat(4)[torch.randperm(12, generator=g)]
        x, labels = raw_batch(seed, labels=balanced)
        assert_same_value_and_grad(
            lambda x: supervised_ntxent_loss(F.normalize(x, dim=1), labels, 0.1),
            lambda x: NTXentLoss(temperature=0.1)(x, labels),
            x,
            atol=1e-9,
        )
    # unbalanced: pml = pair mean != thesis loss
    x, labels = raw_batch(0, labels=[0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 0])
    z = F.normalize(x.detach(), dim=1)
    pml_value = NTXentLoss(temperature=0.1)(x.detach(), labels)
    assert torch.allclose(pml_value, brute_pair_mean_ntxent(z, labels, 0.1), atol=1e-9, rtol=0)
    assert abs(pml_value.item() - supervised_ntxent_loss(z, labels, 0.1).item()) > 1e-3


@pytest.mark.parametrize("mining", ["all", "semihard", "hard"])
def test_triplet_equals_pml_triplet_margin(mining):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import TripletMarginMiner

    for seed in SEEDS:
        x, labels = raw_batch(seed)

        def pml_loss(x):
            miner = TripletMarginMiner(margin=0.2, type_of_triplets=mining, distance=CosineSimilarity())
            loss = TripletMarginLoss(margin=0.2, distance=CosineSimilarity())
            return loss(x, labels, miner(x, labels))

        assert_same_value_and_grad(
            lambda x: triplet_loss(F.normalize(x, dim=1), labels, 0.2, mining), pml_loss, x, atol=1e-9
        )


# ----------------------------------------------------------------------------- edge cases

EDGE_BATCHES = {
    "batch_of_one": [0],
    "one_class": [1, 1, 1, 1, 1, 1],
    "singleton_class": [0, 0, 1, 2, 2, 2],
    "all_singletons": [0, 1, 2, 3],
    "pair_one_class": [3, 3],
}


@pytest.mark.parametrize("case", sorted(EDGE_BATCHES))
@pytest.mark.parametrize("name", ["triplet", "smooth_triplet", "ntxent", "supcon"])
@pytest.mark.parametrize("tau_or_margin", [0.01, 0.5])
@pytest.mark.parametrize("collapsed", [False, True])
def test_edge_cases_are_finite(case, name, tau_or_margin, collapsed):
    labels = torch.tensor(EDGE_BATCHES[case])
    g = torch.Generator().manual_seed(0)
    raw = torch.ones(len(labels), 5) if collapsed else torch.randn(len(labels), 5, generator=g)
    z = F.normalize(raw, dim=1).requires_grad_(True)
    key = "margin" if name == "triplet" else "tau"
    loss = build_loss(name, **{key: tau_or_margin})
    value = loss(z, labels)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(z.grad).all()


def test_edge_case_values():
    z, _ = random_batch(0, batch=6)
    one_class = torch.zeros(6, dtype=torch.int64)
    # no negatives: no triplets, and every NT-Xent term is -log(1) = 0
    assert triplet_loss(z, one_class).item() == 0.0
    assert smooth_triplet_loss(z, one_class, 0.1).item() == 0.0
    assert abs(supervised_ntxent_loss(z, one_class, 0.1).item()) < 1e-12
    # SupCon is still defined with positives only in the denominator
    assert torch.allclose(supcon_loss(z, one_class, 0.1), brute_supcon(z, one_class, 0.1), atol=ATOL, rtol=0)
    # no positives anywhere: zero
    singletons = torch.arange(6)
    for fn in (supervised_ntxent_loss, supcon_loss, smooth_triplet_loss):
        assert fn(z, singletons, 0.1).item() == 0.0


@pytest.mark.parametrize("n_rows", [2, 4])
@pytest.mark.parametrize("collapsed", [False, True])
def test_selfsup_small_batches_are_finite(n_rows, collapsed):
    g = torch.Generator().manual_seed(0)
    raw = torch.ones(n_rows, 3) if collapsed else torch.randn(n_rows, 3, generator=g)
    z = F.normalize(raw, dim=1).requires_grad_(True)
    value = selfsup_ntxent_loss(z, 0.01)
    assert torch.isfinite(value)
    value.backward()
    assert torch.isfinite(z.grad).all()
    if n_rows == 2:  # the partner is the only other row: -log(1)
        assert abs(value.item()) < 1e-6


def test_selfsup_rejects_odd_batches():
    with pytest.raises(ValueError, match="multi-view"):
        selfsup_ntxent_loss(F.normalize(torch.randn(3, 4), dim=1), 0.5)


def test_half_precision_input_is_upcast():
    z, labels = random_batch(2, batch=8)
    value = supcon_loss(z.detach().half(), labels, 0.01)
    assert value.dtype == torch.float32 and torch.isfinite(value)


# ----------------------------------------------------------------------------- build_loss


def test_loss_names_and_builder():
    assert LOSS_NAMES == (
        "ce", "triplet", "smooth_triplet", "ntxent", "supcon", "selfsup_ntxent", "barlow_twins", "vicreg"
    )
    z, labels = random_batch(9)
    assert torch.allclose(build_loss("supcon", tau=0.2)(z, labels), supcon_loss(z, labels, 0.2))
    assert torch.allclose(build_loss("ntxent", tau=0.2)(z, labels), supervised_ntxent_loss(z, labels, 0.2))
    assert torch.allclose(build_loss("smooth_triplet", tau=0.2)(z, labels), smooth_triplet_loss(z, labels, 0.2))
    assert torch.allclose(
        build_loss("triplet", margin=0.1, mining="hard")(z, labels), triplet_loss(z, labels, 0.1, "hard")
    )
    assert torch.allclose(build_loss("selfsup_ntxent", tau=0.2)(z, labels), selfsup_ntxent_loss(z, 0.2))
    assert isinstance(build_loss("supcon"), SupConLoss)
    assert loss_parameters("triplet") == {
        "margin": 0.2, "mining": "all", "hard_fraction": 0.2, "gather_distributed": False
    }
    assert loss_parameters("ce") == {"label_smoothing": 0.0}
    for name in LOSS_NAMES[1:]:  # every batch-level loss can gather the batches of all processes
        assert loss_parameters(name)["gather_distributed"] is False
    for name in LOSS_NAMES:
        loss = build_loss(name)
        assert loss.name == name
        assert "thesis" in type(loss).__doc__
    assert build_loss("ce").input == "logits" and build_loss("supcon").input == "embeddings"
    assert build_loss("selfsup_ntxent").multiview and not build_loss("selfsup_ntxent").needs_labels
    for name in ("barlow_twins", "vicreg"):
        loss = build_loss(name)
        assert loss.multiview and not loss.needs_labels and not loss.normalized_input
    assert all(build_loss(name).normalized_input for name in LOSS_NAMES[1:6])


def test_builder_rejects_bad_names_and_parameters():
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("contrastive")
    with pytest.raises(ValueError, match="margin"):
        build_loss("supcon", margin=0.2)
    with pytest.raises(ValueError, match="tau"):
        build_loss("ntxent", tau=0.0)
    with pytest.raises(ValueError, match="mining"):
        build_loss("triplet", mining="easy")
