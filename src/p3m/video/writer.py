"""Writing videos with PyAV: the alpha formats editors import, H.264 composites, PNG sequences.

Formats (`OUTPUT_FORMATS`, chosen by name):

* `mov-prores4444`: Apple ProRes 4444 (FFmpeg's prores_ks, profile 4444, 10-bit 4:4:4 with a
  16-bit alpha plane) in QuickTime .mov; what After Effects, Premiere, Resolve and Final Cut
  take as "video with alpha".
* `webm-vp9`: VP9 with alpha (yuva420p, libvpx, lossless so the alpha plane is exact) in WebM;
  what browsers play with transparency (re-encode with a CRF for web delivery).
* `png-sequence`: a folder of numbered PNGs (RGBA, grey or RGB) plus `timestamps.txt`
  (mkvmerge "timestamp format v2", milliseconds), so variable frame rates survive.
* `mp4`: H.264 (libx264, yuv420p, CRF 18, preset veryfast) in MP4 with `faststart`; no alpha channel (composites,
  grey mattes). Odd sizes are padded by one replicated row / column (4:2:0 needs even sizes).

Each frame is written with the presentation timestamp it is given (in the writer's time base),
so frame rate and variable timing are kept. Audio of a source file is carried over: copied
when the container takes its codec, otherwise re-encoded (AAC for MOV/MP4, Opus for WebM);
PNG sequences have none. Outputs are written under a temporary name and renamed when
complete: an interrupted or failed write leaves nothing half-written.

    >>> with VideoWriter("cutout.mov", "mov-prores4444", "rgba", width=1280, height=720,
    ...                  time_base=Fraction(1, 25), frame_rate=Fraction(25), audio_from="in.mp4") as out:
    ...     out.write(rgba, pts=0)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from p3m.errors import ConfigError, VideoWriteError
from p3m.io.atomic import temporary_path
from p3m.io.files import mark_output_folder
from p3m.video._av import accurate_scaling, describe_av_error, import_av
from p3m.video.reader import SEQUENCE_TIME_BASE, TIMESTAMPS_FILE

__all__ = [
    "OUTPUT_FORMATS",
    "FrameKind",
    "VideoFormat",
    "VideoWriter",
    "get_format",
    "output_path",
]

logger = logging.getLogger(__name__)

FrameKind = Literal["rgb", "rgba", "gray"]

_NUMPY_FORMATS = {"rgb": "rgb24", "rgba": "rgba", "gray": "gray"}
_AUDIO_LEAD = 0.5  # seconds of audio muxed ahead of the video, for interleaving
# Audio codecs an MP4 file carries that common players accept (FFmpeg's mp4 muxer takes more,
# e.g. raw PCM, which few players read): others are re-encoded to AAC.
_MP4_AUDIO = frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"})
_WEBM_AUDIO = frozenset({"opus", "vorbis"})


@dataclass(frozen=True)
class VideoFormat:
    """An output format: container, codec and pixel format per frame kind, encoder options."""

    name: str
    suffix: str
    """File suffix; "" for a folder of frames."""
    container: str | None
    codec: str | None
    pixel_formats: dict[str, str]
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    audio: Literal["aac", "opus", "none"] = "aac"
    """What audio that cannot be copied is re-encoded to ("none": no audio track)."""
    description: str = ""

    @property
    def carries_alpha(self) -> bool:
        return "rgba" in self.pixel_formats


OUTPUT_FORMATS: dict[str, VideoFormat] = {
    "mov-prores4444": VideoFormat(
        name="mov-prores4444",
        suffix=".mov",
        container="mov",
        codec="prores_ks",
        # A grey matte goes into both luma and the alpha plane: luma for editors' luma-matte
        # keys, the near-lossless 16-bit alpha for reading it back (luma is DCT-coded).
        pixel_formats={"rgba": "yuva444p10le", "rgb": "yuv444p10le", "gray": "yuva444p10le"},
        options={"profile": "4", "vendor": "apl0", "alpha_bits": "16"},
        audio="aac",
        description="Apple ProRes 4444 with alpha, QuickTime .mov (editors)",
    ),
    "webm-vp9": VideoFormat(
        name="webm-vp9",
        suffix=".webm",
        container="webm",
        codec="libvpx-vp9",
        pixel_formats={"rgba": "yuva420p", "rgb": "yuv420p", "gray": "yuv420p"},
        # Lossless: libvpx codes the alpha plane with the colour's settings, and a lossy alpha
        # moves matte edges (measured on a selfie-cf matte: up to 25/255 off at CRF 15, 12/255
        # at CRF 5). Real-time speed 8 is ~5x faster than "good" at a similar size.
        options={"lossless": "1", "row-mt": "1", "deadline": "realtime", "cpu-used": "8"},
        audio="opus",
        description="VP9 with alpha, WebM (browsers)",
    ),
    "png-sequence": VideoFormat(
        name="png-sequence",
        suffix="",
        container=None,
        codec=None,
        pixel_formats={"rgba": "rgba", "rgb": "rgb24", "gray": "gray"},
        audio="none",
        description="numbered PNG files and timestamps.txt in a folder (lossless, no audio)",
    ),
    "mp4": VideoFormat(
        name="mp4",
        suffix=".mp4",
        container="mp4",
        codec="libx264",
        pixel_formats={"rgb": "yuv420p", "gray": "yuv420p"},
        options={"crf": "18", "preset": "veryfast"},
        container_options={"movflags": "+faststart"},
        audio="aac",
        description="H.264 in MP4, no alpha channel (composites, grey mattes)",
    ),
}


def get_format(name: str) -> VideoFormat:
    """The `VideoFormat` called `name`; `ConfigError` listing the choices otherwise."""
    try:
        return OUTPUT_FORMATS[name]
    except KeyError:
        raise ConfigError(
            f"unknown video format {name!r}; choose from {', '.join(OUTPUT_FORMATS)}"
        ) from None


def output_path(base: str | os.PathLike[str], video_format: str | VideoFormat) -> Path:
    """`base` (a path without suffix) with the format's suffix (a folder for PNG sequences)."""
    spec = get_format(video_format) if isinstance(video_format, str) else video_format
    base = Path(base)
    return base.with_name(base.name + spec.suffix)


# --------------------------------------------------------------------------- audio


class _AudioTrack:
    """The first audio stream of a source file, carried into an output container.

    Packets are copied when `copy` is possible, otherwise decoded, resampled and re-encoded.
    `mux_until(t)` writes audio up to t + `_AUDIO_LEAD` seconds so the file stays interleaved.
    """

    def __init__(self, source: Path, output: Any, spec: VideoFormat, target: Path) -> None:
        av = import_av()
        self.source = av.open(str(source), mode="r")
        self.target = target
        self._input = self.source.streams.audio[0]
        self._input.thread_type = "AUTO"
        codec = self._input.codec_context.codec.canonical_name
        self._copy = self._can_copy(codec, output, spec)
        if self._copy:
            self.stream = output.add_stream_from_template(self._input)
            self._encoder = None
        else:
            self._setup_encoder(output, spec)
        self._packets = self.source.demux(self._input)
        self._pending: Any = None
        self._done = False
        self._samples = 0
        logger.debug(
            "%s: audio %s %s",
            target,
            codec,
            "copied" if self._copy else f"re-encoded to {spec.audio}",
        )

    @staticmethod
    def _can_copy(codec: str, output: Any, spec: VideoFormat) -> bool:
        if spec.audio == "opus":
            return codec in _WEBM_AUDIO
        if spec.container == "mp4":
            return codec in _MP4_AUDIO
        return codec in output.supported_codecs

    def _setup_encoder(self, output: Any, spec: VideoFormat) -> None:
        av = import_av()
        source = self._input.codec_context
        channels = max(1, int(source.channels or 1))
        if spec.audio == "opus":
            name, rate, layout = "libopus", 48000, "stereo" if channels >= 2 else "mono"
            audio_format = "s16"
        else:
            name = "aac"
            rate = (
                source.sample_rate if source.sample_rate in (44100, 48000, 32000, 96000) else 48000
            )
            layout = source.layout.name if channels <= 8 else "stereo"
            audio_format = "fltp"
        self.stream = output.add_stream(name, rate=rate)
        self.stream.layout = layout
        self.stream.format = audio_format
        if name == "aac":
            self.stream.bit_rate = 192_000
        self._resampler = av.AudioResampler(format=audio_format, layout=layout, rate=rate)
        self._fifo = av.AudioFifo()
        self._encoder = self.stream
        self._rate = rate

    def _packet_time(self, packet: Any) -> float:
        stamp = packet.dts if packet.dts is not None else packet.pts
        return float(stamp * packet.time_base) if stamp is not None else 0.0

    def _next_packet(self) -> Any:
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        if self._done:
            return None
        for packet in self._packets:
            if packet.size == 0 and packet.dts is None:
                continue  # the demuxer's flush packet
            return packet
        self._done = True
        return None

    def mux_until(self, output: Any, seconds: float | None) -> None:
        """Write the source's audio up to `seconds` (+ lead), or all of it when None."""
        while True:
            packet = self._next_packet()
            if packet is None:
                break
            if seconds is not None and self._packet_time(packet) > seconds + _AUDIO_LEAD:
                self._pending = packet
                break
            if self._copy:
                if packet.dts is None:
                    continue
                packet.stream = self.stream
                output.mux(packet)
            else:
                for frame in self._input.decode(packet):
                    self._encode(output, frame)

    def _encode(self, output: Any, frame: Any) -> None:
        for resampled in self._resampler.resample(frame):
            resampled.pts = None
            self._fifo.write(resampled)
        frame_size = self.stream.codec_context.frame_size or 1024
        while self._fifo.samples >= frame_size:
            self._emit(output, self._fifo.read(frame_size))

    def _emit(self, output: Any, chunk: Any) -> None:
        chunk.pts = self._samples
        chunk.time_base = Fraction(1, self._rate)
        self._samples += chunk.samples
        for packet in self.stream.encode(chunk):
            output.mux(packet)

    def finish(self, output: Any) -> None:
        self.mux_until(output, None)
        if not self._copy:
            for frame in self._input.decode(None):
                self._encode(output, frame)
            for resampled in self._resampler.resample(None):
                resampled.pts = None
                self._fifo.write(resampled)
            if self._fifo.samples:
                self._emit(output, self._fifo.read())
            for packet in self.stream.encode(None):
                output.mux(packet)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.source.close()


# --------------------------------------------------------------------------- writer


class VideoWriter:
    """Encode frames of one kind ("rgb", "rgba" or "gray", uint8) into a file or PNG folder.

    `time_base` is the unit of the `pts` given to `write` (use the source's); `frame_rate` the
    nominal rate written into the header (None: derived from the time base). `audio_from`: a
    video file whose first audio stream is carried over (see the module docstring). The output
    appears at `path` only when `close()` succeeds; `abort()` (or an exception inside a `with`
    block) discards it. An existing file at `path` is replaced.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        video_format: str | VideoFormat,
        kind: FrameKind,
        *,
        width: int,
        height: int,
        time_base: Fraction,
        frame_rate: Fraction | None = None,
        audio_from: str | os.PathLike[str] | None = None,
    ) -> None:
        self.spec = get_format(video_format) if isinstance(video_format, str) else video_format
        if kind not in self.spec.pixel_formats:
            raise ConfigError(
                f"{self.spec.name} has no alpha channel: write {kind} as "
                + ", ".join(name for name, spec in OUTPUT_FORMATS.items() if spec.carries_alpha)
            )
        if width < 1 or height < 1:
            raise ConfigError(f"video size must be positive, got {width}x{height}")
        self.path = Path(path)
        self.kind = kind
        self.width, self.height = width, height
        self.time_base = Fraction(time_base)
        self.frame_rate = Fraction(frame_rate) if frame_rate else None
        self.frames_written = 0
        self._last_pts: int | None = None
        self._container: Any = None
        self._audio: _AudioTrack | None = None
        self._timestamps: Any = None
        self._closed = False
        self.note: str | None = None
        """A one-line remark on the output that the caller should pass on (an odd size padded)."""
        # 4:2:0 chroma needs even sizes for H.264 (its cropping is in whole chroma samples, so
        # an odd size cannot be cropped back either): pad with a replicated edge, and say so.
        self._pad = (0, 0)
        if self.spec.codec == "libx264":
            self._pad = (height % 2, width % 2)
            if any(self._pad):
                added = " and ".join(
                    part for part, extra in (("one row", self._pad[0]), ("one column", self._pad[1])) if extra
                )
                self.note = (
                    f"{self.path.name} is {width + self._pad[1]}x{height + self._pad[0]}, not "
                    f"{width}x{height}: H.264 in 4:2:0 needs even sizes, so {added} repeating "
                    f"the edge {'were' if all(self._pad) else 'was'} added"
                )
                logger.info("%s: %s", self.path, self.note)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise VideoWriteError(
                f"cannot create the output folder: {error.strerror}", self.path
            ) from error
        if self.spec.container is None:
            self._temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp")
            try:
                self._temporary.mkdir()
                mark_output_folder(self._temporary)  # never re-read as input images
                # Written as frames come, so memory does not grow with the clip.
                self._timestamps = open(self._temporary / TIMESTAMPS_FILE, "w", encoding="utf-8")  # noqa: SIM115
                self._timestamps.write("# timestamp format v2\n")
            except OSError as error:
                self.abort()
                raise VideoWriteError(
                    f"cannot create folder: {error.strerror}", self.path
                ) from error
        else:
            self._temporary = temporary_path(self.path)
            try:
                self._open_container(audio_from)
            except BaseException:
                self.abort()
                raise

    def _open_container(self, audio_from: str | os.PathLike[str] | None) -> None:
        av = import_av()
        spec = self.spec
        try:
            container = av.open(
                str(self._temporary),
                mode="w",
                format=spec.container,
                options=spec.container_options,
            )
        except (av.error.FFmpegError, OSError) as error:
            raise VideoWriteError(
                f"cannot create file: {describe_av_error(error)}", self.path
            ) from error
        self._container = container
        rate = self.frame_rate or Fraction(1) / self.time_base
        stream = container.add_stream(spec.codec, rate=rate.limit_denominator(1_000_000))
        stream.width = self.width + self._pad[1]
        stream.height = self.height + self._pad[0]
        stream.pix_fmt = spec.pixel_formats[self.kind]
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        stream.options = dict(spec.options)
        context = stream.codec_context
        # Tag what the RGB -> YUV conversion below uses, so players decode the same colours.
        context.colorspace = 1  # BT.709
        context.color_primaries = 1
        context.color_trc = 1
        context.color_range = 1  # limited ("tv") range
        self._stream = stream
        self._gray_alpha = self.kind == "gray" and spec.pixel_formats["gray"].startswith("yuva")
        if audio_from is not None and spec.audio != "none":
            source = Path(audio_from)
            has_audio = False
            with (
                contextlib.suppress(av.error.FFmpegError, OSError),
                av.open(str(source), "r") as probe,
            ):
                has_audio = bool(probe.streams.audio)
            if has_audio:
                try:
                    self._audio = _AudioTrack(source, container, spec, self.path)
                except (av.error.FFmpegError, ValueError) as error:
                    raise VideoWriteError(
                        f"cannot carry the audio of {source.name} into {spec.name}: "
                        f"{describe_av_error(error)}",
                        self.path,
                    ) from error

    # ---------------------------------------------------------------- frames

    def write(self, frame: np.ndarray, pts: int) -> None:
        """Encode one uint8 frame (H x W x 3 rgb, H x W x 4 rgba, or H x W gray) at `pts`."""
        if self._closed:
            raise VideoWriteError("writer is closed", self.path)
        frame = self._check(frame)
        pts = int(pts)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders need strictly increasing timestamps
        self._last_pts = pts
        if self._container is None:
            self._write_png(frame, pts)
        else:
            self._encode(frame, pts)
        self.frames_written += 1

    def _check(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        channels = {"rgb": 3, "rgba": 4, "gray": 0}[self.kind]
        expected = (self.height, self.width, channels) if channels else (self.height, self.width)
        if frame.dtype != np.uint8 or frame.shape != expected:
            raise VideoWriteError(
                f"{self.kind} frame must be uint8 {expected}, got {frame.dtype} {frame.shape}",
                self.path,
            )
        return frame

    def _write_png(self, frame: np.ndarray, pts: int) -> None:
        from p3m.io import encode_png

        # The folder is temporary as a whole (renamed into place at the end): no per-file
        # rename and fsync needed.
        (self._temporary / f"{self.frames_written:06d}.png").write_bytes(encode_png(frame))
        # Timestamps in milliseconds, as the v2 timestamp format wants.
        self._timestamps.write(f"{round(pts * self.time_base / SEQUENCE_TIME_BASE)}\n")

    def _encode(self, frame: np.ndarray, pts: int) -> None:
        av = import_av()
        if any(self._pad):
            pad = ((0, self._pad[0]), (0, self._pad[1])) + (((0, 0),) if frame.ndim == 3 else ())
            frame = np.pad(frame, pad, mode="edge")
        numpy_format = _NUMPY_FORMATS[self.kind]
        if self.kind == "gray" and self._gray_alpha:
            frame, numpy_format = np.dstack([frame, frame, frame, frame]), "rgba"
        try:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=numpy_format)
            picture = picture.reformat(
                format=self._stream.pix_fmt,
                dst_colorspace=av.video.reformatter.Colorspace.ITU709,
                dst_color_range=av.video.reformatter.ColorRange.MPEG,
                interpolation=accurate_scaling(),
            )
            picture.pts = pts
            picture.time_base = self.time_base
            for packet in self._stream.encode(picture):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.mux_until(self._container, float(pts * self.time_base))
        except av.error.FFmpegError as error:
            raise VideoWriteError(
                f"cannot encode {self.spec.name}: {describe_av_error(error)}", self.path
            ) from error

    # ---------------------------------------------------------------- finishing

    def close(self) -> Path:
        """Finish the file and move it into place; returns its path. Idempotent."""
        if self._closed:
            return self.path
        try:
            if self.frames_written == 0:
                raise VideoWriteError("no frame was written", self.path)
            if self._container is None:
                self._finish_sequence()
            else:
                self._finish_container()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def _finish_container(self) -> None:
        av = import_av()
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.finish(self._container)
            self._container.close()
        except av.error.FFmpegError as error:
            raise VideoWriteError(
                f"cannot finish {self.spec.name}: {describe_av_error(error)}", self.path
            ) from error
        finally:
            if self._audio is not None:
                self._audio.close()
        self._container = None
        try:
            os.replace(self._temporary, self.path)
        except OSError as error:
            raise VideoWriteError(
                f"cannot move the finished file into place: {error.strerror}", self.path
            ) from error

    def _finish_sequence(self) -> None:
        self._timestamps.close()
        _replace_folder(self._temporary, self.path)

    def abort(self) -> None:
        """Discard the output written so far (idempotent)."""
        self._closed = True
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        if self._timestamps is not None:
            self._timestamps.close()
        if self._temporary.is_dir():
            shutil.rmtree(self._temporary, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                self._temporary.unlink()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _replace_folder(temporary: Path, target: Path) -> None:
    """Move a finished folder into place; a previous folder at `target` is removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
        os.replace(target, old)
    try:
        os.replace(temporary, target)
    except OSError as error:
        if old is not None:
            os.replace(old, target)
        raise VideoWriteError(
            f"cannot move the frames into place: {error.strerror}", target
        ) from error
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
