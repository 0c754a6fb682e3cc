"""`p3m baseline` and `p3m table`: traditional trimap-based baselines and the paper's result tables.

    p3m baseline cf --data-root P3M-10k --set P3M-500-P --out results/P3M-500-P/cf
    p3m table results/*/cf/metrics.json P3M-Net=runs/r34/metrics.json --markdown table.md
"""

from __future__ import annotations

from pathlib import Path

import typer

from p3m.cli._options import baseline_budget_option, caps_image_pixels
from p3m.vocabulary import BaselineMethod, TestSet


def baseline_command(
    method: BaselineMethod = typer.Argument(
        ...,
        help="cf (closed-form), knn, lkm (large kernel), rw (random walk), sm (shared), "
        "lbdm (learning-based).",
    ),
    data_root: Path = typer.Option(..., "--data-root", help="P3M-10k root (or the RWP-636 folder)."),
    test_set: TestSet = typer.Option(..., "--set", help="Test set: P3M-500-P, P3M-500-NP or RWP."),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder (default: p3m-results/SET/METHOD)."
    ),
    max_pixels: int = baseline_budget_option(
        "Solve larger images at this many pixels, upsample, re-impose the known trimap "
        "regions (recorded in the results). 0 = full resolution."
    ),
    trimap_dir: Path | None = typer.Option(
        None, "--trimap-dir", help="Use these trimaps (PNG by stem) instead of the set's own."
    ),
    trimap_kernel: int = typer.Option(
        15,
        "--trimap-kernel",
        min=1,
        help="When the set has no trimaps (RWP-636): kernel of gen_trimap_with_dilate used to "
        "make them from the ground truth.",
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N images."),
    skip_existing: bool = typer.Option(
        False, "--skip-existing", help="Reuse predictions already in the output folder (resume)."
    ),
) -> None:
    """Run a trimap-based traditional matting baseline (pymatting) on a test set and score it.

    Writes OUT/<name>.png (8-bit alpha, scored exactly like `p3m eval`), OUT/metrics.csv
    (per image) and OUT/metrics.json (summary, for `p3m table`). Exit code 1 if an image failed.
    """
    from rich.console import Console

    from p3m.cli._ui import exit_if_failed, metrics_table, run_progress
    from p3m.data.layout import find_samples
    from p3m.evaluation.baselines import get_baseline, run_baseline
    from p3m.evaluation.folder import write_csv

    out_console = Console(emoji=False)
    err = Console(emoji=False, stderr=True)
    baseline = get_baseline(method.value)
    samples = find_samples(data_root, test_set.value)
    if limit is not None:
        samples = samples[:limit]
    out_dir = out if out is not None else Path("p3m-results") / test_set.value / method.value
    set_label = test_set.label
    if trimap_dir is None and any(sample.trimap is None for sample in samples):
        err.print(
            f"[yellow]note:[/yellow] {set_label} has no trimaps in its layout, and "
            f"{baseline.title} needs one: generating them from the ground-truth alpha with the "
            f"official gen_trimap_with_dilate (kernel {trimap_kernel}) into {out_dir / 'trimap'}; "
            "the results are flagged as such.",
            highlight=False,
        )
    with run_progress(f"[bold]{baseline.label}[/bold] on {set_label}", err, show_failures=False) as on_event:
        run = run_baseline(
            baseline,
            samples,
            out_dir,
            max_pixels=max_pixels or None,
            trimap_dir=trimap_dir,
            trimap_kernel=trimap_kernel,
            set_name=test_set.value,
            skip_existing=skip_existing,
            on_event=on_event,
        )

    evaluation = run.evaluation
    write_csv(out_dir / "metrics.csv", evaluation)
    run.record().write(out_dir / "metrics.json")
    if evaluation.rows:
        out_console.print(metrics_table(evaluation, out_console.width))
    else:
        err.print("[red]no image could be evaluated[/red]", highlight=False)
    if run.resized:
        err.print(
            f"[yellow]note:[/yellow] {len(run.resized)} image(s) larger than {max_pixels:,} pixels "
            "were solved at reduced size and upsampled (known regions re-imposed); recorded in "
            "metrics.json (--max-pixels 0 for full resolution)",
            highlight=False,
        )
    out_console.print(f"predictions and metrics.json: {out_dir}", highlight=False)
    exit_if_failed(err, sorted(run.failed.items()), "{count} image(s) failed")


def table_command(
    results: list[str] = typer.Argument(
        ...,
        help="Summary JSON files (p3m eval --json, evaluate-model, baseline), each optionally "
        "named as METHOD\\[@SET]\\[@PROTOCOL]=FILE, e.g. P3M-Net@B:N=runs/bn/metrics.json.",
    ),
    markdown: Path | None = typer.Option(None, "--markdown", help="Write the Markdown table here."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write the CSV table here."),
    metrics: str = typer.Option(
        "sad,mse,mad,sad_t,mse_t,mad_t,grad,conn", "--metrics", help="Comma-separated metric keys."
    ),
    protocols: bool | None = typer.Option(
        None,
        "--protocols/--sets",
        help="Privacy-protocol table (B:B, B:N, N:N rows) or the main table "
        "(default: protocols when every result is tagged with one).",
    ),
    title: str = typer.Option("", "--title", help="Caption above the Markdown table."),
) -> None:
    """Render the paper's result table (methods x P3M-500-P, P3M-500-NP, RWP-636) or the protocol table."""
    from rich.console import Console

    from p3m.evaluation.tables import parse_result_spec, protocol_table, results_table
    from p3m.io import atomic_write_text

    entries = [parse_result_spec(spec) for spec in results]
    keys = [key.strip().lower() for key in metrics.split(",") if key.strip()]
    use_protocols = protocols if protocols is not None else all(e.protocol for e in entries)
    table = (protocol_table if use_protocols else results_table)(entries, keys, title=title)
    text = table.to_markdown()
    if markdown is not None:
        atomic_write_text(markdown, text)
    if csv_path is not None:
        atomic_write_text(csv_path, table.to_csv())
    Console(emoji=False, soft_wrap=True).print(text, highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add `p3m baseline` and `p3m table` to the command line."""
    app.command("baseline", no_args_is_help=True)(caps_image_pixels(baseline_command))
    app.command("table", no_args_is_help=True)(table_command)
