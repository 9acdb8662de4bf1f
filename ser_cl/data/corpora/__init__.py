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
           (``ser_cl.data.corpora.pattern``; never detected: implied by ``--pattern``)

The package, one module per concern, imported in one direction (base <- readers <- registry
<- detect): ``base`` (Utterance, CorpusListing, CorpusError, CorpusInfo and the readers'
helpers), one module per reader (``iemocap``, ``emodb``, ``ravdess``, ``cremad``, ``tess``,
``emovo``, ``csv_manifest``, ``unlabeled``, ``pattern``), ``registry`` (``CORPORA``),
``detect`` (``detect_corpus``, ``read_corpus``) and ``classes`` (``parse_classes``, ``ClassMap``).
Import from the package: every name is re-exported here.

Beside the readers, this room holds what is done to a listing before any audio is read:
``selection`` (``--subset``, ``--include-speakers``, ``--exclude-speakers``), and the
synthetic corpus ``synth`` (import both from their modules).

May import: frontends (the audio suffixes the readers accept; writing WAV).
"""

from __future__ import annotations

from ser_cl.data.corpora.base import CorpusError, CorpusInfo, CorpusListing, Utterance
from ser_cl.data.corpora.base import _abs, _finish, _normalise_gender, _read_text, _wav_files  # noqa: F401 (readers' helpers)
from ser_cl.data.corpora.classes import ClassMap, parse_classes
from ser_cl.data.corpora.cremad import CREMAD_EMOTIONS, read_cremad
from ser_cl.data.corpora.csv_manifest import CSV_REQUIRED, read_csv_manifest
from ser_cl.data.corpora.detect import detect_corpus, read_corpus
from ser_cl.data.corpora.emodb import EMODB_EMOTIONS, EMODB_GENDERS, read_emodb
from ser_cl.data.corpora.emovo import EMOVO_EMOTIONS, read_emovo
from ser_cl.data.corpora.iemocap import iemocap_speaker, parse_iemocap_labels, read_iemocap
from ser_cl.data.corpora.pattern import PLACEHOLDERS, PathPattern, compile_pattern, parse_label_map, read_pattern
from ser_cl.data.corpora.ravdess import RAVDESS_EMOTIONS, read_ravdess
from ser_cl.data.corpora.registry import CORPORA, CORPUS_NAMES, GENERIC_CORPORA
from ser_cl.data.corpora.tess import TESS_GENDERS, read_tess
from ser_cl.data.corpora.unlabeled import read_unlabeled

__all__ = [
    "CORPORA",
    "CORPUS_NAMES",
    "CREMAD_EMOTIONS",
    "CSV_REQUIRED",
    "ClassMap",
    "CorpusError",
    "CorpusInfo",
    "CorpusListing",
    "EMODB_EMOTIONS",
    "EMODB_GENDERS",
    "EMOVO_EMOTIONS",
    "GENERIC_CORPORA",
    "PLACEHOLDERS",
    "PathPattern",
    "RAVDESS_EMOTIONS",
    "TESS_GENDERS",
    "Utterance",
    "compile_pattern",
    "detect_corpus",
    "iemocap_speaker",
    "parse_classes",
    "parse_iemocap_labels",
    "parse_label_map",
    "read_corpus",
    "read_cremad",
    "read_csv_manifest",
    "read_emodb",
    "read_emovo",
    "read_iemocap",
    "read_pattern",
    "read_ravdess",
    "read_tess",
    "read_unlabeled",
]
