"""`p3m eval`: score a folder of predicted alpha mattes with the official P3M metrics."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from p3m.evaluation.folder import FolderEvaluation


class Accumulate(str, Enum):
    eval_py = "eval_py"
    float64 = "float64"


def eval_command(
    pred_dir: Path = typer.Argument(..., help="Folder of predicted alpha mattes (PNG)."),
    gt_dir: Path = typer.Argument(
        ..., help="Folder of ground-truth alpha mattes (PNG, same file stems)."
    ),
    trimap_dir: Path | None = typer.Option(
        None,
        "--trimap-dir",
        help="Folder of trimaps (PNG, same stems) for SAD-T/MSE-T/MAD-T/SAD-FG/SAD-BG.",
    ),
    csv_path: Path | None = typer.Option(
        None, "--csv", help="Write per-image metrics to this CSV file."
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Write the summary (means, counts, skipped files) as JSON."
    ),
    workers: int = typer.Option(
        2, "--workers", "-j", min=1, help="Worker processes (results do not depend on it)."
    ),
    accumulate: Accumulate = typer.Option(
        Accumulate.eval_py,
        "--accumulate",
        help="Means as the official eval.py (float32 running sum) or in float64.",
    ),
) -> None:
    """Compute SAD, MSE, MAD, SAD-T, MSE-T, MAD-T, SAD-FG, SAD-BG, Grad and Conn for a folder.

    Files are matched by stem and read as 8-bit PNG / 255 (the official eval.py convention).
    Files that cannot be evaluated are listed and skipped; the exit code is 1 if any was.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from p3m.evaluation.folder import evaluate_folder, write_csv, write_json

    out = Console()
    err = Console(stderr=True)
    with Progress(
        TextColumn("[bold]evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task_id = progress.add_task("evaluating", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task_id, completed=done, total=total)

        evaluation = evaluate_folder(
            pred_dir,
            gt_dir,
            trimap_dir=trimap_dir,
            workers=workers,
            accumulate=accumulate.value,
            on_progress=on_progress,
        )

    out.print(_summary_table(evaluation, out.width))
    for key, names in evaluation.summary.excluded.items():
        err.print(
            f"[yellow]note:[/yellow] {key} mean leaves out {len(names)} non-finite value(s): "
            + ", ".join(names),
            highlight=False,
        )
    if csv_path is not None:
        write_csv(csv_path, evaluation)
        out.print(f"per-image metrics: {csv_path}", highlight=False)
    if json_path is not None:
        write_json(json_path, evaluation)
        out.print(f"summary: {json_path}", highlight=False)
    if evaluation.skipped:
        err.print(f"[red]skipped {len(evaluation.skipped)} file(s):[/red]", highlight=False)
        for item in evaluation.skipped:
            err.print(f"  {item.name}: {item.reason}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


def _summary_table(evaluation: FolderEvaluation, width: int) -> Table:
    """Means in the paper's column order; one row per metric when the terminal is narrow."""
    from rich.table import Table

    from p3m.evaluation.metrics import DISPLAY_NAMES, METRIC_KEYS

    summary = evaluation.summary
    keys = [key for key in METRIC_KEYS if key in summary.means]
    title = f"{len(evaluation.rows)} images evaluated, {len(evaluation.skipped)} skipped"
    table = Table(title=title, title_justify="left")
    if width >= 12 * (len(keys) + 1):
        table.add_column("")
        for key in keys:
            table.add_column(DISPLAY_NAMES[key], justify="right")
        table.add_row("mean", *(f"{summary.means[key]:.4g}" for key in keys))
        table.add_row("images", *(str(summary.counts[key]) for key in keys))
        return table
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("images", justify="right")
    for key in keys:
        table.add_row(DISPLAY_NAMES[key], f"{summary.means[key]:.6g}", str(summary.counts[key]))
    return table


def register(app: typer.Typer) -> None:
    """Add `p3m eval` to the command line."""
    app.command("eval", no_args_is_help=True)(eval_command)
