"""`p3m.matte_video`: matte a clip into alpha videos, cut-outs and composites, streaming.

    >>> report = p3m.matte_video("clip.mp4", "out/", save=("alpha", "rgba", "composite"),
    ...                          video_format="mov-prores4444", background="beach.jpg")
    >>> report.outputs            # {"alpha": out/clip_alpha.mov, "rgba": ..., "composite": ...mp4}
    >>> p3m.matte_video("clip.mp4", "cutout.webm")      # one output: the kind follows the suffix

    >>> for frame in p3m.iter_matte_video("clip.mp4"):   # in your own loop
    ...     frame.alpha, frame.rgba(), frame.composite((0, 177, 64)), frame.time

Every model `p3m.matte` takes works ("auto", "selfie-cf", a P3M-Net name, an .onnx file, a
built model). Frames flow decode -> matte -> encode through bounded queues
(`p3m.video.pipeline`), so memory does not grow with the clip; per-frame matting runs in
`workers` threads, in order where order matters. Temporal smoothing (`p3m.video.temporal`) is
on by default: a motion-compensated flicker filter on the alpha (and, if configured, on the
segmentation before each frame is solved); `temporal=False` mattes each frame on its own.

Outputs (see `p3m.video.writer` for the formats): `alpha` is the matte as a grey video (or
grey PNGs), `rgba` the straight-alpha cut-out with estimated foreground colours (ProRes 4444,
VP9 with alpha, RGBA PNGs), `composite` the subject over `background` as H.264 MP4. Frame
timestamps are kept; audio is carried into `rgba` and `composite` (not into PNG sequences).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import ConfigError
from p3m.inference.budget import MATTE_MAX_PIXELS
from p3m.video.events import EventCallback, ProgressMeter, VideoFinished, VideoStarted
from p3m.video.pipeline import Consumer, Turnstile, ordered_map, prefetch
from p3m.video.reader import Frame, VideoInfo, VideoReader
from p3m.video.temporal import TemporalConfig
from p3m.video.writer import OUTPUT_FORMATS, VideoWriter, get_format

__all__ = [
    "DEFAULT_VIDEO_FORMAT",
    "OUTPUT_FILE_SUFFIXES",
    "VIDEO_SAVE_KINDS",
    "VideoMatteFrame",
    "VideoMatteReport",
    "default_workers",
    "iter_matte_video",
    "matte_video",
    "parse_video_save",
    "plan_video_outputs",
]

logger = logging.getLogger(__name__)

VIDEO_SAVE_KINDS: tuple[str, ...] = ("alpha", "rgba", "composite")
DEFAULT_VIDEO_FORMAT = "mov-prores4444"
_SUFFIX_FORMATS = {".mov": "mov-prores4444", ".webm": "webm-vp9", ".mp4": "mp4"}
OUTPUT_FILE_SUFFIXES: tuple[str, ...] = tuple(_SUFFIX_FORMATS)
"""A destination ending in one of these is one output file, not a folder (`plan_video_outputs`)."""
_FRAME_KINDS = {"alpha": "gray", "rgba": "rgba", "composite": "rgb"}
DEFAULT_MAX_PIXELS = MATTE_MAX_PIXELS
"""`p3m.inference.MATTE_MAX_PIXELS` (from `p3m.inference.budget`, which does not load torch)."""


@dataclass
class VideoMatteFrame:
    """One matted frame: the image (RGB uint8), its alpha (float32 [0, 1]) and timing.

    `foreground` (RGB uint8) is the estimated foreground colour, present unless the iterator
    was asked for `foreground=False`; `trimap` (uint8 {0, 128, 255}) is the model's trimap.
    """

    index: int
    pts: int
    time_base: Fraction
    image: np.ndarray = field(repr=False)
    alpha: np.ndarray = field(repr=False)
    foreground: np.ndarray | None = field(default=None, repr=False)
    trimap: np.ndarray | None = field(default=None, repr=False)

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)

    def ensure_foreground(self) -> np.ndarray:
        if self.foreground is None:
            from p3m.inference.foreground import estimate_foreground

            self.foreground = estimate_foreground(self.image, self.alpha)
        return self.foreground

    def rgba(self) -> np.ndarray:
        """Straight-alpha RGBA uint8 cut-out (estimated foreground colours, no halo)."""
        from p3m.inference.foreground import cutout_rgba

        return cutout_rgba(self.ensure_foreground(), self.alpha)

    def composite(
        self, background: np.ndarray | str | tuple[int, int, int] = "white"
    ) -> np.ndarray:
        """The subject over a colour or an RGB uint8 image of the frame's size, RGB uint8."""
        from p3m.inference.foreground import composite

        return composite(self.ensure_foreground(), self.alpha, background)


@dataclass(frozen=True)
class VideoMatteReport:
    """What `matte_video` did: the files written (by kind), kept (existing) kinds, timing."""

    source: Path
    outputs: dict[str, Path]
    kept: tuple[str, ...]
    frames: int
    elapsed: float
    model: str
    info: VideoInfo
    temporal: bool
    note: str | None = None
    warnings: tuple[str, ...] = ()
    """What the caller should pass on about the input or outputs: a clip that ended before the
    duration its container declares (`VideoReader.warnings`), an odd size padded for H.264."""

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0


# --------------------------------------------------------------------------- options


def parse_video_save(save: str | Sequence[str]) -> tuple[str, ...]:
    """'alpha,rgba' or a sequence -> kinds in order; anything but alpha/rgba/composite is a ConfigError."""
    parts = save.split(",") if isinstance(save, str) else list(save)
    kinds = tuple(dict.fromkeys(str(part).strip().lower() for part in parts if str(part).strip()))
    unknown = [kind for kind in kinds if kind not in VIDEO_SAVE_KINDS]
    if unknown or not kinds:
        raise ConfigError(
            f"video outputs are {', '.join(VIDEO_SAVE_KINDS)}; got {', '.join(unknown) or 'nothing'}"
        )
    return kinds


def plan_video_outputs(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    save: str | Sequence[str] = ("alpha", "rgba"),
    video_format: str | None = None,
) -> dict[str, tuple[Path, str]]:
    """Output path and format of each kind: {kind: (path, format name)}.

    A `destination` ending in .mov / .webm / .mp4 is one output file (`save` must then name one
    kind, or is inferred: composite for .mp4, rgba otherwise). Any other destination is a folder
    receiving `<stem>_alpha<ext>`, `<stem>_rgba<ext>` (in `video_format`, default
    mov-prores4444; PNG sequences are folders) and `<stem>_composite.mp4`.
    """
    destination = Path(destination).expanduser()
    suffix = destination.suffix.lower()
    if suffix in _SUFFIX_FORMATS:
        file_format = _SUFFIX_FORMATS[suffix]
        if video_format is not None and video_format != file_format:
            raise ConfigError(
                f"{destination.name} is a {file_format} file name, but the format asked for is {video_format}"
            )
        kinds = parse_video_save(save) if save else ()
        if not kinds or kinds == ("alpha", "rgba"):  # the default: infer from the suffix
            kinds = ("composite",) if file_format == "mp4" else ("rgba",)
        if len(kinds) != 1:
            raise ConfigError(
                f"one output file ({destination.name}) takes one kind, got {', '.join(kinds)}; "
                "give a folder to write several"
            )
        kind = kinds[0]
        if kind == "rgba" and not OUTPUT_FORMATS[file_format].carries_alpha:
            raise ConfigError(
                "an .mp4 (H.264) file has no alpha channel: write the cut-out as .mov (ProRes 4444) or .webm (VP9)"
            )
        return {kind: (destination, file_format)}
    name = video_format or DEFAULT_VIDEO_FORMAT
    spec = get_format(name)
    kinds = parse_video_save(save)
    if "rgba" in kinds and not spec.carries_alpha:
        raise ConfigError(
            f"{name} has no alpha channel, so it cannot hold the rgba cut-out; use "
            + ", ".join(n for n, s in OUTPUT_FORMATS.items() if s.carries_alpha)
            + " (composites are always written as H.264 mp4)"
        )
    stem = Path(source).name if Path(source).is_dir() else Path(source).stem
    plan: dict[str, tuple[Path, str]] = {}
    for kind in kinds:
        kind_format = "mp4" if kind == "composite" else name
        plan[kind] = (destination / f"{stem}_{kind}{get_format(kind_format).suffix}", kind_format)
    return plan


def default_workers() -> int:
    """Matting threads per clip: 2 where there are 2+ CPU cores (selfie-cf's solve and the
    foreground estimation are largely single-threaded), else 1.

    Also 1 when numba has no thread-safe threading layer (OpenMP or TBB): pymatting's parallel
    kernels called from two threads at once would abort the process under numba's fallback
    "workqueue" layer.
    """
    if (os.cpu_count() or 1) < 2 or not _numba_is_threadsafe():
        return 1
    return 2


def _numba_is_threadsafe() -> bool:
    import importlib

    for layer in ("numba.np.ufunc.tbbpool", "numba.np.ufunc.omppool"):
        try:
            importlib.import_module(layer)
        except Exception:  # missing library or numba layout: try the next
            continue
        return True
    return False


def _temporal_config(temporal: bool | TemporalConfig) -> TemporalConfig | None:
    if isinstance(temporal, TemporalConfig):
        return temporal
    return TemporalConfig() if temporal else None


def _build_matter(
    model: Any,
    weights: str | os.PathLike[str] | None,
    strategy: str,
    device: str | None,
    max_pixels: int | None,
) -> Any:
    from p3m.inference.api import Matter

    if isinstance(model, Matter):
        return model
    return Matter(model, weights=weights, strategy=strategy, device=device, max_pixels=max_pixels)


# --------------------------------------------------------------------------- the pipeline


@dataclass
class _Item:
    frame: Frame
    result: Any = None
    alpha: np.ndarray | None = None
    background: Any = None
    rendered: dict[str, np.ndarray] | None = None


def _stream(
    reader: VideoReader,
    matter: Any,
    temporal: TemporalConfig | None,
    *,
    foreground: bool,
    workers: int,
    queue_size: int,
    background_at: Callable[[float], Any] | None = None,
    render: Callable[[VideoMatteFrame, Any], dict[str, np.ndarray]] | None = None,
) -> Iterator[tuple[VideoMatteFrame, dict[str, np.ndarray] | None]]:
    """decode (thread) -> solve (workers) -> smooth alpha (in order) -> colour/render (workers)."""
    segmentation = temporal.segmentation_smoother() if temporal else None
    alpha_smoother = temporal.alpha_smoother() if temporal else None
    turnstile = Turnstile()

    def solve(frame: Frame) -> _Item:
        if segmentation is None:
            return _Item(frame, matter(frame.image, foreground=False))

        def ordered_filter(image: np.ndarray, values: np.ndarray) -> np.ndarray:
            with turnstile.turn(frame.index):
                return segmentation(image, values)

        try:
            return _Item(
                frame, matter(frame.image, foreground=False, segmentation_filter=ordered_filter)
            )
        finally:
            turnstile.skip(frame.index)  # a frame that failed before filtering must not block

    def smooth(items: Iterator[_Item]) -> Iterator[_Item]:
        for item in items:
            alpha = item.result.alpha
            if alpha_smoother is not None:
                alpha = np.clip(alpha_smoother(item.frame.image, alpha), 0.0, 1.0)
            item.alpha = alpha.astype(np.float32, copy=False)
            if background_at is not None:
                item.background = background_at(item.frame.time)
            yield item

    def colour(item: _Item) -> tuple[VideoMatteFrame, dict[str, np.ndarray] | None]:
        frame = item.frame
        matted = VideoMatteFrame(
            index=frame.index,
            pts=frame.pts,
            time_base=frame.time_base,
            image=frame.image,
            alpha=item.alpha,
            trimap=getattr(item.result, "trimap", None),
        )
        if foreground:
            matted.ensure_foreground()
        rendered = render(matted, item.background) if render is not None else None
        return matted, rendered

    decoded = prefetch(reader, size=queue_size, name="p3m-decode")
    solved = ordered_map(solve, decoded, workers=workers, lookahead=workers + 1, name="p3m-matte")
    finished = ordered_map(
        colour, smooth(solved), workers=workers, lookahead=workers + 1, name="p3m-colour"
    )
    try:
        yield from finished
    finally:
        finished.close()
        solved.close()
        decoded.close()


def iter_matte_video(
    source: str | os.PathLike[str],
    model: Any = "auto",
    *,
    weights: str | os.PathLike[str] | None = None,
    strategy: str = "hybrid",
    device: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    temporal: bool | TemporalConfig = True,
    foreground: bool = True,
    workers: int | None = None,
    queue_size: int = 4,
    on_event: EventCallback | None = None,
) -> Iterator[VideoMatteFrame]:
    """Matte every frame of a video (or PNG sequence) in order, for use in your own loop.

    Arguments as `p3m.matte` (model, weights, strategy, device, max_pixels: the pixel budget,
    None for none), plus `temporal` (True, False or a `TemporalConfig`), `foreground` (estimate colours;
    False when only the alpha is needed), `workers` (matting threads, default
    `default_workers()`), `queue_size` (frames decoded ahead) and `on_event` (progress events).
    Raises `VideoReadError` for a missing, unreadable or truncated video.
    """
    reader = VideoReader(source)
    try:
        matter = _build_matter(model, weights, strategy, device, max_pixels)
    except BaseException:
        reader.close()
        raise
    meter = ProgressMeter(reader.path, reader.info.frame_count, on_event)
    if on_event is not None:
        on_event(VideoStarted(reader.path, reader.info, "matte", {}, matter.name, matter.note))
    stream = _stream(
        reader,
        matter,
        _temporal_config(temporal),
        foreground=foreground,
        workers=workers or default_workers(),
        queue_size=queue_size,
    )
    try:
        for matted, _ in stream:
            yield matted
            meter.advance()
    finally:
        stream.close()
        reader.close()
    elapsed = meter.finish()
    if on_event is not None:
        on_event(VideoFinished(reader.path, meter.done, elapsed))


def matte_video(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    save: str | Sequence[str] = ("alpha", "rgba"),
    video_format: str | None = None,
    background: Any = "white",
    model: Any = "auto",
    weights: str | os.PathLike[str] | None = None,
    strategy: str = "hybrid",
    device: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    temporal: bool | TemporalConfig = True,
    workers: int | None = None,
    overwrite: bool = True,
    queue_size: int = 4,
    on_event: EventCallback | None = None,
) -> VideoMatteReport:
    """Matte a video file (or PNG-sequence folder) and write the outputs `save` asks for.

    `destination`: a folder (outputs named `<stem>_<kind>`) or one .mov / .webm / .mp4 file
    (see `plan_video_outputs`). `video_format`: container of the alpha and rgba outputs
    ("mov-prores4444" default, "webm-vp9", "png-sequence", "mp4" for a grey alpha only).
    `background`: composite background, a colour, an image file or array, or a video file
    (looped or cut to the clip's length). `overwrite=False` keeps outputs that exist. Other
    arguments as `iter_matte_video`. Outputs appear only when complete; on any error none of
    this call's outputs is left behind. Raises `VideoReadError`, `VideoWriteError`,
    `ConfigError`, `MissingDependencyError`.
    """
    plan = plan_video_outputs(source, destination, save, video_format)
    source_path = Path(source).expanduser().resolve()
    for path, _ in plan.values():
        if path.expanduser().resolve() == source_path:
            raise ConfigError("the output would overwrite the input; choose another name", path)
    kept = tuple(kind for kind, (path, _) in plan.items() if not overwrite and path.exists())
    todo = {kind: target for kind, target in plan.items() if kind not in kept}
    reader = VideoReader(source)
    info = reader.info
    if not todo:
        reader.close()
        return VideoMatteReport(
            reader.path,
            {k: p for k, (p, _) in plan.items()},
            kept,
            0,
            0.0,
            "",
            info,
            bool(temporal),
        )
    writers: dict[str, VideoWriter] = {}
    backdrop = None
    try:
        matter = _build_matter(model, weights, strategy, device, max_pixels)
        if "composite" in todo:
            from p3m.video.background import Backdrop

            backdrop = Backdrop.from_spec(background, info.width, info.height)
        audio_source = None if info.is_sequence else reader.path
        for kind, (path, format_name) in todo.items():
            writers[kind] = VideoWriter(
                path,
                format_name,
                _FRAME_KINDS[kind],
                width=info.width,
                height=info.height,
                time_base=info.time_base,
                frame_rate=info.frame_rate,
                audio_from=audio_source if kind != "alpha" else None,
            )
    except BaseException:
        reader.close()
        for writer in writers.values():
            writer.abort()
        if backdrop is not None:
            backdrop.close()
        raise

    outputs = {kind: path for kind, (path, _) in todo.items()}
    if on_event is not None:
        on_event(VideoStarted(reader.path, info, "matte", outputs, matter.name, matter.note))
    meter = ProgressMeter(reader.path, info.frame_count, on_event)

    def render(matted: VideoMatteFrame, backdrop_frame: Any) -> dict[str, np.ndarray]:
        from p3m.io import alpha_to_uint8

        arrays: dict[str, np.ndarray] = {}
        if "alpha" in writers:
            arrays["alpha"] = alpha_to_uint8(matted.alpha)
        if "rgba" in writers:
            arrays["rgba"] = matted.rgba()
        if "composite" in writers:
            arrays["composite"] = matted.composite(backdrop_frame)
        return arrays

    def write(item: tuple[VideoMatteFrame, dict[str, np.ndarray]]) -> None:
        matted, arrays = item
        for kind, writer in writers.items():
            writer.write(arrays[kind], matted.pts)
        meter.advance()

    needs_colour = "rgba" in writers or "composite" in writers
    stream = _stream(
        reader,
        matter,
        _temporal_config(temporal),
        foreground=needs_colour,
        workers=workers or default_workers(),
        queue_size=queue_size,
        background_at=backdrop.at if backdrop is not None else None,
        render=render,
    )
    start = time.perf_counter()
    try:
        with Consumer(write, size=queue_size, name="p3m-encode") as sink:
            for matted, arrays in stream:
                sink.put((matted, arrays or {}))
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        stream.close()
        reader.close()
        if backdrop is not None:
            backdrop.close()
    elapsed = meter.finish()
    frames = meter.done
    if on_event is not None:
        on_event(VideoFinished(reader.path, frames, elapsed, outputs))
    logger.info("%s: %d frames in %.1f s", reader.path, frames, time.perf_counter() - start)
    return VideoMatteReport(
        source=reader.path,
        outputs={kind: path for kind, (path, _) in plan.items()},
        kept=kept,
        frames=frames,
        elapsed=elapsed,
        model=matter.name,
        info=info,
        temporal=bool(temporal),
        note=matter.note,
        warnings=tuple(reader.warnings)
        + tuple(writer.note for writer in writers.values() if writer.note),
    )
