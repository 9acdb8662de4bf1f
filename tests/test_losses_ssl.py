"""Barlow Twins and VICReg against brute-force loops written from the papers' formulas (float64,
values and gradients), against transcriptions of the official code, known values and edge cases.

The reference implementations loop over samples and dimensions with scalar tensors and share no
code with ``ser_cl.losses``. Layout: rows 2k and 2k+1 are the two views of sample k.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ser_cl.losses import (
    BarlowTwinsLoss,
    VICRegLoss,
    barlow_twins_loss,
    barlow_twins_terms,
    build_loss,
    loss_parameters,
    vicreg_loss,
    vicreg_terms,
)

torch.set_num_threads(1)

ATOL = 1e-10
SEEDS = (0, 1, 2)


def views_batch(seed: int, n: int = 6, dim: int = 5, scale: float = 1.0) -> torch.Tensor:
    """A float64 multi-view batch [2n, dim]: view b = shared sample + noise (correlated views)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, dim, generator=g, dtype=torch.float64) * scale
    a = base + 0.3 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    b = base + 0.3 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return torch.stack([a, b], dim=1).reshape(2 * n, dim)  # rows 2k, 2k+1 = views of k


def grad_of(fn, z):
    z = z.detach().clone().requires_grad_(True)
    value = fn(z)
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


def assert_same_value_and_grad(fn_a, fn_b, z, atol=ATOL):
    va, ga = grad_of(fn_a, z)
    vb, gb = grad_of(fn_b, z)
    assert torch.allclose(va, vb, atol=atol, rtol=1e-12), (va.item(), vb.item())
    assert torch.allclose(ga, gb, atol=atol, rtol=1e-12), (ga - gb).abs().max().item()


def hadamard_columns(n: int = 4) -> torch.Tensor:
    """[n, n-1] columns of a Sylvester Hadamard matrix without the constant one: mean 0, biased
    variance 1, pairwise orthogonal (a perfectly standardised, decorrelated view)."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h[:, 1:]


def interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.stack([a, b], dim=1).reshape(2 * a.shape[0], a.shape[1])


# ----------------------------------------------------------------------------- brute force


def split_views(z):
    n = z.shape[0] // 2
    return [z[2 * k] for k in range(n)], [z[2 * k + 1] for k in range(n)]


def brute_barlow_twins(z, lambd, eps):
    """Zbontar et al. 2021 eq. (1)-(2), batch standardisation with the biased variance + eps."""
    view_a, view_b = split_views(z)
    n, d = len(view_a), z.shape[1]

    def standardized(view):
        out = [[None] * d for _ in range(n)]
        for i in range(d):
            mean = sum(view[b][i] for b in range(n)) / n
            var = sum((view[b][i] - mean) ** 2 for b in range(n)) / n
            for b in range(n):
                out[b][i] = (view[b][i] - mean) / torch.sqrt(var + eps)
        return out

    za, zb = standardized(view_a), standardized(view_b)
    loss = torch.zeros((), dtype=z.dtype)
    for i in range(d):
        for j in range(d):
            c_ij = sum(za[b][i] * zb[b][j] for b in range(n)) / n
            loss = loss + ((1 - c_ij) ** 2 if i == j else lambd * c_ij**2)
    return loss


def official_barlow_twins(z, lambd):
    """The official code's forward (facebookresearch/barlowtwins main.py) on one process:
    ``c = bn(z1).T @ bn(z2) / batch_size`` with ``BatchNorm1d(affine=False)`` in training mode."""
    z1, z2 = z[0::2], z[1::2]
    bn = torch.nn.BatchNorm1d(z.shape[1], affine=False).double().train()
    c = bn(z1).T @ bn(z2) / z1.shape[0]
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.flatten()[:-1].view(c.shape[0] - 1, c.shape[0] + 1)[:, 1:].flatten()
    return on_diag + lambd * off.pow(2).sum()


def brute_vicreg_terms(z, gamma, eps):
    """Bardes et al. 2022 eq. (1)-(5): (s, (v(Z) + v(Z')) / 2, c(Z) + c(Z'))."""
    view_a, view_b = split_views(z)
    n, d = len(view_a), z.shape[1]
    invariance = sum(((view_a[b][i] - view_b[b][i]) ** 2 for b in range(n) for i in range(d))) / (n * d)

    def v_and_c(view):
        means = [sum(view[b][i] for b in range(n)) / n for i in range(d)]
        cov = [
            [sum((view[b][i] - means[i]) * (view[b][j] - means[j]) for b in range(n)) / max(n - 1, 1) for j in range(d)]
            for i in range(d)
        ]
        v = sum(torch.clamp(gamma - torch.sqrt(cov[i][i] + eps), min=0.0) for i in range(d)) / d
        c = sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return v, c

    va, ca = v_and_c(view_a)
    vb, cb = v_and_c(view_b)
    return invariance, (va + vb) / 2, ca + cb


def brute_vicreg(z, sim, var, cov, gamma=1.0, eps=1e-4):
    s, v, c = brute_vicreg_terms(z, gamma, eps)
    return sim * s + var * v + cov * c


def official_vicreg(z, sim=25.0, std=25.0, cov=1.0):
    """The official code's forward (facebookresearch/vicreg main_vicreg.py) on one process."""
    x, y = z[0::2], z[1::2]
    batch_size, num_features = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (batch_size - 1)
    cov_y = (y.T @ y) / (batch_size - 1)

    def off_diagonal(m):
        k = m.shape[0]
        return m.flatten()[:-1].view(k - 1, k + 1)[:, 1:].flatten()

    cov_loss = off_diagonal(cov_x).pow(2).sum() / num_features + off_diagonal(cov_y).pow(2).sum() / num_features
    return sim * repr_loss + std * std_loss + cov * cov_loss


# ----------------------------------------------------------------------------- Barlow Twins


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lambd, eps", [(5e-3, 1e-5), (0.5, 1e-5), (5e-3, 0.0), (1.0, 0.1)])
def test_barlow_twins_matches_brute_force(seed, lambd, eps):
    z = views_batch(seed)
    assert_same_value_and_grad(
        lambda z: barlow_twins_loss(z, lambd, eps), lambda z: brute_barlow_twins(z, lambd, eps), z
    )
    assert barlow_twins_loss(z, lambd, eps).item() > 0.01  # not vacuous


@pytest.mark.parametrize("seed", SEEDS)
def test_barlow_twins_matches_official_code(seed):
    z = views_batch(seed, n=8, dim=6, scale=3.0)
    assert_same_value_and_grad(
        lambda z: build_loss("barlow_twins", barlow_lambda=0.0051)(z), lambda z: official_barlow_twins(z, 0.0051), z
    )


def test_barlow_twins_terms_match_brute_force():
    z = views_batch(4)
    on, off = barlow_twins_terms(z, 1e-5)
    assert torch.allclose(on + 2.0 * off, brute_barlow_twins(z, 2.0, 1e-5), atol=ATOL, rtol=0)
    assert torch.allclose(on, brute_barlow_twins(z, 0.0, 1e-5), atol=ATOL, rtol=0)


def test_barlow_twins_known_values():
    h = hadamard_columns(4)  # 4 samples x 3 standardised, decorrelated dimensions: C = I
    assert barlow_twins_loss(interleave(h, h), 5e-3, eps=0.0).item() == 0.0
    assert abs(barlow_twins_loss(interleave(h, h), 5e-3).item()) < 1e-9  # eps: C_ii = 1/(1+eps)
    # opposite views: C = -I -> sum (1 - (-1))^2 = 4 D
    assert barlow_twins_loss(interleave(h, -h), 5e-3, eps=0.0).item() == pytest.approx(12.0, abs=1e-12)
    # permuted dimensions: C is a permutation matrix with a zero diagonal -> D + lambda D
    perm = h[:, [1, 2, 0]]
    assert barlow_twins_loss(interleave(h, perm), 0.1, eps=0.0).item() == pytest.approx(3 + 0.1 * 3, abs=1e-12)
    # invariant to a per-dimension affine map (standardisation), up to eps
    scaled = interleave(h * torch.tensor([2.0, 5.0, 0.5], dtype=torch.float64) + 7.0, perm)
    assert barlow_twins_loss(scaled, 0.1, eps=0.0).item() == pytest.approx(3.3, abs=1e-12)


def test_barlow_twins_pairs_are_rows_2k_2k1():
    z = views_batch(5)
    base = barlow_twins_loss(z)
    within = z[[1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10]]  # swap the views of every sample: C -> C^T
    across = z[[0, 3, 2, 1, 4, 5, 6, 7, 8, 9, 10, 11]]  # exchange views between samples 0 and 1
    assert torch.allclose(barlow_twins_loss(within), base, atol=ATOL, rtol=0)
    assert not torch.allclose(barlow_twins_loss(across), base, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- VICReg


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale", [0.2, 3.0])  # std below / above gamma: the hinge active / not
@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 3.0, 10.0)])
def test_vicreg_matches_brute_force(seed, scale, weights):
    z = views_batch(seed, scale=scale)
    sim, var, cov = weights
    assert_same_value_and_grad(
        lambda z: vicreg_loss(z, sim, var, cov), lambda z: brute_vicreg(z, sim, var, cov), z
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_vicreg_terms_match_brute_force(seed):
    z = views_batch(seed, scale=0.5)
    ours = vicreg_terms(z, gamma=1.5, eps=1e-3)
    ref = brute_vicreg_terms(z, 1.5, 1e-3)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=ATOL, rtol=0)
    assert all(t.item() > 1e-3 for t in ours)  # every term active: not vacuous


@pytest.mark.parametrize("seed", SEEDS)
def test_vicreg_matches_official_code(seed):
    z = views_batch(seed, n=8, dim=6, scale=0.4)
    assert_same_value_and_grad(lambda z: build_loss("vicreg")(z), official_vicreg, z)


def test_vicreg_known_values():
    h = hadamard_columns(4)
    # identical views (s = 0), std 2 * sqrt(4/3) > 1 (v = 0), orthogonal columns (c = 0)
    assert vicreg_loss(interleave(2 * h, 2 * h)).item() == 0.0
    # a collapsed batch: s = 0, c = 0, each view's hinge 1 - sqrt(eps) = 0.99 on every dimension;
    # the official code averages the two views: 25 * 0.99 (the paper's eq. (6) sum would be 49.5)
    collapsed = torch.ones(8, 3, dtype=torch.float64)
    assert vicreg_loss(collapsed).item() == pytest.approx(25 * 0.99, abs=1e-12)
    # invariance alone: views differing by a constant 0.5 everywhere -> MSE 0.25
    assert vicreg_loss(interleave(2 * h, 2 * h + 0.5)).item() == pytest.approx(25 * 0.25, abs=1e-12)
    # covariance alone: two identical columns of variance 4 -> c = 2 * 4^2 / D per view
    dup = torch.cat([2 * h[:, :1], 2 * h[:, :1]], dim=1)  # biased var 4, unbiased 16/3
    expected_cov = 2 * 2 * (16 / 3) ** 2 / 2  # 2 views x 2 off-diagonal entries x cov^2 / D (D = 2)
    assert vicreg_loss(interleave(dup, dup)).item() == pytest.approx(expected_cov, abs=1e-9)


def test_vicreg_pairs_are_rows_2k_2k1():
    z = views_batch(6, scale=0.5)
    base = vicreg_loss(z)
    within = z[[1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10]]
    across = z[[0, 3, 2, 1, 4, 5, 6, 7, 8, 9, 10, 11]]
    assert torch.allclose(vicreg_loss(within), base, atol=ATOL, rtol=0)
    assert not torch.allclose(vicreg_loss(across), base, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- edge cases, API


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg"])
@pytest.mark.parametrize("rows, collapsed", [(2, False), (2, True), (6, True), (6, False), (0, False)])
@pytest.mark.parametrize("dim", [1, 4])
def test_edge_cases_are_finite(name, rows, collapsed, dim):
    g = torch.Generator().manual_seed(0)
    raw = torch.ones(rows, dim) if collapsed else torch.randn(rows, dim, generator=g)
    z = raw.requires_grad_(True)
    value = build_loss(name)(z)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(z.grad).all()
    if rows == 0:
        assert value.item() == 0.0


def test_edge_case_values():
    one_sample = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)  # N = 1
    # Barlow Twins: every standardised value is 0 -> C = 0 -> sum_i (1 - 0)^2 = D
    assert barlow_twins_loss(one_sample).item() == pytest.approx(2.0, abs=1e-12)
    # VICReg with N = 1: variance and covariance 0 (1/(N-1) replaced by 1), hinge 0.99 per dim
    mse = ((1 - 3) ** 2 + (2 + 1) ** 2) / 2
    assert vicreg_loss(one_sample).item() == pytest.approx(25 * mse + 25 * 0.99, abs=1e-12)


@pytest.mark.parametrize("fn", [barlow_twins_loss, vicreg_loss])
def test_multiview_losses_reject_odd_batches(fn):
    with pytest.raises(ValueError, match="multi-view"):
        fn(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        fn(torch.randn(4))


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg"])
def test_float32_matches_float64(name):
    z = views_batch(7, n=16, dim=8)
    loss = build_loss(name)
    v64 = loss(z)
    v32 = loss(z.float())
    assert v32.dtype == torch.float32 and torch.isfinite(v32)
    assert torch.allclose(v32.double(), v64, rtol=1e-5, atol=1e-5)
    assert loss(z.half()).dtype == torch.float32  # half precision is up-cast


def test_modules_and_config_named_parameters():
    assert loss_parameters("barlow_twins") == {"barlow_lambda": 5e-3, "barlow_eps": 1e-5, "gather_distributed": False}
    assert loss_parameters("vicreg") == {
        "vicreg_sim": 25.0,
        "vicreg_var": 25.0,
        "vicreg_cov": 1.0,
        "vicreg_gamma": 1.0,
        "vicreg_eps": 1e-4,
        "gather_distributed": False,
    }
    z = views_batch(8)
    labels = torch.arange(12)
    bt = build_loss("barlow_twins", barlow_lambda=0.3, barlow_eps=1e-3)
    assert isinstance(bt, BarlowTwinsLoss)
    assert torch.allclose(bt(z, labels), brute_barlow_twins(z, 0.3, 1e-3), atol=ATOL, rtol=0)
    assert torch.equal(bt(z, labels), bt(z))  # labels are ignored
    vr = build_loss("vicreg", vicreg_sim=2.0, vicreg_var=3.0, vicreg_cov=4.0, vicreg_gamma=1.2, vicreg_eps=1e-3)
    assert isinstance(vr, VICRegLoss)
    assert torch.allclose(vr(z, labels), brute_vicreg(z, 2.0, 3.0, 4.0, 1.2, 1e-3), atol=ATOL, rtol=0)
    with pytest.raises(ValueError):
        build_loss("vicreg", vicreg_eps=0.0)
    with pytest.raises(ValueError):
        build_loss("barlow_twins", barlow_lambda=-1.0)
    with pytest.raises(ValueError, match="tau"):
        build_loss("vicreg", tau=0.1)
    for doc in (BarlowTwinsLoss.__doc__, VICRegLoss.__doc__, barlow_twins_loss.__doc__, vicreg_loss.__doc__):
        assert "20" in doc and ("Zbontar" in doc or "Bardes" in doc)


def test_paper_defaults():
    assert math.isclose(BarlowTwinsLoss().lambd, 5e-3)
    loss = VICRegLoss()
    assert (loss.sim_weight, loss.var_weight, loss.cov_weight, loss.gamma, loss.eps) == (25.0, 25.0, 1.0, 1.0, 1e-4)


def test_label_smoothing_cross_entropy_matches_its_formula():
    from ser_cl.losses import build_loss

    logits = torch.randn(6, 4, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1, 1, 2, 0])
    eps = 0.1
    target = torch.full((6, 4), eps / 4, dtype=torch.float64)
    target[torch.arange(6), labels] += 1 - eps
    want = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    got = build_loss("ce", label_smoothing=eps)(logits, labels)
    torch.testing.assert_close(got, want)
