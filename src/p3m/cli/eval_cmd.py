"""`p3m eval`: score a folder of predicted alpha mattes with the official P3M metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from p3m.cli._options import caps_image_pixels
from p3m.vocabulary import Accumulate


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
    pred_suffix: str | None = typer.Option(
        None,
        "--pred-suffix",
        help="Predictions are <stem><suffix>.png, e.g. _alpha (what p3m matte writes); "
        "default: detected (_alpha when that pairs more files, else none).",
    ),
    accumulate: Accumulate = typer.Option(
        Accumulate.eval_py,
        "--accumulate",
        help="Means as the official eval.py (float32 running sum) or in float64.",
    ),
) -> None:
    """Compute SAD, MSE, MAD, SAD-T, MSE-T, MAD-T, SAD-FG, SAD-BG, Grad and Conn for a folder.

    Files are matched by stem and read as 8-bit PNG / 255 (the official eval.py convention);
    a `p3m matte` output folder (<stem>_alpha.png) is recognised.
    Files that cannot be evaluated are listed and skipped; the exit code is 1 if any was.
    """
    from rich.console import Console

    from p3m.cli._ui import exit_if_failed, metrics_table, run_progress
    from p3m.evaluation.folder import evaluate_folder, write_csv, write_json

    out = Console(emoji=False)
    err = Console(emoji=False, stderr=True)
    with run_progress("[bold]evaluating", err, show_failures=False) as on_event:
        evaluation = evaluate_folder(
            pred_dir,
            gt_dir,
            trimap_dir=trimap_dir,
            workers=workers,
            accumulate=accumulate.value,
            on_event=on_event,
            pred_suffix=pred_suffix,
        )
    if pred_suffix is None and evaluation.pred_suffix:
        err.print(
            f"note: predictions paired as <stem>{evaluation.pred_suffix}.png with <stem>.png "
            "(what p3m matte writes; set --pred-suffix to choose)",
            highlight=False, soft_wrap=True,
        )

    if evaluation.rows:
        out.print(metrics_table(evaluation, out.width))
    else:
        err.print("[red]no image could be evaluated[/red]", highlight=False)
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
    exit_if_failed(
        err, ((item.name, item.reason) for item in evaluation.skipped), "skipped {count} file(s)"
    )


def register(app: typer.Typer) -> None:
    """Add `p3m eval` to the command line."""
    app.command("eval", no_args_is_help=True)(caps_image_pixels(eval_command))
