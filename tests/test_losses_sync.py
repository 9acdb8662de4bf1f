"""No loss reads device values on the host (no host-device sync on CUDA) in forward or backward.

``count_host_reads`` (tests/host_sync.py) patches every Python-level way of reading a tensor's
value on the host or of producing a data-dependent shape; each loss, each mining mode and the
semi-hard -> hard schedule must run forward + backward with zero of them, on ordinary batches
and on the edge cases that used to branch on ``int(mask.sum())`` (no anchor with a positive,
no triplet, a batch of one). The first tests check that the counter itself counts.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from host_sync import count_host_reads

from ser_cl.losses import LOSS_CLASSES, TripletLoss, build_loss, mine_triplets, triplet_indices

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- the counter counts


def test_counter_counts_item_and_restores():
    x = torch.randn(4, requires_grad=True)
    original_item = torch.Tensor.item
    with count_host_reads() as reads:
        x.sum().item()
    assert reads.count == 1 and reads.by_name() == {"Tensor.item": 1}
    assert "test_losses_sync.py" in reads.calls[0].where
    assert torch.Tensor.item is original_item and "item" not in vars(torch.Tensor)
    with count_host_reads() as reads:  # nothing leaked from the previous context
        pass
    assert reads.count == 0


@pytest.mark.parametrize(
    "read, name",
    [
        (lambda t, m: t.tolist(), "Tensor.tolist"),
        (lambda t, m: bool(t.sum() > 0), "Tensor.__bool__"),
        (lambda t, m: 1 if t.sum() > 0 else 0, "Tensor.__bool__"),
        (lambda t, m: int(m.sum()), "Tensor.__int__"),
        (lambda t, m: float(t.sum()), "Tensor.__float__"),
        (lambda t, m: list(range(6))[m.sum()], "Tensor.__index__"),  # m.sum() is 0..5
        (lambda t, m: t.cpu(), "Tensor.cpu"),
        (lambda t, m: t.detach().numpy(), "Tensor.numpy"),
        (lambda t, m: t.to("cpu"), "Tensor.to[cpu]"),
        (lambda t, m: f"{t.sum():.3f}", "Tensor.__format__"),
        (lambda t, m: repr(t), "Tensor.__repr__"),
        (lambda t, m: t[m], "Tensor.__getitem__[bool]"),
        (lambda t, m: t[m, None], "Tensor.__getitem__[bool]"),
        (lambda t, m: m.nonzero(), "Tensor.nonzero"),
        (lambda t, m: torch.nonzero(m), "torch.nonzero"),
        (lambda t, m: torch.where(m), "torch.where[1 arg]"),
        (lambda t, m: torch.masked_select(t, m), "torch.masked_select"),
        (lambda t, m: torch.unique(m), "torch.unique"),
        (lambda t, m: m.unique(), "Tensor.unique"),
        (lambda t, m: torch.equal(t, t), "torch.equal"),
    ],
)
def test_counter_counts_each_kind_once(read, name):
    t = torch.randn(5)
    m = t > 0
    with count_host_reads() as reads:
        read(t, m)
    assert reads.by_name() == {name: 1}, reads.summary()


def test_counter_ignores_arithmetic_shapes_and_slices():
    t = torch.randn(6, 3, requires_grad=True)
    m = t[:, 0] > 0
    with count_host_reads() as reads:
        y = torch.where(m[:, None], t, torch.zeros_like(t))[::2, 1:]
        n = m.sum().clamp(min=1)
        (y.sum() / n + t.shape[0] + len(t)).backward()
        t.masked_fill(m[:, None], 0.0)
    assert reads.count == 0, reads.summary()


def test_counter_only_device_reads():
    t = torch.randn(3)
    with count_host_reads(include_cpu=False) as reads:
        t.sum().item()
    assert reads.count == 0  # a CPU tensor: not a device sync


# ----------------------------------------------------------------------------- the losses


def batch(seed: int, rows: int = 12, dim: int = 8, n_classes: int = 3, labels=None, normalize=True):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(rows, dim, generator=g)
    if labels is None:
        labels = torch.randint(0, n_classes, (rows,), generator=g)
    x = raw.requires_grad_(True)
    return x, torch.as_tensor(labels, dtype=torch.int64)


def forward_backward(loss, x, labels):
    """Forward + backward of ``loss`` on ``z`` made from the leaf ``x``, counting host reads."""
    with count_host_reads() as reads:
        z = F.normalize(x, dim=1) if loss.normalized_input else x
        value = loss(z, labels)
        value.backward()
    return value, reads


CONTRASTIVE = [name for name in LOSS_CLASSES if name != "ce"]

EDGE_LABELS = {
    "random": None,
    "all_singletons": list(range(6)),  # no anchor with a positive, no triplet
    "one_class": [1] * 6,  # no negatives
    "pair_one_class": [3, 3],
}


@pytest.mark.parametrize("name", CONTRASTIVE)
@pytest.mark.parametrize("case", sorted(EDGE_LABELS))
def test_losses_make_no_host_reads(name, case):
    labels = EDGE_LABELS[case]
    x, y = batch(0, rows=12 if labels is None else len(labels), labels=labels)
    loss = build_loss(name)
    value, reads = forward_backward(loss, x, y)
    assert reads.count == 0, reads.summary()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_cross_entropy_makes_no_host_reads():
    logits = torch.randn(6, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    with count_host_reads() as reads:
        build_loss("ce")(logits, labels).backward()
    assert reads.count == 0, reads.summary()


@pytest.mark.parametrize("name", [n for n in CONTRASTIVE if not LOSS_CLASSES[n].multiview])
def test_batch_of_one_makes_no_host_reads(name):
    x, y = batch(1, rows=1, labels=[0])
    value, reads = forward_backward(build_loss(name), x, y)
    assert reads.count == 0, reads.summary()
    assert value.item() == 0.0  # read after the context: nothing to learn from one sample


@pytest.mark.parametrize("mining", ["all", "semihard", "hard"])
@pytest.mark.parametrize("case", ["random", "all_singletons", "separated"])
def test_triplet_mining_makes_no_host_reads(mining, case):
    if case == "separated":  # two tight opposite clusters: no triplet violates the margin
        x = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], requires_grad=True)
        y = torch.tensor([0, 0, 1, 1])
    else:
        x, y = batch(2, rows=12 if case == "random" else 6, labels=EDGE_LABELS[case])
    value, reads = forward_backward(TripletLoss(margin=0.2, mining=mining), x, y)
    assert reads.count == 0, reads.summary()
    with count_host_reads() as reads:
        mine_triplets(F.normalize(x.detach(), dim=1), y, 0.2, mining)
    assert reads.count == 0, reads.summary()


def test_semihard_hard_schedule_makes_no_host_reads():
    loss = TripletLoss(margin=0.2, mining="semihard-hard")
    for epoch, expected in ((0, "semihard"), (39, "semihard"), (40, "hard"), (49, "hard")):
        x, y = batch(epoch, rows=12)
        with count_host_reads() as reads:
            loss.set_epoch(epoch, 50)
            z = F.normalize(x, dim=1)
            loss(z, y).backward()
        assert loss.current_mining == expected
        assert reads.count == 0, reads.summary()


def test_triplet_indices_is_the_one_host_read():
    """The index list has a data-dependent length: it reads (nonzero), and the losses avoid it."""
    x, y = batch(3)
    mask = mine_triplets(F.normalize(x.detach(), dim=1), y, 0.2, "all")
    with count_host_reads() as reads:
        triplet_indices(mask)
    assert reads.by_name() == {"Tensor.nonzero": 1}


@pytest.mark.parametrize("name", CONTRASTIVE)
def test_gather_option_is_a_no_op_without_reads_on_one_process(name):
    x, y = batch(4, rows=12)
    loss = build_loss(name, gather_distributed=True)
    plain = build_loss(name)
    value, reads = forward_backward(loss, x, y)
    assert reads.count == 0, reads.summary()
    x2 = x.detach().clone().requires_grad_(True)
    z2 = F.normalize(x2, dim=1) if plain.normalized_input else x2
    assert torch.equal(value, plain(z2, y))
