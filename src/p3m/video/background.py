"""Backgrounds for video composites: a colour, a still image, or a video that loops.

Images and video frames are scaled to cover the output frame and centre-cropped (their aspect
ratio is kept). A background video plays at its own timing, by presentation time, and starts
over when it ends, so a shorter one loops and a longer one is cut.

    >>> backdrop = Backdrop.from_spec("beach.mp4", width=1280, height=720)
    >>> background = backdrop.at(frame.time)        # RGB uint8 H x W x 3, or an (r, g, b) tuple
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from p3m.errors import ConfigError
from p3m.video._av import is_video_path
from p3m.video.reader import Frame, VideoReader

__all__ = ["Backdrop", "cover"]

BackgroundSpec = str | os.PathLike[str] | tuple[int, int, int] | np.ndarray


def cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale RGB uint8 `image` to cover width x height (aspect kept), then centre-crop it."""
    source_h, source_w = image.shape[:2]
    if (source_h, source_w) == (height, width):
        return image
    scale = max(width / source_w, height / source_h)
    new_w, new_h = max(width, round(source_w * scale)), max(height, round(source_h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    x0, y0 = (new_w - width) // 2, (new_h - height) // 2
    return np.ascontiguousarray(resized[y0 : y0 + height, x0 : x0 + width])


class Backdrop:
    """What a composite is laid over; build it with `from_spec`, ask `at(seconds)` per frame."""

    def __init__(
        self,
        width: int,
        height: int,
        colour: tuple[int, int, int] | None = None,
        image: np.ndarray | None = None,
        video: Path | None = None,
    ) -> None:
        self.width, self.height = width, height
        self.colour = colour
        self.image = None if image is None else cover(image, width, height)
        self.video = video
        self._frames: Iterator[Frame] | None = None
        self._current: Frame | None = None
        self._next: Frame | None = None
        self._loop_offset = 0.0
        self._loop_length: float | None = None
        self._first_time = 0.0
        if video is not None:
            self._restart()
            if self._next is None:
                raise ConfigError("background video has no frames", video)

    @classmethod
    def from_spec(cls, spec: BackgroundSpec, width: int, height: int) -> Backdrop:
        """A colour (name, '#rrggbb', 'r,g,b' or a tuple), an image file or array, or a video file.

        A string that names an existing file is read as a video (by suffix) or an image;
        any other string is parsed as a colour (`ConfigError` if it is none).
        """
        from p3m.inference.foreground import parse_color

        if isinstance(spec, np.ndarray):
            from p3m.io import load_image_input

            return cls(width, height, image=load_image_input(spec))
        if isinstance(spec, tuple):
            return cls(width, height, colour=parse_color(spec))
        path = Path(spec).expanduser()
        if path.is_file():
            if is_video_path(path):
                return cls(width, height, video=path)
            from p3m.io import read_image

            return cls(width, height, image=read_image(path))
        if is_video_path(path) or path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            raise ConfigError("background file not found", path)
        return cls(width, height, colour=parse_color(str(spec)))

    def _restart(self) -> None:
        assert self.video is not None
        reader = VideoReader(self.video)
        rate = reader.info.frame_rate
        self._step = float(1 / rate) if rate else 0.04
        self._frames = iter(reader)
        self._current = None
        self._next = next(self._frames, None)
        if self._next is not None:
            self._first_time = self._next.time

    def at(self, seconds: float) -> np.ndarray | tuple[int, int, int]:
        """The background for presentation time `seconds` of the output."""
        if self.colour is not None:
            return self.colour
        if self.image is not None:
            return self.image
        return cover(self._video_frame(seconds).image, self.width, self.height)

    def _video_frame(self, seconds: float) -> Frame:
        local = seconds - self._loop_offset
        while True:
            following = self._next
            if following is not None and (
                self._current is None or following.time - self._first_time <= local + 1e-6
            ):
                self._current = following
                self._next = next(self._frames, None) if self._frames is not None else None
                continue
            if following is None and self._current is not None:
                # The background ended: loop once its last frame has been shown for a frame time.
                length = self._loop_length
                if length is None:
                    length = self._current.time - self._first_time + self._step
                    self._loop_length = length
                if local >= length - 1e-6:
                    self._loop_offset += length
                    local -= length
                    self._restart()
                    continue
            assert self._current is not None
            return self._current

    def close(self) -> None:
        frames, self._frames = self._frames, None
        close = getattr(frames, "close", None)
        if callable(close):
            close()
