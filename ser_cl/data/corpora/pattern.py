"""A corpus reader for any folder layout, described by a path pattern (``--pattern``).

``read_pattern(root, "{speaker}/{label}-{speaker}-{*}.wav")`` lists every audio file below
``root`` whose path relative to ``root`` matches the pattern, with the speaker, label, session
and gender the pattern captures. Pattern syntax (``compile_pattern``):

- ``{speaker}``, ``{label}``, ``{session}``, ``{gender}``: capture one or more characters of one
  path part (never a ``/``); ``{speaker}`` and ``{label}`` are required (speaker-independent
  folds need the speaker; a corpus without labels is ``--corpus unlabeled``);
- ``{*}``: any text inside one path part (possibly none), not captured;
- ``{name:N}`` (also ``{*:N}``): exactly N characters, for names without separators such as
  EmoDB's ``03a01Fa.wav`` = ``{speaker:2}{*:3}{label:1}{*}.wav``;
- the same placeholder twice must match the same text (``f1/dis-f1-b1.wav`` against
  ``{speaker}/{label}-{speaker}-{*}.wav``: the folder and the name must agree);
- ``**/`` stands for any number of folders (none included), e.g. ``**/{speaker}_{label}.wav``;
- everything else is literal and case-sensitive, except the audio suffix the pattern must end
  with (one of ``AUDIO_SUFFIXES``: ``.wav``, ``.flac`` ...), which matches in any case
  (``.wav`` matches ``X.WAV``) but only itself (``.wav`` never matches ``.flac`` files).

Where text could be split several ways, each placeholder takes the shortest text that lets
the rest of the pattern match, from left to right (``{speaker}_{label}.wav`` on ``a_b_c.wav``:
speaker ``a``, label ``b_c``); use fixed widths or more literal text to say otherwise.

Captured values are kept as written; ``--label-map "dis=disgust,gio=happy"`` renames labels
(labels it does not name keep their own name). Gender is ``{gender}`` normalised (f, F,
female, w -> F; m, M, male -> M; anything else unknown), or unknown without ``{gender}``.
The utterance id is the file name without its suffix; where two files share a name, their
path below ``root`` without the suffix, ``/`` replaced by ``_``. Audio files that do not
match are listed as skipped with the reason.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

from ser_cl.data.frontends.audio import AUDIO_SUFFIXES
from ser_cl.data.corpora.base import CorpusError, CorpusListing, Utterance, _abs, _finish, _normalise_gender, _wav_files

PLACEHOLDERS = ("speaker", "label", "session", "gender", "*")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ANY_FOLDERS = "**/"


@dataclass(frozen=True)
class PathPattern:
    """A compiled ``--pattern``: ``regex`` is matched against a path relative to the corpus
    folder (``/``-separated); ``fields`` are the named placeholders it captures."""

    text: str
    regex: re.Pattern
    fields: tuple[str, ...]


def _literal(text: str, pattern: str) -> str:
    """Regex of a literal stretch of the pattern (``**/`` = any folders)."""
    if "{" in text or "}" in text:
        raise CorpusError(f"--pattern {pattern!r}: unbalanced brace in {text!r} (placeholders are {{name}})")
    parts = text.split(_ANY_FOLDERS)
    if any("*" in part for part in parts):
        # a bare * would silently be a literal star: say what to write instead
        raise CorpusError(f"--pattern {pattern!r}: write {{*}} for any text in a name, and **/ for any folders")
    return r"(?:[^/]+/)*".join(re.escape(part) for part in parts)


def compile_pattern(text: str) -> PathPattern:
    """Compile a ``--pattern`` (syntax in the module doc); CorpusError (one line) when it is not one."""
    pattern = (text or "").strip()
    if not pattern:
        raise CorpusError("--pattern is empty; e.g. --pattern '{speaker}/{label}-{speaker}-{*}.wav'")
    if pattern.startswith("/"):
        raise CorpusError(f"--pattern {pattern!r}: give the path relative to the corpus folder (no leading /)")
    if pattern.startswith("./"):
        pattern = pattern[2:]
    suffix = next((s for s in AUDIO_SUFFIXES if pattern.lower().endswith(s)), None)
    if suffix is None:
        raise CorpusError(f"--pattern {pattern!r}: must end with an audio suffix ({', '.join(AUDIO_SUFFIXES)})")
    body = pattern[: -len(suffix)]

    regex: list[str] = []
    widths: dict[str, Optional[int]] = {}  # named placeholder -> width of its first occurrence
    pos = 0
    for m in _PLACEHOLDER.finditer(body):
        regex.append(_literal(body[pos : m.start()], pattern))
        pos = m.end()
        name, colon, width_text = m.group(1).strip().partition(":")
        name = name.strip()
        if name not in PLACEHOLDERS:
            raise CorpusError(f"--pattern {pattern!r}: unknown placeholder {m.group(0)}; use "
                              + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS) + " (or {name:N} for exactly N characters)")
        width: Optional[int] = None
        if colon:
            if not width_text.strip().isdigit() or int(width_text) < 1:
                raise CorpusError(f"--pattern {pattern!r}: {m.group(0)} needs a width of 1 or more characters, "
                                  f"e.g. {{{name}:2}}")
            width = int(width_text)
        chars = "[^/]" + (f"{{{width}}}" if width else ("*?" if name == "*" else "+?"))
        if name == "*":
            regex.append(f"(?:{chars})")
        elif name in widths:
            if width is not None and width != widths[name]:
                raise CorpusError(f"--pattern {pattern!r}: {{{name}}} appears with different widths")
            regex.append(f"(?P={name})")  # the same placeholder twice matches the same text
        else:
            widths[name] = width
            regex.append(f"(?P<{name}>{chars})")
    regex.append(_literal(body[pos:], pattern))
    regex.append(f"(?i:{re.escape(suffix)})")
    for required, why in (("label", "a corpus without labels is --corpus unlabeled"),
                          ("speaker", "speaker-independent folds need each file's speaker")):
        if required not in widths:
            raise CorpusError(f"--pattern {pattern!r} has no {{{required}}} ({why})")
    return PathPattern(pattern, re.compile("".join(regex)), tuple(widths))


def parse_label_map(spec: Union[str, Mapping[str, str], None]) -> dict[str, str]:
    """``"dis=disgust,gio=happy"`` (or a dict) -> {"dis": "disgust", "gio": "happy"}; CorpusError (one
    line) for an item without ``=``, an empty side or a label named twice. None or "" -> {}."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        items = [f"{k}={v}" for k, v in spec.items()]
    else:
        items = spec.split(",") if spec.strip() else []
    mapping: dict[str, str] = {}
    for item in items:
        source, eq, target = (s.strip() for s in item.partition("="))
        if not eq or not source or not target or "=" in target:
            raise CorpusError(f"--label-map: bad item {item.strip()!r}; write LABEL=NAME items separated by commas, "
                              "e.g. 'dis=disgust,gio=happy'")
        if source in mapping:
            raise CorpusError(f"--label-map: label {source!r} appears twice")
        mapping[source] = target
    return mapping


def read_pattern(root: str | os.PathLike, pattern: Optional[str] = None,
                 label_map: Union[str, Mapping[str, str], None] = None) -> CorpusListing:
    """Read the audio files under ``root`` whose relative path matches ``pattern`` (module doc).

    ``label_map``: a ``parse_label_map`` spec. Raises CorpusError (one line) for a bad pattern or
    label map, a label-map entry naming no label found, or when no file matches at all.
    """
    root = Path(root)
    if not pattern:
        raise CorpusError("pattern: describe the layout with --pattern, e.g. '{speaker}/{label}-{speaker}-{*}.wav'")
    compiled = compile_pattern(pattern)
    mapping = parse_label_map(label_map)
    matched: list[tuple[Path, str, dict]] = []
    skipped: list[dict] = []
    n_files = 0
    for wav in _wav_files(root):
        n_files += 1
        rel = wav.relative_to(root).as_posix()
        m = compiled.regex.fullmatch(rel)
        if m is None:
            skipped.append({"path": str(wav),
                            "reason": f"path below the corpus folder does not match --pattern {compiled.text}"})
            continue
        matched.append((wav, rel, m.groupdict()))
    if not matched:
        example = f"; e.g. {skipped[0]['path']}" if skipped else ""
        raise CorpusError(f"pattern: none of the {n_files} audio file(s) under {root} matches "
                          f"--pattern {compiled.text}{example}")
    found = {fields["label"] for _, _, fields in matched}
    unused = [label for label in mapping if label not in found]
    if unused:
        raise CorpusError(f"--label-map names label(s) {', '.join(unused)} that no file has; "
                          f"labels found: {', '.join(sorted(found))}")
    # file names are the ids, as the built-in readers' are, unless two files share one
    stems = Counter(wav.stem for wav, _, _ in matched)
    utterances = []
    for wav, rel, fields in matched:
        utt_id = wav.stem if stems[wav.stem] == 1 else rel[: -len(wav.suffix)].replace("/", "_")
        utterances.append(Utterance(
            utt_id, _abs(wav), mapping.get(fields["label"], fields["label"]), fields["speaker"],
            fields.get("session") or "", _normalise_gender(fields.get("gender") or ""),
        ))
    return _finish("pattern", root, utterances, skipped)
