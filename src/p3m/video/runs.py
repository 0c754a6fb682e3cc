"""Videos in folder runs: one `p3m.runs` item per clip, as images are.

`p3m matte DIR` and `p3m anonymize DIR` hand a folder's videos to the folder-run engine
(`p3m.runs.run_items`) with the tasks here, so videos get what images get: resume (a clip whose
outputs all exist is kept), a damage check of kept outputs (`video_output_problem`: a file cut
short or full of junk is redone, said in `RunStarted.redone`), a record per clip in the output
folder's run journal `manifest.jsonl` (outputs, frames, model, warnings, and for matting the
settings that made them, as `p3m.inference.batch` records for images), recorded failures, and
typed events: the engine's `RunStarted` / `ItemFinished` / `RunFinished` and, while a clip is
processed, its frame progress (`p3m.video.events.VideoStarted` / `VideoProgress` /
`VideoFinished`), all through the one `on_event` callback.

A kept clip made with other settings (another model, budget, selfie-cf refinement, background,
container, temporal smoothing) stops the run with the images' message
(`p3m.inference.batch.raise_other_settings`), and files a run journal lists are never inputs
(`p3m.inference.batch.leave_out_own_outputs`).

Clips run one at a time in this process (`RunOptions(io_threads=0)`): each already decodes,
mattes and encodes on its own threads (`p3m.video.pipeline`), and frame events reach the
caller from the thread that emits them.

    >>> plan = plan_video_matte(["a.mp4", "b.mov"], "out", save="alpha,rgba")
    >>> report = run_video_matte(plan, Matter("selfie-cf"), on_event=print)
    >>> report.counts                        # {"done": 1, "kept": 1}
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p3m.errors import ConfigError, MissingDependencyError, VideoReadError
from p3m.inference.batch import raise_other_settings, recorded_other_settings, run_settings
from p3m.runs import Item, ItemRecord, Outcome, RunOptions, RunReport, run_items
from p3m.runs.journal import JOURNAL_NAME
from p3m.video.events import EventCallback
from p3m.video.matte import (
    DEFAULT_VIDEO_FORMAT,
    OUTPUT_FILE_SUFFIXES,
    parse_video_save,
    plan_video_outputs,
)

__all__ = [
    "VideoAnonymizeTask",
    "VideoMattePlan",
    "VideoMatteTask",
    "anonymize_videos",
    "plan_video_matte",
    "run_video_matte",
    "video_background_identity",
    "video_matte_settings",
    "video_output_problem",
]

RunEventCallback = Callable[[Any], None]
"""Receives `p3m.runs.Event`s and `p3m.video.events.VideoEvent`s."""


# --------------------------------------------------------------------------- damage check


def video_output_problem(path: str | os.PathLike[str], frames: int | None = None) -> str | None:
    """Why a kept video output is not a complete one, or None.

    A file must open (container header and index) and hold a video stream with at least
    `frames` frames when the count is known (from the item's journal record). A .mov / .mp4
    (QuickTime boxes) must also be exactly as long as its top-level boxes say, which finds a
    file cut short or with bytes appended without reading it through (its index, which lists
    every frame, is written last); any other container (WebM) is demuxed to its end, counting
    packets (a WebM cut short opens but ends early). No frame is decoded. A PNG sequence (a
    folder) must hold at least `frames` PNGs.
    """
    path = Path(path)
    if path.is_dir():
        count = sum(1 for entry in path.glob("*.png") if not entry.name.startswith("."))
        if frames is not None and count < frames:
            return f"it holds {count} of its {frames} frames"
        return None if count else "it holds no frame"
    try:
        length = path.stat().st_size
        if length == 0:
            return "it is empty"
        boxed = path.suffix.lower() in (".mov", ".mp4")
        if boxed:
            problem = _box_problem(path, length)
            if problem is not None:
                return problem
    except OSError as error:
        return f"cannot read it ({error.strerror or error})"
    from p3m.video._av import describe_av_error, import_av

    av = import_av()
    packets = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "it has no video stream"
            stream = container.streams.video[0]
            if boxed and stream.frames:
                packets = stream.frames  # the index lists every frame
            else:
                for packet in container.demux(stream):
                    if packet.size:
                        packets += 1
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as error:
        return f"it cannot be read to its end: {describe_av_error(error)}"
    if not packets:
        return "it has no frames"
    if frames is not None and packets < frames:
        return f"it holds {packets} of its {frames} frames"
    return None


def _box_problem(path: Path, length: int) -> str | None:
    """Whether the top-level boxes of a QuickTime / MP4 file tile it exactly (ISO/IEC 14496-12
    section 4.2: 32-bit size and type, size 1 = a 64-bit size follows, 0 = to the end)."""
    offset = 0
    with open(path, "rb") as handle:
        while offset < length:
            handle.seek(offset)
            header = handle.read(16)
            kind = header[4:8]
            if len(header) < 8 or not all(32 <= byte < 127 or byte == 0xA9 for byte in kind):
                what = "the first bytes are" if offset == 0 else f"the bytes at {offset} are"
                return f"{what} not a QuickTime / MP4 box (junk, or a damaged file)"
            size = int.from_bytes(header[:4], "big")
            if size == 1:
                if len(header) < 16:
                    return "it is cut short (a box header is incomplete)"
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                size = length - offset
            if size < 8:
                return "it is not a QuickTime / MP4 file (a box has an impossible size)"
            offset += size
    if offset != length:
        return "its boxes do not end where the file does (cut short, or bytes added)"
    return None


def _recorded_frames(record: ItemRecord | None) -> int | None:
    frames = record.details.get("frames") if record is not None else None
    return frames if isinstance(frames, int) and frames > 0 else None


# --------------------------------------------------------------------------- matte


def video_background_identity(background: Any) -> str:
    """A video composite background as recorded with the outputs, to tell other settings from
    this run's: a colour as `p3m.inference.batch.background_identity` records it for images
    ("(255, 255, 255)" for white, "#ffffff" alike), an image file by its pixels (as for images),
    a video file by its name and the SHA-1 of its bytes."""
    from p3m.inference.batch import background_identity

    if not isinstance(background, (str, os.PathLike)):
        return background_identity(background)
    path = Path(background).expanduser()
    if path.is_file():
        from p3m.video._av import is_video_path

        if is_video_path(path):
            digest = hashlib.sha1()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            return f"video {path.name} sha1 {digest.hexdigest()[:16]}"
        from p3m.io import read_image

        return background_identity(read_image(path))
    from p3m.inference.foreground import parse_color

    try:
        return background_identity(parse_color(str(background)))
    except (ConfigError, ValueError):
        return str(background)


def video_matte_settings(
    matter: Any,
    kinds: Sequence[str],
    background: Any = "white",
    video_format: str = DEFAULT_VIDEO_FORMAT,
    temporal: bool = True,
) -> dict[str, Any]:
    """What a folder run records with each clip: the images' settings (`run_settings`: model,
    weights, strategy, budget, selfie-cf refinements, and the background when composites are
    written), the container of the alpha and rgba outputs ("format", when one of them is
    written) and temporal smoothing ("temporal": "on" / "off")."""
    identity = video_background_identity(background) if "composite" in kinds else background
    settings = run_settings(matter, kinds, identity)
    if "alpha" in kinds or "rgba" in kinds:
        settings["format"] = video_format
    settings["temporal"] = "on" if temporal else "off"
    return settings


@dataclass
class VideoMattePlan:
    """The clips of a matte run with their outputs (one `Item` each, keyed by the file name).

    `out_dir`: the folder of the outputs and of the run journal (the destination's folder when
    the destination is one output file, `clip.webm`)."""

    items: list[Item]
    out_dir: Path
    kinds: tuple[str, ...]
    video_format: str
    overwrite: bool = False


def _check_some_exist(videos: Sequence[Path]) -> None:
    missing = [path for path in videos if not path.exists()]
    if missing and len(missing) == len(videos):
        if len(missing) == 1:
            raise VideoReadError("file not found", missing[0])
        raise VideoReadError("none of the videos exists: " + ", ".join(str(path) for path in missing))


VideoInput = str | os.PathLike[str] | tuple[str | os.PathLike[str], str | os.PathLike[str]]
"""A clip of a folder run: its path, or (path, path relative to its input root) as
`p3m.inference.batch.collect_inputs` gives for images (`photos/sub/a.mp4` found under
`photos/` with -r is `(photos/sub/a.mp4, sub/a.mp4)`)."""


def _relative_sources(videos: Iterable[VideoInput]) -> list[tuple[Path, Path]]:
    """(path, relative path) of each clip: a bare path is relative as its name alone."""
    pairs = []
    for video in videos:
        if isinstance(video, tuple):
            source, relative = Path(video[0]).expanduser(), Path(video[1])
        else:
            source = Path(video).expanduser()
            relative = Path(source.name)
        pairs.append((source, relative))
    return pairs


def plan_video_matte(
    videos: Iterable[VideoInput],
    out_dir: str | os.PathLike[str],
    save: str | Sequence[str] = ("alpha", "rgba"),
    video_format: str | None = None,
    overwrite: bool = False,
) -> VideoMattePlan:
    """One item per clip: outputs `<out_dir>/<stem>_<kind><ext>`, or the one file `out_dir`
    names when it ends in .mov / .webm / .mp4 (see `plan_video_outputs`).

    A clip given as (path, relative path) (`VideoInput`: found in a sub-folder with -r) is keyed
    by its relative path and written into the same sub-folder of `out_dir` (`photos/sub/a.mp4`
    -> `<out_dir>/sub/a_alpha.mov`), as images are, so same-named clips of two folders do not
    collide; a bare path is keyed by its file name.

    Raises ConfigError for a wrong `save` / `video_format` and VideoReadError when none of the
    clips exists (a clip that is missing among others fails alone when the run reaches it)."""
    pairs = _relative_sources(videos)
    sources = [source for source, _ in pairs]
    destination = Path(out_dir).expanduser()
    name = video_format or DEFAULT_VIDEO_FORMAT
    kinds = parse_video_save(save)
    folder = destination
    one_file = destination.suffix.lower() in OUTPUT_FILE_SUFFIXES
    if one_file:  # one output file: its kind and format
        ((kind, (_, name)),) = plan_video_outputs(destination, destination, save, video_format).items()
        kinds, folder = (kind,), destination.parent
    if sources:
        plan_video_outputs(sources[0], destination, kinds, name)  # usage errors before any work
        _check_some_exist(sources)
    items = []
    for source, relative in pairs:
        target = destination if one_file else destination / relative.parent  # the tree mirrored
        outputs = {kind: path for kind, (path, _) in plan_video_outputs(source, target, kinds, name).items()}
        items.append(Item(relative.as_posix(), source, outputs, target))
    return VideoMattePlan(items, folder, kinds, name, overwrite)


class VideoMatteTask:
    """The `p3m.runs.Task` of a clip in a matte run: `matte_video` into the item's outputs.

    Only the kinds whose output is missing or damaged are written (all with `overwrite`, or
    when the clip changed since they were made: `Item.redo`). The
    record's details: "written" (file names), "kept" (kinds left as they were), "model",
    "settings" (`video_matte_settings`), "frames", "frames_per_second", "temporal", "warnings".
    Frame progress goes to `on_event` (`p3m.video.events`).
    """

    def __init__(
        self,
        matter: Any,
        kinds: Sequence[str],
        video_format: str = DEFAULT_VIDEO_FORMAT,
        background: Any = "white",
        temporal: bool = True,
        overwrite: bool = False,
        on_event: EventCallback | None = None,
        workers: int | None = None,
    ) -> None:
        self.matter = matter
        self.kinds = tuple(kinds)
        self.video_format = video_format
        self.background = background
        self.temporal = temporal
        self.overwrite = overwrite
        self.on_event = on_event
        self.workers = workers
        self.settings = video_matte_settings(matter, self.kinds, background, video_format, temporal)

    def output_problem(self, item: Item, record: ItemRecord | None) -> tuple[Path, str] | None:
        """The first output of a kept clip that is damaged (`video_output_problem`)."""
        frames = _recorded_frames(record)
        for path in item.outputs.values():
            problem = video_output_problem(path, frames)
            if problem is not None:
                return Path(path), problem
        return None

    def load(self, item: Item) -> None:
        return None

    def compute(self, item: Item, loaded: None) -> Any:
        from p3m.video.matte import matte_video

        if self.overwrite or item.redo:  # redo: the clip changed since its outputs were made
            wanted = self.kinds
        else:
            wanted = tuple(
                kind for kind in self.kinds
                if not item.outputs[kind].exists() or video_output_problem(item.outputs[kind]) is not None
            )  # fmt: skip
        report = matte_video(
            item.source, item.payload, save=wanted or self.kinds, video_format=self.video_format,
            background=self.background, model=self.matter, temporal=self.temporal, workers=self.workers,
            overwrite=True, on_event=self.on_event,
        )  # fmt: skip
        kept = tuple(kind for kind in self.kinds if kind not in wanted) if wanted else ()
        return report, kept

    def write(self, item: Item, result: Any) -> Outcome:
        report, kept = result
        details: dict[str, Any] = {
            "written": [Path(path).name for path in report.outputs.values()],
            "model": report.model,
            "settings": self.settings,
            "frames": report.frames,
            "frames_per_second": round(report.frames_per_second, 3),
            "temporal": "on" if report.temporal else "off",
        }
        if kept:
            details["kept"] = list(kept)
        if report.warnings:
            details["warnings"] = list(report.warnings)
        outputs = {kind: path for kind, path in item.outputs.items() if Path(path).exists()}
        return Outcome(outputs=outputs, details=details)


def run_video_matte(
    plan: VideoMattePlan,
    matter: Any,
    *,
    background: Any = "white",
    temporal: bool = True,
    workers: int | None = None,
    on_event: RunEventCallback | None = None,
) -> RunReport:
    """Matte the plan's clips with `matter` (a `p3m.inference.Matter`) as one engine run.

    The journal is `<out_dir>/manifest.jsonl`, shared with the images of the same folder run.
    Raises ConfigError, before any clip, when kept outputs were made with other settings
    (`p3m.inference.batch.raise_other_settings`); MissingDependencyError / ConfigError of a clip
    stop the run, any other error fails that clip alone (recorded with its reason)."""
    task = VideoMatteTask(
        matter, plan.kinds, plan.video_format, background, temporal, plan.overwrite, on_event, workers
    )
    if not plan.overwrite:
        entries = ((item.key, item.outputs.values()) for item in plan.items)
        other = recorded_other_settings(plan.out_dir / JOURNAL_NAME, entries, task.settings)
        raise_other_settings(plan.out_dir, other, task.settings, "video")
    options = RunOptions(overwrite=plan.overwrite, io_threads=0, fatal=(MissingDependencyError, ConfigError))
    return run_items(plan.items, task, plan.out_dir / JOURNAL_NAME, options, on_event)


# --------------------------------------------------------------------------- anonymize

NEEDS_REVIEW = "needs_review"
"""A clip written but to be checked by a person (an identity the audit still matched, or faces
found outside every face mask): the status images have in the same case."""


class VideoAnonymizeTask:
    """The `p3m.runs.Task` of a clip in an anonymise run: `anonymize_video` with the options of
    an `p3m.privacy.dataset.AnonymizeConfig`, into `<out>/<stem>.mp4` and `<stem>.faces.jsonl`.

    The record's details are the clip's manifest entry: "kind": "video", "method" and
    "strength" used, "frames", "frames_with_faces", "filled_frames", "tracks", "audit"
    (frames audited, faces still found, identity matches), "identity_leak", "parameters" (the
    options asked for), "warnings", "needs_annotation" (reasons a person must look; status
    "needs_review" then).
    """

    def __init__(self, config: Any, on_event: EventCallback | None = None) -> None:
        self.config = config
        self.on_event = on_event
        self.settings = config.settings(video=True)

    def output_problem(self, item: Item, record: ItemRecord | None) -> tuple[Path, str] | None:
        frames = _recorded_frames(record)
        video, faces = Path(item.outputs["video"]), Path(item.outputs["faces"])
        problem = video_output_problem(video, frames)
        if problem is not None:
            return video, problem
        if frames is not None:
            try:
                lines = sum(1 for line in faces.read_text(encoding="utf-8").splitlines() if line.strip())
            except (OSError, UnicodeDecodeError) as error:
                return faces, f"cannot read it ({error})"
            if lines < frames:
                return faces, f"it lists {lines} of its {frames} frames"
        return None

    def load(self, item: Item) -> None:
        return None

    def compute(self, item: Item, loaded: None) -> Any:
        from p3m.video import anonymize

        config = self.config
        return anonymize.anonymize_video(
            item.source, item.outputs["video"], config.method, alpha_from=config.alpha_from,
            detectors=config.detectors, landmarks=config.landmarks, min_confidence=config.min_confidence,
            transition_margin=config.transition_margin, strength=config.strength, audit=config.audit,
            audit_detectors=config.audit_detectors, overwrite=True, on_event=self.on_event,
        )  # fmt: skip

    def write(self, item: Item, report: Any) -> Outcome:
        reasons = []
        if report.identity_leak:
            reasons.append(f"identity leak: the audit matched {report.audit_identity_matches} face(s)")
        if report.audit_uncovered:
            reasons.append(f"{report.audit_uncovered} face(s) found by the audit outside every face mask")
        details: dict[str, Any] = {
            "kind": "video",
            "method": report.method or self.config.method,
            "strength": report.strength,
            "frames": report.frames,
            "frames_with_faces": report.frames_with_faces,
            "filled_frames": report.filled_frames,
            "tracks": report.tracks,
            "audit": {
                "audited_frames": report.audited_frames,
                "faces_found": report.audit_faces_found,
                "identity_matches": report.audit_identity_matches,
            },
            "identity_leak": bool(report.identity_leak),
            "parameters": {
                "method": self.config.method, "strength": self.config.strength,
                "detectors": list(self.config.detectors), "landmarks": self.config.landmarks,
                "min_confidence": self.config.min_confidence, "transition_margin": self.config.transition_margin,
                "alpha_from": self.config.alpha_from, "audit": self.config.audit,
                "audit_detectors": list(self.config.audit_detectors or ()),
            },
            "settings": self.settings,
            "warnings": list(report.warnings),
            "needs_annotation": reasons,
            "manifest": Path(report.manifest).name,
        }
        outputs = {kind: path for kind, path in item.outputs.items() if Path(path).is_file()}
        return Outcome(status=NEEDS_REVIEW if reasons else "done", outputs=outputs, details=details)


def plan_anonymize_videos(videos: Iterable[VideoInput], out_dir: str | os.PathLike[str]) -> list[Item]:
    """One item per clip, keyed by its file name: outputs `<out_dir>/<stem>.mp4` ("video") and
    `<stem>.faces.jsonl` ("faces"); a clip given as (path, relative path) (`VideoInput`) is keyed
    by the relative path, its outputs in the same sub-folder of `out_dir` (the tree mirrored).
    VideoReadError when none of the clips exists."""
    from p3m.video.anonymize import MANIFEST_SUFFIX

    pairs = _relative_sources(videos)
    _check_some_exist([source for source, _ in pairs])
    out_dir = Path(out_dir).expanduser()
    items = []
    for source, relative in pairs:
        folder = out_dir / relative.parent
        outputs = {"video": folder / f"{source.stem}.mp4", "faces": folder / f"{source.stem}{MANIFEST_SUFFIX}"}
        items.append(Item(relative.as_posix(), source, outputs))
    return items


def anonymize_videos(
    videos: Iterable[VideoInput],
    out_dir: str | os.PathLike[str],
    config: Any,
    on_event: RunEventCallback | None = None,
) -> RunReport:
    """Anonymise clips into `out_dir` as one engine run, with an `AnonymizeConfig`'s options.

    Journal `<out_dir>/manifest.jsonl`, shared with the images of the run (pass the report's
    records to `p3m.privacy.dataset.anonymize_samples(..., others=...)` so that manifest.json,
    the counts and the privacy report cover the clips too). A clip is kept when its outputs
    exist, are complete and the journal has its record (`config.resume`); `config.resume=False`
    redoes every clip. Raises ConfigError, before any clip, when kept clips were made with other
    settings (`p3m.privacy.dataset.check_kept_outputs`). A clip that cannot be read fails alone."""
    items = plan_anonymize_videos(videos, out_dir)
    task = VideoAnonymizeTask(config, on_event)
    if config.resume:  # kept clips made with another method, strength, ... stop the run
        from p3m.privacy.dataset import check_kept_outputs

        check_kept_outputs(Path(out_dir).expanduser(), items, task.settings, "video")
    options = RunOptions(
        overwrite=not config.resume, io_threads=0, kept_needs_record=True,
        fatal=(MissingDependencyError, ConfigError),
    )  # fmt: skip
    return run_items(items, task, Path(out_dir).expanduser() / JOURNAL_NAME, options, on_event)

