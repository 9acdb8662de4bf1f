"""Progress bars only where someone watches them.

A tqdm bar redraws itself with carriage returns; in a log file or a CI transcript each redraw
becomes noise. ``progress_bar`` is tqdm with the bar switched off when stderr (where tqdm
draws) is not a terminal. The environment variable ``SER_CL_PROGRESS`` overrides the check:
``1`` (or true/yes/on) forces bars on, ``0`` (or false/no/off) forces them off.
Lines meant to stay (``tqdm.write``, ``print``) are not affected.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Optional

ENV_VAR = "SER_CL_PROGRESS"
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def bars_enabled(stream: Any = None) -> bool:
    """Whether progress bars should be drawn on ``stream`` (default: ``sys.stderr``)."""
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced in _ON:
        return True
    if forced in _OFF:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable: Optional[Iterable] = None, *, disable: bool = False, **tqdm_kwargs: Any):
    """``tqdm(iterable, **tqdm_kwargs)``, disabled when ``disable`` or when bars are not wanted."""
    from tqdm.auto import tqdm

    off = disable or not bars_enabled(tqdm_kwargs.get("file"))
    return tqdm(iterable, disable=off, **tqdm_kwargs)
