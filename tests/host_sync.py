"""Count the places where Python code reads tensor values on the host (test helper).

On CUDA each of these is a host-device synchronisation: the CPU stops queueing kernels until
the device has produced the value. Use it to prove that a code path (a loss, a training step)
has none, on any device, CPU included:

    from host_sync import count_host_reads

    with count_host_reads() as reads:
        loss = loss_fn(z, labels)
        loss.backward()
    assert reads.count == 0, reads.summary()

While the context is active, these are patched and every call (from any code: the code under
test, torch's own Python code, the test itself) is counted:

  value reads   ``Tensor.item``, ``tolist``, ``cpu``, ``numpy``, ``__array__`` (np.asarray),
                ``__bool__`` (``if t:``, ``and``/``or``/``not``), ``__int__``, ``__float__``,
                ``__index__`` (``range(t)``, ``list[t]``), ``__repr__``/``__str__``/``__format__``
                (printing, f-strings), ``Tensor.to(...)`` with a CPU target device, and the
                Python-bool results ``torch.equal``, ``torch.allclose``, ``torch.is_nonzero``
                (also as methods);
  data-dependent shapes
                ``torch.nonzero`` / ``Tensor.nonzero``, ``torch.argwhere`` / ``Tensor.argwhere``,
                ``torch.where(cond)`` with a single argument, ``torch.masked_select`` /
                ``Tensor.masked_select``, ``torch.unique`` / ``Tensor.unique``,
                ``torch.unique_consecutive``, ``torch.repeat_interleave`` /
                ``Tensor.repeat_interleave`` with a tensor of repeats and no ``output_size``, and
                indexing with a boolean tensor (``t[mask]``, also inside a tuple or list, through
                ``Tensor.__getitem__``; ``t[mask] = v`` through ``__setitem__``).

Calls nested in a counted call count once (``print(t)`` is one read, not one per element).
Each read is recorded with its name and the innermost calling frame outside this file
(``reads.calls``; ``reads.summary()`` lists them), so a failing assertion says where it was.

What it does not see: reads inside C++ (an operator that synchronises internally, e.g.
``torch.nonzero`` called from C++), and calls through a reference taken before the context
was entered (``from torch import nonzero`` at import time). Slicing, shapes (``t.shape``,
``len(t)``, ``t.numel()``) and Python numbers are not reads and are not counted.

``include_cpu=False`` counts only reads of tensors that live on an accelerator (for a CUDA
training step in which some bookkeeping tensors are deliberately on the CPU); the default
counts every read, which is what CPU-only tests need to stand in for the device.
Patching is process-wide (not thread-local), so do not run other threads' code meanwhile.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional

import torch

__all__ = ["HostRead", "HostReads", "count_host_reads"]

_THIS_FILE = os.path.abspath(__file__)
_state = threading.local()


@dataclass
class HostRead:
    name: str  # e.g. "Tensor.item", "torch.nonzero", "Tensor.__getitem__[bool]"
    where: str  # "file:line in function" of the caller


@dataclass
class HostReads:
    """The reads counted by ``count_host_reads``: ``count``, ``calls``, ``by_name()``, ``summary()``."""

    calls: List[HostRead] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.calls)

    def by_name(self) -> "collections.Counter[str]":
        return collections.Counter(call.name for call in self.calls)

    def summary(self) -> str:
        if not self.calls:
            return "no host reads"
        lines = [f"{self.count} host read(s):"]
        lines += [f"  {call.name} at {call.where}" for call in self.calls]
        return "\n".join(lines)


def _caller() -> str:
    frame = sys._getframe(2)
    while frame is not None and os.path.abspath(frame.f_code.co_filename) == _THIS_FILE:
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def _first_tensor(args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _has_bool_tensor(index: Any) -> bool:
    if isinstance(index, torch.Tensor):
        return index.dtype == torch.bool
    if isinstance(index, (tuple, list)):
        return any(_has_bool_tensor(item) for item in index)
    return False


def _targets_cpu(args: tuple, kwargs: dict) -> bool:
    """Whether ``Tensor.to(*args, **kwargs)`` names a CPU device."""
    candidates = list(args) + [kwargs.get("device")]
    for value in candidates:
        if isinstance(value, torch.device):
            return value.type == "cpu"
        if isinstance(value, str):
            try:
                return torch.device(value).type == "cpu"
            except RuntimeError:  # a dtype name or similar, not a device
                continue
        if isinstance(value, torch.Tensor):  # t.to(other): other's device
            return value.device.type == "cpu"
    return False


# name -> (owner, attribute, condition(args, kwargs) -> bool or None for "always")
def _conditions() -> dict:
    def single_argument(args: tuple, kwargs: dict) -> bool:
        return len(args) + len(kwargs) == 1

    def bool_index(args: tuple, kwargs: dict) -> bool:
        return len(args) >= 2 and _has_bool_tensor(args[1])

    def to_cpu(args: tuple, kwargs: dict) -> bool:
        return _targets_cpu(args[1:], kwargs)

    def tensor_repeats(args: tuple, kwargs: dict) -> bool:
        repeats = kwargs.get("repeats", args[1] if len(args) > 1 else None)
        return isinstance(repeats, torch.Tensor) and repeats.numel() > 1 and kwargs.get("output_size") is None

    T = torch.Tensor
    table = {
        "Tensor.item": (T, "item", None),
        "Tensor.tolist": (T, "tolist", None),
        "Tensor.cpu": (T, "cpu", None),
        "Tensor.numpy": (T, "numpy", None),
        "Tensor.__array__": (T, "__array__", None),
        "Tensor.__bool__": (T, "__bool__", None),
        "Tensor.__int__": (T, "__int__", None),
        "Tensor.__float__": (T, "__float__", None),
        "Tensor.__index__": (T, "__index__", None),
        "Tensor.__repr__": (T, "__repr__", None),
        "Tensor.__str__": (T, "__str__", None),
        "Tensor.__format__": (T, "__format__", None),
        "Tensor.to[cpu]": (T, "to", to_cpu),
        "Tensor.equal": (T, "equal", None),
        "Tensor.allclose": (T, "allclose", None),
        "Tensor.is_nonzero": (T, "is_nonzero", None),
        "Tensor.nonzero": (T, "nonzero", None),
        "Tensor.argwhere": (T, "argwhere", None),
        "Tensor.masked_select": (T, "masked_select", None),
        "Tensor.unique": (T, "unique", None),
        "Tensor.repeat_interleave[tensor]": (T, "repeat_interleave", tensor_repeats),
        "Tensor.__getitem__[bool]": (T, "__getitem__", bool_index),
        "Tensor.__setitem__[bool]": (T, "__setitem__", bool_index),
        "torch.equal": (torch, "equal", None),
        "torch.allclose": (torch, "allclose", None),
        "torch.is_nonzero": (torch, "is_nonzero", None),
        "torch.nonzero": (torch, "nonzero", None),
        "torch.argwhere": (torch, "argwhere", None),
        "torch.where[1 arg]": (torch, "where", single_argument),
        "torch.masked_select": (torch, "masked_select", None),
        "torch.unique": (torch, "unique", None),
        "torch.unique_consecutive": (torch, "unique_consecutive", None),
        "torch.repeat_interleave[tensor]": (torch, "repeat_interleave", tensor_repeats),
    }
    return table


def _make_wrapper(
    name: str,
    original: Callable,
    condition: Optional[Callable[[tuple, dict], bool]],
    reads: HostReads,
    include_cpu: bool,
) -> Callable:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_state, "depth", 0)
        counted = depth == 0 and (condition is None or condition(args, kwargs))
        if counted and not include_cpu:
            subject = _first_tensor(args, kwargs)
            counted = subject is not None and subject.device.type != "cpu"
        if counted:
            reads.calls.append(HostRead(name, _caller()))
        _state.depth = depth + 1
        try:
            return original(*args, **kwargs)
        finally:
            _state.depth = depth

    return wrapper


@contextlib.contextmanager
def count_host_reads(include_cpu: bool = True) -> Iterator[HostReads]:
    """Context manager counting host reads of tensor values (see the module docstring).

    Yields a ``HostReads``: ``.count`` (total), ``.calls`` (``HostRead(name, where)`` in call
    order), ``.by_name()`` (a Counter) and ``.summary()`` (for assertion messages). Every patch
    is undone on exit, also when the body raises.
    """
    reads = HostReads()
    saved = []  # (owner, attribute, had_own_attribute, original)
    try:
        for name, (owner, attribute, condition) in _conditions().items():
            if not hasattr(owner, attribute):
                continue
            own = attribute in vars(owner)
            original = vars(owner)[attribute] if own else getattr(owner, attribute)
            saved.append((owner, attribute, own, original))
            setattr(owner, attribute, _make_wrapper(name, getattr(owner, attribute), condition, reads, include_cpu))
        yield reads
    finally:
        for owner, attribute, own, original in reversed(saved):
            if own:
                setattr(owner, attribute, original)
            else:
                delattr(owner, attribute)
