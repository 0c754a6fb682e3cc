"""Command help that reads right in an 80-column terminal.

Typer's rich help lays the options out in a Rich table whose columns (name, short name, negative
name, type, description) Rich shrinks alike when the terminal is narrow, so a long option name
such as `--centerface-confidence` came out cut (`--centerface-conf…`) while the description
still had room to wrap. And Typer 0.29 prints a type placeholder (`<bool>`) for on/off flags,
which take no value. `HelpCommand` renders the same help with two changes: the name columns are
never narrower than their longest name (the description wraps and the type folds to make room),
and flags show no placeholder.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from typer.core import TyperCommand, TyperGroup, TyperOption

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
def _whole_words_tables() -> Iterator[None]:
    from typer import rich_utils

    original = rich_utils.Table
    rich_utils.Table = whole_words_table()  # type: ignore[misc]
    try:
        yield
    finally:
        rich_utils.Table = original  # type: ignore[misc]


class HelpCommand(TyperCommand):
    """A Typer command whose help keeps option names whole and flags placeholder-free."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with _flags_without_placeholder(self.get_params(ctx)), _whole_words_tables():
            super().format_help(ctx, formatter)


class HelpGroup(TyperGroup):
    """`HelpCommand`'s help for a command group (`p3m`, `p3m weights`, ...)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with _flags_without_placeholder(self.get_params(ctx)), _whole_words_tables():
            super().format_help(ctx, formatter)
