"""`ser-cl prepare`, `synth` and `folds`: corpus -> feature store, and the folds of a store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ser_cl.cli.app import app, echo_lines



@app.command()
def prepare(
    corpus_dir: Path = typer.Argument(..., help="Corpus folder (or a .csv manifest file)."),
    out: Path = typer.Option(..., "--out", "-o", help="DATA_DIR to write the feature store into."),
    corpus: Optional[str] = typer.Option(
        None, "--corpus",
        help="iemocap, emodb, ravdess, cremad, tess, emovo, csv, or unlabeled (any tree of WAV/FLAC/OGG/AIFF files, no labels: "
             "for self-supervised pretraining pools), or pattern (implied by --pattern) (default: detected from the layout).",
    ),
    pattern: Optional[str] = typer.Option(
        None, "--pattern",
        help="Any folder layout: the audio files' paths below CORPUS_DIR, with {speaker} and {label} (required), "
             "{session}, {gender}, {*} (any text, not kept); {name:N} = exactly N characters; **/ = any folders; "
             "the same placeholder twice must match the same text; ends with the audio suffix (any case). "
             "E.g. '{speaker}/{label}-{speaker}-{*}.wav'. Implies --corpus pattern.",
    ),
    label_map: Optional[str] = typer.Option(
        None, "--label-map",
        help="--pattern: rename {label} values, LABEL=NAME items, e.g. 'dis=disgust,gio=happy' "
             "(unnamed labels keep their own name; naming a label no file has is an error).",
    ),
    include_speakers: Optional[str] = typer.Option(
        None, "--include-speakers", help="Keep only these speakers (comma-separated, as in the manifest's speaker column)."),
    exclude_speakers: Optional[str] = typer.Option(
        None, "--exclude-speakers", help="Leave out these speakers (comma-separated)."),
    subset: Optional[str] = typer.Option(
        None, "--subset",
        help="IEMOCAP only: 'improvised' or 'scripted' keeps only the utterances of those dialogs (impro / script in the name).",
    ),
    classes: Optional[str] = typer.Option(
        None,
        "--classes",
        help=(
            "Labels to keep, merge and rename: comma-separated LABEL[+LABEL...][=NAME] items, "
            "in class order; 'all' keeps every label. Default per corpus, e.g. IEMOCAP "
            "'neu=neutral,hap+exc=happy,sad=sad,ang=angry'."
        ),
    ),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Worker processes (default: all CPU cores)."),
    min_duration: float = typer.Option(0.25, "--min-duration", help="Skip utterances shorter than this (seconds)."),
    features: str = typer.Option(
        "spectrogram", "--features",
        help="Front-end: 'spectrogram' (the thesis' 257-bin log-power spectrogram), 'mel' (log-mel filterbank) "
             "'ssl' (hidden states of a self-supervised model: --upstream; docs/ssl_upstreams.md) or 'functionals' "
             "(openSMILE functionals, one frame per utterance: --feature-set; docs/functionals.md).",
    ),
    n_mels: Optional[int] = typer.Option(None, "--n-mels", help="Mel bands (--features mel; default 64)."),
    f_min: Optional[float] = typer.Option(None, "--f-min", help="Lowest mel filter edge in Hz (--features mel; default 0)."),
    f_max: Optional[float] = typer.Option(None, "--f-max", help="Highest mel filter edge in Hz, <= 8000 (--features mel; default 8000)."),
    upstream: Optional[Path] = typer.Option(
        None, "--upstream", help="--features ssl: a local Hugging Face checkpoint directory (config.json + weights) of "
                                 "WavLM, HuBERT, wav2vec 2.0 / XLS-R, data2vec-audio or Whisper, or a model id "
                                 "(openai/whisper-base) already in the Hugging Face cache; nothing is downloaded."),
    layer: Optional[int] = typer.Option(
        None, "--layer", help="--features ssl: the hidden state to store, 0 .. number of layers (default: two thirds up)."),
    layers: Optional[str] = typer.Option(
        None, "--layers", help="--features ssl: 'all' stores every hidden state side by side (layers x hidden size per frame)."),
    chunk_s: Optional[float] = typer.Option(
        None, "--chunk-s", help="--features ssl: longer files go through the model in chunks this long (default 20 s, 1 s overlap)."),
    whisper_window: Optional[str] = typer.Option(
        None, "--whisper-window", help="--features ssl, Whisper: '30s' (every clip padded to Whisper's 30 s window; default) "
                                       "or 'clip' (the encoder on the clip's own frames: ~14x less CPU time)."),
    max_store_gb: float = typer.Option(
        20.0, "--max-store-gb", help="--features ssl: refuse a features.npy estimated above this many GB (the cache needs as much again)."),
    feature_set: Optional[str] = typer.Option(
        None, "--feature-set", help="--features functionals: openSMILE's ComParE_2016 (6,373 values; default) or eGeMAPSv02 (88)."),
    speaker_level: Optional[int] = typer.Option(
        None, "--speaker-level", help="--corpus unlabeled: the speaker is the folder this deep below CORPUS_DIR (0 = first)."),
    speakers_csv: Optional[Path] = typer.Option(
        None, "--speakers-csv", help="--corpus unlabeled: a CSV with header path,speaker naming each file's speaker."),
    speed: float = typer.Option(
        1.0, "--speed", help="Features of every file played this many times as fast (tempo and pitch, 0.5-2; e.g. 0.9): "
                             "a store of perturbed copies that training adds to its folds' training speakers "
                             "(data.train_copies; docs/functionals.md)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Compute the features of a corpus into a feature store DATA_DIR.

    Writes manifest.csv, features.npy (float16, frames x 257 for the
    spectrogram, frames x n_mels for --features mel; float32, one frame per
    utterance, for --features functionals), offsets.npy and
    prepare.json (written last: its presence marks a complete store;
    its "features" holds the front-end's parameters).
    Bad audio files are skipped and listed in prepare.json.
    Re-running into the same DATA_DIR reuses DATA_DIR/cache/.
    Prepare each front-end into its own DATA_DIR to keep them side by side.

    Examples:

      ser-cl prepare /data/IEMOCAP_full_release --out data/iemocap

      ser-cl prepare /data/emodb --out data/emodb --jobs 4

      ser-cl prepare /data/emodb -o data/emodb-mel64 --features mel --n-mels 64

      ser-cl prepare /data/emodb -o data/emodb-mel40 --features mel --n-mels 40 --f-min 50 --f-max 7600

      ser-cl prepare /data/IEMOCAP -o data/iem5 --classes neu,hap+exc,sad,ang,fru

      ser-cl prepare my_manifest.csv --out data/mine --classes all

      ser-cl prepare /data/podcasts -o data/pool-mel64 --corpus unlabeled --speaker-level 0 --features mel

      ser-cl prepare /data/emodb -o data/emodb-wavlm --features ssl --upstream models/wavlm-base-plus --layer 8

      ser-cl prepare /data/emodb -o data/emodb-whisper --features ssl --upstream openai/whisper-base --layers all

      ser-cl prepare /data/emodb -o data/emodb-compare --features functionals --feature-set ComParE_2016

      ser-cl prepare /data/emodb -o data/emodb-compare-sp0.9 --features functionals --speed 0.9

      ser-cl prepare /data/IEMOCAP -o data/iemocap-impro --subset improvised

      ser-cl prepare /data/emodb -o data/emodb-9 --exclude-speakers 03

      ser-cl prepare /data/emovo -o data/emovo-p --pattern '{speaker}/{label}-{speaker}-{*}.wav'

      ser-cl prepare /data/emodb -o data/emodb-p --pattern '{speaker:2}{*:3}{label:1}{*}.wav' --label-map 'W=angry,F=happy'
    """
    from ser_cl.data.corpora import CorpusError
    from ser_cl.data.frontends.features import feature_params
    from ser_cl.data.stores.prepare import prepare as run_prepare
    from ser_cl.data.stores.summary import prepare_lines

    try:
        if layers is not None and layers != "all":
            raise ValueError(f"--layers {layers!r}: only 'all' (or give one --layer N)")
        params = feature_params(features, n_mels=n_mels, f_min=f_min, f_max=f_max, upstream=upstream, layer=layer,
                                layers=layers, chunk_s=chunk_s, feature_set=feature_set,
                                whisper_window=whisper_window)
        result = run_prepare(corpus_dir, out, corpus=corpus, classes=classes, jobs=jobs,
                             min_duration=min_duration, progress=not quiet, features=params,
                             speaker_level=speaker_level, speakers_csv=speakers_csv,
                             pattern=pattern, label_map=label_map, subset=subset,
                             include_speakers=include_speakers, exclude_speakers=exclude_speakers,
                             max_store_gb=max_store_gb, notify=lambda line: typer.echo(line, err=True),
                             speed=speed)
    except (CorpusError, ValueError, FileNotFoundError, ImportError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    echo_lines(prepare_lines(result))


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write the synthetic corpus into."),
    per_speaker: int = typer.Option(12, "--per-speaker", help="Utterances per speaker per class (4 classes)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the corpus is deterministic given it)."),
) -> None:
    """Write a small synthetic corpus in the IEMOCAP layout (5 sessions x 2 speakers).

    Labels neu/hap/exc/sad/ang with class-dependent pitch, loudness, tempo and
    brightness, plus a few fru/xxx utterances that the default classes drop.
    Default: 500 files, about 11 minutes of audio.

    Example:

      ser-cl synth data/synth-raw && ser-cl prepare data/synth-raw --out data/synth
    """
    from ser_cl.data.stores.summary import synth_lines
    from ser_cl.data.corpora.synth import synthesize_corpus

    echo_lines(synth_lines(synthesize_corpus(out_dir, per_speaker=per_speaker, seed=seed), out_dir))


@app.command()
def folds(
    data_dir: Path = typer.Argument(..., help="A prepared DATA_DIR."),
    protocol: str = typer.Option(
        "auto", "--protocol", "-p",
        help="auto, session10 (thesis), session5 (leave-one-session-out), speaker, holdout (one fold, 2 "
             "validation speakers, no test set), speaker_groups (--n-folds groups of speakers) or file "
             "(--folds-file).",
    ),
    folds_file: Optional[Path] = typer.Option(
        None, "--folds-file",
        help="Protocol file (implied): an EmoBox folder (fold_K/<name>_train_fold_K.jsonl, _test_, optional "
             "_valid_) or a CSV of utt_id,fold,part rows.",
    ),
    n_folds: int = typer.Option(5, "--n-folds", help="speaker_groups: the number of speaker groups (folds)."),
    val_speakers: int = typer.Option(
        1, "--val-speakers",
        help="speaker, speaker_groups, file (when it gives no validation set): validation speakers per fold."),
    export: Optional[Path] = typer.Option(
        None, "--export",
        help="Also write the folds: FILE.csv (utt_id,fold,part rows) or a new folder in EmoBox's layout "
             "(fold_K/<corpus>_{train,valid,test}_fold_K.jsonl); both read back with --folds-file.",
    ),
) -> None:
    """List the cross-validation folds of a prepared DATA_DIR.

    session10 (thesis): per held-out session, one speaker is validation and the
    other test, then swapped (10 folds on IEMOCAP).
    session5: the held-out session is test; one speaker of the next session is
    validation (removed from train).
    speaker: each speaker is test once; the next speaker (sorted, cyclic) is
    validation.
    speaker_groups: speakers dealt into --n-folds groups balanced by gender and
    utterances; each group is test once (for corpora with more than ~12 speakers).
    file: the folds of --folds-file (EmoBox's fold_K/ folders or a CSV).
    auto: session10 when every session has exactly 2 speakers, else speaker.

    Examples:

      ser-cl folds data/iemocap --protocol session5

      ser-cl folds data/cremad --protocol speaker_groups --n-folds 5 --export folds/cremad-5.csv

      ser-cl folds data/iemocap --folds-file EmoBox/data/iemocap
    """
    from ser_cl.data.stores.fold_listing import list_folds

    try:
        listing = list_folds(data_dir, protocol, folds_file, n_folds, val_speakers, export)
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    typer.echo(listing.heading)
    for note in listing.notes:
        typer.echo(f"note: {note}", err=True)
    for line in listing.warnings:
        typer.echo(line, err=True)
    echo_lines(listing.table())
    if listing.written is not None:
        typer.echo(f"wrote {len(listing.folds)} folds to {listing.written} (read back: --folds-file {listing.written})")
