"""Reading videos frame by frame with PyAV: any container and codec FFmpeg decodes.

Frames come out as RGB uint8 H x W x 3 in display orientation (the rotation that phones store
as a display matrix is applied to the pixels), each with its own presentation timestamp, so a
variable-frame-rate clip keeps its timing. With `with_alpha=True` the alpha channel comes too
(uint8 H x W): ProRes 4444, PNG/QuickTime RLE in .mov, and VP8/VP9 with alpha in WebM, which is
decoded with libvpx because FFmpeg's native VP9 decoder drops the alpha plane.

    >>> with VideoReader("clip.mp4") as video:
    ...     print(video.info.frame_rate, video.info.frame_count)
    ...     for frame in video:                 # Frame: index, image, pts, time_base, time
    ...         ...
    >>> alphas = read_alpha_frames("clip_alpha.mov")   # float32 H x W in [0, 1], one per frame

A folder of PNG files (a "PNG sequence", sorted by name, optional `timestamps.txt` in the
mkvmerge v2 format that `p3m matte --format png-sequence` writes) reads the same way.
Failures are `VideoReadError` naming the file: missing, not a video, truncated, no video stream.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import P3MError, VideoReadError
from p3m.video._av import accurate_scaling, check_source_file, describe_av_error, import_av

__all__ = [
    "TIMESTAMPS_FILE",
    "Frame",
    "VideoInfo",
    "VideoReader",
    "probe_video",
    "read_alpha_frames",
    "read_frames",
]

logger = logging.getLogger(__name__)

TIMESTAMPS_FILE = "timestamps.txt"
"""Name of the timestamp file beside a PNG sequence (mkvmerge "timestamp format v2", ms)."""

SEQUENCE_TIME_BASE = Fraction(1, 1000)
_SEQUENCE_DEFAULT_RATE = Fraction(25)

# First bytes of containers, to tell a damaged video from a file that is no video at all.
_CONTAINER_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # MP4 / MOV / 3GP
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"wide"),
    (4, b"free"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (0, b"RIFF"),  # AVI
    (0, b"OggS"),
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"\x30\x26\xb2\x75"),  # ASF / WMV
)


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB uint8 H x W x 3 (display orientation) and its timing.

    (`image` is uint8 H x W luma instead when the reader was opened with `gray=True`.)
    `pts` is the presentation timestamp in units of `time_base` seconds; `alpha` is the frame's
    alpha channel (uint8 H x W) when the reader was asked for it and the video has one.
    """

    index: int
    image: np.ndarray = field(repr=False)
    pts: int
    time_base: Fraction
    alpha: np.ndarray | None = field(default=None, repr=False)

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds; `width` x `height` are the displayed size (rotation applied).

    `rotation` is the angle (degrees, counter-clockwise, 0/90/180/270) by which the stored
    frames are turned for display. `frame_count` comes from the container header when it has
    one (MP4, MOV, AVI), otherwise it is estimated from duration x frame rate
    (`frame_count_exact` False), or None. `frame_rate` is the average rate (a variable-rate clip
    keeps its own timestamps whatever it is).
    """

    path: Path
    container: str
    codec: str
    width: int
    height: int
    rotation: int
    frame_rate: Fraction | None
    time_base: Fraction
    frame_count: int | None
    frame_count_exact: bool
    duration: float | None
    has_alpha: bool
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    is_sequence: bool = False

    def describe(self) -> str:
        rate = f"{float(self.frame_rate):.3g} fps" if self.frame_rate else "unknown rate"
        count = (
            "?"
            if self.frame_count is None
            else f"{'' if self.frame_count_exact else '~'}{self.frame_count}"
        )
        audio = f", audio {self.audio_codec}" if self.audio_codec else ""
        return f"{self.width}x{self.height} {self.codec}, {rate}, {count} frames{audio}"


# --------------------------------------------------------------------------- helpers


def _looks_like_container(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return any(
        head[offset : offset + len(magic)] == magic for offset, magic in _CONTAINER_SIGNATURES
    )


def _open_error(path: Path, error: BaseException) -> VideoReadError:
    reason = describe_av_error(error)
    if _looks_like_container(path):
        return VideoReadError(f"truncated or damaged video file ({reason})", path)
    return VideoReadError(f"not a video, or a format FFmpeg cannot read ({reason})", path)


def _quarter_turns(rotation: float | None, path: Path) -> int:
    """Counter-clockwise quarter turns for a display-matrix angle (non-multiples of 90 rounded)."""
    if not rotation:
        return 0
    turns = round(float(rotation) / 90.0)
    if abs(float(rotation) - 90.0 * turns) > 1.0:
        logger.warning(
            "%s: display rotation %.1f degrees rounded to %d", path, rotation, 90 * turns
        )
    return turns % 4


def _has_alpha_format(name: str) -> bool:
    av = import_av()
    try:
        return any(component.is_alpha for component in av.video.format.VideoFormat(name).components)
    except (ValueError, TypeError):
        return False


def _libvpx_decoder(stream: Any) -> str | None:
    """The libvpx decoder that keeps the alpha plane of a VP8/VP9 WebM stream, if it has one."""
    tags = {key.lower(): value for key, value in (stream.metadata or {}).items()}
    if str(tags.get("alpha_mode", "0")).strip() != "1":
        return None
    name = stream.codec_context.name
    return {"vp9": "libvpx-vp9", "vp8": "libvpx"}.get(name)


def _fraction(value: Any) -> Fraction | None:
    if value is None:
        return None
    fraction = Fraction(value)
    return fraction if fraction > 0 else None


# --------------------------------------------------------------------------- reader


class VideoReader:
    """An open video file (or PNG-sequence folder): `info`, then iterate for `Frame`s once.

    `with_alpha`: also return each frame's alpha channel (libvpx decodes VP8/VP9 WebM alpha).
    `gray`: return the luma (uint8 H x W, full range) as `image` instead of RGB (grey mattes).
    `threads`: decoder threads (0 = FFmpeg's choice). Use as a context manager, or call
    `close()`; iterating to the end closes it too.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        with_alpha: bool = False,
        gray: bool = False,
        threads: int = 0,
    ) -> None:
        self.path = Path(path).expanduser()
        self.with_alpha = with_alpha
        self.gray = gray
        self._container: Any = None
        self._sequence: list[Path] | None = None
        self._sequence_pts: list[int] | None = None
        self._first: Any = None
        self.warnings: list[str] = []
        """Problems found while reading that did not stop it (a clip that ends early); complete
        once the frames have been read to the end."""
        if self.path.is_dir():
            self.info = self._open_sequence()
        else:
            check_source_file(self.path)
            self.info = self._open_video(threads)

    # ---------------------------------------------------------------- opening

    def _open_video(self, threads: int) -> VideoInfo:
        av = import_av()
        try:
            container = av.open(str(self.path), mode="r")
        except av.error.FFmpegError as error:
            raise _open_error(self.path, error) from error
        except (OSError, UnicodeDecodeError) as error:
            raise VideoReadError(f"cannot open: {error}", self.path) from error
        self._container = container
        try:
            if not container.streams.video:
                kind = "audio only" if container.streams.audio else "no streams FFmpeg can use"
                raise VideoReadError(f"no video stream ({kind})", self.path)
            stream = container.streams.video[0]
            self._stream = stream
            self._decoder_name = _libvpx_decoder(stream) if self.with_alpha else None
            if self._decoder_name is None:
                stream.thread_type = "AUTO"
                if threads:
                    stream.codec_context.thread_count = threads
            self._decoded = self._decode_all()
            # The first frame tells the display rotation and proves the stream decodes at all.
            try:
                self._first = next(self._decoded)
            except StopIteration:
                raise VideoReadError("the video stream has no decodable frame", self.path) from None
            return self._describe(container, stream, self._first)
        except BaseException:
            self.close()
            raise

    def _describe(self, container: Any, stream: Any, first: Any) -> VideoInfo:
        codec_context = stream.codec_context
        rotation = _quarter_turns(getattr(first, "rotation", 0), self.path) * 90
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        rate = _fraction(stream.average_rate) or _fraction(stream.guessed_rate)
        time_base = _fraction(stream.time_base) or Fraction(1, 90000)
        duration = None
        if stream.duration is not None:
            duration = float(stream.duration * time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        frames = int(stream.frames or 0)
        exact = frames > 0
        if not exact:
            frames = round(duration * rate) if duration and rate else 0
        has_alpha = _has_alpha_format(first.format.name) or _libvpx_decoder(stream) is not None
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=self.path,
            container=container.format.name,
            codec=codec_context.name,
            width=width,
            height=height,
            rotation=rotation,
            frame_rate=rate,
            time_base=time_base,
            frame_count=frames or None,
            frame_count_exact=exact,
            duration=duration,
            has_alpha=has_alpha,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
        )

    def _open_sequence(self) -> VideoInfo:
        from p3m.io import read_image

        files = sorted(
            p
            for p in self.path.iterdir()
            if p.suffix.lower() == ".png" and not p.name.startswith(".")
        )
        if not files:
            raise VideoReadError("folder has no PNG frames", self.path)
        self._sequence = files
        pts = _read_timestamps(self.path / TIMESTAMPS_FILE, len(files))
        if pts is None:
            step = int(round(1000 / _SEQUENCE_DEFAULT_RATE))
            pts = [i * step for i in range(len(files))]
        self._sequence_pts = pts
        first = read_image(files[0])
        rate = None
        if len(pts) > 1 and pts[-1] > pts[0]:
            rate = Fraction(len(pts) - 1) / (Fraction(pts[-1] - pts[0]) * SEQUENCE_TIME_BASE)
            rate = rate.limit_denominator(1001)
        from PIL import Image

        with Image.open(files[0]) as image:
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        return VideoInfo(
            path=self.path,
            container="png-sequence",
            codec="png",
            width=first.shape[1],
            height=first.shape[0],
            rotation=0,
            frame_rate=rate,
            time_base=SEQUENCE_TIME_BASE,
            frame_count=len(files),
            frame_count_exact=True,
            duration=float((pts[-1] - pts[0]) * SEQUENCE_TIME_BASE) if len(pts) > 1 else None,
            has_alpha=has_alpha,
            is_sequence=True,
        )

    # ---------------------------------------------------------------- decoding

    def _decode_all(self) -> Iterator[Any]:
        """av.VideoFrames in presentation order; FFmpeg errors become VideoReadError."""
        av = import_av()
        container, stream = self._container, self._stream
        decoded = 0
        first_time: float | None = None
        last_time: float | None = None
        try:
            if self._decoder_name is None:
                for frame in container.decode(stream):
                    decoded += 1
                    last_time = frame.time if frame.time is not None else last_time
                    first_time = last_time if first_time is None else first_time
                    yield frame
            else:
                context = av.CodecContext.create(self._decoder_name, "r")
                context.thread_count = 0
                for packet in container.demux(stream):
                    for frame in context.decode(packet):
                        if frame.pts is None:
                            frame.pts = packet.pts
                        decoded += 1
                        last_time = frame.time if frame.time is not None else last_time
                        first_time = last_time if first_time is None else first_time
                        yield frame
        except av.error.FFmpegError as error:
            raise VideoReadError(
                f"damaged or truncated video data after frame {decoded} ({describe_av_error(error)})",
                self.path,
            ) from error
        declared = int(stream.frames or 0)
        if declared and declared - decoded > max(2, declared // 100):
            raise VideoReadError(
                f"truncated or damaged: decoded {decoded} of the {declared} frames the header lists",
                self.path,
            )
        if not declared and first_time is not None and last_time is not None:
            self._check_duration(decoded, last_time - first_time)

    def _check_duration(self, decoded: int, span: float) -> None:
        """A container without a frame index (Matroska, WebM, ...) that ends well before the
        duration it declares for the video track: a warning, not an error (see `warnings`).

        A header that lists the frames (MP4, MOV) makes a shortfall certain damage, an error;
        here the expected count is only duration x rate, so the frames that decoded are kept
        and the shortfall is reported. Only the video track's own duration is used (Matroska's
        per-track DURATION tag, else the container's when there is no audio track, which may
        run longer than the picture).
        """
        stream, container = self._stream, self._container
        declared = _tag_seconds((stream.metadata or {}).get("DURATION"))
        if declared is None and stream.duration is not None and stream.time_base:
            declared = float(stream.duration * stream.time_base)
        if declared is None and not container.streams.audio and container.duration:
            declared = container.duration / 1_000_000
        rate = self.info.frame_rate
        if not declared or not rate:
            return
        step = float(1 / rate)
        shown = span + step  # the last frame is shown for a frame time
        if declared - shown > max(2 * step, 0.05 * declared):
            expected = round(declared * float(rate))
            self.warnings.append(
                f"truncated: {decoded} of about {expected} frames decoded (the video stops at "
                f"{shown:.2f} s of the {declared:.2f} s its container declares)"
            )
            logger.info("%s: %s", self.path, self.warnings[-1])

    def __iter__(self) -> Iterator[Frame]:
        if self._sequence is not None:
            yield from self._iter_sequence()
            return
        if self._container is None:
            raise VideoReadError("the video is closed (a reader iterates once)", self.path)
        time_base = self.info.time_base
        turns = self.info.rotation // 90
        previous_pts: int | None = None
        step = max(1, round(1 / (self.info.frame_rate * time_base))) if self.info.frame_rate else 1
        index = 0
        flags = accurate_scaling()
        try:
            pending = [self._first] if self._first is not None else []
            self._first = None
            for frame in _chain(pending, self._decoded):
                pts = frame.pts
                if pts is None:  # containers without timestamps (raw streams, some AVIs)
                    pts = 0 if previous_pts is None else previous_pts + step
                elif previous_pts is not None and pts <= previous_pts:
                    # Timestamps must increase for the encoders: nudge a repeated one forward.
                    pts = previous_pts + 1
                previous_pts = pts
                image = frame.to_ndarray(
                    format="gray" if self.gray else "rgb24", interpolation=flags
                )
                alpha = None
                if self.with_alpha and _has_alpha_format(frame.format.name):
                    alpha = _alpha_plane(frame, flags)
                if turns:
                    image = np.ascontiguousarray(np.rot90(image, turns))
                    if alpha is not None:
                        alpha = np.ascontiguousarray(np.rot90(alpha, turns))
                yield Frame(index, image, int(pts), time_base, alpha)
                index += 1
        finally:
            self.close()

    def _iter_sequence(self) -> Iterator[Frame]:
        from p3m.io import read_alpha_u8, read_image

        assert self._sequence is not None and self._sequence_pts is not None
        for index, (path, pts) in enumerate(zip(self._sequence, self._sequence_pts, strict=True)):
            try:
                image = read_image(path)
                if self.gray:
                    image = _luma_u8(image)
                alpha = read_alpha_u8(path) if self.with_alpha and self.info.has_alpha else None
            except P3MError as error:
                raise VideoReadError(f"frame {index}: {error}", self.path) from error
            if image.shape[:2] != (self.info.height, self.info.width):
                raise VideoReadError(
                    f"frame {path.name} is {image.shape[1]}x{image.shape[0]}, the first frame "
                    f"{self.info.width}x{self.info.height}",
                    self.path,
                )
            yield Frame(index, image, pts, SEQUENCE_TIME_BASE, alpha)

    def close(self) -> None:
        """Release the file (idempotent)."""
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _alpha_plane(frame: Any, flags: Any) -> np.ndarray:
    """The alpha channel of a frame as uint8 (16-bit / 10-bit alpha rounded to 8 bits)."""
    return frame.to_ndarray(format="rgba", interpolation=flags)[:, :, 3]


def _luma_u8(image: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of RGB uint8, rounded (what Pillow's "L" conversion gives)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).convert("L"))


def _tag_seconds(value: Any) -> float | None:
    """Seconds of a Matroska DURATION tag ("HH:MM:SS.nnnnnnnnn"), or None."""
    try:
        hours, minutes, seconds = str(value).split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (TypeError, ValueError):
        return None


def _chain(first: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from first
    yield from rest


def _read_timestamps(path: Path, count: int) -> list[int] | None:
    """Millisecond timestamps of a PNG sequence (mkvmerge v2 file), or None when absent/unusable."""
    if not path.is_file():
        return None
    values: list[int] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            values.append(round(float(line)))
        except ValueError:
            logger.warning("%s: unreadable line %r; timestamps ignored", path, line)
            return None
    if len(values) != count:
        logger.warning("%s: %d timestamps for %d frames; ignored", path, len(values), count)
        return None
    return values


# --------------------------------------------------------------------------- shortcuts


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """`VideoInfo` of a video file or PNG-sequence folder (decodes the first frame to check it)."""
    with VideoReader(path) as reader:
        return reader.info


def read_frames(path: str | os.PathLike[str], *, with_alpha: bool = False) -> Iterator[Frame]:
    """Every frame of a video (or PNG sequence) in presentation order; see `VideoReader`."""
    yield from VideoReader(path, with_alpha=with_alpha)


def read_alpha_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Alpha mattes of a matte video or PNG sequence, float32 H x W in [0, 1], one per frame.

    A video with an alpha channel (ProRes 4444, VP9 with alpha, RGBA PNGs) gives that channel;
    any other gives its grey level (a matte stored as a grey video: p3m's `_alpha` output, or
    a luma matte from an editor). PNG frames follow `p3m.io.read_alpha`'s channel rule.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        from p3m.io import read_alpha

        with VideoReader(path) as reader:
            files = list(reader._sequence or [])
        for index, file in enumerate(files):
            try:
                yield read_alpha(file)
            except P3MError as error:
                raise VideoReadError(f"frame {index}: {error}", path) from error
        return
    checked = False
    for frame in VideoReader(path, with_alpha=True, gray=True):
        if frame.alpha is None and not checked:
            _require_grey(path)
        checked = True
        values = frame.alpha if frame.alpha is not None else frame.image
        yield values.astype(np.float32) / np.float32(255)


# Mean spread between the largest and smallest colour channel above which a first frame is a
# colour picture, not a grey matte (H.264's chroma noise on a grey video stays around 1-2).
MATTE_COLOUR_SPREAD = 8.0


def _require_grey(path: Path) -> None:
    """VideoReadError unless the first frame of a video without an alpha channel is grey: a
    composite or the source clip given as a matte would be scored as its luma."""
    with VideoReader(path) as reader:
        first = next(iter(reader), None)
    if first is None:
        return
    image = first.image.astype(np.int16)
    spread = float((image.max(axis=2) - image.min(axis=2)).mean())
    if spread > MATTE_COLOUR_SPREAD:
        raise VideoReadError(
            "is a colour video without an alpha channel (a composite or the source clip?), not "
            "an alpha matte: give the _alpha output, or a video with alpha",
            path,
        )
