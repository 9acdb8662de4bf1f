"""Corpus readers: turn a corpus folder (or a CSV manifest) into a list of labelled utterances.

Each reader returns a ``CorpusListing``: the utterances it found (with the corpus' own
label, speaker, session and gender) plus the files it had to leave out and why. Labels are
mapped to training classes afterwards by a ``ClassMap`` (``parse_classes``), so readers never
drop an utterance for its label.

Supported layouts (``CORPORA``; ``detect_corpus`` picks one from the folder):

- iemocap  ``SessionN/sentences/wav/<dialog>/<utt>.wav`` + ``SessionN/dialog/EmoEvaluation/<dialog>.txt``
- emodb    ``03a01Fa.wav`` (speaker 03, text a01, emotion F, version a), any folder depth
- ravdess  ``Actor_NN/03-01-EE-II-SS-RR-AA.wav`` (audio-only speech files only)
- cremad   ``1001_DFA_ANG_XX.wav`` (+ optional ``VideoDemographics.csv`` for gender)
- tess     ``OAF_angry/OAF_back_angry.wav`` (speakers OAF, YAF)
- emovo    ``f1/dis-f1-b1.wav`` (emotion dis, speaker f1, sentence b1; speakers f1-f3, m1-m3)
- csv      a manifest ``path,label,speaker[,session,gender,utt_id]`` with a header row
- unlabeled  any folder tree of audio files (.wav, .flac, .ogg, .aiff ...), no labels
           (never detected: ``--corpus unlabeled``);
           the speaker from a folder level or a ``path,speaker`` CSV, else unknown
- pattern  any layout described by ``--pattern "{speaker}/{label}-{speaker}-{*}.wav"``
           (``ser_cl.data.pattern_reader``; never detected: implied by ``--pattern``)
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from ser_cl.data.audio import AUDIO_SUFFIXES


class CorpusError(ValueError):
    """A corpus that cannot be read as asked; ``str(err)`` is a one-line explanation."""


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. ``label`` is the corpus' own label, before class mapping."""

    utt_id: str
    path: str  # absolute
    label: str
    speaker: str
    session: str = ""
    gender: str = ""  # "F", "M" or "" (unknown)


@dataclass
class CorpusListing:
    """What a reader found: utterances sorted by ``utt_id``, and {"path", "reason"} for files left out."""

    corpus: str
    root: Path
    utterances: list[Utterance]
    skipped: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# helpers


def _wav_files(root: Path) -> Iterator[Path]:
    """Every audio file (``AUDIO_SUFFIXES``: .wav, .flac, .ogg, .aiff ..., case-insensitive) under ``root``,
    skipping hidden and AppleDouble ``._`` files."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(AUDIO_SUFFIXES) and not name.startswith("."):
                yield Path(dirpath) / name


def _abs(path: Path) -> str:
    return str(path.resolve())


def _read_text(path: Path) -> str:
    """Text of a label file: UTF-8 when it decodes, else latin-1 (IEMOCAP has a few latin-1 bytes)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _normalise_gender(value: str) -> str:
    v = value.strip().lower()
    if v in ("f", "female", "w", "woman"):
        return "F"
    if v in ("m", "male", "man"):
        return "M"
    return ""


def _finish(corpus: str, root: Path, utterances: list[Utterance], skipped: list[dict]) -> CorpusListing:
    """Sort, check that utterance ids are unique, and package a listing."""
    utterances = sorted(utterances, key=lambda u: u.utt_id)
    counts = Counter(u.utt_id for u in utterances)
    dupes = [k for k, n in counts.items() if n > 1]
    if dupes:
        raise CorpusError(f"{corpus}: utterance id {dupes[0]!r} occurs {counts[dupes[0]]} times in {root}")
    return CorpusListing(corpus, root, utterances, sorted(skipped, key=lambda s: s["path"]))


# --------------------------------------------------------------------------------------------
# IEMOCAP

_IEMOCAP_SESSION = re.compile(r"Session(\d+)")
# [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
_IEMOCAP_LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[[^\]]*\]")


def parse_iemocap_labels(text: str) -> list[tuple[str, str]]:
    """(utterance name, label) for each label line of an EmoEvaluation file.

    Only lines of the form ``[start - end] <utt> <label> [v, a, d]`` count; annotator lines
    (``C-E2:``, ``A-E3:`` ...), the ``%`` header and blank lines are ignored.
    """
    out = []
    for line in text.splitlines():
        m = _IEMOCAP_LABEL_LINE.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def iemocap_speaker(utt_name: str, session: str) -> tuple[str, str]:
    """(speaker, gender) of an IEMOCAP utterance: session + the letter of its last name part.

    ``Ses01F_impro01_M013`` -> ("Ses01M", "M"): the ``F`` in the dialog name only says who
    wore the motion-capture markers. Raises CorpusError when the last part has no F/M letter.
    """
    last = utt_name.rsplit("_", 1)[-1]
    letter = last[:1].upper()
    if letter not in ("F", "M"):
        raise CorpusError(f"cannot tell the speaker of {utt_name!r} (its last part should start with F or M)")
    return f"{session}{letter}", letter


def read_iemocap(root: str | os.PathLike) -> CorpusListing:
    """Read an IEMOCAP release folder (the one holding Session1 .. Session5)."""
    root = Path(root)
    sessions = sorted(
        (int(m.group(1)), p)
        for p in root.iterdir()
        if p.is_dir() and (m := _IEMOCAP_SESSION.fullmatch(p.name))
    )
    if not sessions:
        raise CorpusError(f"iemocap: no Session1..Session5 folders in {root}")
    utterances: list[Utterance] = []
    skipped: list[dict] = []
    seen: set[str] = set()
    for number, session_dir in sessions:
        session = f"Ses{number:02d}"
        label_dir = session_dir / "dialog" / "EmoEvaluation"
        wav_root = session_dir / "sentences" / "wav"
        if not label_dir.is_dir():
            skipped.append({"path": str(label_dir), "reason": "missing label folder dialog/EmoEvaluation"})
            continue
        # only the .txt files directly in EmoEvaluation/; its sub-folders hold other formats
        for label_file in sorted(label_dir.glob("*.txt")):
            if label_file.name.startswith(".") or not label_file.is_file():
                continue
            dialog = label_file.stem
            for utt_name, label in parse_iemocap_labels(_read_text(label_file)):
                if utt_name in seen:
                    continue
                wav = wav_root / dialog / f"{utt_name}.wav"
                if not wav.is_file():
                    alt = wav_root / utt_name.rsplit("_", 1)[0] / f"{utt_name}.wav"
                    if not alt.is_file():
                        skipped.append({"path": str(wav), "reason": f"missing audio file (labelled in {label_file.name})"})
                        continue
                    wav = alt
                try:
                    speaker, gender = iemocap_speaker(utt_name, session)
                except CorpusError as err:
                    skipped.append({"path": str(wav), "reason": str(err)})
                    continue
                seen.add(utt_name)
                utterances.append(Utterance(utt_name, _abs(wav), label, speaker, session, gender))
    return _finish("iemocap", root, utterances, skipped)


# --------------------------------------------------------------------------------------------
# EmoDB

# the audio file name suffixes the name patterns accept (those in AUDIO_SUFFIXES)
_AUDIO_EXT = r"\.(?:" + "|".join(re.escape(s[1:]) for s in AUDIO_SUFFIXES) + ")"
_EMODB_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])" + _AUDIO_EXT + "$")
EMODB_EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
EMODB_GENDERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F", "14": "F", "15": "M", "16": "F"}


def read_emodb(root: str | os.PathLike) -> CorpusListing:
    """Read EmoDB: ``03a01Fa.wav`` = speaker 03, text a01, emotion F (happy), version a. No sessions."""
    root = Path(root)
    utterances, skipped = [], []
    for wav in _wav_files(root):
        m = _EMODB_NAME.match(wav.name)
        if not m:
            skipped.append({"path": str(wav), "reason": "file name does not follow the EmoDB pattern (e.g. 03a01Fa.wav)"})
            continue
        speaker, _text, emotion, _version = m.groups()
        utterances.append(
            Utterance(wav.stem, _abs(wav), EMODB_EMOTIONS[emotion], speaker, "", EMODB_GENDERS.get(speaker, ""))
        )
    return _finish("emodb", root, utterances, skipped)


# --------------------------------------------------------------------------------------------
# RAVDESS

_RAVDESS_ACTOR = re.compile(r"Actor_(\d+)")
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)" + _AUDIO_EXT + "$")
RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}


def read_ravdess(root: str | os.PathLike) -> CorpusListing:
    """Read RAVDESS: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.wav``; keeps modality 03 (audio) + vocal channel 01 (speech).

    Speaker ``Actor_AA``; odd actors are male, even female. No sessions.
    """
    root = Path(root)
    utterances, skipped = [], []
    for wav in _wav_files(root):
        m = _RAVDESS_NAME.match(wav.name)
        if not m:
            skipped.append({"path": str(wav), "reason": "file name does not follow the RAVDESS pattern (e.g. 03-01-05-01-02-01-12.wav)"})
            continue
        modality, channel, emotion, _intensity, _statement, _rep, actor = m.groups()
        if modality != "03":
            skipped.append({"path": str(wav), "reason": f"modality {modality} is not audio-only (03)"})
            continue
        if channel != "01":
            skipped.append({"path": str(wav), "reason": f"vocal channel {channel} is not speech (01)"})
            continue
        label = RAVDESS_EMOTIONS.get(emotion, f"emotion{emotion}")
        gender = "M" if int(actor) % 2 == 1 else "F"
        utterances.append(Utterance(wav.stem, _abs(wav), label, f"Actor_{actor}", "", gender))
    return _finish("ravdess", root, utterances, skipped)


# --------------------------------------------------------------------------------------------
# CREMA-D

_CREMAD_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})" + _AUDIO_EXT + "$")
CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}


def _cremad_genders(root: Path) -> dict[str, str]:
    """ActorID -> F/M from a VideoDemographics.csv in ``root`` or its parent (absent -> {})."""
    for folder in (root, root.parent):
        demo = folder / "VideoDemographics.csv"
        if demo.is_file():
            with open(demo, newline="", encoding="utf-8-sig", errors="replace") as f:
                return {
                    (row.get("ActorID") or "").strip(): _normalise_gender(row.get("Sex") or "")
                    for row in csv.DictReader(f)
                }
    return {}


def read_cremad(root: str | os.PathLike) -> CorpusListing:
    """Read CREMA-D: ``1001_DFA_ANG_XX.wav`` = speaker 1001, sentence DFA, emotion ANG, intensity XX."""
    root = Path(root)
    genders = _cremad_genders(root)
    utterances, skipped = [], []
    for wav in _wav_files(root):
        m = _CREMAD_NAME.match(wav.name)
        if not m:
            skipped.append({"path": str(wav), "reason": "file name does not follow the CREMA-D pattern (e.g. 1001_DFA_ANG_XX.wav)"})
            continue
        speaker, _sentence, emotion, _intensity = m.groups()
        label = CREMAD_EMOTIONS.get(emotion, emotion.lower())
        utterances.append(Utterance(wav.stem, _abs(wav), label, speaker, "", genders.get(speaker, "")))
    return _finish("cremad", root, utterances, skipped)


# --------------------------------------------------------------------------------------------
# TESS

_TESS_NAME = re.compile(r"^(OAF|YAF)_(.+)_([A-Za-z]+)" + _AUDIO_EXT + "$", re.IGNORECASE)
_TESS_FOLDER = re.compile(r"^(OAF|YAF)_", re.IGNORECASE)
TESS_GENDERS = {"OAF": "F", "YAF": "F"}


def read_tess(root: str | os.PathLike) -> CorpusListing:
    """Read TESS: ``OAF_angry/OAF_back_angry.wav`` = speaker OAF, word "back", label angry.

    The label is the last part of the file name, lower-cased (angry, disgust, fear, happy,
    neutral, ps = pleasant surprise, sad); both speakers are female. No sessions.
    """
    root = Path(root)
    utterances, skipped = [], []
    for wav in _wav_files(root):
        m = _TESS_NAME.match(wav.name)
        if not m:
            skipped.append({"path": str(wav), "reason": "file name does not follow the TESS pattern (e.g. OAF_back_angry.wav)"})
            continue
        speaker = m.group(1).upper()
        utterances.append(Utterance(wav.stem, _abs(wav), m.group(3).lower(), speaker, "", TESS_GENDERS.get(speaker, "")))
    return _finish("tess", root, utterances, skipped)


# --------------------------------------------------------------------------------------------
# EMOVO

# dis-f1-b1.wav = emotion dis, speaker f1, sentence b1 (b1-b3, d1-d2, l1-l4, n1-n5)
_EMOVO_NAME = re.compile(r"^([a-z]{3})-([fm]\d+)-([a-z]\d+)" + _AUDIO_EXT + "$", re.IGNORECASE)
_EMOVO_SPEAKER = re.compile(r"^[fm]\d+$", re.IGNORECASE)
EMOVO_EMOTIONS = {
    "dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fear",
    "rab": "angry", "sor": "surprise", "tri": "sad",
}


def _is_emovo_file(wav: Path) -> bool:
    """Detection: an EMOVO name with one of the 7 emotion codes, in its speaker's folder."""
    m = _EMOVO_NAME.match(wav.name)
    return bool(m) and m.group(1).lower() in EMOVO_EMOTIONS and m.group(2).lower() == wav.parent.name.lower()


def read_emovo(root: str | os.PathLike) -> CorpusListing:
    """Read EMOVO: ``f1/dis-f1-b1.wav`` = emotion dis (disgust), speaker f1, sentence b1. No sessions.

    Labels are the English names (gio -> happy, pau -> fear, rab -> angry, sor -> surprise,
    tri -> sad); an unknown code is kept as the label itself, lower-cased. Gender is the
    speaker's first letter. A file whose name names another speaker than its speaker folder
    (``m2/dis-f1-b1.wav``) is listed as skipped.
    """
    root = Path(root)
    utterances, skipped = [], []
    for wav in _wav_files(root):
        m = _EMOVO_NAME.match(wav.name)
        if not m:
            skipped.append({"path": str(wav), "reason": "file name does not follow the EMOVO pattern (e.g. dis-f1-b1.wav)"})
            continue
        emotion, speaker, _sentence = (g.lower() for g in m.groups())
        folder = wav.parent.name.lower()
        if _EMOVO_SPEAKER.match(folder) and folder != speaker:
            skipped.append({"path": str(wav), "reason": f"speaker {speaker} in the file name but in the folder of speaker {folder}"})
            continue
        label = EMOVO_EMOTIONS.get(emotion, emotion)
        utterances.append(Utterance(wav.stem, _abs(wav), label, speaker, "", speaker[0].upper()))
    return _finish("emovo", root, utterances, skipped)


# --------------------------------------------------------------------------------------------
# CSV manifest

CSV_REQUIRED = ("path", "label", "speaker")


def read_csv_manifest(csv_path: str | os.PathLike) -> CorpusListing:
    """Read a manifest with a header row: ``path,label,speaker`` and optionally ``session,gender,utt_id``.

    Relative paths are relative to the CSV's folder. ``utt_id`` defaults to the file name
    without extension, or, when names repeat, the path relative to the folder all files share
    (``/`` -> ``_``). Gender accepts
    F/M/female/male (anything else -> unknown).
    """
    csv_path = Path(csv_path)
    base = csv_path.resolve().parent
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in CSV_REQUIRED if c not in header]
        if missing:
            raise CorpusError(
                f"csv: {csv_path} lacks column(s) {', '.join(missing)}; the header row must name path,label,speaker[,session,gender]"
            )
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    skipped: list[dict] = []
    entries = []
    for line_no, row in enumerate(rows, start=2):
        if not row.get("path"):
            skipped.append({"path": f"{csv_path}:{line_no}", "reason": "empty path"})
            continue
        wav = Path(row["path"])
        wav = wav if wav.is_absolute() else base / wav
        if not row.get("label"):
            skipped.append({"path": str(wav), "reason": f"empty label (line {line_no})"})
            continue
        if not row.get("speaker"):
            skipped.append({"path": str(wav), "reason": f"empty speaker (line {line_no})"})
            continue
        if not wav.is_file():
            skipped.append({"path": str(wav), "reason": f"missing audio file (line {line_no})"})
            continue
        entries.append((row, wav))
    stems = Counter(wav.stem for _, wav in entries)
    common = os.path.commonpath([str(wav.resolve().parent) for _, wav in entries]) if entries else str(base)
    utterances = []
    for row, wav in entries:
        utt_id = row.get("utt_id") or ""
        if not utt_id:
            if stems[wav.stem] == 1:
                utt_id = wav.stem
            else:
                rel = os.path.relpath(wav.resolve(), common)
                utt_id = os.path.splitext(rel)[0].replace(os.sep, "_").replace("/", "_")
        utterances.append(
            Utterance(utt_id, _abs(wav), row["label"], row["speaker"], row.get("session", ""), _normalise_gender(row.get("gender", "")))
        )
    return _finish("csv", csv_path, utterances, skipped)


# --------------------------------------------------------------------------------------------
# unlabeled audio (self-supervised pretraining pools)


def read_unlabeled(root: str | os.PathLike, speaker_level: Optional[int] = None,
                   speakers_csv: Optional[str | os.PathLike] = None) -> CorpusListing:
    """Every audio file (.wav, .flac, .ogg, .aiff ...) under ``root``, without labels (label ""), for
    self-supervised pretraining.

    The speaker is optional: ``speaker_level`` = N takes the N-th folder below ``root`` (0 = the
    first), or ``speakers_csv`` (header ``path,speaker``; paths relative to ``root`` or absolute)
    names it per file; otherwise it is "" (unknown). Known speakers let a pool hold out whole
    speakers for validation. The utterance id is the path below ``root`` without its suffix.
    """
    root = Path(root)
    if speaker_level is not None and speakers_csv is not None:
        raise CorpusError("unlabeled: give --speaker-level or --speakers-csv, not both")
    by_path: dict[str, str] = {}
    if speakers_csv is not None:
        csv_path = Path(speakers_csv)
        if not csv_path.is_file():
            raise CorpusError(f"unlabeled: no such speakers CSV {csv_path}")
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not {"path", "speaker"} <= set(reader.fieldnames or ()):
                raise CorpusError(f"unlabeled: {csv_path} needs a header row naming path,speaker")
            for row in reader:
                p = Path(row["path"])
                by_path[_abs(p if p.is_absolute() else root / p)] = (row["speaker"] or "").strip()
    utterances, skipped = [], []
    for wav in _wav_files(root):
        rel = wav.relative_to(root)
        speaker = ""
        if speaker_level is not None:
            if speaker_level < 0 or speaker_level >= len(rel.parts) - 1:
                skipped.append({"path": str(wav), "reason": f"no folder at --speaker-level {speaker_level}"})
                continue
            speaker = rel.parts[speaker_level]
        elif by_path:
            speaker = by_path.get(_abs(wav), "")
        utterances.append(Utterance(rel.with_suffix("").as_posix(), _abs(wav), "", speaker, "", ""))
    if not utterances:
        raise CorpusError(f"unlabeled: no usable audio file ({', '.join(AUDIO_SUFFIXES)}) under {root}")
    return _finish("unlabeled", root, utterances, skipped)


# --------------------------------------------------------------------------------------------
# registry and detection


@dataclass(frozen=True)
class CorpusInfo:
    name: str
    reader: Callable[[Path], CorpusListing]
    default_classes: str  # a --classes spec
    layout: str  # one-line description for help and error messages
    options: tuple[str, ...] = ()  # reader keyword options (prepare options) only this corpus takes


def _read_pattern(root: Path, **options) -> CorpusListing:
    # imported here: pattern_reader builds on this module's helpers
    from ser_cl.data.pattern_reader import read_pattern

    return read_pattern(root, **options)


CORPORA: dict[str, CorpusInfo] = {
    "iemocap": CorpusInfo(
        "iemocap", read_iemocap, "neu=neutral,hap+exc=happy,sad=sad,ang=angry",
        "IEMOCAP (Session1..Session5/ with sentences/wav/ and dialog/EmoEvaluation/)",
    ),
    "emodb": CorpusInfo(
        "emodb", read_emodb, "neutral,happy,sad,angry,fear,disgust,boredom",
        "EmoDB (files like 03a01Fa.wav)",
    ),
    "ravdess": CorpusInfo(
        "ravdess", read_ravdess, "neutral,calm,happy,sad,angry,fearful,disgust,surprised",
        "RAVDESS (Actor_NN/03-01-EE-II-SS-RR-AA.wav)",
    ),
    "cremad": CorpusInfo(
        "cremad", read_cremad, "neutral,happy,sad,angry,fear,disgust",
        "CREMA-D (files like 1001_DFA_ANG_XX.wav)",
    ),
    "tess": CorpusInfo(
        "tess", read_tess, "neutral,happy,sad,angry,fear,disgust,ps",
        "TESS (OAF_angry/OAF_back_angry.wav)",
    ),
    "emovo": CorpusInfo(
        "emovo", read_emovo, "neutral,happy,sad,angry,fear,disgust,surprise",
        "EMOVO (f1/dis-f1-b1.wav)",
    ),
    "csv": CorpusInfo(
        "csv", read_csv_manifest, "all",
        "a CSV manifest file (header path,label,speaker[,session,gender])",
    ),
    "unlabeled": CorpusInfo(
        "unlabeled", read_unlabeled, "",
        "any folder tree of audio files (.wav, .flac, .ogg, .aiff), no labels (only with --corpus unlabeled; "
        "for self-supervised pretraining)",
        options=("speaker_level", "speakers_csv"),
    ),
    "pattern": CorpusInfo(
        "pattern", _read_pattern, "all",
        "any layout described by --pattern, e.g. '{speaker}/{label}-{speaker}-{*}.wav' (only with --pattern)",
        options=("pattern", "label_map"),
    ),
}
# corpora whose speaker ids name people only inside one prepared store (no shared identity)
GENERIC_CORPORA = ("csv", "unlabeled", "pattern")
CORPUS_NAMES = tuple(CORPORA)

_NAME_PATTERNS = (
    ("emodb", _EMODB_NAME),
    ("cremad", _CREMAD_NAME),
)


def _expected_layouts() -> str:
    return "; ".join(info.layout for info in CORPORA.values())


def detect_corpus(path: str | os.PathLike) -> str:
    """Name of the corpus layout at ``path`` (see module doc); CorpusError (one line) when unknown."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"no such file or folder: {path}")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise CorpusError(f"{path} is a file but not a .csv manifest; expected a corpus folder or a CSV manifest")
    children = [p for p in path.iterdir() if p.is_dir()]
    if any(_IEMOCAP_SESSION.fullmatch(p.name) for p in children):
        return "iemocap"
    if any(_RAVDESS_ACTOR.fullmatch(p.name) for p in children):
        return "ravdess"
    votes: Counter = Counter()
    n_wavs = 0
    for wav in _wav_files(path):
        n_wavs += 1
        for name, pattern in _NAME_PATTERNS:
            if pattern.match(wav.name):
                votes[name] += 1
        if _TESS_NAME.match(wav.name) and _TESS_FOLDER.match(wav.parent.name):
            votes["tess"] += 1
        if _is_emovo_file(wav):
            votes["emovo"] += 1
        if n_wavs >= 2000:  # enough evidence; keeps detection fast on big folders
            break
    if votes:
        name, count = votes.most_common(1)[0]
        if count * 2 >= n_wavs:
            return name
    found = f"{n_wavs} audio file(s) matching none of them" if n_wavs else "no audio files"
    raise CorpusError(f"cannot tell the corpus layout of {path} ({found}); expected one of: {_expected_layouts()}; or pass --corpus")


def read_corpus(path: str | os.PathLike, corpus: Optional[str] = None, **options) -> CorpusListing:
    """Read the corpus at ``path`` with the named reader, or the detected one when ``corpus`` is None.

    ``options`` go to the reader (``speaker_level`` / ``speakers_csv`` for ``unlabeled``,
    ``pattern`` / ``label_map`` for ``pattern``); a ``pattern`` implies ``corpus="pattern"``."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"no such file or folder: {path}")
    options = {k: v for k, v in options.items() if v is not None}
    if corpus is None and "pattern" in options:
        corpus = "pattern"  # the pattern layout is never detected: --pattern names it
    if corpus is None:
        corpus = detect_corpus(path)
    corpus = corpus.lower().replace("-", "").replace("_", "")
    if corpus not in CORPORA:
        raise CorpusError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPUS_NAMES)}")
    if corpus == "csv" and not path.is_file():
        raise CorpusError(f"csv: expected a .csv manifest file, got the folder {path}")
    if corpus != "csv" and not path.is_dir():
        raise CorpusError(f"{corpus}: expected a folder, got the file {path}")
    foreign = [k for k in options if k not in CORPORA[corpus].options]
    if foreign:
        owner = next((c.name for c in CORPORA.values() if foreign[0] in c.options), None)
        if owner is None:
            raise TypeError(f"read_corpus: unknown option {foreign[0]!r}")
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise CorpusError(f"{corpus}: {flags} only applies to --corpus {owner}")
    return CORPORA[corpus].reader(path, **options)


# --------------------------------------------------------------------------------------------
# class selection / mapping


@dataclass(frozen=True)
class ClassMap:
    """Which corpus labels become which training class, and the class order.

    ``classes`` is the ordered list of class names (the model's output order);
    ``mapping`` maps each kept corpus label to its class. Labels not in ``mapping`` are dropped.
    """

    classes: tuple[str, ...]
    mapping: dict[str, str]
    spec: str

    def class_of(self, label: str) -> Optional[str]:
        return self.mapping.get(label)

    def sources(self, class_name: str) -> list[str]:
        return [label for label, c in self.mapping.items() if c == class_name]


_BAD_NAME = re.compile(r"[,+=\s]")


def parse_classes(spec: str, available: Optional[Iterable[str]] = None) -> ClassMap:
    """Parse a ``--classes`` spec into a ClassMap.

    Syntax: comma-separated items, each ``LABEL[+LABEL...][=NAME]``:

    - ``neu,hap,sad,ang``                  keep these four labels, in this order, under their own names
    - ``hap+exc=happy``                    merge labels hap and exc into class "happy"
    - ``neu=neutral,hap+exc=happy,sad,ang=angry``  select, merge and rename at once
    - ``hap+exc``                          merge under the first label's name ("hap")
    - ``all``                              every label in ``available``, sorted, unchanged

    Class order is the order of first appearance; two items with the same NAME merge into one
    class. A label may appear only once. Labels not named are dropped.
    """
    spec = (spec or "").strip()
    if not spec:
        raise CorpusError("empty --classes spec")
    if spec.lower() in ("all", "*"):
        if available is None:
            raise CorpusError("--classes all needs the corpus' labels")
        labels = sorted(set(available))
        return ClassMap(tuple(labels), {label: label for label in labels}, spec)
    classes: list[str] = []
    mapping: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise CorpusError(f"--classes {spec!r}: empty item (two commas in a row?)")
        if item.count("=") > 1:
            raise CorpusError(f"--classes {spec!r}: item {item!r} has more than one '='")
        sources_part, _, name = item.partition("=")
        sources = [s.strip() for s in sources_part.split("+")]
        name = name.strip() if "=" in item else sources[0]
        for token in sources + [name]:
            if not token or _BAD_NAME.search(token):
                raise CorpusError(f"--classes {spec!r}: bad label or class name in item {item!r}")
        for source in sources:
            if source in mapping:
                raise CorpusError(f"--classes {spec!r}: label {source!r} appears twice")
            mapping[source] = name
        if name not in classes:
            classes.append(name)
    return ClassMap(tuple(classes), mapping, spec)
