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
) -> tuple[list[str], list[tuple[Path, Path]]]:
    """(inputs left for the image code, (video file, path relative to its input root)): video
    files named directly or matched by a glob (relative: the file name), or found in a folder
    (relative to it: `sub/a.mp4` with `recursive`, so the outputs mirror the tree as images'
    do). A folder or pattern with no image in it is not passed on."""
    from p3m.inference.batch import OwnOutputs
    from p3m.io import is_image_file

    own = OwnOutputs()
    images: list[str] = []
    videos: list[tuple[Path, Path]] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_file() or (not path.exists() and not glob.has_magic(text)):
            if not _is_video(path):
                images.append(text)
            elif not (path.exists() and _wrote_it(own, path)):
                # A clip a run journal lists (or in a folder p3m marked as its output) is p3m's
                # own, also when a shell expanded `photos/*` into its name: left out, as images are.
                videos.append((path, Path(path.name)))
            continue
        if path.is_dir() and own.folder_kind(path.resolve()) == "marked":
            continue  # a PNG sequence p3m wrote (`photos/*` expanded into `photos/clip_alpha`)
        if path.is_dir():
            entries = sorted(path.glob("**/*" if recursive else "*"))
        else:
            entries = sorted(Path(match) for match in glob.glob(str(path), recursive=recursive))
        # Files p3m wrote itself (`<stem>_alpha.mov` ..., or a clip a run journal lists, such
        # as `p3m anonymize`'s `<stem>.mp4`) are not taken as new inputs.
        found = [
            entry
            for entry in entries
            if entry.is_file() and _is_video(entry) and not entry.stem.endswith(_OUTPUT_ENDINGS)
            and not _wrote_it(own, entry)
        ]
        videos += [(entry, entry.relative_to(path) if path.is_dir() else Path(entry.name)) for entry in found]
        if not found or any(is_image_file(entry) for entry in entries):
            images.append(text)
    taken: dict[Path, tuple[Path, Path]] = {}
    for video in videos:  # each file once, as first found
        taken.setdefault(video[0].resolve() if video[0].exists() else video[0], video)
    return images, list(taken.values())


def _wrote_it(own: Any, path: Path) -> bool:
    """True for a file p3m wrote: a run journal in its folder or above lists it, or it lies in a
    folder p3m marked as one of its outputs (`p3m.inference.batch.OwnOutputs`)."""
    if own.listed(path):
        return True
    folder = own.output_folder(path)
    return folder is not None and folder[1] == "marked"


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


def _failure(record: Any) -> tuple[str, str]:
    """(video, reason) of a failed run record (`p3m.cli._ui.record_failure`)."""
    from p3m.cli._ui import record_failure

    return record_failure(record)


@contextlib.contextmanager
def video_run_progress(
    console: Console, describe: Any, others: tuple[int, int] = (0, 0)
) -> Iterator[tuple[Any, Console]]:
    """The frame display of `video_progress` for a `p3m.video.runs` run: yields the `on_event`
    callback (run and video events) and the console. Damaged kept outputs redone get a note,
    each failed clip a red line, each finished one `describe(record, live)`; Ctrl-C one line
    counting every input of the command (`others`: (done, total) of the images, see
    `p3m.cli._ui.interrupted_line`)."""
    from rich.markup import escape

    from p3m.cli._ui import INTERRUPT_REPORTED, interrupted_line
    from p3m.runs import ItemFinished, RunInterrupted, RunStarted
    from p3m.video.events import VideoFinished, VideoProgress, VideoStarted

    with video_progress(console) as (on_video, live):

        def on_event(event: Any) -> None:
            if isinstance(event, (VideoStarted, VideoProgress, VideoFinished)):
                on_video(event)
            elif isinstance(event, RunInterrupted):
                live.print(interrupted_line(event, others), highlight=False)
                INTERRUPT_REPORTED.set()
            elif isinstance(event, RunStarted):
                for line in event.redone:
                    live.print(f"[yellow]note:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
            elif isinstance(event, ItemFinished):
                if event.record.failed:
                    live.print(f"[red]error:[/red] {event.record.error}", highlight=False, soft_wrap=True)
                else:
                    describe(event.record, live)

        yield on_event, live


# --------------------------------------------------------------------------- matte


def matte_video_inputs(
    videos: Sequence[Any],
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
    matter: Any = None,
    images: int = 0,
) -> tuple[list[tuple[str, str]], Any]:
    """Matte each video (a path, or (path, relative path) as `split_video_inputs` gives: the
    outputs mirror the tree) into `out_dir` with `p3m.video.runs` (one engine run, the journal
    `out_dir/manifest.jsonl`), printing what was written; returns ((video, reason) failures,
    the run report).

    A usage error (bad --save / --format / --background, no video that exists, kept outputs of
    other settings) stops the run; a video that cannot be matted is reported and the next goes
    on. `max_pixels` as `p3m matte --max-pixels` (0 default, -1 none); `download` fetches the
    model's published weights first when they are not cached; `selfie_config` refines selfie-cf
    (as `p3m matte --trimap-band/--threshold`); `matter`: the `Matter` those options make, when
    the caller loaded it already (for the run's images too); `images`: how many images the
    command runs after the videos (counted in the line an interrupted run ends with).
    """
    from rich.console import Console

    from p3m.inference.batch import MatterSpec
    from p3m.inference.budget import pixel_budget_from_option
    from p3m.runs import KEPT
    from p3m.video.runs import plan_video_matte, run_video_matte

    out = Console(emoji=False)
    err = Console(emoji=False, stderr=True)
    plan = plan_video_matte(videos, out_dir, save, video_format, overwrite)  # usage errors before any work
    budget = pixel_budget_from_option(max_pixels, "--max-pixels")
    if matter is None:
        spec = MatterSpec(model, weights, strategy, device, budget, selfie_config)
        matter = spec.build(download, on_download=lambda name: out.print(f"downloading the {name} weights ..."))
        if matter.note:
            err.print(f"[yellow]note:[/yellow] {matter.note}", soft_wrap=True)

    def describe(record: Any, live: Console) -> None:
        details = record.details
        source = Path(record.source)
        written = ", ".join(
            str(path) for kind, path in record.outputs.items() if kind not in details.get("kept", ())
        )
        live.print(
            f"{source} -> {written} [dim]({details.get('frames', 0)} frames, "
            f"{details.get('frames_per_second', 0.0):.2f} frames/s, {details.get('model')}, "
            f"temporal smoothing {details.get('temporal', 'on')})[/dim]",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        _print_warnings(record, live)

    with video_run_progress(err, describe, (0, images)) as (on_event, live):
        report = run_video_matte(plan, matter, background=background, temporal=temporal, on_event=on_event)
        for record in report.with_status(KEPT):
            live.print(
                f"kept {Path(record.source or record.key).name}: its outputs exist (use --overwrite to redo it)",
                highlight=False,
            )
    return [_failure(record) for record in report.failed], report


def _print_warnings(record: Any, live: Console) -> None:
    """A clip record's warnings, one line each, led by the clip's name."""
    for warning in record.details.get("warnings", ()):
        live.print(f"[yellow]{Path(record.source).name}:[/yellow] {warning}", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- anonymize


def anonymize_video_inputs(
    videos: Sequence[Any], out_dir: Path, config: Any, images: int = 0
) -> tuple[list[tuple[str, str]], Any]:
    """Anonymise each video into `out_dir` with the options of an `AnonymizeConfig`
    (`p3m.video.runs.anonymize_videos`, one engine run); returns ((video, reason) failures,
    identity leaks included, the run report). `images`: how many images the command runs
    after the videos (counted in the line an interrupted run ends with)."""
    from rich.console import Console

    from p3m.runs import KEPT
    from p3m.video.runs import anonymize_videos

    err = Console(emoji=False, stderr=True)

    def describe(record: Any, live: Console) -> None:
        details = record.details
        audit = details.get("audit") or {}
        output = record.outputs.get("video", "")
        live.print(
            f"{record.source} -> {output} [dim]({details.get('frames', 0)} frames, faces in "
            f"{details.get('frames_with_faces', 0)}, tracking filled {details.get('filled_frames', 0)}, audited "
            f"{audit.get('audited_frames', 0)}: {audit.get('faces_found', 0)} face(s) still found, "
            f"{audit.get('identity_matches', 0)} identity match(es); manifest {details.get('manifest', '')})[/dim]",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        _print_warnings(record, live)

    with video_run_progress(err, describe, (0, images)) as (on_event, live):
        report = anonymize_videos(videos, out_dir, config, on_event)
        for record in report.with_status(KEPT):
            live.print(
                f"kept {record.outputs.get('video', record.key)} (exists; use --overwrite to redo it)",
                highlight=False,
            )
    failures = [_failure(record) for record in report.failed]
    # Written, but not anonymised (also when kept from an earlier run): the run fails (exit code 1).
    failures += [
        (str(record.source), "identity leak: see the manifest")
        for record in report.records
        if not record.failed and record.details.get("identity_leak")
    ]
    return failures, report


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
        "of frame 0 or of a one-frame clip, is null in both); '-' writes it to stdout (the table "
        "then goes to stderr).",
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

    err = Console(emoji=False, stderr=True)
    json_to_stdout = json_path is not None and str(json_path) == "-"
    out = err if json_to_stdout else Console(emoji=False)  # stdout holds the JSON alone
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
    if json_to_stdout:
        typer.echo(json.dumps(evaluation.to_dict(), indent=1))
    elif json_path is not None:
        atomic_write_text(json_path, json.dumps(evaluation.to_dict(), indent=1) + "\n")
        out.print(f"summary: {json_path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `p3m eval-video` to the command line."""
    app.command("eval-video", no_args_is_help=True)(caps_image_pixels(eval_video_command))
