"""`p3m synth-data` and `p3m check-data`: a synthetic data set, and a layout check of a data root.

    p3m synth-data synthetic --n 32
    p3m check-data P3M-10k
"""

from __future__ import annotations

from pathlib import Path

import typer

from p3m.cli._options import caps_image_pixels


def synth_data_command(
    out: Path = typer.Argument(..., help="Folder to write the data set into."),
    n: int = typer.Option(32, "--n", min=1, help="Number of training samples."),
    n_val: int | None = typer.Option(None, "--n-val", min=1, help="Samples per test set (default n/4, >= 2)."),
    seed: int = typer.Option(0, "--seed"),
    min_size: int = typer.Option(256, "--min-size", min=64, help="Smallest image side."),
    max_size: int = typer.Option(320, "--max-size", min=64, help="Largest image side."),
) -> None:
    """Write a small synthetic portrait set in the P3M-10k layout (train, P3M-500-P/NP, RWP-636).

    Unlike the public P3M-10k, P3M-500-P also gets its normal (unobfuscated) images, in
    validation/P3M-500-P/original_image/ (for `p3m experiment baselines --normal-images`).
    """
    from rich.console import Console

    from p3m.data.synthetic import write_synthetic_dataset
    from p3m.errors import ConfigError

    if min_size > max_size:
        raise ConfigError(f"--min-size {min_size} is larger than --max-size {max_size}")
    counts = write_synthetic_dataset(out, n_train=n, n_val=n_val, seed=seed, min_size=min_size, max_size=max_size)
    console = Console(emoji=False)
    console.print(
        f"wrote {out}: " + ", ".join(f"{name} {count}" for name, count in counts.items()), highlight=False
    )
    console.print(
        f"normal (unobfuscated) P3M-500-P images, for --normal-images: "
        f"{out / 'validation' / 'P3M-500-P' / 'original_image'}",
        highlight=False,
        soft_wrap=True,
    )


def check_data_command(
    root: Path = typer.Argument(..., help="Data root (P3M-10k layout)."),
    protocol: str = typer.Option("B", "--protocol", help="B (blurred training images) or N (normal)."),
    normal_images: Path | None = typer.Option(None, "--normal-images", help="Normal training images (N)."),
    sets: list[str] | None = typer.Option(
        None,
        "--sets",
        help="Sets to check (repeatable): train, P3M-500-P, P3M-500-NP, RWP-636 "
        "(default: the first three, and RWP-636 when it is there).",
    ),
    deep: bool = typer.Option(False, "--deep", help="Also decode every file: unreadable or truncated files, size mismatches."),
) -> None:
    """Check a data root before training: missing folders, unmatched images/mattes, incomplete extras."""
    from rich.console import Console
    from rich.table import Table

    from p3m.data.layout import check_layout, set_label
    from p3m.errors import DatasetError

    if not root.is_dir():
        # Nothing to tabulate: one red line (exit 2) instead of an empty table and a problem.
        raise DatasetError("data root does not exist" if not root.exists() else "data root is not a folder", root)
    report = check_layout(root, sets or None, protocol, normal_images, deep=deep)
    table = Table(title=f"data layout of {root}")
    table.add_column("set")
    table.add_column("samples", justify="right")
    table.add_column("extras")
    for name, count in report.counts.items():
        table.add_row(set_label(name), str(count), ", ".join(report.extras.get(name, ())) or "-")
    console = Console(emoji=False)
    console.print(table)
    for note in report.notes:
        Console(emoji=False, stderr=True).print(f"note: {note}", highlight=False, soft_wrap=True)
    if report.problems:
        err = Console(emoji=False, stderr=True)
        for problem in report.problems:
            err.print(f"[red]problem:[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print("[green]layout OK[/green]")


def register(app: typer.Typer) -> None:
    app.command("synth-data")(synth_data_command)
    app.command("check-data")(caps_image_pixels(check_data_command))
