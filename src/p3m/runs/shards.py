"""Output shards: sub-folders of at most N items, each item in the same one on every run.

A run over ten million images must not put ten million files in one folder. With a shard size
N, each item's outputs go to `<out>/<shard>/...`, shards being `00000`, `00001`, ... holding at
most N items each. The assignment is recorded in `<out>/shards.jsonl` (one JSON line per key,
appended and flushed before any output of the run is written), so an item keeps its shard for
good: a re-run, a resumed run or a run with more inputs finds every earlier output where it
is. New keys fill, in the order given, the lowest shards with room, so a first run puts items
`k*N ... k*N+N-1` in shard `k`.

When the record is lost, it is rebuilt from the files: each key's outputs (given as paths
relative to its shard) are looked for in the shard folders.

    >>> shards = plan_shards(Path("out"), keys, size=1000)
    >>> shards["photos/a.jpg"]                   # '00000'
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePath

from p3m.errors import ConfigError, ImageWriteError
from p3m.runs.engine import Event, ItemFinished

__all__ = ["SHARD_MAP_NAME", "is_shard_name", "plan_shards", "provisional_shard_map", "read_shard_map", "shard_name"]

logger = logging.getLogger(__name__)

SHARD_MAP_NAME = "shards.jsonl"
"""The file, in the output folder, recording the shard of every key."""

_SHARD = re.compile(r"^\d{5,}$")


def shard_name(number: int) -> str:
    """The folder name of shard `number` (0 -> '00000'; more digits past 99999)."""
    return f"{number:05d}"


def is_shard_name(name: str) -> bool:
    """True for a shard folder name ('00012')."""
    return bool(_SHARD.match(name))


def read_shard_map(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Key -> shard from `<folder>/shards.jsonl` ({} when absent; a torn last line is skipped)."""
    path = Path(folder) / SHARD_MAP_NAME
    known: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return known
    except OSError as error:
        logger.warning("%s: unreadable shard map (%s); rebuilding it from the files", path, error)
        return known
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            key, shard = str(entry["key"]), str(entry["shard"])
        except (ValueError, TypeError, KeyError):
            logger.warning("%s:%d: unreadable shard map line ignored", path, number)
            continue
        if is_shard_name(shard):
            known[key] = shard
    return known


def _recover(folder: Path, keys: Iterable[str], outputs: Callable[[str], Iterable[PurePath]]) -> dict[str, str]:
    """Key -> shard for the keys whose outputs are found in the shard folders."""
    try:
        shards = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and is_shard_name(entry.name))
    except OSError:
        return {}
    if not shards:
        return {}
    where: dict[PurePath, str] = {}
    for shard in shards:
        root = folder / shard
        for directory, _, files in os.walk(root):
            relative = PurePath(os.path.relpath(directory, root))
            for name in files:
                where.setdefault(PurePath(os.path.normpath(relative / name)), shard)
    found: dict[str, str] = {}
    for key in keys:
        for path in outputs(key):
            shard = where.get(PurePath(os.path.normpath(path)))
            if shard is not None:
                found[key] = shard
                break
    if found:
        logger.info("%s: shard map rebuilt from the files for %d item(s)", folder, len(found))
    return found


def plan_shards(
    folder: str | os.PathLike[str],
    keys: Sequence[str],
    size: int,
    outputs: Callable[[str], Iterable[PurePath]] | None = None,
) -> dict[str, str]:
    """The shard of every key (see the module doc), recording new assignments first.

    `size`: at most that many keys per shard (>= 1). `outputs`: for rebuilding a lost record,
    a function giving a key's output paths relative to its shard folder (called only then). Keys known from `shards.jsonl` keep
    their shard; the others fill the lowest shards with room in the given order. Raises
    ConfigError for a size below 1 and ImageWriteError when the record cannot be written.
    """
    if size < 1:
        raise ConfigError(f"the shard size must be at least 1, got {size}")
    folder = Path(folder)
    known = read_shard_map(folder)
    if not (folder / SHARD_MAP_NAME).is_file() and outputs:
        known.update(_recover(folder, keys, outputs))
        recovered = dict(known)
    else:
        recovered = {}
    occupancy = Counter(known.values())
    assigned: dict[str, str] = {}
    new: dict[str, str] = dict(recovered)
    shard = 0
    for key in keys:
        if key in assigned:
            continue
        if key in known:
            assigned[key] = known[key]
            continue
        while occupancy[shard_name(shard)] >= size:
            shard += 1
        name = shard_name(shard)
        occupancy[name] += 1
        assigned[key] = new[key] = name
    if new:
        _append(folder / SHARD_MAP_NAME, new)
    return assigned


def _append(path: Path, entries: Mapping[str, str]) -> None:
    lines = "".join(
        json.dumps({"key": key, "shard": shard}, ensure_ascii=False) + "\n" for key, shard in entries.items()
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as handle:
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a torn last line (a killed writer): end it
                    lines = "\n" + lines
            handle.write(lines.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise ImageWriteError(f"cannot write the shard map: {error.strerror or error}", path) from error


@contextlib.contextmanager
def provisional_shard_map(
    folder: str | os.PathLike[str],
    on_event: Callable[[Event], None] | None = None,
    *,
    existed: bool | None = None,
) -> Iterator[Callable[[Event], None]]:
    """A shard map planned for a run that may never start. Yields the `on_event` to give the run
    (it passes every event on to `on_event` and notes the first finished item). If the block
    raises before any item finished and `<folder>/shards.jsonl` did not exist before (`existed`:
    as found when the map was planned; default: now), the map is removed: a run that never
    started (no Ray cluster, an option the executor refuses) leaves no record of assignments
    nothing was written for.
    """
    path = Path(folder) / SHARD_MAP_NAME
    existed = path.exists() if existed is None else existed
    started = False

    def forward(event: Event) -> None:
        nonlocal started
        if isinstance(event, ItemFinished):
            started = True
        if on_event is not None:
            on_event(event)

    try:
        yield forward
    except BaseException:
        if not existed and not started:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
