"""A small synthetic corpus in the IEMOCAP layout, for smoke tests, CI and demos.

``synthesize_corpus(out_dir)`` writes 5 sessions x 2 speakers (F, M). Each speaker gets
``per_speaker`` utterances of each of the 4 training classes (neutral, happy, sad, angry;
"happy" is written half as ``hap`` and half as ``exc`` so that merging is exercised) plus
``n_dropped`` utterances labelled ``fru`` / ``xxx`` that the default classes drop.

The audio is a crude source-filter voice: an impulse train at a fundamental frequency f0,
spectrally tilted by a one-pole low-pass, shaped by three vowel formants per syllable, with
syllable envelopes, breath noise and background noise. The classes differ in f0 level and
movement, loudness, speaking rate, brightness and breathiness (neutral: mid, flat; happy:
high, lively, bright; sad: low, slow, quiet, dark, breathy; angry: loud, fast, very bright,
rough), while per-speaker and per-utterance random variation overlaps them, so a small
model can learn the task but not trivially. Everything is deterministic given ``seed``.

Label files follow the real format, annotator lines and all; EmoEvaluation/ also has the
sub-folders Attribute/, Categorical/ and Self-evaluation/ with non-label files, and one label
file contains latin-1 bytes, as the real corpus does.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_cl.data.frontends.audio import write_wav

SAMPLE_RATE = 16000
TARGET_LABELS = ("neu", "hap", "sad", "ang")  # per-class counts; "hap" alternates with "exc"
DROPPED_LABELS = ("fru", "xxx")


@dataclass(frozen=True)
class _Style:
    f0: float  # multiple of the speaker's base f0
    slope: float  # relative f0 change over the utterance
    wobble: float  # depth of the slow f0 movement
    rate: float  # syllables per second
    gain_db: float  # loudness
    lowpass: float  # one-pole coefficient: larger = darker
    breath: float  # breath noise relative to voicing
    jitter: float  # cycle-to-cycle f0 irregularity


STYLES = {
    "neu": _Style(1.00, -0.05, 0.04, 3.5, -20.0, 0.85, 0.05, 0.005),
    "hap": _Style(1.30, 0.10, 0.16, 4.8, -15.0, 0.70, 0.05, 0.008),
    "exc": _Style(1.38, 0.12, 0.18, 5.3, -13.0, 0.65, 0.06, 0.010),
    "sad": _Style(0.86, -0.15, 0.03, 2.6, -26.0, 0.93, 0.22, 0.006),
    "ang": _Style(1.18, -0.02, 0.10, 5.6, -11.0, 0.45, 0.10, 0.030),
    "fru": _Style(1.08, -0.04, 0.08, 4.4, -15.0, 0.65, 0.10, 0.020),
    "xxx": _Style(1.05, 0.00, 0.08, 4.0, -17.0, 0.72, 0.10, 0.012),
}
VAD = {  # valence, activation, dominance as in the label lines
    "neu": (2.5, 2.5, 2.5), "hap": (4.0, 3.0, 3.0), "exc": (4.0, 3.5, 3.5), "sad": (2.0, 2.0, 2.0),
    "ang": (1.5, 4.0, 4.0), "fru": (2.0, 3.5, 3.0), "xxx": (2.5, 3.0, 3.0),
}
ANNOTATOR_WORDS = {
    "neu": ["Neutral"], "hap": ["Happiness"], "exc": ["Excited", "Happiness"], "sad": ["Sadness"],
    "ang": ["Anger"], "fru": ["Frustration"], "xxx": ["Neutral", "Anger", "Frustration"],
}
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))
_BANDWIDTHS = (90.0, 110.0, 160.0)


def _resonate(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    theta = 2 * np.pi * freq / SAMPLE_RATE
    return lfilter([1.0 - r], [1.0, -2.0 * r * np.cos(theta), r * r], x)


def synth_utterance(label: str, speaker_f0: float, formant_scale: float, rng: np.random.Generator,
                    duration: float) -> np.ndarray:
    """One utterance of ``duration`` seconds in the style of ``label`` -> float waveform in [-1, 1]."""
    from scipy.signal import lfilter

    style = STYLES[label]
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    u = t / duration
    # fundamental: class level x utterance jitter, a trend, a slow wobble and cycle jitter
    f0_level = speaker_f0 * style.f0 * rng.uniform(0.85, 1.15)
    wobble_hz = rng.uniform(1.5, 3.5)
    f0 = f0_level * (1 + style.slope * (u - 0.5) + style.wobble * np.sin(2 * np.pi * wobble_hz * t + rng.uniform(0, 6.3)))
    f0 *= 1 + style.jitter * rng.standard_normal(n // 80 + 1).repeat(80)[:n]
    phase = np.cumsum(f0) / SAMPLE_RATE
    source = np.zeros(n)
    source[1:][np.diff(np.floor(phase)) > 0] = 1.0
    tilt = float(np.clip(style.lowpass + rng.uniform(-0.08, 0.08), 0.1, 0.98))
    source = lfilter([1.0], [1.0, -tilt], source)
    source -= source.mean()

    # syllables: each gets a vowel (formants scaled per speaker) and a smooth envelope
    rate = style.rate * rng.uniform(0.8, 1.2)
    lead, trail = rng.uniform(0.04, 0.12, size=2)
    start, stop = int(lead * SAMPLE_RATE), n - int(trail * SAMPLE_RATE)
    voiced = np.zeros(n)
    envelope = np.zeros(n)
    pos = start
    while pos < stop - 400:
        length = min(int(SAMPLE_RATE / rate * rng.uniform(0.75, 1.25)), stop - pos)
        seg = source[pos : pos + length]
        vowel = VOWELS[rng.integers(len(VOWELS))]
        shaped = seg
        for formant, bandwidth in zip(vowel, _BANDWIDTHS):
            shaped = _resonate(shaped, formant * formant_scale, bandwidth)
        env = np.sin(np.pi * np.arange(length) / length) ** 1.5
        voiced[pos : pos + length] = shaped * env
        envelope[pos : pos + length] = env
        pos += length
    voiced /= np.sqrt(np.mean(voiced[start:stop] ** 2)) + 1e-12
    breath = style.breath * rng.uniform(0.5, 1.5) * rng.standard_normal(n) * envelope * 3.0
    gain = 10 ** ((style.gain_db + rng.uniform(-5, 5)) / 20)
    background = 10 ** (rng.uniform(-55, -40) / 20) * rng.standard_normal(n)
    return np.clip(gain * (voiced + breath) + background, -1.0, 1.0)


def _label_block(utt: str, label: str, start: float, end: float, rng: np.random.Generator, latin1: bool) -> str:
    v, a, d = VAD[label]
    lines = [f"[{start:.4f} - {end:.4f}]\t{utt}\t{label}\t[{v:.4f}, {a:.4f}, {d:.4f}]"]
    words = ANNOTATOR_WORDS[label]
    for k, annotator in enumerate(("C-E1", "C-E2", "C-E4", "C-F1")[: rng.integers(3, 5)]):
        note = "(caf\xe9 voice)" if latin1 and k == 0 else "()"
        lines.append(f"{annotator}:\t{words[k % len(words)]};\t{note}")
    for annotator in ("A-E1", "A-E2"):
        lines.append(f"{annotator}:\tval {int(v)}; act {int(a)}; dom  {int(d)};\t()")
    return "\n".join(lines) + "\n"


def synthesize_corpus(out_dir: str | os.PathLike, per_speaker: int = 12, seed: int = 0, n_sessions: int = 5,
                      duration: tuple[float, float] = (1.0, 1.6), n_dropped: int = 2) -> dict:
    """Write the synthetic corpus under ``out_dir`` (IEMOCAP layout); returns a summary dict.

    ``per_speaker``: utterances per speaker per class (neutral, happy = hap/exc alternating, sad,
    angry); ``n_dropped``: extra fru/xxx utterances per speaker; ``duration``: (min, max) seconds.
    """
    if per_speaker < 1:
        raise ValueError("per_speaker must be >= 1")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    counts: Counter = Counter()
    total_seconds = 0.0
    for s in range(1, n_sessions + 1):
        session_dir = out / f"Session{s}"
        label_dir = session_dir / "dialog" / "EmoEvaluation"
        for sub in ("Attribute", "Categorical", "Self-evaluation"):
            (label_dir / sub).mkdir(parents=True, exist_ok=True)
        speakers = {}
        for letter in ("F", "M"):
            base = rng.normal(210, 15) if letter == "F" else rng.normal(115, 10)
            speakers[letter] = (base, (1.15 if letter == "F" else 1.0) * rng.uniform(0.95, 1.05))
        # every speaker's list of labels, shuffled, then spread over two dialogs
        todo = []
        for letter in ("F", "M"):
            labels = []
            for label in TARGET_LABELS:
                for i in range(per_speaker):
                    labels.append("exc" if label == "hap" and i % 2 else label)
            labels += [DROPPED_LABELS[i % 2] for i in range(n_dropped)]
            rng.shuffle(labels)
            todo += [(letter, label) for label in labels]
        order = rng.permutation(len(todo))
        dialogs = {f"Ses{s:02d}F_impro01": [], f"Ses{s:02d}M_script01_1": []}
        names = list(dialogs)
        for k, j in enumerate(order):
            dialogs[names[k % 2]].append(todo[j])
        for d_index, (dialog, items) in enumerate(dialogs.items()):
            wav_dir = session_dir / "sentences" / "wav" / dialog
            wav_dir.mkdir(parents=True, exist_ok=True)
            numbers = Counter()
            blocks, attributes, categorical = [], [], []
            clock = rng.uniform(1, 5)
            for letter, label in items:
                utt = f"{dialog}_{letter}{numbers[letter]:03d}"
                numbers[letter] += 1
                length = float(rng.uniform(*duration))
                base_f0, formant_scale = speakers[letter]
                write_wav(wav_dir / f"{utt}.wav", synth_utterance(label, base_f0, formant_scale, rng, length))
                latin1 = s == 1 and d_index == 0 and not blocks
                blocks.append(_label_block(utt, label, clock, clock + length, rng, latin1))
                attributes.append(f"{utt} :act {int(VAD[label][1])}; :val {int(VAD[label][0])}; :dom {int(VAD[label][2])}; ()")
                categorical.append(f"{utt} :{ANNOTATOR_WORDS[label][0]}; ()")
                clock += length + rng.uniform(0.3, 2.0)
                counts[label] += 1
                total_seconds += length
            header = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
            text = header + "\n".join(blocks)
            (label_dir / f"{dialog}.txt").write_bytes(text.encode("latin-1"))
            (label_dir / "Attribute" / f"{dialog}_atr.txt").write_text("\n".join(attributes) + "\n")
            (label_dir / "Categorical" / f"{dialog}_e2_cat.txt").write_text("\n".join(categorical) + "\n")
            (label_dir / "Self-evaluation" / f"{dialog}.anvil").write_text(
                f'<?xml version="1.0" encoding="ISO-8859-1"?>\n<annotation><head><specification src="{dialog}"/></head></annotation>\n'
            )
    return {
        "out_dir": str(out), "sessions": n_sessions, "speakers": 2 * n_sessions,
        "utterances": sum(counts.values()), "labels": dict(sorted(counts.items())),
        "audio_seconds": round(total_seconds, 2), "seed": seed, "per_speaker": per_speaker,
    }
