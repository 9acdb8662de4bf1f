"""The ``--pattern`` corpus reader now lives in ``ser_cl.data.corpora.pattern``; this module keeps
the old import path (``from ser_cl.data.pattern_reader import read_pattern``) working."""

from __future__ import annotations

from ser_cl.data.corpora.pattern import PLACEHOLDERS, PathPattern, compile_pattern, parse_label_map, read_pattern

__all__ = ["PLACEHOLDERS", "PathPattern", "compile_pattern", "parse_label_map", "read_pattern"]
