"""The ``ser-cl`` command line: the Typer app (``app``) with its commands registered.

``python -m ser_cl.cli`` runs it too (what torchrun and the fold workers call).
"""

# importing a command module registers its commands; this order is the order of `ser-cl --help`
from ser_cl.cli import data_commands  # noqa: F401,I001
from ser_cl.cli import train_commands  # noqa: F401
from ser_cl.cli import eval_commands  # noqa: F401
from ser_cl.cli.app import app

__all__ = ["app"]
