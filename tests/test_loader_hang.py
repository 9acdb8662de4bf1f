"""The host batch loader's background thread (``data.prefetch``) never outlives its consumer.

A training step that raises (out of memory, KeyboardInterrupt, a NaN stop), a ``break``, an
explicit ``close()`` or the generator's garbage collection, at any batch of the epoch --
including the last ones, when the worker has gathered everything and waits on a full queue --
must stop the worker within a moment, and the clean-up must not hang. An error raised in the
worker still reaches the consumer. Each case runs the consumer in its own (daemon) thread and
fails if it has not returned within a few seconds, so a hang is a failure, not a stuck suite.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from ser_cl.data.batches.loader import BatchLoader, plan_epoch

N_BATCHES, PREFETCH, LIMIT_S = 6, 2, 5.0
WORKER = "ser-cl-batches"


class TinyStore:
    """The attributes the host path reads: 24 utterances of 5-12 frames, 4 bins."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.lengths = rng.integers(5, 13, size=24).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.n_freq = 4
        self.features = rng.standard_normal((int(self.offsets[-1]), 4)).astype(np.float16)
        self.labels = np.arange(24) % 3


def _loader_and_plans():
    store = TinyStore()
    plans = plan_epoch(store.lengths, np.arange(24), 4, None)
    assert len(plans) == N_BATCHES
    return BatchLoader(store, torch.device("cpu"), prefetch=PREFETCH), plans


_OLDER: set = set()  # workers that an earlier (failed) case left behind: not this case's to judge


def _workers():
    return [t for t in threading.enumerate() if t.name == WORKER and t.is_alive() and t not in _OLDER]


def _wait_no_workers(limit: float = 2.0) -> list:
    """The batch workers this case started that are still alive after ``limit`` seconds."""
    end = time.monotonic() + limit
    while _workers() and time.monotonic() < end:
        time.sleep(0.01)
    return _workers()


def _within(fn, limit: float = LIMIT_S):
    """Run ``fn`` in a daemon thread; its result (or exception), or fail if it has not returned."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as err:  # noqa: BLE001 -- handed to the test
            out["error"] = err

    t = threading.Thread(target=target, daemon=True, name="test-consumer")
    t0 = time.monotonic()
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"the consumer hung: still inside the loader after {limit} s"
    return out, time.monotonic() - t0


class StepFailed(Exception):
    pass


@pytest.fixture(autouse=True)
def _only_this_cases_workers():
    _OLDER.update(_workers())
    yield


@pytest.mark.parametrize("error", [StepFailed, KeyboardInterrupt])
@pytest.mark.parametrize("at", range(N_BATCHES))
def test_a_step_that_raises_at_any_batch_stops_the_worker(at, error):
    """The step raises at batch ``at`` after the worker had time to fill the queue (at the last
    batches: it has gathered the whole epoch and waits to put its end-of-epoch marker)."""
    loader, plans = _loader_and_plans()

    def consume():
        seen = 0
        try:
            for i, batch in enumerate(loader(plans)):
                assert batch.x.shape[0] == 4
                seen += 1
                if i == at:
                    time.sleep(0.15)  # the worker fills the queue meanwhile
                    raise error("step failed")
        except error:
            return seen  # leaving the handler frees the traceback: the generator is collected here
        raise AssertionError("the step never raised")

    out, _ = _within(consume)
    assert out.get("value") == at + 1, out
    assert not _wait_no_workers(), "the batch worker is still alive after the step raised"


@pytest.mark.parametrize("at", range(N_BATCHES))
def test_close_after_a_break_returns_promptly(at):
    loader, plans = _loader_and_plans()

    def close():
        gen = loader(plans)
        for i, _ in enumerate(gen):
            if i == at:
                time.sleep(0.15)
                break
        t0 = time.monotonic()
        gen.close()
        return time.monotonic() - t0

    out, _ = _within(close)
    assert "error" not in out, out
    assert out["value"] < 2.0, f"close() took {out['value']:.2f} s"
    assert not _wait_no_workers()


@pytest.mark.parametrize("at", range(N_BATCHES))
def test_a_generator_dropped_mid_epoch_stops_its_worker(at):
    loader, plans = _loader_and_plans()

    def drop():
        gen = loader(plans)
        for _ in range(at + 1):
            next(gen)
        time.sleep(0.15)
        del gen  # garbage-collected: its clean-up runs here

    out, _ = _within(drop)
    assert "error" not in out, out
    assert not _wait_no_workers()


@pytest.mark.parametrize("at", [0, N_BATCHES - 1])
def test_an_error_in_the_worker_reaches_the_consumer(at):
    loader, plans = _loader_and_plans()
    gather = loader._gather_host

    def failing(plan):
        if plan is plans[at]:
            raise MemoryError("gather failed")
        return gather(plan)

    loader._gather_host = failing

    def consume():
        seen = 0
        for _ in loader(plans):
            time.sleep(0.05)  # a slow step: the worker runs ahead and fills the queue
            seen += 1
        return seen

    out, _ = _within(consume)
    assert isinstance(out.get("error"), MemoryError), out
    assert not _wait_no_workers()


def test_a_worker_error_while_the_step_raises_does_not_hang():
    """The worker fails on the last batch while the queue is full and the step raises too."""
    loader, plans = _loader_and_plans()
    gather = loader._gather_host

    def failing(plan):
        if plan is plans[-1]:
            raise MemoryError("gather failed")
        return gather(plan)

    loader._gather_host = failing

    def consume():
        for i, _ in enumerate(loader(plans)):
            if i == N_BATCHES - PREFETCH - 2:
                time.sleep(0.15)  # the queue fills, the worker fails and waits to hand over its error
                raise StepFailed

    out, _ = _within(consume)
    assert isinstance(out.get("error"), StepFailed), out
    assert not _wait_no_workers()


def test_a_whole_epoch_still_comes_through_in_order():
    loader, plans = _loader_and_plans()
    out, _ = _within(lambda: [b.lengths.tolist() for b in loader(plans)])
    assert out["value"] == [p.lengths.tolist() for p in plans]
    assert not _wait_no_workers()
