"""Watch a folder and matte each image as it arrives (`p3m matte --watch DIR -o OUT`).

The folder is scanned every `poll_seconds` (portable, no file-system notification library).
An image is matted once it is completely written: its size and modification time must be the
same at two scans at least `settle_seconds` apart (a copy in progress keeps changing them; a
file renamed into the folder is complete at once). Each batch of ready images is a folder run
(`p3m.inference.batch.run_matte`): outputs are written atomically, recorded in the output
folder's `manifest.jsonl`, a bad image is reported and the watch goes on. Images already matted
by an earlier run are kept, unless replaced since (the run engine compares each record's source
fingerprint, `p3m.runs.sources`); an image replaced by a new version while watched is matted
again (as an overwrite: the engine's check is not repeated).
p3m's own outputs are never inputs, even when the output folder is inside the watched one.
The watch ends when `stop` is set (the command line sets it on Ctrl-C or SIGTERM), after the
image being matted.

    >>> stop = threading.Event()
    >>> report = watch_matte("incoming/", "out/", Matter("auto"), ("alpha", "rgba"), stop=stop)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import ConfigError, ImageReadError
from p3m.inference.batch import (
    MattePlan,
    collect_inputs,
    outputs_of_other_settings,
    plan_outputs,
    run_matte,
    run_settings,
    settings_difference,
)
from p3m.runs import Event, ItemFinished, ItemRecord, RunOptions, RunReport

__all__ = ["FolderWatcher", "ReadyFile", "VideoNotWatched", "watch_matte"]

Signature = tuple[int, int]
"""(size in bytes, modification time in ns): what changes while a file is being written."""


@dataclass(frozen=True)
class ReadyFile:
    """An image ready to matte: its path, its path relative to the watched folder, and whether
    it replaces a version matted earlier in this watch (`changed`: its outputs are redone)."""

    path: Path
    relative: Path
    changed: bool
    signature: Signature


@dataclass(frozen=True)
class VideoNotWatched:
    """Emitted once per video file that appears in a watched folder: the watch mattes images
    only (a clip is matted by `p3m matte CLIP -o OUT`, `p3m.video.runs`), so a surface says so
    instead of passing over it silently."""

    path: Path


class FolderWatcher:
    """Finds the images of a folder that are new or changed and completely written.

    `poll(now)` scans the folder (with `recursive`, its sub-folders too; p3m's own outputs are
    left out as in `collect_inputs`) and returns the images whose signature has not changed for
    `settle_seconds`; `handled(file)` marks one done, so it is returned again only if it changes.
    `now` is a `time.monotonic()` reading (given explicitly in tests).
    """

    def __init__(self, folder: str | os.PathLike[str], recursive: bool = False, settle_seconds: float = 1.0) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ImageReadError("no such folder to watch" if not self.folder.exists() else "not a folder", self.folder)
        self.recursive = recursive
        self.settle_seconds = float(settle_seconds)
        self._seen: dict[Path, tuple[Signature, float]] = {}
        self._handled: dict[Path, Signature] = {}
        self._clips: set[Path] = set()

    def new_videos(self) -> list[Path]:
        """The video files of the folder (with `recursive`, its sub-folders too) not returned
        before, p3m's own outputs left out: the watch does not matte them, and says so once."""
        from p3m.inference.batch import OwnOutputs
        from p3m.io import is_video_file

        own = OwnOutputs()
        found = []
        for entry in sorted(self.folder.glob("**/*" if self.recursive else "*")):
            if entry in self._clips or not is_video_file(entry):
                continue
            self._clips.add(entry)
            folder = own.output_folder(entry)
            if not own.listed(entry) and (folder is None or folder[1] != "marked"):
                found.append(entry)
        return found

    def poll(self, now: float | None = None) -> list[ReadyFile]:
        now = time.monotonic() if now is None else now
        gone: list[tuple[str, str]] = []  # the folder itself vanished: nothing is ready
        found = collect_inputs([str(self.folder)], recursive=self.recursive, missing=gone)
        ready: list[ReadyFile] = []
        present: set[Path] = set()
        for path, relative in found:
            try:
                stat = path.stat()
            except OSError:  # deleted between the scan and now
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            present.add(path)
            if self._handled.get(path) == signature:
                continue
            seen = self._seen.get(path)
            if seen is None or seen[0] != signature:
                self._seen[path] = (signature, now)
                continue
            if now - seen[1] >= self.settle_seconds:
                ready.append(ReadyFile(path, relative, path in self._handled, signature))
        for path in set(self._seen) - present:
            del self._seen[path]
        return ready

    def handled(self, file: ReadyFile) -> None:
        """Mark `file` done at the signature it was ready with."""
        self._handled[file.path] = file.signature
        self._seen.pop(file.path, None)


def watch_matte(
    folder: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    matter: Callable[..., Any],
    kinds: Sequence[str] = ("alpha", "rgba"),
    background: np.ndarray | str = "white",
    stop: threading.Event | None = None,
    recursive: bool = False,
    poll_seconds: float = 1.0,
    settle_seconds: float | None = None,
    on_event: Callable[[Event | VideoNotWatched], None] | None = None,
    batch_size: int = 4,
    overwrite: bool = False,
) -> RunReport:
    """Matte the images of `folder` into `out_dir` as they arrive, until `stop` is set.

    `matter` is a `p3m.inference.Matter`; `kinds`, `background` as for `run_matte`.
    `settle_seconds` (default: `poll_seconds`) is how long a file must stay unchanged before it
    is read. Ready images are matted `batch_size` at a time, `stop` checked in between. Events
    are those of each batch's run (`p3m.runs`) and a `VideoNotWatched` per clip that appears. Returns one record per image matted, kept or
    failed during the watch, in the order they were handled. Raises `ImageReadError` when
    `folder` is not a folder; fatal run errors (missing dependency) end the watch.
    """
    stop = stop or threading.Event()
    watcher = FolderWatcher(folder, recursive, poll_seconds if settle_seconds is None else settle_seconds)
    out_path = Path(out_dir)
    records: list[ItemRecord] = []
    started = time.perf_counter()
    options = RunOptions(io_threads=0)  # a few images at a time: nothing to read ahead
    settings = run_settings(matter, kinds, background)  # once: a background image is hashed
    while not stop.is_set():
        ready = watcher.poll()
        for clip in watcher.new_videos():
            if on_event is not None:
                on_event(VideoNotWatched(clip))
        for start in range(0, len(ready), max(1, batch_size)):
            if stop.is_set():
                break
            chunk = ready[start:start + max(1, batch_size)]
            for changed in (False, True):  # new images resume, replaced ones are redone
                part = [file for file in chunk if file.changed is changed]
                if not part:
                    continue
                jobs = plan_outputs([(file.path, file.relative) for file in part], out_path)
                keys = [file.relative.as_posix() for file in part]
                plan = MattePlan(jobs, tuple(kinds), out_path, overwrite=changed or overwrite, keys=keys)
                # An image whose earlier outputs other settings made fails alone (unless
                # `overwrite`: then every image is matted again); the watch goes on.
                other = {} if overwrite else dict(outputs_of_other_settings(plan, settings))
                for job, key in zip(jobs, keys, strict=True):
                    if key in other:
                        error = ConfigError(
                            f"its outputs in {out_path} were made with other settings "
                            f"({settings_difference(other[key], settings)}); "
                            "move them away or pass {overwrite}",
                            job.source,
                            options={"overwrite": True},
                        )
                        # The error rides along so that a surface can word its option.
                        record = ItemRecord(key, "failed", str(job.source), error=str(error), attachments={"error": error})
                        records.append(record)
                        if on_event is not None:
                            on_event(ItemFinished(record, 0, 0))
                if other:
                    kept = [(job, key) for job, key in zip(jobs, keys, strict=True) if key not in other]
                    if not kept:
                        continue
                    plan = MattePlan([job for job, _ in kept], tuple(kinds), out_path, overwrite=changed, keys=[key for _, key in kept])
                records.extend(run_matte(plan, matter, background, on_event, options).records)
            for file in chunk:
                watcher.handled(file)
        stop.wait(poll_seconds)
    return RunReport(records, time.perf_counter() - started)
