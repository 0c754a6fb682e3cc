"""The `p3m` command line: a thin Typer layer over the library.

Each sub-command lives in its own module of this package and registers itself
on `app` through `register(app)`. Command modules import heavy libraries
(torch, mediapipe) inside the command function, so `p3m --help` stays fast.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys

import typer
from rich.console import Console

from p3m.errors import P3MError

app = typer.Typer(
    name="p3m",
    help="Privacy-preserving portrait matting: matte, anonymise, train and evaluate.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)

err_console = Console(emoji=False, stderr=True)


# Options whose flag is not the keyword's: `resume=False` is `--fresh`.
_SPELLED_OTHERWISE: dict[tuple[str, object], str] = {("resume", False): "--fresh"}


def command_line_option(keyword: str, value: object) -> str:
    """An option a library error suggests (`P3MError.options`), as the command line spells it:
    `overwrite=True` -> `--overwrite`, `audit=False` -> `--no-audit`, `workers=4` -> `--workers 4`."""
    if (keyword, value) in _SPELLED_OTHERWISE:
        return _SPELLED_OTHERWISE[keyword, value]
    flag = "--" + keyword.replace("_", "-")
    if value is True:
        return flag
    if value is False:
        return "--no-" + keyword.replace("_", "-")
    return f"{flag} {value}"

# One module per command group; each defines `register(app)`.
COMMAND_MODULES: tuple[str, ...] = (
    "p3m.cli.eval_cmd",
    "p3m.cli.matte_cmd",
    "p3m.cli.weights_cmd",
    "p3m.cli.anonymize_cmd",
    "p3m.cli.train_cmd",
    "p3m.cli.data_cmd",
    "p3m.cli.cp_cmd",
    "p3m.cli.serve_cmd",
    "p3m.cli.export_cmd",
    "p3m.cli.bench_cmd",
    "p3m.cli.experiment_cmd",
    "p3m.cli.video_cmd",
)


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log output from p3m (-v, -vv); -vvv: from every library too."
    ),
) -> None:
    set_verbosity(verbose)


def set_verbosity(verbose: int) -> None:
    """Log levels for `-v` given `verbose` times: p3m's warnings, then INFO, then DEBUG (3: every library)."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    # Other libraries (matplotlib, numba, PIL, ...) stay at warnings unless asked for with -vvv:
    # their debug output buries p3m's.
    logging.basicConfig(level=logging.DEBUG if verbose >= 3 else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("p3m").setLevel(level)


def reflow_help(text: str | None) -> str | None:
    """A docstring as command help: the lines of each paragraph joined into one, so that the
    terminal wraps it at its own width (Typer's rich mode keeps single line breaks, which leaves
    ragged lines in a terminal narrower than the source). Lines that start with spaces, "- " or
    "* " (examples, lists) keep their own line."""
    if text is None:
        return None
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines = paragraph.split("\n")
        joined = lines[0]
        for line in lines[1:]:
            keeps_its_line = line.startswith((" ", "- ", "* ", "\b"))
            joined += ("\n" if keeps_its_line else " ") + line
        paragraphs.append(joined)
    return "\n\n".join(paragraphs)


def _reflow_commands(typer_app: typer.Typer) -> None:
    """Reflowed docstrings as help, and help that keeps option names whole (`HelpCommand`)."""
    from typer.core import TyperCommand
    from typer.models import DefaultPlaceholder

    from p3m.cli._help import HelpCommand, HelpGroup

    if isinstance(typer_app.info.cls, DefaultPlaceholder) or typer_app.info.cls is None:
        typer_app.info.cls = HelpGroup
    for command in typer_app.registered_commands:
        if command.help is None and command.callback is not None:
            command.help = reflow_help(command.callback.__doc__)
        if command.cls in (None, TyperCommand):
            command.cls = HelpCommand
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_commands(group.typer_instance)


def _register_all() -> None:
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)
    _reflow_commands(app)


_register_all()


def main(argv: list[str] | None = None, *, command: str | None = None, prog_name: str | None = None) -> None:
    """Entry point of the `p3m` script: P3MError becomes one red line and exit code 2.

    `argv` replaces the command line (`sys.argv[1:]`). With `command`, that one sub-command runs
    on its own under `prog_name` (its usage line then reads `prog_name [OPTIONS] ...`, without
    the sub-command's name), e.g. `python -m p3m.training`.
    """
    try:
        if command is None:
            app(args=argv, prog_name=prog_name)
        else:
            from typer.main import get_command

            get_command(app).commands[command].main(args=argv, prog_name=prog_name)
    except P3MError as error:
        from rich.markup import escape

        # The message is text, never markup or emoji codes (a protocol "B:B:" became an emoji).
        err_console.print(f"[red]error:[/red] {escape(error.worded(command_line_option))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        from p3m.cli._ui import INTERRUPT_REPORTED

        if not INTERRUPT_REPORTED.is_set():  # a folder run has said how far it got
            err_console.print("[red]interrupted[/red]")
        sys.exit(130)
