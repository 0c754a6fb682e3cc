"""`p3m cp-sources`: prepare the public source faces that P3M-CP pastes during training."""

from __future__ import annotations

from pathlib import Path

import typer

from p3m.cli._options import caps_image_pixels
from p3m.errors import ConfigError

cp_app = typer.Typer(
    help="Source faces for P3M-CP (copy-and-paste face augmentation, ICP / FCP).",
    no_args_is_help=True,
)


@cp_app.command("build")
@caps_image_pixels
def build(
    src: Path = typer.Argument(..., help="Folder of face images (and CelebAMask-HQ part masks)."),
    out: Path = typer.Argument(..., help="Output folder: index.json, faces/, masks/."),
    source_format: str = typer.Option(
        "celebamask-hq", "--format", "-f",
        help="celebamask-hq: <id>_skin.png / <id>_l_brow.png / <id>_r_brow.png masks and <id>.jpg "
        "images; faces: any face photos, masks from p3m's landmark pipeline.",
    ),
    max_size: int = typer.Option(256, help="Long side of the stored face crops (pixels, at most)."),
    line_margin: float = typer.Option(
        0.04, help="celebamask-hq: raise the eyebrow line by this fraction of the face height."
    ),
    detectors: str = typer.Option(
        "", help="faces: comma-separated face detectors (default: p3m.privacy's default union)."
    ),
    overwrite: bool = typer.Option(False, help="Replace a source set already in OUT."),
) -> None:
    """Crop faces and face masks from SRC into a P3M-CP source set in OUT."""
    from rich.console import Console
    from rich.progress import Progress

    from p3m.training.copy_paste.sources import SOURCE_FORMATS, build_cp_sources

    if source_format not in SOURCE_FORMATS:
        raise ConfigError(f"unknown --format {source_format!r}; choose from {', '.join(SOURCE_FORMATS)}")
    detector_names = tuple(d.strip() for d in detectors.split(",") if d.strip()) or None
    console = Console(emoji=False, stderr=True)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("cropping faces", total=None)
        report = build_cp_sources(
            src, out, source_format=source_format, max_size=max_size, line_margin=line_margin,
            detectors=detector_names, overwrite=overwrite,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for path, reason in report.skipped:
        console.print(f"[yellow]skipped[/yellow] {path}: {reason}", highlight=False, soft_wrap=True)
    console.print(f"{report.written} face(s) written to {out}", highlight=False)
    if report.skipped:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the `cp-sources` command group to the `p3m` app."""
    app.add_typer(cp_app, name="cp-sources")
