"""Host index arrays to the training device without a synchronisation.

Lengths, row indices and permutations are planned on the host (numpy) and needed on the device
(masks, gathers). Off the CPU the copy goes through pinned memory, which is what makes
``non_blocking=True`` asynchronous: the host queues the copy and moves on.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["host_to_device"]


def host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as an int64 tensor on ``device`` (on the CPU: sharing the array's memory when it
    is already contiguous int64; elsewhere: a pinned copy sent asynchronously)."""
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    return t if device.type == "cpu" else t.pin_memory().to(device, non_blocking=True)
