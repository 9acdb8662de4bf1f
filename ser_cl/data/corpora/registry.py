"""The corpus registry: each layout's name, reader, default ``--classes`` spec, one-line layout
description and the reader options only it takes (``CORPORA``)."""

from __future__ import annotations

from ser_cl.data.corpora.base import CorpusInfo
from ser_cl.data.corpora.cremad import read_cremad
from ser_cl.data.corpora.csv_manifest import read_csv_manifest
from ser_cl.data.corpora.emodb import read_emodb
from ser_cl.data.corpora.emovo import read_emovo
from ser_cl.data.corpora.iemocap import read_iemocap
from ser_cl.data.corpora.pattern import read_pattern
from ser_cl.data.corpora.ravdess import read_ravdess
from ser_cl.data.corpora.tess import read_tess
from ser_cl.data.corpora.unlabeled import read_unlabeled

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
        "pattern", read_pattern, "all",
        "any layout described by --pattern, e.g. '{speaker}/{label}-{speaker}-{*}.wav' (only with --pattern)",
        options=("pattern", "label_map"),
    ),
}
# corpora whose speaker ids name people only inside one prepared store (no shared identity)
GENERIC_CORPORA = ("csv", "unlabeled", "pattern")
CORPUS_NAMES = tuple(CORPORA)
