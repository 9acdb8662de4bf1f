"""Training batches prepared ahead of the step: plan on the main thread, gather in the background.

An epoch is first *planned* on the main thread from the run's random generator (so the same
seed gives the same batches, whatever the threads do): the shuffled order, each batch's padded
length T (the thesis' mean length, 4.3.2.1; ``max_frames`` caps it), each utterance's crop
offset, and the order inside the batch (longest first, so the GRU packs without a permutation).
Then the frames are *gathered*, one of two ways:

* host (the default on the CPU, and for stores too large for the GPU): a background thread
  gathers each batch from the memory-mapped store with one ``np.take`` into a pinned float16
  buffer, ``prefetch`` batches ahead of the step; the main thread only issues asynchronous
  copies (``non_blocking=True`` from pinned memory does not wait for the GPU); the thread stops
  within a moment whenever the step leaves the epoch early (an error, ``break``, ``close()``);
* device (``data.store_on_device``): the whole float16 store lives on the GPU once, and each
  batch is one ``index_select`` there; only three small index vectors cross the bus.

Both give the same ``Batch``. ``BatchLoader.wait_seconds`` counts the time the step spent
waiting for data (the benchmark reports it as a fraction of the step time).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .batching import batch_indices, batch_length
from ..stores.store import FeatureStore
from .transfer import host_to_device

__all__ = ["Batch", "BatchPlan", "BatchLoader", "plan_epoch"]

POLL_SECONDS = 0.05  # how often a waiting put() of the worker looks at the stop event
JOIN_SECONDS = 10.0  # the clean-up's longest wait for the worker (it finishes the batch it gathers)


def _drain(q: "queue.Queue") -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


@dataclass
class BatchPlan:
    """One batch before its frames are read: utterance ``rows`` (store indices, longest first),
    each one's crop ``starts`` and valid ``lengths`` (<= T), and the padded length ``T``."""

    rows: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    T: int
    shard_sizes: Optional[Tuple[int, ...]] = None  # every process's row count, when sharded

    def shard(self, rank: int, world: int) -> "BatchPlan":
        """This process's share under data parallelism (rows rank::world); T stays the batch's,
        and ``shard_sizes`` tells the gathering losses every process's rows without asking."""
        sizes = tuple(len(range(r, len(self.rows), world)) for r in range(world))
        return BatchPlan(self.rows[rank::world], self.starts[rank::world], self.lengths[rank::world], self.T, sizes)


@dataclass
class Batch:
    x: torch.Tensor  # [B, T, F] float32 on the device, zero beyond each length
    lengths: np.ndarray  # [B] int64 on the host (pack_padded_sequence wants them there; numpy, so
    #                      bookkeeping on them never looks like a device read)
    lengths_dev: torch.Tensor  # [B] int64 on the device (masks, SpecAugment)
    labels: torch.Tensor  # [B] int64 on the device
    shard_sizes: Optional[Tuple[int, ...]] = None  # data parallelism: every process's row count


def plan_epoch(lengths: np.ndarray, indices: np.ndarray, batch_size: int, rng: Optional[np.random.Generator],
               target: str = "mean", max_frames: int = 0) -> List[BatchPlan]:
    """The batches of one pass over ``indices``.

    With ``rng`` (training) the order is shuffled and an utterance longer than T is cropped at a
    random offset; without it (validation) the order is kept and crops start at frame 0.
    T = the batch's mean (or max) length, capped at ``max_frames`` when that is > 0.
    """
    plans = []
    for idx in batch_indices(indices, batch_size, shuffle=rng is not None, rng=rng):
        n = lengths[idx].astype(np.int64)
        T = batch_length(n, target)
        if max_frames:
            T = min(T, int(max_frames))
        starts = np.zeros(len(idx), dtype=np.int64)
        if rng is not None:
            for i in np.flatnonzero(n > T):  # in batch order: reproducible from the seed
                starts[i] = int(rng.integers(0, n[i] - T + 1))
        valid = np.minimum(n, T)
        order = np.argsort(-valid, kind="stable")
        plans.append(BatchPlan(np.asarray(idx)[order], starts[order], valid[order], T))
    return plans


def frame_index(offsets: np.ndarray, plan: BatchPlan, pad_row: int) -> np.ndarray:
    """[B, T] rows of the store's frame matrix for a batch; ``pad_row`` beyond each length."""
    t = np.arange(plan.T, dtype=np.int64)[None, :]
    idx = (offsets[plan.rows] + plan.starts)[:, None] + t
    return np.where(t < plan.lengths[:, None], idx, pad_row)


class BatchLoader:
    """Turns ``BatchPlan``s into ``Batch``es on ``device``, gathering ahead of the step.

    ``on_device``: hold the whole store on the GPU (see the module docstring); ``prefetch``:
    how many batches the background thread may prepare ahead (host path).
    """

    def __init__(self, store: FeatureStore, device: torch.device, on_device: bool = False, prefetch: int = 3):
        self.store = store
        self.device = device
        self.on_device = bool(on_device)
        self.prefetch = max(1, int(prefetch))
        self.pin = device.type == "cuda"
        self.wait_seconds = 0.0
        self.labels = torch.from_numpy(np.ascontiguousarray(store.labels, dtype=np.int64))
        # batches gather in the store's dtype: float16, or float32 for a front-end beyond float16's range (functionals)
        self._host_dtype = torch.float32 if store.features.dtype == np.float32 else torch.float16
        self._dev_features: Optional[torch.Tensor] = None
        if self.on_device:
            feats = torch.from_numpy(np.array(store.features))  # read the memory map once
            zero = torch.zeros(1, store.n_freq, dtype=feats.dtype)
            self._dev_features = torch.cat([feats, zero]).to(device)  # last row = padding
            self._dev_offsets = torch.from_numpy(store.offsets).to(device)
            self._dev_labels = self.labels.to(device)

    # -- host path ---------------------------------------------------------------------------
    def _gather_host(self, plan: BatchPlan):
        """CPU tensors of one batch: x (pinned, in the store's dtype, for CUDA; float32 for the CPU), lengths, labels."""
        B, T, F = len(plan.rows), plan.T, self.store.n_freq
        idx = frame_index(self.store.offsets, plan, pad_row=0).reshape(-1)
        x = torch.empty((B * T, F), dtype=self._host_dtype, pin_memory=self.pin)
        np.take(self.store.features, idx, axis=0, out=x.numpy(), mode="clip")  # clip: unbuffered
        x = x.view(B, T, F)
        for b in np.flatnonzero(plan.lengths < T):  # zero the padding (it read row 0)
            x[b, plan.lengths[b]:] = 0
        if not self.pin:
            x = x.float()  # on the CPU the conversion happens here, off the main thread
        lengths = plan.lengths.astype(np.int64)
        lengths_t = torch.from_numpy(lengths)
        labels = self.labels[torch.from_numpy(plan.rows)]
        if self.pin:
            lengths_t, labels = lengths_t.pin_memory(), labels.pin_memory()
        return x, lengths, lengths_t, labels

    def _to_device(self, host) -> Batch:
        x, lengths, lengths_t, labels = host
        if self.device.type == "cpu":
            return Batch(x, lengths, lengths_t, labels)
        return Batch(x.to(self.device, non_blocking=True).float(), lengths,
                     lengths_t.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True))

    def _host_batches(self, plans: Sequence[BatchPlan]) -> Iterator[Batch]:
        """The host path's generator. The consumer may leave it at any point (a step that raises,
        ``break``, ``close()``, garbage collection): its clean-up stops the worker, empties the
        queue so that a ``put`` it waits in returns, and joins it; every ``put`` of the worker
        polls the stop event, so it never waits on a queue that nobody reads any more."""
        q: "queue.Queue" = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def put(item) -> bool:  # False: the consumer has gone
            while not stop.is_set():
                try:
                    q.put(item, timeout=POLL_SECONDS)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for plan in plans:
                    if stop.is_set() or not put((plan.shard_sizes, self._gather_host(plan))):
                        return
                put(done)
            except BaseException as err:  # surfaces in the main thread
                put(err)

        thread = threading.Thread(target=work, name="ser-cl-batches", daemon=True)
        thread.start()
        try:
            while True:
                t0 = time.perf_counter()
                item = self._get(q, thread)
                self.wait_seconds += time.perf_counter() - t0
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                batch = self._to_device(item[1])
                batch.shard_sizes = item[0]
                yield batch
        finally:
            stop.set()
            _drain(q)  # frees the batches gathered ahead (pinned memory); a waiting put() sees the stop
            if not sys.is_finalizing():  # a daemon thread cannot finish while the interpreter exits
                thread.join(JOIN_SECONDS)  # at most the batch it is gathering; daemon if slower
            _drain(q)  # what it put meanwhile: no batch outlives the generator

    @staticmethod
    def _get(q: "queue.Queue", thread: threading.Thread):
        """The next item; an error, not a wait forever, if the worker died without a word."""
        while True:
            try:
                return q.get(timeout=POLL_SECONDS * 10)
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    raise RuntimeError("the batch worker thread stopped without a batch or an error")

    # -- device path -------------------------------------------------------------------------
    def _device_batch(self, plan: BatchPlan) -> Batch:
        assert self._dev_features is not None
        dev, T = self.device, plan.T
        rows, starts = host_to_device(plan.rows, dev), host_to_device(plan.starts, dev)
        lengths = plan.lengths.astype(np.int64)
        lengths_dev = host_to_device(lengths, dev)
        t = torch.arange(T, device=dev)[None, :]
        idx = (self._dev_offsets[rows] + starts)[:, None] + t
        idx = torch.where(t < lengths_dev[:, None], idx, self._dev_features.shape[0] - 1)
        x = self._dev_features.index_select(0, idx.reshape(-1)).view(len(plan.rows), T, -1).float()
        return Batch(x, lengths, lengths_dev, self._dev_labels[rows], plan.shard_sizes)

    def __call__(self, plans: Sequence[BatchPlan]) -> Iterator[Batch]:
        """The batches of ``plans``, in order."""
        if self.on_device:
            for plan in plans:
                yield self._device_batch(plan)
        else:
            yield from self._host_batches(plans)


def store_fits_on_device(store: FeatureStore, device: torch.device, fraction: float = 0.25) -> bool:
    """Whether the float16 store takes at most ``fraction`` of the GPU's free memory."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return store.features.nbytes <= fraction * free
