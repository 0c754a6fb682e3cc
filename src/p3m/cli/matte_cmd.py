"""`p3m matte` (photos -> alpha mattes, cut-outs, composites) and `p3m demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from p3m.cli import _scale
from p3m.vocabulary import OutputKind, values
from p3m.vocabulary import TestStrategy as StrategyChoice


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
    inputs: list[str] | None = typer.Argument(
        None, help="Image files, folders or glob patterns ('photos/*.jpg'); or --input-list."
    ),
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
        help=f"Comma list of outputs: {', '.join(values(OutputKind))}.",
    ),
    background: str = typer.Option(
        "white", "--background", "-b", help="Composite background: colour (name, #rrggbb, r,g,b) or image file."
    ),
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
    input_lists: list[Path] | None = _scale.INPUT_LIST_OPTION,
    shard_size: int = _scale.SHARD_SIZE_OPTION,
    engine: _scale.Engine = _scale.ENGINE_OPTION,
    ray_address: str | None = _scale.RAY_ADDRESS_OPTION,
    workers: int | None = _scale.WORKERS_OPTION,
    batch_size: int | None = _scale.BATCH_SIZE_OPTION,
    cpus_per_worker: float | None = _scale.CPUS_OPTION,
    gpus_per_worker: float | None = _scale.GPUS_OPTION,
    threads: int | None = _scale.THREADS_OPTION,
) -> None:
    """Matte portraits: per image <stem>_alpha.png, <stem>_rgba.png (straight alpha) and more.

    Existing outputs are kept unless --overwrite. Inputs that are missing or cannot be read are
    reported and skipped, the rest matted; the exit code is 1 if any was skipped. At scale:
    --input-list, --shard-size, and --engine ray (the same outputs and manifest.jsonl).
    """
    from rich.console import Console

    from p3m.cli._ui import exit_if_failed, run_progress
    from p3m.errors import ConfigError, ImageReadError
    from p3m.inference.api import MATTE_MAX_PIXELS, Matter
    from p3m.inference.batch import MatterSpec, parse_save, plan_matte, run_matte
    from p3m.runs import RunOptions

    out = Console()
    err = Console(stderr=True)
    kinds = parse_save(save)
    inputs = list(inputs or [])
    if not inputs and not input_lists:
        raise ConfigError("give image files, folders or patterns, or --input-list FILE")
    executor = _scale.make_executor(engine, ray_address, workers, batch_size, cpus_per_worker, gpus_per_worker)
    backdrop = _background(background) if "composite" in kinds else "white"
    budget = MATTE_MAX_PIXELS if max_pixels == 0 else None if max_pixels < 0 else max_pixels
    plan = plan_matte(
        inputs, out_dir, kinds, recursive=recursive, overwrite=overwrite,
        input_lists=input_lists or (), shard_size=shard_size,
    )  # fmt: skip
    failures = list(plan.missing)
    if inputs and len(failures) == len(inputs) and not input_lists:
        # Nothing given exists: a usage error (exit 2), not a partly failed run.
        if len(failures) == 1:
            raise ImageReadError(failures[0][1], failures[0][0])
        raise ImageReadError(
            "none of the inputs exists: " + "; ".join(f"{name} ({reason})" for name, reason in failures)
        )
    for name, reason in failures:
        err.print(f"[red]skipped:[/red] {name}: {reason}", highlight=False, soft_wrap=True)
    if not plan.jobs:
        err.print("[yellow]no images found[/yellow]")
        exit_if_failed(err, failures, "skipped {count} input(s)")
        raise typer.Exit(1)
    todo = plan.pending
    skipped = len(plan.jobs) - len(todo)
    if skipped:
        out.print(f"kept {skipped} image(s) whose outputs exist (use --overwrite to redo them)")
    if not todo:
        exit_if_failed(err, failures, "skipped {count} input(s)")
        return

    if download and weights is None and model != "selfie-cf" and not model.lower().endswith(".onnx"):
        from p3m.inference.api import AUTO_PREFERRED_MODEL
        from p3m.models.hub import download_weights, installed_weights

        wanted_model = AUTO_PREFERRED_MODEL if model == "auto" else model
        if installed_weights(wanted_model) is None:
            out.print(f"downloading the {wanted_model} weights ...")
            download_weights(wanted_model)
    # With Ray this only checks the options and resolves "auto": the workers build the model on
    # `device` (a GPU node's, not the driver's).
    driver_device = "cpu" if executor is not None else device
    matter = Matter(model, weights=weights, strategy=strategy.value, device=driver_device, max_pixels=budget)
    out.print(f"model: [bold]{_describe_model(matter)}[/bold]")
    if matter.note:
        err.print(f"[yellow]note:[/yellow] {matter.note}", soft_wrap=True)

    def describe(record: Any) -> str:
        detail = f"; {record.details['resized']}" if record.details.get("resized") else ""
        names = ", ".join(record.details.get("written", []))
        return f"{record.source} -> {names} [dim]({record.details.get('model')}{detail})[/dim]"

    options = RunOptions(threads=threads)
    if executor is not None:
        # Each worker builds the model itself: the same one ("auto" resolved here).
        spec = MatterSpec(matter.name if model == "auto" else model, weights, strategy.value, device, budget)
        del matter
        out.print(f"engine: {getattr(executor, 'name', type(executor).__name__)}", highlight=False)
        with run_progress("[bold]matting", err, describe=describe, unit="images") as on_event:
            report = run_matte(plan, spec, backdrop, on_event=on_event, options=options, executor=executor)
        matter_name = spec.model
    else:
        with run_progress("[bold]matting", err, describe=describe, unit="images") as on_event:
            report = run_matte(plan, matter, backdrop, on_event=on_event, options=options)
        matter_name = matter.name
    for record in report.failed:
        # Name the file once: drop the error's own path prefix when it is the input.
        prefix = f"{record.source}: "
        reason = record.error or "could not be matted"
        failures.append((str(record.source), reason[len(prefix):] if reason.startswith(prefix) else reason))
    done = report.counts.get("done", 0)
    out.print(f"matted {done} image(s) with {matter_name} into {out_dir}")
    _scale.print_run_summary(out, report, per_worker=executor is not None)
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
