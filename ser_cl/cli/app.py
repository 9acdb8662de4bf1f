"""The ``ser-cl`` Typer app, and what its command modules share: options, error and output helpers.

Each command parses its arguments, calls the library (``ser_cl.data.*``, ``ser_cl.pipeline``,
``ser_cl.eval.*``, ``ser_cl.predict``), prints the lines it returns and maps errors to exit code 2.
The commands live by what they work on: data_commands (prepare, synth, folds), train_commands
(train, pretrain, finetune, run, status, quickstart), eval_commands (probe, crosstest, ensemble,
report, predict).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ser_cl import __version__
from ser_cl.cli.style import ClickStyleGroup

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


def echo_lines(lines: List[str]) -> None:
    for line in lines:
        typer.echo(line)


def fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def print_summary(variant_dir: Path) -> None:
    from ser_cl.eval.summary import summarize_variant
    from ser_cl.train.distributed import is_main

    if is_main():
        for line in summarize_variant(variant_dir):
            typer.echo(line)


def print_report(runs_dir: Path, fmt: str, out: Optional[Path], plots_dir: Optional[Path] = None,
                 plots: bool = True) -> None:
    from ser_cl.eval.report import write_report

    try:
        res = write_report(runs_dir, fmt, out, plots=plots, plots_dir=plots_dir)
    except (FileNotFoundError, ValueError) as err:
        fail(err)
    if out is None:
        typer.echo(res.text)
    else:
        typer.echo(f"wrote {out}")
    for line in res.messages:
        typer.echo(line, err=True)


# -- what the training and evaluation commands share ---------------------------------------------
# ConfigError is a ValueError and TrainingDiverged a RuntimeError: both print as one line
TRAIN_ERRORS = (FileNotFoundError, ValueError, RuntimeError)
SET_HELP = ("Override any config field, e.g. --set optim.epochs=5 --set data.dir=data/emodb (repeatable); "
            "--set kind.finetune.optim.lr=1e-3 sets it for the stages of one kind only.")
FOLD_HELP = "Run only this fold (1-based; repeatable). Default: all folds of the protocol."
PRESET_HELP = "A TOML file of overrides merged into every stage, or a name in experiments/presets/ (e.g. cpu)."

EXP_OPTION = typer.Argument(..., help="Experiment TOML file (see experiments/).")
FOLD_OPTION = typer.Option(None, "--fold", help=FOLD_HELP)
SET_OPTION = typer.Option(None, "--set", help=SET_HELP)
DEVICE_OPTION = typer.Option(None, "--device", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N.")
STAGE_OPTION = typer.Option(None, "--stage", help="Run only the stage of this name.")
PRESET_OPTION = typer.Option(None, "--preset", help=PRESET_HELP)
DRY_OPTION = typer.Option(False, "--dry-run", help="Print the variants and run directories, train nothing.")
RESTART_OPTION = typer.Option(False, "--restart", help="Clear the selected folds and train them afresh (e.g. after "
                              "changing the config: a fold trained under another config is otherwise refused).")
FORCE_OPTION = typer.Option(False, "--force", help="Train even on a data store whose front-end is not the one the "
                            "--preset was chosen for (a warning instead of the error).")
