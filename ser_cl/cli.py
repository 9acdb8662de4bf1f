"""The ``ser-cl`` command line: thin wrappers that parse arguments and call the library.

Each command parses its arguments, calls the library (``ser_cl.data.*``, ``ser_cl.pipeline``,
``ser_cl.eval.*``, ``ser_cl.predict``), prints the lines it returns and maps errors to exit code 2.
Over 400 lines on purpose: one concern, the commands' options, help texts and examples (~560 lines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Tuple

import typer

from ser_cl import __version__

from ser_cl.cli_style import ClickStyleGroup

app = typer.Typer(
    cls=ClickStyleGroup,
    help=(
        "ser-cl: speech emotion recognition with contrastive learning.\n\n"
        "Typical flow: ser-cl synth data/synth-raw; ser-cl prepare data/synth-raw --out data/synth; "
        "ser-cl train experiments/ce_baseline.toml --set data.dir=data/synth; ser-cl report runs/"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ser-cl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """ser-cl: speech emotion recognition with contrastive learning."""


def _echo_lines(lines: List[str]) -> None:
    for line in lines:
        typer.echo(line)


# ---------------------------------------------------------------------------------------------
# data commands (owner: data developer): prepare, synth, folds


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
                                 "WavLM, HuBERT, wav2vec 2.0 / XLS-R, data2vec-audio or Whisper; nothing is downloaded."),
    layer: Optional[int] = typer.Option(
        None, "--layer", help="--features ssl: the hidden state to store, 0 .. number of layers (default: two thirds up)."),
    layers: Optional[str] = typer.Option(
        None, "--layers", help="--features ssl: 'all' stores every hidden state side by side (layers x hidden size per frame)."),
    chunk_s: Optional[float] = typer.Option(
        None, "--chunk-s", help="--features ssl: longer files go through the model in chunks this long (default 20 s, 1 s overlap)."),
    max_store_gb: float = typer.Option(
        20.0, "--max-store-gb", help="--features ssl: refuse a features.npy estimated above this many GB (the cache needs as much again)."),
    feature_set: Optional[str] = typer.Option(
        None, "--feature-set", help="--features functionals: openSMILE's ComParE_2016 (6,373 values; default) or eGeMAPSv02 (88)."),
    speaker_level: Optional[int] = typer.Option(
        None, "--speaker-level", help="--corpus unlabeled: the speaker is the folder this deep below CORPUS_DIR (0 = first)."),
    speakers_csv: Optional[Path] = typer.Option(
        None, "--speakers-csv", help="--corpus unlabeled: a CSV with header path,speaker naming each file's speaker."),
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

      ser-cl prepare /data/emodb -o data/emodb-compare --features functionals --feature-set ComParE_2016

      ser-cl prepare /data/IEMOCAP -o data/iemocap-impro --subset improvised

      ser-cl prepare /data/emodb -o data/emodb-9 --exclude-speakers 03

      ser-cl prepare /data/emovo -o data/emovo-p --pattern '{speaker}/{label}-{speaker}-{*}.wav'

      ser-cl prepare /data/emodb -o data/emodb-p --pattern '{speaker:2}{*:3}{label:1}{*}.wav' --label-map 'W=angry,F=happy'
    """
    from ser_cl.data.corpora import CorpusError
    from ser_cl.data.features import feature_params
    from ser_cl.data.prepare import prepare as run_prepare
    from ser_cl.data.summary import prepare_lines

    try:
        if layers is not None and layers != "all":
            raise ValueError(f"--layers {layers!r}: only 'all' (or give one --layer N)")
        params = feature_params(features, n_mels=n_mels, f_min=f_min, f_max=f_max, upstream=upstream, layer=layer,
                                layers=layers, chunk_s=chunk_s, feature_set=feature_set)
        result = run_prepare(corpus_dir, out, corpus=corpus, classes=classes, jobs=jobs,
                             min_duration=min_duration, progress=not quiet, features=params,
                             speaker_level=speaker_level, speakers_csv=speakers_csv,
                             pattern=pattern, label_map=label_map, subset=subset,
                             include_speakers=include_speakers, exclude_speakers=exclude_speakers,
                             max_store_gb=max_store_gb, notify=lambda line: typer.echo(line, err=True))
    except (CorpusError, ValueError, FileNotFoundError, ImportError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    _echo_lines(prepare_lines(result))


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
    from ser_cl.data.summary import synth_lines
    from ser_cl.data.synth import synthesize_corpus

    _echo_lines(synth_lines(synthesize_corpus(out_dir, per_speaker=per_speaker, seed=seed), out_dir))


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
    from ser_cl.data.fold_listing import list_folds

    try:
        listing = list_folds(data_dir, protocol, folds_file, n_folds, val_speakers, export)
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    typer.echo(listing.heading)
    for note in listing.notes:
        typer.echo(f"note: {note}", err=True)
    _echo_lines(listing.table())
    if listing.written is not None:
        typer.echo(f"wrote {len(listing.folds)} folds to {listing.written} (read back: --folds-file {listing.written})")


# -- training, evaluation and prediction ---------------------------------------------------------
# ConfigError is a ValueError and TrainingDiverged a RuntimeError: both print as one line
TRAIN_ERRORS = (FileNotFoundError, ValueError, RuntimeError)
SET_HELP = ("Override any config field, e.g. --set optim.epochs=5 --set data.dir=data/emodb (repeatable); "
            "--set kind.finetune.optim.lr=1e-3 sets it for the stages of one kind only.")
FOLD_HELP = "Run only this fold (1-based; repeatable). Default: all folds of the protocol."
PRESET_HELP = "A TOML file of overrides merged into every stage, or a name in experiments/presets/ (e.g. cpu)."


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _train(kinds, experiment, fold, set_, device, stage, preset, dry_run, extra_overrides=(), restart=False,
           force=False) -> None:
    from ser_cl.pipeline import dry_run_plan, train_planned
    from ser_cl.train.run import select_stages

    try:
        planned = select_stages(experiment, kinds, list(set_) + list(extra_overrides), [stage] if stage else None,
                                preset)
        _check_front_end(planned, preset, force)
        if dry_run:
            _echo_lines(dry_run_plan(planned, fold))
            return
        for out in train_planned(planned, fold, device, restart=restart):
            typer.echo(f"done: {out}")
            _print_summary(out)
    except TRAIN_ERRORS as err:
        _fail(err)


def _check_front_end(planned, preset, force) -> None:
    """The stores must hold the front-end the preset was chosen for (--force: warn and go on)."""
    from ser_cl.pipeline import front_end_warnings

    for line in front_end_warnings(planned, preset, force):
        typer.secho(f"warning: {line}", fg=typer.colors.YELLOW, err=True)


def _print_summary(variant_dir: Path) -> None:
    from ser_cl.eval.summary import summarize_variant
    from ser_cl.train.distributed import is_main

    if is_main():
        for line in summarize_variant(variant_dir):
            typer.echo(line)


_EXP = typer.Argument(..., help="Experiment TOML file (see experiments/).")
_FOLD = typer.Option(None, "--fold", help=FOLD_HELP)
_SET = typer.Option(None, "--set", help=SET_HELP)
_DEVICE = typer.Option(None, "--device", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N.")
_STAGE = typer.Option(None, "--stage", help="Run only the stage of this name.")
_PRESET = typer.Option(None, "--preset", help=PRESET_HELP)
_DRY = typer.Option(False, "--dry-run", help="Print the variants and run directories, train nothing.")
_RESTART = typer.Option(False, "--restart", help="Clear the selected folds and train them afresh (e.g. after "
                        "changing the config: a fold trained under another config is otherwise refused).")
_FORCE = typer.Option(False, "--force", help="Train even on a data store whose front-end is not the one the "
                      "--preset was chosen for (a warning instead of the error).")


@app.command()
def train(experiment: Path = _EXP, fold: Optional[List[int]] = _FOLD, set_: Optional[List[str]] = _SET,
          device: Optional[str] = _DEVICE, stage: Optional[str] = _STAGE, preset: Optional[str] = _PRESET,
          dry_run: bool = _DRY, restart: bool = _RESTART, force: bool = _FORCE) -> None:
    """Train the encoder + linear head with cross-entropy (optionally + lambda*SupCon + beta*NT-Xent).

    Writes runs/<experiment>/<variant>/fold-NN/ (config.toml, best.pt, last.pt, metrics.jsonl,
    metrics.json). Re-running the same command resumes after the last finished epoch.

    Example: ser-cl train experiments/ce_baseline.toml --set data.dir=data/iemocap --fold 1
    """
    _train(("train",), experiment, fold, set_ or [], device, stage, preset, dry_run, restart=restart,
           force=force)


@app.command()
def pretrain(experiment: Path = _EXP, fold: Optional[List[int]] = _FOLD, set_: Optional[List[str]] = _SET,
             device: Optional[str] = _DEVICE, stage: Optional[str] = _STAGE, preset: Optional[str] = _PRESET,
             dry_run: bool = _DRY, restart: bool = _RESTART, force: bool = _FORCE) -> None:
    """Train the encoder alone with a contrastive loss (triplet, smooth triplet, NT-Xent, SupCon, self-supervised NT-Xent).

    Example: ser-cl pretrain experiments/selfsup_ntxent.toml --set data.dir=data/iemocap
    """
    _train(("pretrain",), experiment, fold, set_ or [], device, stage, preset, dry_run, restart=restart,
           force=force)


@app.command()
def finetune(experiment: Path = _EXP,
             from_: Optional[Path] = typer.Option(None, "--from", help="Pretrained run dir runs/<experiment>/<variant>."),
             fold: Optional[List[int]] = _FOLD, set_: Optional[List[str]] = _SET,
             device: Optional[str] = _DEVICE, stage: Optional[str] = _STAGE, preset: Optional[str] = _PRESET,
             dry_run: bool = _DRY, restart: bool = _RESTART, force: bool = _FORCE) -> None:
    """Fine-tune a pretrained encoder with a linear head and cross-entropy (frozen encoder first, then all).

    Example: ser-cl finetune experiments/selfsup_ntxent.toml --stage ft_ce_aug --from runs/selfsup_ntxent/pretrain
    """
    extra = [f"finetune.from={json.dumps(str(from_))}"] if from_ is not None else []
    _train(("finetune",), experiment, fold, set_ or [], device, stage, preset, dry_run, extra, restart=restart,
           force=force)


@app.command()
def run(experiment: Path = _EXP, fold: Optional[List[int]] = _FOLD, set_: Optional[List[str]] = _SET,
        device: Optional[str] = _DEVICE, preset: Optional[str] = _PRESET, dry_run: bool = _DRY,
        restart: bool = _RESTART, force: bool = _FORCE,
        stage: Optional[List[str]] = typer.Option(None, "--stage", help="Run only these stages (repeatable); "
                                                  "the stages they fine-tune must have run before."),
        report_format: str = typer.Option("md", "--format", help="Report format: md, csv or json."),
        devices: Optional[str] = typer.Option(None, "--devices", help="Spread the folds over several devices, "
                                              "one worker process each, e.g. cuda:0,cuda:1,cuda:2,cuda:3."),
        no_report: bool = typer.Option(False, "--no-report", help="Do not print the report at the end."),
        launcher: Optional[str] = typer.Option(None, "--launcher", help="Submit the unfinished folds as a job "
                                               "array with submitit: local (processes here) or slurm "
                                               "(docs/slurm.md; needs the slurm extra)."),
        slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition", help="--launcher slurm: the partition."),
        slurm_time: Optional[int] = typer.Option(None, "--slurm-time", help="--launcher: each task's time limit in "
                                                 "minutes (a task that hits it is requeued and resumes)."),
        slurm_gpus_per_task: Optional[int] = typer.Option(None, "--slurm-gpus-per-task", help="--launcher: GPUs per task."),
        slurm_cpus_per_task: Optional[int] = typer.Option(None, "--slurm-cpus-per-task", help="--launcher: CPUs per task "
                                                          "(also its torch threads)."),
        slurm_array_parallelism: Optional[int] = typer.Option(None, "--slurm-array-parallelism", help="--launcher "
                                                              "slurm: at most this many tasks at once."),
        no_wait: bool = typer.Option(False, "--no-wait", help="--launcher: submit and return (no progress bar, no "
                                     "report); `ser-cl status RUNS_DIR` shows the folds done.")) -> None:
    """Run every stage of an experiment in order (pretrain -> finetune ...), probe each, print the report.

    Resumable: finished folds are skipped, an interrupted fold continues after its last epoch.
    --launcher local|slurm submits one task per unfinished fold (all its stages in order).

    Examples:

      ser-cl run experiments/supcon.toml --set data.dir=data/iemocap --preset cpu

      ser-cl run experiments/supcon.toml --launcher slurm --slurm-partition gpu --slurm-gpus-per-task 1
    """
    from ser_cl.pipeline import dry_run_plan, plan_experiment, run_experiment, run_experiment_on_devices, worker_argv

    try:
        planned = plan_experiment(experiment, set_ or [], preset, stage)
        _check_front_end(planned, preset, force)
        if dry_run:
            _echo_lines(dry_run_plan(planned, fold))
            return
        if launcher:
            if devices:
                raise ValueError("--launcher and --devices do not go together: a launcher places the tasks itself")
            from ser_cl.launch import LaunchOptions, TaskSpec, launch

            spec = TaskSpec(str(experiment.resolve()), tuple(set_ or []), preset, tuple(stage or []),
                            tuple(fold or []), device=device, restart=restart, force=force)
            opts = LaunchOptions(launcher, slurm_partition, slurm_time, slurm_gpus_per_task, slurm_cpus_per_task,
                                 slurm_array_parallelism, wait=not no_wait)
            exp_dir, _, _ = launch(planned, spec, opts, say=lambda line: typer.echo(line, err=True))
            if no_wait:
                return
        elif devices:
            argv = worker_argv(experiment, set_ or [], preset, stage, restart=restart, force=force)
            exp_dir = run_experiment_on_devices(planned, argv, devices.split(","), fold, restart=restart)
        else:
            exp_dir = run_experiment(planned, fold, device, restart=restart)
    except TRAIN_ERRORS as err:
        _fail(err)
    from ser_cl.train.distributed import is_main

    if exp_dir is not None and not no_report and is_main():
        _print_report(exp_dir, report_format, None)


@app.command()
def status(runs_dir: Path = typer.Argument(Path("runs"), help="The runs dir, an experiment's dir or a variant's.")) -> None:
    """Per experiment and variant: folds complete / started (last.pt, not complete) / missing.

    Example: ser-cl status runs/
    """
    from ser_cl.launch import status_lines

    try:
        _echo_lines(status_lines(runs_dir))
    except (FileNotFoundError, ValueError) as err:
        _fail(err)


@app.command()
def quickstart(out: Path = typer.Option(Path("data/quickstart"), "--out", help="Where the corpus and features go."),
               runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the runs go."),
               per_speaker: int = typer.Option(6, "--per-speaker", help="Synthetic utterances per speaker and class."),
               device: Optional[str] = _DEVICE) -> None:
    """The built-in demo, no corpus needed: synth -> prepare -> self-supervised NT-Xent -> CE ft -> probe -> report.

    Runs experiments/quickstart.toml (a small encoder, 5 folds) on the CPU in a few minutes and
    prints the table. Re-running resumes.

    Example: ser-cl quickstart --out data/quickstart
    """
    from ser_cl.pipeline import QUICKSTART_STEPS
    from ser_cl.pipeline import quickstart as run_quickstart

    try:
        exp_dir = run_quickstart(out, runs_dir, per_speaker, device, say=lambda line: typer.echo(line, err=True))
    except TRAIN_ERRORS as err:
        _fail(err)
    typer.echo(f"step {QUICKSTART_STEPS}/{QUICKSTART_STEPS}: report of {exp_dir}", err=True)
    _print_report(exp_dir, "md", None)


@app.command()
def probe(run_dir: Path = typer.Argument(..., help="A variant dir runs/<exp>/<variant>, an experiment dir, or runs/."),
          fold: Optional[List[int]] = _FOLD, device: Optional[str] = _DEVICE) -> None:
    """Embed train/val/test with each fold's best checkpoint; linear SVM UA/WA, retrieval Recall@1, k-means F1/NMI.

    Writes fold-NN/embeddings/{train,val,test}.npy (+ labels, ids) and fold-NN/probe.json.

    Example: ser-cl probe runs/supcon/pretrain_tau=0.1 --fold 1
    """
    from ser_cl.eval.run_probe import probe_run

    try:
        written = probe_run(run_dir, fold, device or "auto")
        typer.echo(f"wrote {len(written)} probe.json file(s)")
    except (FileNotFoundError, ValueError) as err:
        _fail(err)


@app.command()
def crosstest(run_dir: Path = typer.Argument(..., help="A variant dir runs/<exp>/<variant>, or an experiment dir "
                                             "(every variant with a classifier head)."),
              on: List[Path] = typer.Option(..., "--on", help="A prepared DATA_DIR to test on (repeatable)."),
              map_: Optional[List[str]] = typer.Option(None, "--map", help="NAME=SHARED: a class name of either "
                                                       "store -> the shared name (repeatable), e.g. --map hap=happy."),
              fold: Optional[List[int]] = _FOLD, device: Optional[str] = _DEVICE,
              redo: bool = typer.Option(False, "--redo", help="Test again folds whose cross.json has these stores.")) -> None:
    """Cross-corpus test: each fold's model, trained on one corpus, on other prepared corpora.

    Classes meet through --map (applied to both stores' classes; an unmapped name keeps its
    own); test classes with no training class are left out, training classes absent from the
    test store are never predicted. The stores must share the front-end. Writes
    fold-NN/cross.json; `ser-cl report` shows the train x test matrix.

    Example: ser-cl crosstest runs/cross_corpus/train --on data/emodb-mel64 --map neu=neutral --map ang=angry
    """
    from ser_cl.eval.cross_corpus import crosstest as run_crosstest

    try:
        lines = run_crosstest(run_dir, on, map_ or [], device or "auto", fold, skip_done=not redo)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        _fail(err)
    _echo_lines(lines)


@app.command()
def ensemble(out: Path = typer.Argument(..., help="The ensemble's variant dir to write, e.g. runs/emovo/ce_3seeds."),
             members: List[Path] = typer.Argument(..., help="Two or more variant dirs runs/<exp>/<variant> "
                                                  "trained over the same folds."),
             device: Optional[str] = _DEVICE) -> None:
    """Average several runs' class probabilities fold by fold (seeds of a recipe, or recipes on
    different stores of one corpus) and score the mean like a run.

    Writes OUT/run.json and OUT/fold-NN/{split,metrics,predictions}.json, so `ser-cl report`
    lists the ensemble (method `ensemble`) and `report --compare` pairs it with any run.

    Example: ser-cl ensemble runs/seeds/ce_ensemble runs/seed0/ce/train runs/seed1/ce/train runs/seed2/ce/train
    """
    from ser_cl.eval.ensemble import ensemble_runs, ensemble_summary

    try:
        written = ensemble_runs(members, out, device or "auto")
    except (FileNotFoundError, ValueError) as err:
        _fail(err)
    _echo_lines(ensemble_summary(written))


@app.command()
def report(runs_dir: Path = typer.Argument(Path("runs"), help="The runs dir, or one experiment's dir."),
           format: str = typer.Option("md", "--format", help="md, csv or json."),
           out: Optional[Path] = typer.Option(None, "--out", help="Write the table to this file."),
           plots: Optional[Path] = typer.Option(None, "--plots", help="PNG folder (default RUNS_DIR/plots)."),
           no_plots: bool = typer.Option(False, "--no-plots", help="Do not draw PNG plots."),
           compare: Optional[Tuple[str, str]] = typer.Option(
               None, "--compare", metavar="A B",
               help="Instead of the tables: A vs B (exp/variant, or a seed group) fold by fold, the mean "
                    "difference, wins/losses and a Wilcoxon signed-rank p (md or json)."),
           metric: str = typer.Option("test_ua", "--metric",
                                      help="With --compare: test_ua, val_ua, test_wa or val_wa.")) -> None:
    """The thesis' tables: UA/WA mean +- std over folds for val and test, per experiment and variant.

    Also retrieval Recall@1 and k-means F1/NMI (after `ser-cl probe`), the thesis' numbers beside
    ours, the best variant of each sweep marked, incomplete runs flagged with the missing files.
    Variants that differ only by a swept optim.seed get a "Seeds" table: the mean over seeds of
    their fold means +- the std over seeds. Plots (UA vs each swept hyper-parameter, pooled
    confusion matrices) need matplotlib.

    Examples:

      ser-cl report runs/ --format md --out runs/report.md

      ser-cl report runs/ --compare supcon/ft_ce_tau=0.1 ce_baseline/train
    """
    if compare is None:
        _print_report(runs_dir, format, out, plots, not no_plots)
        return
    from ser_cl.eval.compare import write_comparison

    try:
        text = write_comparison(runs_dir, compare[0], compare[1], metric, format, out)
    except (FileNotFoundError, ValueError) as err:
        _fail(err)
    typer.echo(text if out is None else f"wrote {out}")


def _print_report(runs_dir: Path, fmt: str, out: Optional[Path], plots_dir: Optional[Path] = None,
                  plots: bool = True) -> None:
    from ser_cl.eval.report import write_report

    try:
        res = write_report(runs_dir, fmt, out, plots=plots, plots_dir=plots_dir)
    except (FileNotFoundError, ValueError) as err:
        _fail(err)
    if out is None:
        typer.echo(res.text)
    else:
        typer.echo(f"wrote {out}")
    for line in res.messages:
        typer.echo(line, err=True)


@app.command()
def predict(model: Path = typer.Argument(..., help="A checkpoint (.pt), a fold dir, or a run dir (ensemble of its folds)."),
            audio: List[Path] = typer.Argument(..., help="Audio files: WAV, FLAC, OGG, AIFF (any sample rate, mono or stereo)."),
            enrol: Optional[List[Path]] = typer.Option(
                None, "--enrol",
                help="A speaker-normalised model: other recordings of the speaker (files or folders, repeatable), "
                     "used only for the speaker's statistics."),
            same_speaker: bool = typer.Option(
                False, "--same-speaker", help="A speaker-normalised model: the AUDIO files are one speaker's; "
                                              "take the statistics over them together."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
            device: Optional[str] = _DEVICE) -> None:
    """The emotion and class probabilities of each audio file.

    A model trained with model.input_norm = "speaker" (--preset cpu) standardises each recording
    with its speaker's statistics: from --enrol, from the files themselves with --same-speaker,
    else from a typical training speaker (with a warning). Each result names the one it got.
    A file that cannot be read is reported on stderr, the others are still predicted, and the
    exit code is 2, as for any bad input.

    Example: ser-cl predict runs/ce_baseline/train recording.wav --enrol other_takes/ --json
    """
    from ser_cl.predict import predict_files, result_lines

    try:
        results = predict_files(model, audio, device or "auto", enrol=enrol or None, same_speaker=same_speaker,
                                warn=lambda line: typer.echo(line, err=True))
    except (FileNotFoundError, ValueError) as err:
        _fail(err)
    for stream, line in result_lines(results, as_json):
        if stream == "error":
            typer.secho(line, fg=typer.colors.RED, err=True)
        else:
            typer.echo(line)
    if any("error" in r for r in results):
        raise typer.Exit(code=2)


if __name__ == "__main__":  # pragma: no cover
    app()
