"""The ``ser-cl`` command line: thin wrappers that parse arguments and call the library."""

from __future__ import annotations

from typing import Optional

import typer

from ser_cl import __version__

app = typer.Typer(
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


if __name__ == "__main__":  # pragma: no cover
    app()
