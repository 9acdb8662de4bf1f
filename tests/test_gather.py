"""Losses over the batches of all processes (``gather_distributed``), on 2 gloo processes on the CPU.

Two processes each take a shard of one fixed batch (the training loop's ``rank::world`` split,
deliberately uneven: 7 + 6 rows; for multi-view losses whole samples, 4 + 3 pairs), embed it with
the same small Linear layer, compute the loss with gathering and run backward, then average the
Linear's gradients over the processes as DDP does. On every rank the loss must equal the loss
of one process on the whole batch, and the averaged gradients its gradients; the reference is
the brute-force loop implementations of tests/test_losses.py and tests/test_losses_ssl.py on the
whole batch (float64). Without gathering both differ (the test can fail). With the shard sizes
passed in, forward + backward make no host read; without, exactly one (the size exchange).

All cases run in one start of the 2 processes (module fixture), forked from a fresh interpreter
(tests/gloo_workers.py says why). The workers set one intra-op thread first thing.
"""

from __future__ import annotations

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from gloo_workers import run_workers

from ser_cl.losses import build_loss, gather_rows, strided_shard_sizes

WORLD = 2
N_ROWS = 13  # supervised batch: shards of 7 and 6 rows
N_SAMPLES = 7  # multi-view batch: 14 rows, shards of 4 and 3 samples (8 and 6 rows)
IN_DIM, DIM = 6, 5
LABELS = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 0, 2]

# name -> (loss name, parameters, multi-view)
CASES = {
    "supcon": ("supcon", {"tau": 0.1}, False),
    "ntxent": ("ntxent", {"tau": 0.1}, False),
    "selfsup_ntxent": ("selfsup_ntxent", {"tau": 0.5}, True),
    "triplet_all": ("triplet", {"margin": 0.5, "mining": "all"}, False),
    "triplet_semihard": ("triplet", {"margin": 0.5, "mining": "semihard"}, False),
    "smooth_triplet": ("smooth_triplet", {"tau": 0.5}, False),
    "barlow_twins": ("barlow_twins", {"barlow_lambda": 0.1}, True),
    "vicreg": ("vicreg", {}, True),
}
MODES = ("gather_sizes", "gather_exchange", "local")


def fixed_inputs(multiview: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch: inputs [B, IN_DIM] float64 and labels [B]."""
    g = torch.Generator().manual_seed(123)
    if not multiview:
        return torch.randn(N_ROWS, IN_DIM, generator=g, dtype=torch.float64), torch.tensor(LABELS)
    samples = torch.randn(N_SAMPLES, IN_DIM, generator=g, dtype=torch.float64)
    views = samples.unsqueeze(1) + 0.3 * torch.randn(N_SAMPLES, 2, IN_DIM, generator=g, dtype=torch.float64)
    return views.reshape(2 * N_SAMPLES, IN_DIM), torch.arange(N_SAMPLES).repeat_interleave(2)


def fixed_model() -> torch.nn.Linear:
    torch.manual_seed(7)
    return torch.nn.Linear(IN_DIM, DIM).double()


def shard(rank: int, multiview: bool) -> tuple[list[int], list[int]]:
    """This rank's rows of the whole batch (rank::world; whole samples when multi-view), and the
    row counts of all ranks."""
    if not multiview:
        return list(range(rank, N_ROWS, WORLD)), strided_shard_sizes(N_ROWS, WORLD)
    samples = range(rank, N_SAMPLES, WORLD)
    rows = [r for k in samples for r in (2 * k, 2 * k + 1)]
    return rows, [2 * n for n in strided_shard_sizes(N_SAMPLES, WORLD)]


def embed(model: torch.nn.Module, x: torch.Tensor, loss) -> torch.Tensor:
    z = model(x)
    return F.normalize(z, dim=1) if loss.normalized_input else z


def _worker(rank: int, port: int, out: str) -> None:
    from host_sync import count_host_reads

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    results = {}
    for case, (name, params, multiview) in CASES.items():
        x, labels = fixed_inputs(multiview)
        rows, sizes = shard(rank, multiview)
        for mode in MODES:
            model = fixed_model()
            loss = build_loss(name, gather_distributed=mode != "local", **params)
            with count_host_reads() as reads:
                z = embed(model, x[rows], loss)
                value = loss(z, labels[rows], shard_sizes=sizes if mode == "gather_sizes" else None)
                value.backward()
            grads = []
            for p in model.parameters():  # what DDP does: average the gradients over the ranks
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                grads.append(p.grad / WORLD)
            results[case, mode] = {"loss": value.detach(), "grads": grads, "reads": reads.summary(), "n": reads.count}
    # gather_rows itself: rank order, uneven shards, labels without gradient
    results["rows"] = gather_rows(torch.full((3 - rank, 2), float(rank)))
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("gather")
    run_workers("test_gather", "_worker", out, nprocs=WORLD)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def reference(case: str):
    """Loss and Linear gradients of one process on the whole batch, by brute force (float64)."""
    from test_losses import (
        brute_selfsup_ntxent,
        brute_smooth_triplet,
        brute_supcon,
        brute_supervised_ntxent,
        brute_triplet,
    )
    from test_losses_ssl import brute_barlow_twins, brute_vicreg

    brute = {
        "supcon": lambda z, y: brute_supcon(z, y, 0.1),
        "ntxent": lambda z, y: brute_supervised_ntxent(z, y, 0.1),
        "selfsup_ntxent": lambda z, y: brute_selfsup_ntxent(z, 0.5),
        "triplet_all": lambda z, y: brute_triplet(z, y, 0.5, "all"),
        "triplet_semihard": lambda z, y: brute_triplet(z, y, 0.5, "semihard"),
        "smooth_triplet": lambda z, y: brute_smooth_triplet(z, y, 0.5),
        "barlow_twins": lambda z, y: brute_barlow_twins(z, 0.1, 1e-5),
        "vicreg": lambda z, y: brute_vicreg(z, 25.0, 25.0, 1.0),
    }[case]
    name, params, multiview = CASES[case]
    x, labels = fixed_inputs(multiview)
    model = fixed_model()
    value = brute(embed(model, x, build_loss(name, **params)), labels)
    value.backward()
    return value.detach(), [p.grad for p in model.parameters()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_gathered_loss_and_averaged_gradients_equal_one_process(distributed_results, case):
    want_loss, want_grads = reference(case)
    for rank, results in enumerate(distributed_results):
        for mode in ("gather_sizes", "gather_exchange"):
            got = results[case, mode]
            assert torch.allclose(got["loss"], want_loss, rtol=1e-12, atol=1e-12), (rank, mode, got["loss"], want_loss)
            for g, w in zip(got["grads"], want_grads):
                assert torch.allclose(g, w, rtol=1e-10, atol=1e-12), (rank, mode, (g - w).abs().max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_without_gathering_the_result_differs(distributed_results, case):
    want_loss, want_grads = reference(case)
    losses = [results[case, "local"]["loss"] for results in distributed_results]
    assert any(abs(loss.item() - want_loss.item()) > 1e-6 for loss in losses)
    grads = distributed_results[0][case, "local"]["grads"]
    assert max((g - w).abs().max().item() for g, w in zip(grads, want_grads)) > 1e-6


@pytest.mark.parametrize("case", sorted(CASES))
def test_gathering_makes_no_host_read_when_sizes_are_given(distributed_results, case):
    for results in distributed_results:
        assert results[case, "gather_sizes"]["n"] == 0, results[case, "gather_sizes"]["reads"]
        assert results[case, "gather_exchange"]["n"] == 1, results[case, "gather_exchange"]["reads"]
        assert "Tensor.tolist" in results[case, "gather_exchange"]["reads"]
        assert results[case, "local"]["n"] == 0


def test_gather_rows_concatenates_in_rank_order(distributed_results):
    want = torch.tensor([[0.0, 0.0]] * 3 + [[1.0, 1.0]] * 2)
    for results in distributed_results:
        assert torch.equal(results["rows"], want)


def test_one_process_is_a_no_op():
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_rows(x) is x
    assert strided_shard_sizes(13, 2) == [7, 6] and strided_shard_sizes(3, 4) == [1, 1, 1, 0]
