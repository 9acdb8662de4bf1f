"""Help text in the usual Click style for the ``ser-cl`` app.

Typer 0.2x (which vendors its own Click) writes types as "<int>", "<list[int]>", "<path>", and
its Rich help also gives boolean flags a type ("--dry-run <bool>"): its options table calls
display_type_rich() for every parameter, flags included. These subclasses give every command
the Click names (INTEGER, TEXT, PATH, FLOAT), bare flags, and a usage line like
"ser-cl train [OPTIONS] EXPERIMENT". Older Typer versions (no display_type_rich) print that
way already and are left alone.
"""

from __future__ import annotations

from typing import List

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

_CLICK_NAMES = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "BOOLEAN"}
_RESTYLE = hasattr(TyperOption, "display_type_rich")


def _click_type_name(param) -> str:
    import pathlib
    import typing

    desc = getattr(param, "type_descriptor", None)
    annotation = getattr(desc, "annotation", None)
    if typing.get_origin(annotation) in (list, List) and typing.get_args(annotation):
        annotation = typing.get_args(annotation)[0]  # a repeatable option: the element's type
    if getattr(desc, "is_choice", False) and getattr(desc, "choices", None):
        return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices) + "]"
    if getattr(desc, "is_path", False) or (isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath)):
        return "PATH"
    return _CLICK_NAMES.get(annotation, getattr(annotation, "__name__", "VALUE").upper())


class _ClickStyleOption(TyperOption):
    def display_type_rich(self, ctx):
        if self.metavar is not None:
            return self.metavar
        if self.is_flag or self.count:
            return None  # a flag takes no value
        return _click_type_name(self)


class _ClickStyleArgument(TyperArgument):
    def display_type_rich(self, ctx):
        return _click_type_name(self)

    def _usage_display_name(self) -> str:
        name = (self.metavar or self.name or "").upper() + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"


def _click_style(params):
    if _RESTYLE:
        for param in params:
            if type(param) is TyperOption:
                param.__class__ = _ClickStyleOption
            elif type(param) is TyperArgument:
                param.__class__ = _ClickStyleArgument
    return params


class _ClickStyleCommand(TyperCommand):
    def get_params(self, ctx):
        return _click_style(super().get_params(ctx))


class ClickStyleGroup(TyperGroup):
    """The app's group: restyles its own options and every command's (see above)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            if type(command) is TyperCommand:
                command.__class__ = _ClickStyleCommand

    def get_params(self, ctx):
        return _click_style(super().get_params(ctx))
