"""`ser-cl probe`, `crosstest`, `ensemble`, `report` and `predict`: scoring trained runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer

from ser_cl.cli.app import DEVICE_OPTION, FOLD_OPTION, app, echo_lines, fail, print_report



@app.command()
def probe(run_dir: Path = typer.Argument(..., help="A variant dir runs/<exp>/<variant>, an experiment dir, or runs/."),
          fold: Optional[List[int]] = FOLD_OPTION, device: Optional[str] = DEVICE_OPTION) -> None:
    """Embed train/val/test with each fold's best checkpoint; linear SVM UA/WA, retrieval Recall@1, k-means F1/NMI.

    Writes fold-NN/embeddings/{train,val,test}.npy (+ labels, ids) and fold-NN/probe.json.

    Example: ser-cl probe runs/supcon/pretrain_tau=0.1 --fold 1
    """
    from ser_cl.eval.run_probe import probe_run

    try:
        written = probe_run(run_dir, fold, device or "auto")
        typer.echo(f"wrote {len(written)} probe.json file(s)")
    except (FileNotFoundError, ValueError) as err:
        fail(err)


@app.command()
def crosstest(run_dir: Path = typer.Argument(..., help="A variant dir runs/<exp>/<variant>, or an experiment dir "
                                             "(every variant with a classifier head)."),
              on: List[Path] = typer.Option(..., "--on", help="A prepared DATA_DIR to test on (repeatable)."),
              map_: Optional[List[str]] = typer.Option(None, "--map", help="NAME=SHARED: a class name of either "
                                                       "store -> the shared name (repeatable), e.g. --map hap=happy."),
              fold: Optional[List[int]] = FOLD_OPTION, device: Optional[str] = DEVICE_OPTION,
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
        fail(err)
    echo_lines(lines)


@app.command()
def ensemble(out: Path = typer.Argument(..., help="The ensemble's variant dir to write, e.g. runs/emovo/ce_3seeds."),
             members: List[Path] = typer.Argument(..., help="Two or more variant dirs runs/<exp>/<variant> "
                                                  "trained over the same folds."),
             device: Optional[str] = DEVICE_OPTION) -> None:
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
        fail(err)
    echo_lines(ensemble_summary(written))


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
        print_report(runs_dir, format, out, plots, not no_plots)
        return
    from ser_cl.eval.compare import write_comparison

    try:
        text = write_comparison(runs_dir, compare[0], compare[1], metric, format, out)
    except (FileNotFoundError, ValueError) as err:
        fail(err)
    typer.echo(text if out is None else f"wrote {out}")


@app.command()
def predict(model: Path = typer.Argument(..., help="A checkpoint (.pt), a fold dir, or a run dir (ensemble of its folds)."),
            audio: List[Path] = typer.Argument(..., help="Audio files: WAV, FLAC, OGG, AIFF (any sample rate, mono or stereo)."),
            enrol: Optional[List[Path]] = typer.Option(
                None, "--enrol",
                help="A speaker-normalised model: other recordings of the speaker (files, folders, or a quoted glob "
                     "such as 'dir/*-01.wav'; repeatable), used only for the speaker's statistics."),
            same_speaker: bool = typer.Option(
                False, "--same-speaker", help="A speaker-normalised model: the AUDIO files are one speaker's; "
                                              "take the statistics over them together."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
            device: Optional[str] = DEVICE_OPTION) -> None:
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
        fail(err)
    for stream, line in result_lines(results, as_json):
        if stream == "error":
            typer.secho(line, fg=typer.colors.RED, err=True)
        else:
            typer.echo(line)
    if any("error" in r for r in results):
        raise typer.Exit(code=2)
