"""``ser-cl predict``: the emotion of new recordings, from one checkpoint or a whole run.

With a run directory, the class probabilities are averaged over the best checkpoints of its
complete folds (an ensemble of the cross-validation models).

A speaker-normalised model (``model.input_norm = "speaker"``, ``--preset cpu``) expects each
recording standardised with its own speaker's per-band statistics. Where they come from is the
caller's choice, and each result says which it got (``"normalisation"``):

- ``enrol``: statistics over the speaker's other recordings (``--enrol FILE|DIR ...``), used
  for nothing else;
- ``same-speaker``: the call's own files pooled, declared as one speaker's (``--same-speaker``);
- ``training-speakers``: neither given: the statistics of a typical training speaker, which the
  checkpoint carries (``speaker_fallback``), so a file's prediction never depends on the other
  files of the call. A checkpoint from before that falls back on the file's own statistics
  (``own-file``). One warning line says what the model expects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ser_cl.data.frontends.audio import AUDIO_SUFFIXES, AudioError, load_audio
from ser_cl.data.stores.feature_cache import store_dtype
from ser_cl.data.frontends.features import SAMPLE_RATE, WIN_LENGTH, compute_features
from ser_cl.data.stores.normalize import band_stats
from ser_cl.data.stores.prepare import DEFAULT_MIN_DURATION
from ser_cl.train.checkpoint import load_model
from ser_cl.train.build import resolve_device
from ser_cl.train.fingerprint import fold_is_complete


# The shortest recording predict accepts, for every front-end: the one `ser-cl prepare` keeps by
# default (its --min-duration), so no model is asked about a clip shorter than any it trained on.
MIN_SECONDS = DEFAULT_MIN_DURATION
MIN_SAMPLES = max(WIN_LENGTH, int(round(MIN_SECONDS * SAMPLE_RATE)))
NORM_MODEL = "model"  # the model normalises by itself (input_norm none | utterance | global)
NORM_ENROL, NORM_SAME, NORM_FALLBACK, NORM_OWN = "enrol", "same-speaker", "training-speakers", "own-file"
FALLBACK_WARNING = ("warning: this model standardises each recording with its speaker's statistics; none were "
                    "given, so a typical training speaker's are used: pass --enrol with other recordings of the "
                    "speaker, or --same-speaker when the files are one speaker's")


def model_input(wave_16k: np.ndarray, ckpt: Dict[str, Any], device=None) -> np.ndarray:
    """The features the model reads, [T, n_freq] float32, for a mono 16 kHz waveform.

    The one place predict computes features: the front-end the model was trained on, as its
    checkpoint records it (``features``: the store's prepare.json params; older checkpoints
    without it were trained on the thesis' spectrogram, compute_features' default). An ssl
    upstream runs on ``device`` (predict's --device), and its features are rounded to the
    store's dtype as prepare stores them, so a file gets the values its store row holds.
    """
    params = ckpt.get("features")
    feats = compute_features(wave_16k, params, device)
    if params and params.get("name") == "ssl":
        feats = feats.astype(store_dtype(params)).astype(np.float32)
    return feats


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


GLOB_CHARS = "*?["


def enrolment_files(paths: Sequence[str | Path]) -> List[Path]:
    """The audio files named by ``--enrol``: files as given, folders searched recursively for
    audio (``AUDIO_SUFFIXES``), and quoted glob patterns (``'dir/*-01.wav'``; ``**`` spans
    folders) expanded to the audio files they match, in sorted order. Raises
    ``FileNotFoundError`` naming a path that is none of these, or a pattern that matches none."""
    import glob

    files: List[Path] = []
    for p in map(Path, paths):
        if not p.exists() and any(c in str(p) for c in GLOB_CHARS):
            found = sorted(Path(f) for f in glob.glob(str(p.expanduser()), recursive=True)
                           if Path(f).is_file() and Path(f).suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"--enrol '{p}': no audio file matches this pattern")
            files.extend(found)
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"--enrol {p}: no audio file in this folder ({', '.join(AUDIO_SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"--enrol {p}: no such file or folder")
    return files


def split_glob_warning(enrol: Optional[Sequence[str | Path]], audio: Sequence[str | Path]) -> Optional[str]:
    """A warning when ``--enrol`` got one file while AUDIO holds several files from that file's
    folder: what an unquoted shell glob (``--enrol dir/*-01.wav``) gives, its first match enrolled
    and the rest predicted as AUDIO. None otherwise."""
    if not enrol or len(enrol) != 1 or not Path(enrol[0]).is_file():
        return None
    folder = Path(enrol[0]).resolve().parent
    beside = [a for a in audio if Path(a).resolve().parent == folder]
    if len(beside) < 2:
        return None
    return (f"warning: --enrol got one file ({enrol[0]}) while AUDIO holds {len(beside)} files from its folder "
            f"{Path(enrol[0]).parent}: an unquoted glob (--enrol {Path(enrol[0]).parent}/*.wav) gives --enrol only "
            f"its first match and the rest become AUDIO; quote it (--enrol '{Path(enrol[0]).parent}/*.wav') "
            "if that was meant")


def _read_features(path: Path, ckpt: Dict[str, Any], device=None) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """(features, None) or (None, the reason the file cannot be used)."""
    try:
        wave = load_audio(path, SAMPLE_RATE)
    except (AudioError, OSError) as err:
        return None, f"cannot read {path}: {err}"
    if wave.size < MIN_SAMPLES:  # before any front-end: the same limit for all (prepare's)
        return None, (f"too short: {wave.size / SAMPLE_RATE:.3f} s, needs at least {MIN_SECONDS:g} s "
                      "(the shortest clip `ser-cl prepare` keeps)")
    feats = model_input(wave, ckpt, device)
    if feats.shape[0] == 0:  # nothing for the model to see
        return None, f"too short: {wave.size / SAMPLE_RATE:.3f} s gives no feature frame"
    return feats, None


Normaliser = Callable[[np.ndarray], np.ndarray]


def _speaker_normaliser(inputs: Dict[int, np.ndarray], ckpt: Dict[str, Any], enrol: Optional[List[np.ndarray]],
                        same_speaker: bool) -> Tuple[str, Normaliser]:
    """How one speaker-normalised model standardises the call's files: (label, function)."""
    if enrol is not None:
        mean, std = band_stats(enrol, range(len(enrol)))
        return f"{NORM_ENROL} ({len(enrol)} files)", lambda f: (f - mean) / std
    if same_speaker:
        keys = list(inputs)
        mean, std = band_stats([inputs[k] for k in keys], range(len(keys)))
        return f"{NORM_SAME} ({len(keys)} files)", lambda f: (f - mean) / std
    fallback = ckpt.get("speaker_fallback")
    if fallback is not None:
        mean, std = np.asarray(fallback["mean"], np.float32), np.asarray(fallback["std"], np.float32)
        return NORM_FALLBACK, lambda f: (f - mean) / std
    return NORM_OWN, lambda f: (f - f.mean(axis=0)) / np.maximum(f.std(axis=0), 1e-5)


@torch.no_grad()
def predict_files(model_path: str | Path, audio_paths: Sequence[str | Path], device_spec: str = "auto",
                  enrol: Optional[Sequence[str | Path]] = None, same_speaker: bool = False,
                  warn: Callable[[str], None] = lambda line: None) -> List[Dict[str, Any]]:
    """One result per audio file: {"path", "emotion", "probabilities", "normalisation"} or
    {"path", "error"}. ``enrol`` / ``same_speaker``: where a speaker-normalised model's
    statistics come from (module doc); ``warn`` receives the one warning line, if any."""
    if enrol is not None and same_speaker:
        raise ValueError("give --enrol (the speaker's other recordings) or --same-speaker (the files are one "
                         "speaker's), not both")
    split = split_glob_warning(enrol, audio_paths)
    if split is not None:
        warn(split)
    device = resolve_device(device_spec)
    models = []
    classes = None
    for ckpt_path in find_checkpoints(model_path):
        model, ckpt = load_model(ckpt_path, device)
        if not ckpt.get("has_head", True):
            raise ValueError(f"{ckpt_path}: trained without a classifier head (a pretrain stage); "
                             "fine-tune it first (`ser-cl finetune EXP.toml --from RUN_DIR`) or use `ser-cl probe`")
        if model.cfg.input_norm == "pooled_speaker":
            raise ValueError(f"{ckpt_path}: trained on pooled, speaker-standardised vectors (model.input_norm = "
                             "\"pooled_speaker\", --preset cpu-upstream), which predict does not compute yet; "
                             "its folds were scored on the prepared store by `ser-cl run`")
        if classes is not None and list(ckpt["classes"]) != classes:
            raise ValueError(f"{ckpt_path}: its classes differ from the other folds'")
        classes = list(ckpt["classes"])
        models.append((model, ckpt))
    results: List[Dict[str, Any]] = []
    inputs: Dict[int, np.ndarray] = {}  # result index -> features
    for audio in audio_paths:
        feats, error = _read_features(Path(audio), models[0][1], device)
        if error is not None:
            results.append({"path": str(audio), "error": error})
            continue
        inputs[len(results)] = feats
        results.append({"path": str(audio)})
    enrol_files = enrolment_files(enrol) if enrol is not None else None
    if not inputs:
        return results
    per_model: List[Tuple[torch.nn.Module, str, Normaliser]] = []
    for model, ckpt in models:
        if model.cfg.input_norm != "speaker":
            per_model.append((model, NORM_MODEL, lambda f: f))
            continue
        enrol_feats = None
        if enrol_files is not None:
            enrol_feats = []
            for path in enrol_files:
                feats, error = _read_features(path, ckpt, device)
                if error is not None:
                    raise ValueError(f"--enrol: {error}")
                enrol_feats.append(feats)
        per_model.append((model, *_speaker_normaliser(inputs, ckpt, enrol_feats, same_speaker)))
    labels = sorted({label for _, label, _ in per_model})
    if NORM_FALLBACK in labels or NORM_OWN in labels:
        warn(FALLBACK_WARNING)
    for k, feats in inputs.items():
        probs = []
        for model, _, normalise in per_model:
            x = torch.from_numpy(np.ascontiguousarray(normalise(feats), dtype=np.float32))[None].to(device)
            probs.append(torch.softmax(model(x, torch.tensor([x.shape[1]])).float(), dim=1)[0])
        mean_probs = torch.stack(probs).mean(0).cpu()
        results[k].update({"emotion": classes[int(mean_probs.argmax())],
                           "probabilities": {c: round(float(p), 4) for c, p in zip(classes, mean_probs)},
                           "normalisation": labels[0] if len(labels) == 1 else labels})
    return results


def result_lines(results: Sequence[Dict[str, Any]], as_json: bool = False) -> List[Tuple[str, str]]:
    """What ``ser-cl predict`` prints, in order, as (stream, line): ``"out"`` lines (the JSON of
    every result, or one ``path<TAB>emotion<TAB>class=p ...<TAB>normalisation: LABEL`` line per file) and ``"error"`` lines
    (``error: path: reason``, one per unreadable file, for stderr)."""
    lines: List[Tuple[str, str]] = []
    if as_json:
        lines.append(("out", json.dumps(results, indent=2)))
    for r in results:
        if "error" in r:
            lines.append(("error", f"error: {r['path']}: {r['error']}"))
        elif not as_json:
            probs = " ".join(f"{c}={p:.3f}" for c, p in r["probabilities"].items())
            norm = r["normalisation"] if isinstance(r["normalisation"], str) else ", ".join(r["normalisation"])
            lines.append(("out", f"{r['path']}\t{r['emotion']}\t{probs}\tnormalisation: {norm}"))
    return lines
