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
    from rich.console import Console
    from rich.table import Table

    from p3m.models.hub import list_weights, weights_dir

    table = Table(title=f"weights cache: {weights_dir()}")
    table.add_column("model", no_wrap=True)
    for column in ("checkpoint", "installed", "sha256", "source"):
        table.add_column(column, overflow="fold")
    for row in list_weights():
        table.add_row(
            row.name,
            row.file_name or "-",
            str(row.path) if row.path else "[dim]no[/dim]",
            (row.sha256 or row.registered_sha256 or "-")[:16],
            row.source or row.url or "-",
        )
    Console().print(table)


@weights_app.command("download")
def download_command(
    name: str = typer.Argument(..., help="Model name, e.g. p3mnet-vitae-s."),
    force: bool = typer.Option(False, "--force", help="Download again even if installed."),
) -> None:
    """Download the published checkpoint of NAME (network access happens only here)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from p3m.models.hub import download_weights

    console = Console()
    with Progress(
        f"[bold]{name}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=Console(stderr=True), transient=True,
    ) as progress:
        task = progress.add_task("download", total=None)

        def on_progress(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        path = download_weights(name, progress=on_progress, force=force)
    _print_installed(console, name, path)


def _print_installed(console: Console, name: str, path: Path) -> None:
    from p3m.models.hub import weights_status

    status = weights_status(name)
    console.print(f"{name}: {path}", highlight=False)
    if status.sha256:
        checked = "matches the registered checksum" if status.verified else (
            "no checksum is registered; recorded in the cache index"
        )
        console.print(f"sha256 {status.sha256} ({checked})", highlight=False)


@weights_app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="A checkpoint you already have."),
    name: str = typer.Option(..., "--as", help="The model it belongs to, e.g. p3mnet-vitae-s."),
) -> None:
    """Check FILE loads strictly into model NAME, then copy it into the cache."""
    from rich.console import Console

    from p3m.models.hub import import_weights

    path = import_weights(file, name)
    _print_installed(Console(), name, path)


@weights_app.command("path")
def path_command(name: str = typer.Argument(..., help="Model name.")) -> None:
    """Print the cached checkpoint path of NAME (exit 1 with instructions if absent)."""
    from p3m.models.hub import install_hint, installed_weights

    path = installed_weights(name)
    if path is None:
        from p3m.errors import ModelNotFoundError

        raise ModelNotFoundError(f"no weights for {name} in the cache; {install_hint(name)}")
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
