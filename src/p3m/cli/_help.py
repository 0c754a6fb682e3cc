"""Command help that reads right in an 80-column terminal.

Typer's rich help lays the options out in a Rich table whose columns (name, short name, negative
name, type, description) Rich shrinks alike when the terminal is narrow, so a long option name
such as `--centerface-confidence` came out cut (`--centerface-conf…`) while the description
still had room to wrap. And Typer 0.29 prints a type placeholder (`<bool>`) for on/off flags,
which take no value. `HelpCommand` renders the same help with these changes: the name columns
are never narrower than their longest name (the description wraps and the type folds to make
room), flags show no placeholder, an on/off pair shows its on name with the off one in its
description (a column of off names narrowed every description), and the type column reads as a user would write the value: an
element type for a repeatable option or argument (`<path>`, not `<list[Path]>`), `<float>` before
a range (not `<float range>`), and choices spaced so that a narrow column wraps between them, never
inside a name.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    import click

DESCRIPTION_MIN_WIDTH = 16
"""The description column is not narrowed below this (cells, padding included) to widen a name."""

TYPE_MIN_WIDTH = 10
"""Nor the type column (`<float range>`; Typer folds it) below this."""


@functools.cache
def whole_words_table() -> type:
    """A Rich `Table` class for Typer's option panels (name columns, then the type, then the
    description): the name columns are never narrower than their longest name; the width they
    need comes from the description (which wraps), down to `DESCRIPTION_MIN_WIDTH`, then from the
    type column (which folds), down to `TYPE_MIN_WIDTH`. Rich is imported on first use, so
    `p3m --help` stays quick."""
    from rich.table import Table

    class WholeWordsTable(Table):
        def _calculate_column_widths(self, console: Any, options: Any) -> list[int]:
            widths = super()._calculate_column_widths(console, options)
            count = len(widths)
            if count < 2:
                return widths
            donors = [(count - 1, DESCRIPTION_MIN_WIDTH)]
            if count >= 3:
                donors.append((count - 2, TYPE_MIN_WIDTH))
            for index in range(count - len(donors)):
                shortfall = self._measure_column(console, options, self.columns[index]).minimum - widths[index]
                for donor, floor in donors:
                    moved = max(0, min(shortfall, widths[donor] - floor))
                    widths[donor] -= moved
                    widths[index] += moved
                    shortfall -= moved
            return widths

    return WholeWordsTable


@contextlib.contextmanager
def _flags_without_placeholder(params: list[Any]) -> Iterator[None]:
    """Show on/off flags (`--review`, `--audit/--no-audit`) and counted flags (`-v`, `-vv`)
    without a type placeholder while the help is rendered (Typer shows the metavar when one is set; an empty one shows nothing)."""
    flags = [
        param for param in params
        if isinstance(param, TyperOption) and (param.is_bool_flag or param.count) and param.metavar is None
    ]  # fmt: skip
    for flag in flags:
        flag.metavar = ""
    try:
        yield
    finally:
        for flag in flags:
            flag.metavar = None


@contextlib.contextmanager
def _negations_in_the_description(params: list[Any]) -> Iterator[None]:
    """Show an on/off pair (`--audit/--no-audit`) as its on name, the off one and the default
    said in the description ("On by default; --no-audit turns it off."), while the help is
    rendered: in a column of its own the off names set a width every option paid for,
    squeezing every description."""
    pairs = [
        param for param in params
        if isinstance(param, TyperOption) and param.is_bool_flag and param.secondary_opts
    ]  # fmt: skip
    saved = [(param.secondary_opts, param.help, param.show_default) for param in pairs]
    for param in pairs:
        off = ", ".join(param.secondary_opts)
        said = f"On by default; {off} turns it off." if param.default else f"Off by default ({off})."
        text = (param.help or "").rstrip()
        param.help = f"{text} {said}" if text else said
        param.secondary_opts, param.show_default = [], False
    try:
        yield
    finally:
        for param, (secondary, text, show_default) in zip(pairs, saved, strict=True):
            param.secondary_opts, param.help, param.show_default = secondary, text, show_default


def readable_type(label: str) -> str:
    """Typer's type placeholder as a user reads it: `<list[Path]>` -> `<path>`, `<list[str]>` ->
    `<str>`, `<float range>` -> `<float>` (the range follows it), `<a|b|c>` -> `<a | b | c>`."""
    inner = label[1:-1] if label.startswith("<") and label.endswith(">") else label
    while (match := re.fullmatch(r"list\[(.*)\]", inner)) is not None:
        inner = match.group(1)
    inner = {"Path": "path", "PosixPath": "path", "WindowsPath": "path"}.get(inner, inner)
    inner = re.sub(r"^(int|float) range$", r"\1", inner)
    if "|" in inner:
        inner = " | ".join(part.strip() for part in inner.split("|"))
    return f"<{inner}>"


@contextlib.contextmanager
def _readable_types(params: list[Any]) -> Iterator[None]:
    """Show `readable_type` placeholders while the help is rendered."""
    changed = []
    for param in params:
        display = getattr(param, "display_type_rich", None)
        if display is None or "display_type_rich" in vars(param):
            continue

        def readable(ctx: Any, display: Any = display) -> str | None:
            label = display(ctx)
            return readable_type(label) if label else label

        param.display_type_rich = readable
        changed.append(param)
    try:
        yield
    finally:
        for param in changed:
            del param.display_type_rich


@contextlib.contextmanager
def _whole_words_tables() -> Iterator[None]:
    from typer import rich_utils

    original = rich_utils.Table
    rich_utils.Table = whole_words_table()  # type: ignore[misc]
    try:
        yield
    finally:
        rich_utils.Table = original  # type: ignore[misc]


def usage_pieces(params: list[Any], ctx: Any) -> list[str]:
    """The usage line's pieces with arguments as the help names them: `FILE`, `[INPUTS]...`
    (Typer 0.29 writes `{file}` and `[inputs]...`, which read as placeholders to fill in)."""
    pieces = []
    for param in params:
        if isinstance(param, TyperArgument):
            name = param.metavar or (param.name or "").upper()
            pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        else:
            pieces.extend(param.get_usage_pieces(ctx))
    return pieces


@contextlib.contextmanager
def _help_formatting(params: list[click.Parameter]) -> Iterator[None]:
    """Every help rewrite of this module, for the duration of one help screen."""
    with (
        _flags_without_placeholder(params),
        _negations_in_the_description(params),
        _readable_types(params),
        _whole_words_tables(),
    ):
        yield


class HelpCommand(TyperCommand):
    """A Typer command whose help keeps option names whole and flags placeholder-free."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*([self.options_metavar] if self.options_metavar else []), *usage_pieces(self.get_params(ctx), ctx)]

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with _help_formatting(self.get_params(ctx)):
            super().format_help(ctx, formatter)


class HelpGroup(TyperGroup):
    """`HelpCommand`'s help for a command group (`p3m`, `p3m weights`, ...)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with _help_formatting(self.get_params(ctx)):
            super().format_help(ctx, formatter)
