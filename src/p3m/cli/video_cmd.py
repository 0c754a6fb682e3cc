"""Video on the command line: `p3m eval-video`, and the video branches of `p3m matte` and
`p3m anonymize` (they hand video inputs to the functions here, which call `p3m.video`).

Progress (frames/s, time left) is drawn here from the library's typed events; the library
itself never prints.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from p3m.cli._options import caps_image_pixels

if TYPE_CHECKING:
    from rich.console import Console

    from p3m.video.events import VideoEvent


class TemporalChoice(str, Enum):
    """`--temporal`: motion-compensated smoothing of video mattes."""

    on = "on"
    off = "off"


VIDEO_FORMAT_HELP = (
    "Videos: container of the alpha and rgba outputs: mov-prores4444 (default; editors), "
    "webm-vp9 (browsers), png-sequence (lossless frames), mp4 (grey alpha only). "
    "Composites are always H.264 mp4."
)
_OUTPUT_ENDINGS = ("_alpha", "_rgba", "_composite")
TEMPORAL_HELP = "Videos: temporal smoothing of the matte (off: each frame on its own, to compare)."


# --------------------------------------------------------------------------- routing


def _is_video(path: Path) -> bool:
    from p3m.video._av import is_video_path

    return is_video_path(path) and not path.name.startswith(".")


def split_video_inputs(
    inputs: Sequence[str], recursive: bool = False
) -> tuple[list[str], list[Path]]:
    """(inputs left for the image code, video files): video files named directly, matched by a
    glob, or found in a folder. A folder or pattern with no image in it is not passed on."""
    from p3m.io import is_image_file

    images: list[str] = []
    videos: list[Path] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_file() or (not path.exists() and not glob.has_magic(text)):
            (videos.append(path) if _is_video(path) else images.append(text))
            continue
        if path.is_dir():
            entries = sorted(path.glob("**/*" if recursive else "*"))
        else:
            entries = sorted(Path(match) for match in glob.glob(str(path), recursive=recursive))
        # Files p3m wrote itself (`<stem>_alpha.mov` ...) are not taken as new inputs.
        found = [
            entry
            for entry in entries
            if entry.is_file() and _is_video(entry) and not entry.stem.endswith(_OUTPUT_ENDINGS)
        ]
        videos += found
        if not found or any(is_image_file(entry) for entry in entries):
            images.append(text)
    return images, list(dict.fromkeys(videos))


# --------------------------------------------------------------------------- progress


@contextlib.contextmanager
def video_progress(console: Console) -> Iterator[tuple[Any, Console]]:
    """A transient `name [bar] frames/total  x.x frames/s  m:ss left` display; yields the
    `on_event` callback to pass to the video functions, and the console to print lines on
    while the display is live."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from p3m.video.events import VideoFinished, VideoProgress, VideoStarted

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[left]}"),
        console=console,
        transient=True,
    )
    tasks: dict[Path, Any] = {}

    def on_event(event: VideoEvent) -> None:
        if isinstance(event, VideoStarted):
            if event.source not in tasks:
                label = f"{event.task.replace('anonymize', 'anonymising').replace('matte', 'matting')} {event.source.name}"
                tasks[event.source] = progress.add_task(
                    label, total=event.info.frame_count, rate="", left=""
                )
        elif isinstance(event, VideoProgress) and event.source in tasks:
            left = "" if event.seconds_left is None else f"{_clock(event.seconds_left)} left"
            progress.update(
                tasks[event.source],
                completed=event.frames_done,
                total=event.frames_total,
                rate=f"{event.frames_per_second:.2f} frames/s",
                left=left,
            )
        elif isinstance(event, VideoFinished) and event.source in tasks:
            progress.remove_task(tasks.pop(event.source))

    with progress:
        yield on_event, progress.console


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _check_some_exist(videos: Sequence[Path]) -> None:
    """Nothing given exists: a usage error (one line, exit 2), as for images."""
    from p3m.errors import VideoReadError

    missing = [path for path in videos if not path.exists()]
    if missing and len(missing) == len(videos):
        if len(missing) == 1:
            raise VideoReadError("file not found", missing[0])
        raise VideoReadError(
            "none of the videos exists: " + ", ".join(str(path) for path in missing)
        )


def _reason(error: BaseException, source: Path) -> str:
    from p3m.errors import P3MError

    if isinstance(error, P3MError) and error.path == str(source):
        return error.problem
    return str(error)


# --------------------------------------------------------------------------- matte


def matte_video_inputs(
    videos: Sequence[Path],
    out_dir: Path,
    *,
    save: str,
    video_format: str,
    background: str,
    temporal: bool,
    model: str,
    weights: str | None,
    strategy: str,
    device: str | None,
    max_pixels: int,
    overwrite: bool,
    download: bool = False,
    selfie_config: Any = None,
) -> list[tuple[str, str]]:
    """Matte each video into `out_dir`, printing what was written; returns (video, reason) failures.

    The model is loaded once for all of them. Library errors of one video are reported and the
    next video goes on; a usage error (bad --save / --format / --background, or no video that
    exists) stops the run. `max_pixels` as `p3m matte --max-pixels` (0 default, -1 none);
    `download` fetches the model's published weights first when they are not cached;
    `selfie_config` refines selfie-cf (as `p3m matte --trimap-band/--threshold`).
    """
    from rich.console import Console

    from p3m.errors import ConfigError, MissingDependencyError, P3MError
    from p3m.inference.api import Matter
    from p3m.inference.budget import pixel_budget_from_option
    from p3m.video.matte import matte_video, plan_video_outputs

    out = Console(emoji=False)
    err = Console(emoji=False, stderr=True)
    plan_video_outputs(videos[0], out_dir, save, video_format)  # usage errors before any work
    _check_some_exist(videos)
    budget = pixel_budget_from_option(max_pixels, "--max-pixels")
    if (
        download
        and weights is None
        and model != "selfie-cf"
        and not model.lower().endswith(".onnx")
    ):
        from p3m.inference.api import AUTO_PREFERRED_MODEL
        from p3m.models.hub import download_weights, installed_weights

        wanted = AUTO_PREFERRED_MODEL if model == "auto" else model
        if installed_weights(wanted) is None:
            out.print(f"downloading the {wanted} weights ...")
            download_weights(wanted)
    matter = Matter(
        model, weights=weights, strategy=strategy, device=device, max_pixels=budget,
        selfie_config=selfie_config,
    )
    if matter.note:
        err.print(f"[yellow]note:[/yellow] {matter.note}", soft_wrap=True)
    failures: list[tuple[str, str]] = []
    with video_progress(err) as (on_event, live):
        for source in videos:
            try:
                report = matte_video(
                    source,
                    out_dir,
                    save=save,
                    video_format=video_format,
                    background=background,
                    model=matter,
                    temporal=temporal,
                    overwrite=overwrite,
                    on_event=on_event,
                )
            except (ConfigError, MissingDependencyError):
                raise
            except (P3MError, OSError, ValueError) as error:
                failures.append((str(source), _reason(error, source)))
                live.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
                continue
            if report.kept and not report.frames:
                live.print(
                    f"kept {source.name}: its outputs exist (use --overwrite to redo it)",
                    highlight=False,
                )
                continue
            written = ", ".join(
                str(path) for kind, path in report.outputs.items() if kind not in report.kept
            )
            live.print(
                f"{source} -> {written} [dim]({report.frames} frames, {report.frames_per_second:.2f} "
                f"frames/s, {report.model}, temporal smoothing {'on' if temporal else 'off'})[/dim]",
                highlight=False,
                soft_wrap=True,
            )
            for warning in report.warnings:
                live.print(
                    f"[yellow]{source.name}:[/yellow] {warning}", highlight=False, soft_wrap=True
                )
    return failures


# --------------------------------------------------------------------------- anonymize


def anonymize_video_inputs(
    videos: Sequence[Path], out_dir: Path, config: Any
) -> list[tuple[str, str]]:
    """Anonymise each video into `out_dir` with the options of an `AnonymizeConfig`; returns failures."""
    from rich.console import Console

    from p3m.errors import ConfigError, MissingDependencyError, P3MError
    from p3m.video.anonymize import anonymize_video

    err = Console(emoji=False, stderr=True)
    _check_some_exist(videos)
    failures: list[tuple[str, str]] = []
    with video_progress(err) as (on_event, live):
        for source in videos:
            try:
                report = anonymize_video(
                    source,
                    out_dir,
                    config.method,
                    alpha_from=config.alpha_from,
                    detectors=config.detectors,
                    landmarks=config.landmarks,
                    min_confidence=config.min_confidence,
                    transition_margin=config.transition_margin,
                    strength=config.strength,
                    audit=config.audit,
                    audit_detectors=config.audit_detectors,
                    overwrite=not config.resume,
                    on_event=on_event,
                )
            except (ConfigError, MissingDependencyError):
                raise
            except (P3MError, OSError, ValueError) as error:
                failures.append((str(source), _reason(error, source)))
                live.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
                continue
            if report.frames == 0:
                live.print(
                    f"kept {report.output} (exists; use --overwrite to redo it)", highlight=False
                )
                continue
            live.print(
                f"{source} -> {report.output} [dim]({report.frames} frames, faces in "
                f"{report.frames_with_faces}, tracking filled {report.filled_frames}, audited "
                f"{report.audited_frames}: {report.audit_faces_found} face(s) still found, "
                f"{report.audit_identity_matches} identity match(es); manifest {report.manifest.name})[/dim]",
                highlight=False,
                soft_wrap=True,
            )
            for warning in report.warnings:
                live.print(
                    f"[yellow]{source.name}:[/yellow] {warning}", highlight=False, soft_wrap=True
                )
            if report.identity_leak:  # written, but not anonymised: the run fails (exit code 1)
                failures.append((str(source), "identity leak: see the manifest"))
    return failures


# --------------------------------------------------------------------------- eval-video


def eval_video_command(
    pred: Path = typer.Argument(
        ..., help="Predicted mattes: a video (alpha channel, else grey) or a folder of PNGs."
    ),
    gt: Path = typer.Argument(
        ..., help="Ground-truth mattes, the same way and with as many frames."
    ),
    csv_path: Path | None = typer.Option(
        None, "--csv", help="Write per-frame SAD, MSE, MAD and dtSSD to this CSV file."
    ),
    json_path: Path | None = typer.Option(
        None, "--json",
        help="Write the means and per-frame rows as JSON (a metric without a value, such as dtSSD "
        "of frame 0 or of a one-frame clip, is null in both).",
    ),
) -> None:
    """Temporal coherence (dtSSD) and per-frame SAD / MSE / MAD of a matte video against the truth.

    dtSSD as the video-matting literature reports it: per frame t >= 1, 100 x the RMS of the
    difference between the predicted and the true alpha change from frame t-1; averaged.
    """
    import csv
    import io
    import json

    from rich.console import Console
    from rich.table import Table

    from p3m.evaluation.temporal import VIDEO_METRIC_KEYS, evaluate_alpha_sequence
    from p3m.io import atomic_write_text
    from p3m.video.reader import probe_video, read_alpha_frames

    out = Console(emoji=False)
    err = Console(emoji=False, stderr=True)
    total = probe_video(pred).frame_count
    probe_video(gt)  # both readable before the long part
    from p3m.cli._ui import item_progress
    from p3m.errors import ShapeMismatchError

    with item_progress("[bold]evaluating", err) as progress:
        task = progress.add_task("evaluating", total=total)
        try:
            evaluation = evaluate_alpha_sequence(
                read_alpha_frames(pred),
                read_alpha_frames(gt),
                on_frame=lambda done: progress.update(task, completed=done),
            )
        except ShapeMismatchError as error:  # name both files: the library knows neither
            raise ShapeMismatchError(f"{error.problem} (prediction {pred}, ground truth {gt})") from None
    means = evaluation.means
    names = {"sad": "SAD", "mse": "MSE", "mad": "MAD", "dtssd": "dtSSD"}
    table = Table(title=f"{evaluation.frames} frames", title_justify="left")
    table.add_column("")
    for key in VIDEO_METRIC_KEYS:
        table.add_column(names[key], justify="right")
    table.add_row(
        "mean", *(f"{means[key]:.4g}" if means.get(key) is not None else "-" for key in VIDEO_METRIC_KEYS)
    )
    out.print(table)
    if csv_path is not None:
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=["frame", *VIDEO_METRIC_KEYS], lineterminator="\n"
        )
        writer.writeheader()
        for row in evaluation.rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
        atomic_write_text(csv_path, buffer.getvalue())
        out.print(f"per-frame metrics: {csv_path}", highlight=False)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(evaluation.to_dict(), indent=1) + "\n")
        out.print(f"summary: {json_path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `p3m eval-video` to the command line."""
    app.command("eval-video", no_args_is_help=True)(caps_image_pixels(eval_video_command))
