"""`p3m matte` (photos -> alpha mattes, cut-outs, composites) and `p3m demo`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import typer

from p3m.cli import _scale
from p3m.cli._options import DEVICE_OPTION_HELP, caps_image_pixels
from p3m.cli.video_cmd import TEMPORAL_HELP, VIDEO_FORMAT_HELP, TemporalChoice
from p3m.vocabulary import OutputKind, values
from p3m.vocabulary import TestStrategy as StrategyChoice


def _background(value: str) -> Any:
    """The composite background of image inputs: a colour, or an image file (`ConfigError` for
    a video file, which only video inputs take: their `p3m.video.Backdrop` loops it)."""
    from p3m.inference.foreground import parse_color

    path = Path(value).expanduser()
    if path.is_file():
        from p3m.cli.video_cmd import _is_video

        if _is_video(path):
            from p3m.errors import ConfigError

            raise ConfigError(
                f"{value}: a video background is for video inputs only; images take a colour or "
                "an image file (--background)"
            )
        from p3m.io import read_image

        return read_image(path)
    return parse_color(value)


def _describe_model(matter: Any) -> str:
    if matter.name == "selfie-cf":
        return matter.name
    onnx_file = getattr(getattr(matter.backend, "network", None), "path", None)
    runtime = f"ONNX Runtime, {Path(onnx_file).name}" if onnx_file is not None else "P3M-Net"
    return f"{matter.name} ({runtime}, {matter.strategy})"


STDIO = "-"
"""`-` as the input reads the image from stdin; `-o -` writes one output image to stdout."""


def matte_command(
    inputs: list[str] | None = typer.Argument(
        None,
        help="Image files, videos, folders or glob patterns ('photos/*.jpg'); - reads one image "
        "from stdin; or --input-list.",
    ),
    out_dir: Path = typer.Option(
        Path("p3m-output"), "--out-dir", "-o",
        help="Folder for the outputs; - writes one image to stdout (the first kind of --save, default rgba).",
    ),
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
    save: str | None = typer.Option(
        None,
        "--save",
        help=f"Comma list of outputs: {', '.join(values(OutputKind))} (default: alpha,rgba; rgba with -o -).",
    ),
    background: str | None = typer.Option(
        None,
        "--background",
        "-b",
        help="Composite background: colour (name, #rrggbb, r,g,b) or image file; for videos also a video file "
        "(looped). Adds composite to the default --save. [default: white]",
    ),
    video_format: str = typer.Option("mov-prores4444", "--format", help=VIDEO_FORMAT_HELP),
    temporal: TemporalChoice = typer.Option(TemporalChoice.on, "--temporal", help=TEMPORAL_HELP),
    max_pixels: int = typer.Option(
        0,
        "--max-pixels",
        help="Pixel budget: larger images are matted shrunk and the alpha upsampled back "
        "(0 = default, about 1080 x 1620; -1 = no budget).",
    ),
    device: str | None = typer.Option(
        None, "--device", help=DEVICE_OPTION_HELP
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    download: bool = typer.Option(
        False,
        "--download",
        help="Download the model's published weights first if they are not cached (the only "
        "network access; with --model auto this fetches P3M-Net ViTAE-S).",
    ),
    trimap_band: float | None = typer.Option(
        None, "--trimap-band", min=0.001, max=0.5,
        help="selfie-cf: half-width of the trimap's unknown band, as a fraction of the image's "
        "longer side (default 0.02; wider for hair and blurry edges).",
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.01, max=0.99,
        help="selfie-cf: person probability above which a pixel is foreground (default 0.5; "
        "higher keeps less background).",
    ),
    watch: Path | None = typer.Option(
        None, "--watch",
        help="Watch this folder and matte each new image once it is completely written, until "
        "Ctrl-C or SIGTERM.",
    ),
    poll: float = typer.Option(1.0, "--poll", min=0.05, help="--watch: seconds between scans of the folder."),
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

    Existing outputs are kept unless --overwrite; files p3m wrote are never taken as inputs.
    Inputs that are missing or cannot be read are reported and skipped, the rest matted; the
    exit code is 1 if any was skipped. `p3m matte - -o - < in.jpg > out.png` reads stdin and
    writes only the image to stdout. At scale: --input-list, --shard-size, and --engine ray
    (the same outputs and manifest.jsonl).
    """
    from p3m.errors import ConfigError
    from p3m.inference.batch import parse_save
    from p3m.inference.budget import pixel_budget_from_option

    inputs = list(inputs or [])
    to_stdout = str(out_dir) == STDIO
    scaled = bool(input_lists) or shard_size > 0 or engine is not _scale.Engine.local
    if watch is not None:
        if inputs or to_stdout or scaled:
            raise ConfigError(
                "--watch DIR takes no other inputs, no --input-list, --shard-size or --engine, "
                "and writes into a folder (-o OUT)"
            )
    elif not inputs and not input_lists:
        raise ConfigError(
            "give image files, folders or patterns to matte (or - for stdin, --input-list FILE, "
            "or --watch DIR)"
        )
    if scaled and (to_stdout or STDIO in inputs):
        raise ConfigError("stdin / stdout (-) take one image: no --input-list, --shard-size or --engine")
    if STDIO in inputs and len(inputs) > 1:
        raise ConfigError("- (stdin) must be the only input")
    if save is None:
        # A background asked for is a composite asked for.
        if to_stdout:
            save = "composite" if background is not None else "rgba"
        else:
            save = "alpha,rgba" + (",composite" if background is not None else "")
    kinds = parse_save(save)
    if background is not None and "composite" not in kinds:
        raise ConfigError(f"--background is for composites, and --save {save} makes none: add composite to --save")
    background = background if background is not None else "white"
    options = {
        "model": model, "weights": weights, "strategy": strategy.value, "device": device, "download": download,
        "max_pixels": pixel_budget_from_option(max_pixels, "--max-pixels"),
        "selfie": _selfie_config(trimap_band, threshold),
        "scale": {
            "input_lists": list(input_lists or ()), "shard_size": shard_size, "threads": threads,
            "executor": _scale.make_executor(
                engine, ray_address, workers, batch_size, cpus_per_worker, gpus_per_worker
            ),
        },
        "video": {
            "save": save, "format": video_format, "background": background,
            "temporal": temporal is TemporalChoice.on, "max_pixels": max_pixels,
        },
    }
    if watch is not None:
        _watch_folder(watch, out_dir, kinds, _image_backdrop(background, kinds), options, recursive, poll, overwrite)
    elif to_stdout or inputs == [STDIO]:
        from p3m.io.files import VIDEO_SUFFIXES

        if any(Path(given).suffix.lower() in VIDEO_SUFFIXES for given in inputs):
            raise ConfigError("-o - writes one image to stdout; a video's outputs need a folder (-o DIR)")
        _matte_stream(inputs, out_dir, kinds, _image_backdrop(background, kinds), options, to_stdout, overwrite)
    else:
        _matte_files(inputs, out_dir, kinds, background, options, recursive, overwrite)


def _image_backdrop(background: str, kinds: tuple[str, ...]) -> Any:
    """What image composites are laid over (read only when a composite is asked for)."""
    return _background(background) if "composite" in kinds else "white"


def _selfie_config(trimap_band: float | None, threshold: float | None) -> Any:
    if trimap_band is None and threshold is None:
        return None
    import dataclasses

    from p3m.inference.selfie_cf import SelfieCFConfig

    changes = {"band_fraction": trimap_band, "threshold": threshold}
    return dataclasses.replace(SelfieCFConfig(), **{key: value for key, value in changes.items() if value is not None})


def _load_matter(options: dict[str, Any], say: Any, note: Any) -> Any:
    """The `Matter` the options ask for (downloading weights first with --download)."""
    from p3m.inference.batch import MatterSpec

    spec = MatterSpec(
        options["model"], options["weights"], options["strategy"], options["device"], options["max_pixels"],
        options["selfie"],
    )  # fmt: skip
    matter = spec.build(options["download"], on_download=lambda name: say(f"downloading the {name} weights ..."))
    say(f"model: [bold]{_describe_model(matter)}[/bold]")
    if matter.note:
        note(f"[yellow]note:[/yellow] {matter.note}")
    return matter


def _record_describer() -> Callable[[Any], str]:
    """`describe(record)` for one run: a short line per image; what resizing means and how to
    change it (the same for every image) is a note the first time only."""
    explained: set[str] = set()

    def describe(record: Any) -> str:
        detail = f"; {record.details['resized']}" if record.details.get("resized") else ""
        names = ", ".join(record.details.get("written", []))
        line = f"{record.source} -> {names} [dim]({record.details.get('model')}{detail})[/dim]"
        explanation = record.details.get("resized_explained")
        if explanation and explanation not in explained:
            explained.add(explanation)
            line += f"\n[yellow]note:[/yellow] {explanation} (--max-pixels)"
        if record.details.get("note"):
            line += f"\n[yellow]note:[/yellow] {record.source}: {record.details['note']}"
        return line

    return describe


def _failure(record: Any) -> tuple[str, str]:
    """(input, reason) of a failed record (`p3m.cli._ui.record_failure`)."""
    from p3m.cli._ui import record_failure

    return record_failure(record, "could not be matted")


def _matte_files(
    inputs: list[str], out_dir: Path, kinds: tuple[str, ...], backdrop: Any, options: dict[str, Any],
    recursive: bool, overwrite: bool,
) -> None:
    """A folder run: files, folders and globs into `out_dir`."""
    from rich.console import Console

    from p3m.cli._ui import exit_if_failed, run_progress
    from p3m.errors import ImageReadError
    from p3m.inference.batch import (
        MatterSpec,
        check_kept_outputs,
        plan_matte,
        run_matte,
        run_settings,
    )
    from p3m.runs import RunOptions

    out = Console(emoji=False)
    err = Console(emoji=False, stderr=True)
    # Video files go to p3m.video; when only videos were given, that is the whole run.
    from p3m.cli.video_cmd import matte_video_inputs, split_video_inputs

    inputs, videos = split_video_inputs(inputs, recursive=recursive)
    # The images' background is checked before any video work (a video file is for videos only):
    # with videos in the run too, they are matted over it and the images are left out, said so.
    from p3m.errors import ConfigError

    scale = options["scale"]
    images_refused = None
    try:
        backdrop = _image_backdrop(backdrop, kinds) if inputs else "white"
    except ConfigError as error:
        if not videos:
            raise
        images_refused = str(error)
    video_failures: list[tuple[str, str]] = []
    video_report = None
    video_matter = None  # loaded once for the videos and the images of a local run
    plan = None
    if videos and inputs and images_refused is None:  # planned first: an interrupted line counts all
        plan = plan_matte(
            inputs, out_dir, kinds, recursive=recursive, overwrite=overwrite,
            input_lists=scale["input_lists"], shard_size=scale["shard_size"],
        )  # fmt: skip
    if videos:
        video = options["video"]
        if inputs and images_refused is None and scale["executor"] is None:
            video_matter = _load_matter(options, out.print, lambda text: err.print(text, soft_wrap=True))
        video_failures, video_report = matte_video_inputs(
            videos, out_dir, save=video["save"], video_format=video["format"],
            background=video["background"], temporal=video["temporal"], model=options["model"],
            weights=options["weights"], strategy=options["strategy"], device=options["device"],
            max_pixels=video["max_pixels"], overwrite=overwrite, download=options["download"],
            selfie_config=options["selfie"], matter=video_matter, images=len(plan.jobs) if plan is not None else 0,
        )  # fmt: skip
        if images_refused is not None or not inputs:
            _scale.print_run_summary(out, video_report, unit="video")
        if images_refused is not None:
            err.print(f"[red]error:[/red] images left out: {images_refused}", highlight=False, soft_wrap=True)
            exit_if_failed(err, video_failures, "failed on {count} video(s)")
            raise typer.Exit(1)
        if not inputs:
            exit_if_failed(err, video_failures, "failed on {count} video(s)")
            return
    if plan is None:
        plan = plan_matte(
            inputs, out_dir, kinds, recursive=recursive, overwrite=overwrite,
            input_lists=scale["input_lists"], shard_size=scale["shard_size"],
        )  # fmt: skip
    failures = list(plan.missing)
    if inputs and len(failures) == len(inputs) and not scale["input_lists"]:
        # Nothing given exists: a usage error (exit 2), not a partly failed run.
        if len(failures) == 1:
            raise ImageReadError(failures[0][1], failures[0][0])
        raise ImageReadError(
            "none of the inputs exists: " + "; ".join(f"{name} ({reason})" for name, reason in failures)
        )
    for name, reason in failures:
        err.print(f"[red]skipped:[/red] {name}: {reason}", highlight=False, soft_wrap=True)
    failures += video_failures  # each printed as its clip failed: only in the recap at the end
    if plan.passed_over:
        shown = ", ".join(path.name for path in plan.passed_over[:3])
        more = f", ... ({len(plan.passed_over)} in all)" if len(plan.passed_over) > 3 else ""
        err.print(
            f"note: passed over {len(plan.passed_over)} file(s) that look like p3m's outputs, which are "
            f"never inputs ({shown}{more}); name a file to matte it anyway",
            highlight=False, soft_wrap=True,
        )
    _note_left_out(err, plan.left_out, [path for path, _ in videos])
    if not plan.jobs:
        if videos:  # the folders held videos (run above) and p3m's own outputs only
            _scale.print_run_summary(out, video_report, unit="video")
            exit_if_failed(err, failures, "skipped {count} input(s)")
            return
        exit_if_failed(err, failures, "skipped {count} input(s)")
        from p3m.errors import ConfigError

        # A usage error (exit 2) naming where p3m looked, as `p3m anonymize` says it.
        looked = [str(text) for text in inputs] + [str(listing) for listing in scale["input_lists"] or ()]
        raise ConfigError("no images found in " + ", ".join(looked))
    todo = plan.pending
    skipped = len(plan.jobs) - len(todo)

    def note(text: str) -> None:
        err.print(text, soft_wrap=True)

    executor = scale["executor"]
    matter = video_matter
    earlier = not plan.overwrite and any(path.exists() for job in plan.jobs for path in job.outputs.values())
    if earlier:
        # Outputs are kept (or written beside) only if this command made them: load the model
        # (one that is not there fails here, as on a fresh folder) and compare with what the
        # manifest recorded. With an executor the driver only checks the options and resolves
        # "auto" (on the CPU).
        matter = matter or _load_matter({**options, "device": "cpu"} if executor is not None else options, out.print, note)
        check_kept_outputs(plan, run_settings(matter, plan.kinds, backdrop))
    if skipped:
        out.print(f"kept {skipped} image(s) whose outputs exist (use --overwrite to redo them)")
    if not todo:  # one summary of the run, as a run that matted some: its kept images (and its videos)
        from p3m.runs import KEPT, ItemRecord, RunReport

        kept = RunReport([ItemRecord(key, KEPT, str(job.source)) for job, key in zip(plan.jobs, plan.keys, strict=True)])
        if video_report is not None:
            _scale.print_run_summary(out, _with_videos(video_report, kept), unit="input")
        else:
            _scale.print_run_summary(out, kept)
        exit_if_failed(err, failures, "skipped {count} input(s)")
        return

    run_options = RunOptions(threads=scale["threads"])
    # The videos ran first: an interrupted line counts them too (every input of the command).
    others = (0, 0) if video_report is None else (len(video_report.records) - len(video_report.failed), len(video_report.records))
    if executor is not None:
        # Each worker builds the same model itself, on --device (a GPU node's, not the driver's).
        matter = matter or _load_matter({**options, "device": "cpu"}, out.print, note)
        spec = MatterSpec(
            matter.name if options["model"] == "auto" else options["model"], options["weights"],
            options["strategy"], options["device"], options["max_pixels"], options["selfie"],
        )  # fmt: skip
        del matter
        out.print(f"engine: {getattr(executor, 'name', type(executor).__name__)}", highlight=False)
        with run_progress("[bold]matting", err, describe=_record_describer(), unit="images", others=others) as on_event:
            report = run_matte(plan, spec, backdrop, on_event=on_event, options=run_options, executor=executor)
        name = spec.model
    else:
        matter = matter or _load_matter(options, out.print, note)
        with run_progress("[bold]matting", err, describe=_record_describer(), unit="images", others=others) as on_event:
            report = run_matte(plan, matter, backdrop, on_event=on_event, options=run_options)
        name = matter.name
    failures.extend(_failure(record) for record in report.failed)
    done = report.counts.get("done", 0)
    if video_report is None:
        out.print(f"matted {done} image(s) with {name} into {out_dir}")
        _scale.print_run_summary(out, report, per_worker=executor is not None)
    else:  # one summary of the run: its videos (run above) and its images
        videos_done = video_report.counts.get("done", 0)
        out.print(f"matted {done} image(s) and {videos_done} video(s) with {name} into {out_dir}")
        _scale.print_run_summary(out, _with_videos(video_report, report), unit="input", per_worker=executor is not None)
    # One input: its error line is just above; a recap would print it twice.
    exit_if_failed(err, failures, "skipped {count} input(s)", recap=len(plan.jobs) + len(failures) - len(report.failed) > 1)


def _with_videos(videos: Any, images: Any) -> Any:
    """One `RunReport` of a folder run's videos and its images, for one summary line."""
    from p3m.runs import RunReport

    workers = dict(images.workers)
    for name, stats in videos.workers.items():
        workers.setdefault(name, type(stats)()).items += stats.items
        workers[name].seconds += stats.seconds
    return RunReport(videos.records + images.records, videos.seconds + images.seconds, workers)


def _note_left_out(err: Any, left_out: list[Path], videos: list[Path]) -> None:
    """One line on what the folders held but the run does not take (not videos: they run)."""
    from p3m.inference.batch import OUTPUT_KINDS
    from p3m.io import IMAGE_SUFFIXES

    taken = {path.resolve() for path in videos}
    own_endings = tuple(f"_{kind}" for kind in OUTPUT_KINDS)  # p3m's video outputs, <stem>_alpha.mov ...
    folders = [path for path in left_out if path.is_dir()]
    files = [path for path in left_out if not path.is_dir() and path.resolve() not in taken and path.name != "shards.jsonl"
             and not path.stem.endswith(own_endings)]  # fmt: skip
    parts = []
    if files:
        shown = ", ".join(path.name for path in files[:3]) + (", ..." if len(files) > 3 else "")
        parts.append(f"{len(files)} file(s) that are not images by their suffix ({shown}; images are "
                     f"{' '.join(IMAGE_SUFFIXES)}; name a file to try it anyway)")  # fmt: skip
    if folders:
        shown = ", ".join(path.name for path in folders[:3]) + (", ..." if len(folders) > 3 else "")
        parts.append(f"{len(folders)} sub-folder(s) ({shown}; -r searches them)")
    if parts:
        err.print("note: left out " + " and ".join(parts), highlight=False, soft_wrap=True)


def _matte_stream(
    inputs: list[str], out_dir: Path, kinds: tuple[str, ...], backdrop: Any, options: dict[str, Any],
    to_stdout: bool, overwrite: bool,
) -> None:
    """One image from stdin or a file, to stdout or a folder. With stdout, nothing but the PNG
    of the first kind of --save is written there (every message goes to stderr)."""
    import sys

    from rich.console import Console

    from p3m.errors import ConfigError, ImageReadError
    from p3m.inference.batch import MatteJob, output_image, write_outputs
    from p3m.io import encode_png, load_image_and_alpha

    err = Console(emoji=False, stderr=True)
    if len(inputs) != 1 or (inputs[0] != STDIO and not Path(inputs[0]).is_file()):
        raise ConfigError("-o - writes one image to stdout: give one image file, or - for stdin")
    if to_stdout and len(kinds) > 1:
        err.print(f"note: stdout holds one image: only {kinds[0]} is written (--save {','.join(kinds)})",
                  highlight=False)
    name = "stdin" if inputs[0] == STDIO else inputs[0]
    stem = "stdin" if inputs[0] == STDIO else Path(inputs[0]).stem
    job = MatteJob(Path(name), {kind: out_dir / f"{stem}_{kind}.png" for kind in kinds})
    if not to_stdout and not overwrite and not job.missing(kinds):
        err.print(f"kept {name}: its outputs exist (use --overwrite to redo them)", highlight=False)
        return
    payload: bytes | Path = sys.stdin.buffer.read() if inputs[0] == STDIO else Path(inputs[0])

    def say(text: str) -> None:
        err.print(text, highlight=False, soft_wrap=True)

    with _stdout_for_the_image() as image_out:
        matter = _load_matter(options, say, say)
        try:
            if not payload:
                raise ImageReadError("no image data on stdin", "stdin")
            image, input_alpha = load_image_and_alpha(payload)
        except ImageReadError as error:
            # An image that cannot be matted is exit code 1, as in a folder run; 2 is for usage.
            problem = error if error.path is not None else ImageReadError(error.problem, name)
            err.print(f"[red]error:[/red] {problem}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        kinds_needing_colour = {"rgba", "foreground", "composite"}
        wanted = kinds[:1] if to_stdout else kinds
        result = matter(
            image, foreground=bool(kinds_needing_colour & set(wanted)), input_alpha=input_alpha
        )
        if result.resized is not None:
            say(f"note: {result.resized.describe()}")
        if result.image_note:
            say(f"note: {name}: {result.image_note}")
        if to_stdout:
            picture = output_image(result, kinds[0], backdrop)
            if picture is None:
                raise ConfigError(f"{matter.name} gives no {kinds[0]}; choose another --save")
            image_out.write(encode_png(picture))
            image_out.flush()
            say(f"{name} -> stdout ({kinds[0]} PNG, {matter.name})")
            return
    written = write_outputs(job, result, kinds, backdrop)
    say(f"{name} -> {', '.join(path.name for path in written)} ({matter.name})")


@contextlib.contextmanager
def _stdout_for_the_image() -> Iterator[BinaryIO]:
    """Yield the real stdout for the image bytes while everything else that would be printed
    to stdout (Python's or a native library's) goes to stderr instead."""
    import io
    import os
    import sys

    sys.stdout.flush()
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        descriptor = None  # not a real file (e.g. a test runner): redirect Python's stdout only
    original = sys.stdout
    if descriptor is None:
        sys.stdout = sys.stderr
        try:
            yield original.buffer
        finally:
            sys.stdout = original
        return
    saved = os.dup(descriptor)
    try:
        os.dup2(sys.stderr.fileno(), descriptor)
        sys.stdout = sys.stderr
        with os.fdopen(os.dup(saved), "wb", closefd=True) as image_out:
            yield image_out
    finally:
        sys.stdout = original
        os.dup2(saved, descriptor)
        os.close(saved)


def _watch_folder(
    folder: Path, out_dir: Path, kinds: tuple[str, ...], backdrop: Any, options: dict[str, Any],
    recursive: bool, poll: float, overwrite: bool = False,
) -> None:
    """`--watch DIR`: matte new images until Ctrl-C or SIGTERM, then exit cleanly (code 0, or 1
    if an image failed)."""
    import signal
    import threading

    from rich.console import Console

    from p3m.cli._ui import exit_if_failed, record_error
    from p3m.errors import ImageReadError
    from p3m.inference.watch import VideoNotWatched, watch_matte
    from p3m.runs import ItemFinished

    out = Console(emoji=False)
    err = Console(emoji=False, stderr=True)
    if not folder.is_dir():
        raise ImageReadError("no such folder to watch" if not folder.exists() else "not a folder", folder)
    matter = _load_matter(options, out.print, lambda text: err.print(text, soft_wrap=True))
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        stop.set()
        err.print("stopping after the current image ...", highlight=False)

    describe = _record_describer()

    def on_event(event: Any) -> None:
        if isinstance(event, VideoNotWatched):
            err.print(
                f"note: {event.path}: videos are not watched, images only (matte it with p3m matte "
                f"{event.path} -o {out_dir})", highlight=False, soft_wrap=True,
            )  # fmt: skip
        elif isinstance(event, ItemFinished):
            record = event.record
            if record.failed:
                err.print(f"[red]error:[/red] {record_error(record)}", highlight=False, soft_wrap=True)
            else:
                err.print(describe(record), highlight=False, soft_wrap=True)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        err.print(f"watching {folder} (outputs in {out_dir}); Ctrl-C or SIGTERM stops", highlight=False)
        report = watch_matte(
            folder, out_dir, matter, kinds, backdrop, stop=stop, recursive=recursive, poll_seconds=poll,
            on_event=on_event, overwrite=overwrite,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.print(f"matted {report.counts.get('done', 0)} image(s) with {matter.name} into {out_dir}")
    exit_if_failed(err, (_failure(record) for record in report.failed), "{count} image(s) failed")


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

    console = Console(emoji=False)
    image = data.astronaut()
    source = out / "astronaut.png"
    write_png(source, image)
    matter = Matter(model)
    if matter.note:
        Console(emoji=False, stderr=True).print(f"[yellow]note:[/yellow] {matter.note}", soft_wrap=True)
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
    app.command("matte")(caps_image_pixels(matte_command))
    app.command("demo")(demo_command)
