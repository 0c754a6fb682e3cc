"""`p3m weights list | download NAME | import FILE --as NAME | path NAME`: the weights cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

weights_app = typer.Typer(
    help="Manage P3M-Net checkpoints in the cache ($P3M_HOME, default ~/.cache/p3m).",
    no_args_is_help=True,
)


@weights_app.command("list")
def list_command() -> None:
    """Registered models, their published checkpoints, and what the cache holds."""
    from rich.table import Table

    from p3m.models.hub import list_weights, weights_dir

    table = Table(title=f"weights cache: {weights_dir()}")
    table.add_column("model", no_wrap=True)
    for column in ("checkpoint", "installed", "sha256", "source"):
        table.add_column(column)
    for row in list_weights():
        table.add_row(
            row.name,
            row.file_name or "-",
            (str(row.path) + (f"\n[red]{row.problem}[/red]" if row.problem else "")) if row.path else "[dim]no[/dim]",
            (row.sha256 or row.registered_sha256 or "-")[:16],
            row.source or row.url or "-",
        )
    from p3m.cli._ui import print_table, table_console

    # File names and URLs whole (they are what `weights import` and a browser need), even when
    # the terminal is narrower than the table.
    print_table(table_console(), table)


@weights_app.command("download")
def download_command(
    name: str = typer.Argument(..., help="Model name, e.g. p3mnet-vitae-s."),
    force: bool = typer.Option(False, "--force", help="Download again even if installed."),
) -> None:
    """Download the published checkpoint of NAME (network access happens only here)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from p3m.models.hub import download_weights

    console = Console(emoji=False)
    err = Console(emoji=False, stderr=True)
    with Progress(
        f"[bold]{name}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("download", total=None)

        def on_progress(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        path = download_weights(name, progress=on_progress, force=force)
    _print_installed(console, name, path)


def _print_installed(console: Console, name: str, path: Path) -> None:
    from p3m.models.hub import weights_status

    status = weights_status(name)
    console.print(f"{name}: {path}", highlight=False, soft_wrap=True)  # whole, to copy
    if status.sha256:
        checked = "matches the registered checksum" if status.verified else (
            "no checksum is registered; recorded in the cache index"
        )
        console.print(f"sha256 {status.sha256} ({checked})", highlight=False, soft_wrap=True)


@weights_app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="A checkpoint you already have."),
    name: str = typer.Option(..., "--as", help="The model it belongs to, e.g. p3mnet-vitae-s."),
    force: bool = typer.Option(False, "--force", help="Replace other weights already cached for NAME."),
) -> None:
    """Check FILE loads strictly into model NAME, then copy it into the cache.

    A FILE that is damaged or of another model is refused (exit code 2). If the cache already
    holds other weights for NAME, they are kept and the command stops (exit code 2) unless
    --force replaces them.
    """
    from rich.console import Console

    from p3m.models.hub import import_weights

    path = import_weights(file, name, force=force)
    _print_installed(Console(emoji=False), name, path)


@weights_app.command("path")
def path_command(name: str = typer.Argument(..., help="Model name.")) -> None:
    """Print the cached checkpoint path of NAME.

    Exit code 0 with the path; exit code 1 when no weights of NAME are installed, or the cached
    file is damaged (with how to get them, on stderr); exit code 2 for a name that is not a model.
    """
    from rich.console import Console

    from p3m.models.hub import install_hint, installed_weights, weights_dir, weights_status
    from p3m.models.registry import get_spec

    get_spec(name)  # an unknown name is a usage error (exit code 2)
    path = installed_weights(name)
    if path is None:
        Console(emoji=False, stderr=True).print(
            f"[red]error:[/red] no weights for {name} in the cache {weights_dir()}; {install_hint(name)}",
            highlight=False, soft_wrap=True,
        )
        raise typer.Exit(1)
    problem = weights_status(name).problem
    if problem is not None:
        Console(emoji=False, stderr=True).print(
            f"[red]error:[/red] {path}: {problem}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
