"""Whole-utterance inference: embeddings and classifier predictions, batched by length.

Used by validation during training and by ``ser-cl probe``, so it lives with the models, below
both ``ser_cl.train`` and ``ser_cl.eval``.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from ser_cl.data.batches.batching import collate
from ser_cl.data.stores.store import FeatureStore


def _forward_in_length_order(model, store: FeatureStore, indices: np.ndarray, device: torch.device,
                             batch_size: int, amp: bool) -> Iterator[Tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """(positions in ``indices``, embeddings, logits) per batch, batches in order of length so
    padding is small."""
    order = np.argsort(store.lengths[indices], kind="stable")
    for start in range(0, len(order), batch_size):
        pos = order[start:start + batch_size]
        x, lengths = collate([store[i] for i in indices[pos]], target="max")
        x = x.to(device)  # lengths stay on the CPU (pack_padded_sequence)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            h = model.embed(x, lengths)
            logits = model.classify(h)
        yield pos, h, logits


@torch.no_grad()
def embed_utterances(model, store: FeatureStore, indices: np.ndarray, device: torch.device,
                     batch_size: int = 64, amp: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Embeddings (float32 [n, D]) and classifier argmax predictions of whole utterances, in the
    order of ``indices``."""
    embs: Optional[np.ndarray] = None
    preds = np.zeros(len(indices), dtype=np.int64)
    for pos, h, logits in _forward_in_length_order(model, store, indices, device, batch_size, amp):
        if embs is None:
            embs = np.zeros((len(indices), h.shape[1]), dtype=np.float32)
        embs[pos] = h.float().cpu().numpy()
        preds[pos] = logits.argmax(1).cpu().numpy()
    assert embs is not None, "no utterances to embed"
    return embs, preds


@torch.no_grad()
def class_probabilities(model, store: FeatureStore, indices: np.ndarray, device: torch.device,
                        batch_size: int = 64, amp: bool = True) -> np.ndarray:
    """The classifier's softmax probabilities (float64 [n, classes]) of whole utterances, in the
    order of ``indices``; their argmax is ``embed_utterances``' prediction."""
    probs = np.zeros((len(indices), model.n_classes), dtype=np.float64)
    for pos, _, logits in _forward_in_length_order(model, store, indices, device, batch_size, amp):
        probs[pos] = torch.softmax(logits.double(), dim=1).cpu().numpy()
    return probs
