"""Which utterances of a corpus listing ``prepare`` keeps before computing anything:
``--subset improvised|scripted`` (IEMOCAP) and ``--include-speakers`` / ``--exclude-speakers``
(any corpus). Left-out utterances are not in the store, not in the speaker statistics and not
in ``skipped``; prepare.json's ``selection`` records the options and how many were left out."""

from __future__ import annotations

import re
from typing import Iterable, Optional, Union

from ser_cl.data.corpora import CorpusError, CorpusListing, Utterance

IEMOCAP_SUBSETS = {"improvised": "impro", "scripted": "script"}
# the dialog part of an IEMOCAP utterance id: Ses01F_impro01_F000, Ses01F_script01_1_F000
_IEMOCAP_DIALOG_KIND = re.compile(r"^Ses\d+[A-Za-z]_(impro|script)")


def _speaker_list(value: Union[str, Iterable[str], None]) -> Optional[list[str]]:
    """"A,B" or ["A", "B"] -> ["A", "B"] (blanks dropped); None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip() for s in items if s.strip()]


def select_utterances(listing: CorpusListing, subset: Optional[str] = None,
                      include_speakers: Union[str, Iterable[str], None] = None,
                      exclude_speakers: Union[str, Iterable[str], None] = None) -> tuple[list[Utterance], dict]:
    """The utterances of ``listing`` that the selection options keep, and prepare.json's
    ``selection`` entry.

    ``subset``: "improvised" or "scripted", IEMOCAP only (the dialog name in the utterance id
    says which: ``Ses01F_impro01_F000``, ``Ses01F_script01_1_F000``). ``include_speakers`` /
    ``exclude_speakers``: "A,B" or a list; keep only / leave out these speakers (not both).
    Raises CorpusError (one line) for a subset of another corpus, an unknown subset, a speaker
    the corpus does not have (listing the corpus' speakers), or when nothing is left.
    """
    include, exclude = _speaker_list(include_speakers), _speaker_list(exclude_speakers)
    if include is not None and exclude is not None:
        raise CorpusError("give --include-speakers or --exclude-speakers, not both")
    utterances = list(listing.utterances)
    if subset is not None:
        if subset not in IEMOCAP_SUBSETS:
            raise CorpusError(f"--subset {subset!r}: choose {' or '.join(IEMOCAP_SUBSETS)}")
        if listing.corpus != "iemocap":
            raise CorpusError(f"--subset applies to IEMOCAP only (improvised or scripted dialogs); this corpus is {listing.corpus}")
        kind = IEMOCAP_SUBSETS[subset]
        utterances = [u for u in utterances if (m := _IEMOCAP_DIALOG_KIND.match(u.utt_id)) and m.group(1) == kind]
    for flag, names in (("--include-speakers", include), ("--exclude-speakers", exclude)):
        if names is None:
            continue
        known = sorted({u.speaker for u in listing.utterances if u.speaker})
        unknown = [s for s in names if s not in known]
        if not names or unknown:
            raise CorpusError(f"{flag}: unknown speaker(s) {', '.join(unknown) or '(none given)'}; "
                              f"this corpus' speakers: {', '.join(known) or 'none known'}")
    if include is not None:
        utterances = [u for u in utterances if u.speaker in set(include)]
    if exclude is not None:
        utterances = [u for u in utterances if u.speaker not in set(exclude)]
    if not utterances:
        raise CorpusError(f"no utterance of {listing.corpus} left after --subset / --include-speakers / --exclude-speakers "
                          f"({len(listing.utterances)} before)")
    info = {"subset": subset, "include_speakers": include, "exclude_speakers": exclude,
            "left_out": len(listing.utterances) - len(utterances)}
    return utterances, info
