"""`ser-cl train`, `pretrain`, `finetune`, `run`, `status` and `quickstart`: training over folds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ser_cl.cli.app import (
    DEVICE_OPTION,
    DRY_OPTION,
    EXP_OPTION,
    FOLD_OPTION,
    FORCE_OPTION,
    PRESET_OPTION,
    RESTART_OPTION,
    SET_OPTION,
    STAGE_OPTION,
    TRAIN_ERRORS,
    app,
    echo_lines,
    fail,
    print_report,
    print_summary,
)


def _train(kinds, experiment, fold, set_, device, stage, preset, dry_run, extra_overrides=(), restart=False,
           force=False) -> None:
    from ser_cl.pipeline import dry_run_plan, train_planned
    from ser_cl.train.run import select_stages

    try:
        planned = select_stages(experiment, kinds, list(set_) + list(extra_overrides), [stage] if stage else None,
                                preset)
        _check_front_end(planned, preset, force)
        if dry_run:
            echo_lines(dry_run_plan(planned, fold))
            return
        for out in train_planned(planned, fold, device, restart=restart):
            typer.echo(f"done: {out}")
            print_summary(out)
    except TRAIN_ERRORS as err:
        fail(err)


def _check_front_end(planned, preset, force) -> None:
    """The stores must hold the front-end the preset was chosen for (--force: warn and go on)."""
    from ser_cl.pipeline import front_end_warnings

    for line in front_end_warnings(planned, preset, force):
        typer.secho(f"warning: {line}", fg=typer.colors.YELLOW, err=True)


@app.command()
def train(experiment: Path = EXP_OPTION, fold: Optional[List[int]] = FOLD_OPTION, set_: Optional[List[str]] = SET_OPTION,
          device: Optional[str] = DEVICE_OPTION, stage: Optional[str] = STAGE_OPTION, preset: Optional[str] = PRESET_OPTION,
          dry_run: bool = DRY_OPTION, restart: bool = RESTART_OPTION, force: bool = FORCE_OPTION) -> None:
    """Train the encoder + linear head with cross-entropy (optionally + lambda*SupCon + beta*NT-Xent).

    Writes runs/<experiment>/<variant>/fold-NN/ (config.toml, best.pt, last.pt, metrics.jsonl,
    metrics.json). Re-running the same command resumes after the last finished epoch.

    Example: ser-cl train experiments/ce_baseline.toml --set data.dir=data/iemocap --fold 1
    """
    _train(("train",), experiment, fold, set_ or [], device, stage, preset, dry_run, restart=restart,
           force=force)


@app.command()
def pretrain(experiment: Path = EXP_OPTION, fold: Optional[List[int]] = FOLD_OPTION, set_: Optional[List[str]] = SET_OPTION,
             device: Optional[str] = DEVICE_OPTION, stage: Optional[str] = STAGE_OPTION, preset: Optional[str] = PRESET_OPTION,
             dry_run: bool = DRY_OPTION, restart: bool = RESTART_OPTION, force: bool = FORCE_OPTION) -> None:
    """Train the encoder alone with a contrastive loss (triplet, smooth triplet, NT-Xent, SupCon, self-supervised NT-Xent).

    Example: ser-cl pretrain experiments/selfsup_ntxent.toml --set data.dir=data/iemocap
    """
    _train(("pretrain",), experiment, fold, set_ or [], device, stage, preset, dry_run, restart=restart,
           force=force)


@app.command()
def finetune(experiment: Path = EXP_OPTION,
             from_: Optional[Path] = typer.Option(None, "--from", help="Pretrained run dir runs/<experiment>/<variant>."),
             fold: Optional[List[int]] = FOLD_OPTION, set_: Optional[List[str]] = SET_OPTION,
             device: Optional[str] = DEVICE_OPTION, stage: Optional[str] = STAGE_OPTION, preset: Optional[str] = PRESET_OPTION,
             dry_run: bool = DRY_OPTION, restart: bool = RESTART_OPTION, force: bool = FORCE_OPTION) -> None:
    """Fine-tune a pretrained encoder with a linear head and cross-entropy (frozen encoder first, then all).

    Example: ser-cl finetune experiments/selfsup_ntxent.toml --stage ft_ce_aug --from runs/selfsup_ntxent/pretrain
    """
    extra = [f"finetune.from={json.dumps(str(from_))}"] if from_ is not None else []
    _train(("finetune",), experiment, fold, set_ or [], device, stage, preset, dry_run, extra, restart=restart,
           force=force)


@app.command()
def run(experiment: Path = EXP_OPTION, fold: Optional[List[int]] = FOLD_OPTION, set_: Optional[List[str]] = SET_OPTION,
        device: Optional[str] = DEVICE_OPTION, preset: Optional[str] = PRESET_OPTION, dry_run: bool = DRY_OPTION,
        restart: bool = RESTART_OPTION, force: bool = FORCE_OPTION,
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
            echo_lines(dry_run_plan(planned, fold))
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
        fail(err)
    from ser_cl.train.distributed import is_main

    if exp_dir is not None and not no_report and is_main():
        print_report(exp_dir, report_format, None)


@app.command()
def status(runs_dir: Path = typer.Argument(Path("runs"), help="The runs dir, an experiment's dir or a variant's.")) -> None:
    """Per experiment and variant: folds complete / started (last.pt, not complete) / missing.

    Example: ser-cl status runs/
    """
    from ser_cl.launch import status_lines

    try:
        echo_lines(status_lines(runs_dir))
    except (FileNotFoundError, ValueError) as err:
        fail(err)


@app.command()
def quickstart(out: Path = typer.Option(Path("data/quickstart"), "--out", help="Where the corpus and features go."),
               runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the runs go."),
               per_speaker: int = typer.Option(6, "--per-speaker", help="Synthetic utterances per speaker and class."),
               device: Optional[str] = DEVICE_OPTION) -> None:
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
        fail(err)
    typer.echo(f"step {QUICKSTART_STEPS}/{QUICKSTART_STEPS}: report of {exp_dir}", err=True)
    print_report(exp_dir, "md", None)
