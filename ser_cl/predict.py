"""``ser-cl predict``: the emotion of new recordings, from one checkpoint or a whole run.

With a run directory, the class probabilities are averaged over the best checkpoints of its
complete folds (an ensemble of the cross-validation models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from ser_cl.data.audio import AudioError, load_audio
from ser_cl.data.features import SAMPLE_RATE, WIN_LENGTH, compute_features
from ser_cl.data.normalize import band_stats
from ser_cl.train.checkpoint import load_model
from ser_cl.train.build import resolve_device
from ser_cl.train.run import fold_is_complete


MIN_SAMPLES = WIN_LENGTH  # one 25 ms analysis frame at 16 kHz


def model_input(wave_16k: np.ndarray, ckpt: Dict[str, Any]) -> np.ndarray:
    """The features the model reads, [T, n_freq] float32, for a mono 16 kHz waveform.

    The one place predict computes features: the front-end the model was trained on, as its
    checkpoint records it (``features``: the store's prepare.json params; older checkpoints
    without it were trained on the thesis' spectrogram, compute_features' default).
    """
    return compute_features(wave_16k, ckpt.get("features"))


def find_checkpoints(model_path: str | Path) -> List[Path]:
    """A checkpoint file, a fold dir (its best.pt), or a variant dir (every complete fold's best.pt)."""
    path = Path(model_path)
    if path.is_file():
        return [path]
    if (path / "best.pt").is_file():
        return [path / "best.pt"]
    found = []
    for fold_dir in sorted(path.glob("fold-*")):
        if fold_is_complete(fold_dir) and (fold_dir / "best.pt").is_file():
            found.append(fold_dir / "best.pt")
    if not found:
        raise FileNotFoundError(f"{path}: no checkpoint: expected a .pt file, a fold dir with best.pt, "
                                "or a run dir runs/<experiment>/<variant> with trained folds")
    return found


@torch.no_grad()
def predict_files(model_path: str | Path, audio_paths: Sequence[str | Path], device_spec: str = "auto"
                  ) -> List[Dict[str, Any]]:
    """One result per audio file: {"path", "emotion", "probabilities"} or {"path", "error"}."""
    device = resolve_device(device_spec)
    models, classes = [], None
    for ckpt_path in find_checkpoints(model_path):
        model, ckpt = load_model(ckpt_path, device)
        if not ckpt.get("has_head", True):
            raise ValueError(f"{ckpt_path}: trained without a classifier head (a pretrain stage); "
                             "fine-tune it first (`ser-cl finetune EXP.toml --from RUN_DIR`) or use `ser-cl probe`")
        if classes is not None and list(ckpt["classes"]) != classes:
            raise ValueError(f"{ckpt_path}: its classes differ from the other folds'")
        classes = list(ckpt["classes"])
        models.append(model)
    results: List[Dict[str, Any]] = []
    inputs: Dict[int, np.ndarray] = {}  # result index -> features
    for audio in audio_paths:
        try:
            wave = load_audio(audio, SAMPLE_RATE)
        except (AudioError, OSError) as err:
            results.append({"path": str(audio), "error": f"cannot read {audio}: {err}"})
            continue
        feats = model_input(wave, ckpt)
        if feats.shape[0] == 0:  # shorter than one analysis frame: nothing for the model to see
            results.append({"path": str(audio), "error": f"too short: {wave.size / SAMPLE_RATE:.3f} s, "
                            f"needs at least {MIN_SAMPLES / SAMPLE_RATE:g} s (one {WIN_LENGTH}-sample frame)"})
            continue
        inputs[len(results)] = feats
        results.append({"path": str(audio)})
    if inputs and models[0].cfg.input_norm == "speaker":
        inputs = speaker_normalised_inputs(inputs)
    for k, feats in inputs.items():
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))[None].to(device)
        lengths = torch.tensor([x.shape[1]])
        probs = torch.stack([torch.softmax(m(x, lengths).float(), dim=1)[0] for m in models]).mean(0).cpu()
        results[k].update({"emotion": classes[int(probs.argmax())],
                           "probabilities": {c: round(float(p), 4) for c, p in zip(classes, probs)}})
    return results


def speaker_normalised_inputs(inputs: Dict[int, np.ndarray]) -> Dict[int, np.ndarray]:
    """The recordings of one predict call standardised together, as one speaker's (a model
    trained with ``model.input_norm = "speaker"`` expects each speaker's own statistics)."""
    keys = list(inputs)
    mean, std = band_stats([inputs[k] for k in keys], range(len(keys)))
    return {k: (inputs[k] - mean) / std for k in keys}
