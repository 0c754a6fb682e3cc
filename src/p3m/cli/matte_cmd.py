"""`p3m matte` (photos -> alpha mattes, cut-outs, composites) and `p3m demo`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer

from p3m.cli.video_cmd import TEMPORAL_HELP, VIDEO_FORMAT_HELP, TemporalChoice


class StrategyChoice(str, Enum):
    hybrid = "hybrid"
    resize = "resize"


def _background(value: str) -> Any:
    """A colour, or an image file to composite over."""
    from p3m.inference.foreground import parse_color

    path = Path(value).expanduser()
    if path.is_file():
        from p3m.io import read_image

        return read_image(path)
    return parse_color(value)


def _describe_model(matter: Any) -> str:
    return matter.name if matter.name == "selfie-cf" else f"{matter.name} (P3M-Net, {matter.strategy})"


def matte_command(
    inputs: list[str] = typer.Argument(..., help="Image files, folders or glob patterns ('photos/*.jpg')."),
    out_dir: Path = typer.Option(Path("p3m-output"), "--out-dir", "-o", help="Folder for the outputs."),
    model: str = typer.Option(
        "auto",
        "--model",
        "-m",
        help="auto (P3M-Net ViTAE-S if its weights are cached, else selfie-cf), selfie-cf, "
        "p3mnet-r34, p3mnet-swin-t, p3mnet-vitae-s, or an .onnx file from p3m export-onnx.",
    ),
    weights: str | None = typer.Option(
        None, "--weights", "-w", help="Checkpoint file, or a model name whose cached weights to use."
    ),
    strategy: StrategyChoice = typer.Option(
        StrategyChoice.hybrid, "--strategy", help="Official P3M-Net test-time strategy."
    ),
    save: str = typer.Option(
        "alpha,rgba",
        "--save",
        help="Comma list of outputs: alpha, rgba, foreground, composite, trimap.",
    ),
    background: str = typer.Option(
        "white",
        "--background",
        "-b",
        help="Composite background: colour (name, #rrggbb, r,g,b) or image file; for videos also a video file (looped).",
    ),
    video_format: str = typer.Option("mov-prores4444", "--format", help=VIDEO_FORMAT_HELP),
    temporal: TemporalChoice = typer.Option(TemporalChoice.on, "--temporal", help=TEMPORAL_HELP),
    max_pixels: int = typer.Option(
        0,
        "--max-pixels",
        help="Pixel budget: larger images are matted shrunk and the alpha upsampled back "
        "(0 = default, about 1080 x 1620; -1 = no budget).",
    ),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    download: bool = typer.Option(
        False,
        "--download",
        help="Download the model's published weights first if they are not cached (the only "
        "network access; with --model auto this fetches P3M-Net ViTAE-S).",
    ),
) -> None:
    """Matte portraits: per image <stem>_alpha.png, <stem>_rgba.png (straight alpha) and more.

    Existing outputs are kept unless --overwrite. Inputs that are missing or cannot be read are
    reported and skipped, the rest matted; the exit code is 1 if any was skipped.
    """
    from rich.console import Console

    from p3m.cli._ui import exit_if_failed, item_progress
    from p3m.errors import ImageReadError, P3MError
    from p3m.inference.api import MATTE_MAX_PIXELS, Matter
    from p3m.inference.batch import collect_inputs, parse_save, plan_outputs, write_outputs

    out = Console()
    err = Console(stderr=True)
    # Video files go to p3m.video; when only videos were given, that is the whole run.
    from p3m.cli.video_cmd import matte_video_inputs, split_video_inputs

    inputs, videos = split_video_inputs(inputs, recursive=recursive)
    video_failures = []
    if videos:
        video_failures = matte_video_inputs(
            videos, out_dir, save=save, video_format=video_format, background=background,
            temporal=temporal is TemporalChoice.on, model=model, weights=weights,
            strategy=strategy.value, device=device, max_pixels=max_pixels, overwrite=overwrite,
            download=download,
        )  # fmt: skip
        if not inputs:
            exit_if_failed(err, video_failures, "failed on {count} video(s)")
            return
    kinds = parse_save(save)
    backdrop = _background(background) if "composite" in kinds else "white"
    budget = MATTE_MAX_PIXELS if max_pixels == 0 else None if max_pixels < 0 else max_pixels
    failures: list[tuple[str, str]] = []
    jobs = plan_outputs(collect_inputs(inputs, recursive=recursive, missing=failures), out_dir)
    if len(failures) == len(inputs):
        # Nothing given exists: a usage error (exit 2), not a partly failed run.
        if len(failures) == 1:
            raise ImageReadError(failures[0][1], failures[0][0])
        raise ImageReadError(
            "none of the inputs exists: " + "; ".join(f"{name} ({reason})" for name, reason in failures)
        )
    failures += video_failures
    for name, reason in failures:
        err.print(f"[red]skipped:[/red] {name}: {reason}", highlight=False, soft_wrap=True)
    if not jobs:
        err.print("[yellow]no images found[/yellow]")
        exit_if_failed(err, failures, "skipped {count} input(s)")
        raise typer.Exit(1)
    todo = [job for job in jobs if overwrite or job.missing(kinds)]
    skipped = len(jobs) - len(todo)
    if skipped:
        out.print(f"kept {skipped} image(s) whose outputs exist (use --overwrite to redo them)")
    if not todo:
        exit_if_failed(err, failures, "skipped {count} input(s)")
        return

    if download and weights is None and model != "selfie-cf" and not model.lower().endswith(".onnx"):
        from p3m.inference.api import AUTO_PREFERRED_MODEL
        from p3m.inference.weights import download_weights, installed_weights

        wanted_model = AUTO_PREFERRED_MODEL if model == "auto" else model
        if installed_weights(wanted_model) is None:
            out.print(f"downloading the {wanted_model} weights ...")
            download_weights(wanted_model)
    matter = Matter(model, weights=weights, strategy=strategy.value, device=device, max_pixels=budget)
    out.print(f"model: [bold]{_describe_model(matter)}[/bold]")
    if matter.note:
        err.print(f"[yellow]note:[/yellow] {matter.note}", soft_wrap=True)

    done = 0
    with item_progress("[bold]matting", err, show_name=True, show_elapsed=True) as progress:
        task = progress.add_task("matting", total=len(todo), name="")
        for job in todo:
            progress.update(task, name=job.source.name)
            wanted = kinds if overwrite else job.missing(kinds)
            try:
                needs_colour = any(kind in ("rgba", "foreground", "composite") for kind in wanted)
                result = matter(job.source, foreground=needs_colour)
                written = write_outputs(job, result, wanted, backdrop)
            except (P3MError, OSError, ValueError) as error:
                # Name the file once: drop the error's own path prefix when it is the input.
                own = isinstance(error, P3MError) and error.path == str(job.source)
                reason = error.problem if own else str(error)
                failures.append((str(job.source), reason))
                progress.console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
            else:
                done += 1
                detail = f"; {result.resized.describe()}" if result.resized else ""
                names = ", ".join(path.name for path in written)
                progress.console.print(
                    f"{job.source} -> {names} [dim]({result.model}{detail})[/dim]",
                    highlight=False,
                    soft_wrap=True,
                )
            progress.advance(task)
    out.print(f"matted {done} image(s) with {matter.name} into {out_dir}")
    exit_if_failed(err, failures, "skipped {count} input(s)")


def demo_command(
    out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="Folder for the demo files."),
    model: str = typer.Option("auto", "--model", "-m", help="Model to run (default: auto)."),
) -> None:
    """Matte scikit-image's astronaut portrait offline: writes the photo, alpha, cut-out, composite."""
    from rich.console import Console
    from skimage import data

    from p3m.inference.api import Matter
    from p3m.inference.batch import MatteJob, write_outputs
    from p3m.io import write_png

    console = Console()
    image = data.astronaut()
    source = out / "astronaut.png"
    write_png(source, image)
    matter = Matter(model)
    if matter.note:
        Console(stderr=True).print(f"[yellow]note:[/yellow] {matter.note}", soft_wrap=True)
    result = matter(image)
    job = MatteJob(
        source,
        {kind: out / f"astronaut_{kind}.png" for kind in ("alpha", "rgba", "composite", "trimap")},
    )
    written = write_outputs(job, result, ("alpha", "rgba", "composite"), (40, 140, 90))
    console.print(f"model: [bold]{_describe_model(matter)}[/bold] produced:")
    for path in [source, *written]:
        console.print(f"  {path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("matte")(matte_command)
    app.command("demo")(demo_command)
