"""Typed progress events of the video functions; the command line renders them, the library never prints.

>>> def on_event(event):
...     if isinstance(event, VideoProgress):
...         print(f"{event.frames_done}/{event.frames_total} {event.frames_per_second:.1f} fps")
>>> matte_video("clip.mp4", "out/", on_event=on_event)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from p3m.video.reader import VideoInfo

__all__ = [
    "EventCallback",
    "ProgressMeter",
    "VideoEvent",
    "VideoFinished",
    "VideoProgress",
    "VideoStarted",
]


@dataclass(frozen=True)
class VideoStarted:
    """A clip is about to be processed: what it is, what will be written, by which model."""

    source: Path
    info: VideoInfo
    task: str
    """"matte" or "anonymize"."""
    outputs: dict[str, Path] = field(default_factory=dict)
    model: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class VideoProgress:
    """Frames done so far; `frames_total` is None when the container does not say.

    `frames_per_second` is the rate over the last few seconds; `seconds_left` the time left at
    that rate (None without a total).
    """

    source: Path
    frames_done: int
    frames_total: int | None
    elapsed: float
    frames_per_second: float
    seconds_left: float | None


@dataclass(frozen=True)
class VideoFinished:
    """A clip is done and its outputs are in place."""

    source: Path
    frames: int
    elapsed: float
    outputs: dict[str, Path] = field(default_factory=dict)


VideoEvent = VideoStarted | VideoProgress | VideoFinished
EventCallback = Callable[[VideoEvent], None]


class ProgressMeter:
    """Turns "one more frame" into `VideoProgress` events: rate over a sliding window, time left.

    Events are emitted at most every `interval` seconds (and for the last frame via `finish`).
    """

    def __init__(
        self,
        source: Path,
        total: int | None,
        callback: EventCallback | None,
        window: float = 5.0,
        interval: float = 0.25,
    ) -> None:
        self.source = source
        self.total = total
        self.callback = callback
        self.window = window
        self.interval = interval
        self.start = time.perf_counter()
        self.done = 0
        self._stamps: deque[tuple[float, int]] = deque([(self.start, 0)])
        self._last_emit = 0.0

    def advance(self, frames: int = 1) -> None:
        self.done += frames
        now = time.perf_counter()
        # One stamp per tenth of the window: the rate needs no more, and memory stays flat.
        if now - self._stamps[-1][0] >= self.window / 10 or len(self._stamps) == 1:
            self._stamps.append((now, self.done))
        while len(self._stamps) > 2 and now - self._stamps[0][0] > self.window:
            self._stamps.popleft()
        if self.callback is not None and now - self._last_emit >= self.interval:
            self._last_emit = now
            self.callback(self.event(now))

    def event(self, now: float | None = None) -> VideoProgress:
        now = time.perf_counter() if now is None else now
        first_time, first_done = self._stamps[0]
        if now - first_time > self.window and len(self._stamps) > 1:
            first_time, first_done = self._stamps[1]
        span = now - first_time
        rate = (self.done - first_done) / span if span > 0 else 0.0
        total = self.total
        if total is not None and self.done > total:
            total = None  # an estimated count that was too low
        left = (total - self.done) / rate if total is not None and rate > 0 else None
        return VideoProgress(self.source, self.done, total, now - self.start, rate, left)

    def finish(self) -> float:
        """Emit the final event (total = frames done); returns the elapsed seconds."""
        self.total = self.done
        if self.callback is not None:
            self.callback(self.event())
        return time.perf_counter() - self.start
