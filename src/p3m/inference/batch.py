"""Many images at once: expand files / folders / globs, name outputs, matte them as one run.

`plan_matte` turns the inputs into `MatteJob`s (one per image, its output file of each kind)
and lists the inputs that do not exist; `run_matte` runs a `Matter` over them with the
folder-run engine (`p3m.runs`): images are read ahead on I/O threads while the model runs,
outputs are written atomically behind it, images whose outputs all exist are kept (unless
`overwrite`), an image that cannot be matted is recorded with its reason and the rest go on,
and the run's journal is the output folder's `manifest.jsonl`.

    >>> plan = plan_matte(["photos/", "*.jpg"], Path("out"), ("alpha", "rgba"))
    >>> report = run_matte(plan, Matter("auto"), on_event=print)
    >>> report.counts                        # {"done": 10, "kept": 2, "failed": 1}
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import ConfigError, ImageReadError
from p3m.io import IMAGE_SUFFIXES, is_image_file
from p3m.runs import Event, Item, Outcome, RunOptions, RunReport, run_items
from p3m.vocabulary import OutputKind, values

__all__ = [
    "IMAGE_SUFFIXES",
    "MANIFEST_NAME",
    "OUTPUT_KINDS",
    "MatteJob",
    "MattePlan",
    "MatteTask",
    "collect_inputs",
    "parse_save",
    "plan_matte",
    "plan_outputs",
    "run_matte",
    "write_outputs",
]

MANIFEST_NAME = "manifest.jsonl"
"""The run journal `run_matte` keeps in the output folder (one JSON line per image)."""

OUTPUT_KINDS: tuple[str, ...] = values(OutputKind)


def parse_save(text: str) -> tuple[str, ...]:
    """'alpha,rgba' -> ('alpha', 'rgba'); unknown kinds raise ConfigError."""
    kinds = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in OUTPUT_KINDS]
    if unknown or not kinds:
        raise ConfigError(
            f"--save takes a comma list of {', '.join(OUTPUT_KINDS)}; got {text!r}"
        )
    return kinds


def collect_inputs(
    inputs: Iterable[str],
    recursive: bool = False,
    missing: list[tuple[str, str]] | None = None,
) -> list[tuple[Path, Path]]:
    """(image path, path relative to its input root) for every file, folder entry or glob match.

    Folders give their image files (sorted; with `recursive`, sub-folders too). A named file is
    taken whatever its suffix (so a bad file is reported, not silently ignored). A missing file
    or a glob matching no image raises ImageReadError, or, when a `missing` list is given, is
    appended to it as (input, reason) and passed over, so a batch run can report it and go on.
    """
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()

    def not_found(reason: str, text: str) -> None:
        if missing is None:
            raise ImageReadError(reason, text)
        missing.append((text, reason))

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append((path, relative))

    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for entry in sorted(path.glob(pattern)):
                if is_image_file(entry):
                    add(entry, entry.relative_to(path))
        elif path.exists():
            add(path, Path(path.name))
        elif glob.has_magic(text):
            matches = sorted(glob.glob(str(path), recursive=recursive))
            files = [Path(match) for match in matches if is_image_file(Path(match))]
            if not files:
                not_found("no image matches this pattern", text)
            for entry in files:
                add(entry, Path(entry.name))
        else:
            not_found("no such file or folder", text)
    return found


@dataclass(frozen=True)
class MatteJob:
    """One input image and the output file of each kind."""

    source: Path
    outputs: dict[str, Path]

    def missing(self, kinds: Sequence[str]) -> tuple[str, ...]:
        return tuple(kind for kind in kinds if not self.outputs[kind].exists())

    def item(self, kinds: Sequence[str], key: str | None = None) -> Item:
        """The run item: done when the files of `kinds` all exist."""
        return Item(key or self.source.name, self.source, {kind: self.outputs[kind] for kind in kinds}, self)


def plan_outputs(inputs: Sequence[tuple[Path, Path]], out_dir: Path) -> list[MatteJob]:
    """`<out_dir>/<relative folder>/<stem>_<kind>.png` for every input; a name clash raises."""
    jobs = []
    claimed: dict[Path, Path] = {}
    for source, relative in inputs:
        base = out_dir / relative.parent / relative.stem
        if base in claimed:
            raise ConfigError(
                f"{source} and {claimed[base]} would write the same outputs {base}_*.png; "
                "rename one or run them separately"
            )
        claimed[base] = source
        outputs = {kind: base.with_name(f"{base.name}_{kind}.png") for kind in OUTPUT_KINDS}
        jobs.append(MatteJob(source, outputs))
    return jobs


def write_outputs(
    job: MatteJob,
    result: object,
    kinds: Sequence[str],
    background: np.ndarray | str = "white",
) -> list[Path]:
    """Write the requested kinds of a `MatteResult` atomically as PNGs (no metadata)."""
    from p3m.io import write_alpha, write_png

    written = []
    for kind in kinds:
        path = job.outputs[kind]
        if kind == "alpha":
            write_alpha(path, result.alpha)
        elif kind == "rgba":
            write_png(path, result.rgba())
        elif kind == "foreground":
            write_png(path, result.ensure_foreground())
        elif kind == "composite":
            write_png(path, result.composite(background))
        elif kind == "trimap":
            if result.trimap is None:
                continue
            write_png(path, result.trimap)
        written.append(path)
    return written


# --------------------------------------------------------------------------- a folder run


@dataclass
class MattePlan:
    """What a matte run will do: the images with their outputs, and the inputs that do not exist.

    `missing` lists (input as given, reason) for files, folders or patterns that name no image.
    """

    jobs: list[MatteJob]
    kinds: tuple[str, ...]
    out_dir: Path
    overwrite: bool = False
    missing: list[tuple[str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[MatteJob]:
        """The jobs to matte: all with `overwrite`, else those missing an output."""
        return [job for job in self.jobs if self.overwrite or job.missing(self.kinds)]

    def items(self) -> list[Item]:
        return [job.item(self.kinds, key) for job, key in zip(self.jobs, self.keys, strict=True)]


def plan_matte(
    inputs: Iterable[str],
    out_dir: str | Path,
    kinds: Sequence[str] = ("alpha", "rgba"),
    recursive: bool = False,
    overwrite: bool = False,
) -> MattePlan:
    """Collect the inputs (files, folders, globs) and name every output; see `collect_inputs`.

    Inputs that do not exist are listed in `missing`, not raised; two inputs that would write
    the same outputs raise ConfigError (see `plan_outputs`). Each image's run key is its path
    relative to its input root.
    """
    missing: list[tuple[str, str]] = []
    collected = collect_inputs(inputs, recursive=recursive, missing=missing)
    jobs = plan_outputs(collected, Path(out_dir))
    keys = [relative.as_posix() for _, relative in collected]
    return MattePlan(jobs, tuple(kinds), Path(out_dir), overwrite, missing, keys)


class MatteTask:
    """The `p3m.runs.Task` of `p3m matte`: read an image, matte it, write the kinds asked for.

    `load` reads the image (RGB uint8, EXIF-rotated; I/O thread); `compute` runs the `Matter`
    and, when a colour output is wanted, estimates the foreground (calling thread: models and
    numba kernels stay on one thread); `write` encodes the PNGs atomically (writer thread).
    Without `overwrite`, only the kinds whose files are missing are written. The outcome's
    details: the files written ("written"), the model, and the resize note if any.
    """

    def __init__(
        self,
        matter: Callable[..., Any],
        kinds: Sequence[str],
        background: np.ndarray | str = "white",
        overwrite: bool = False,
    ) -> None:
        self.matter = matter
        self.kinds = tuple(kinds)
        self.background = background
        self.overwrite = overwrite

    def load(self, item: Item) -> np.ndarray:
        from p3m.io import read_image

        return read_image(item.source)

    def compute(self, item: Item, image: np.ndarray) -> tuple[Any, tuple[str, ...]]:
        job: MatteJob = item.payload
        wanted = self.kinds if self.overwrite else job.missing(self.kinds)
        needs_colour = any(kind in ("rgba", "foreground", "composite") for kind in wanted)
        return self.matter(image, foreground=needs_colour), wanted

    def write(self, item: Item, result: tuple[Any, tuple[str, ...]]) -> Outcome:
        matted, wanted = result
        written = write_outputs(item.payload, matted, wanted, self.background)
        details: dict[str, Any] = {"written": [path.name for path in written], "model": matted.model}
        if matted.resized is not None:
            details["resized"] = matted.resized.describe()
        return Outcome(outputs={kind: item.outputs[kind] for kind in self.kinds if item.outputs[kind].is_file()}, details=details)


def run_matte(
    plan: MattePlan,
    matter: Callable[..., Any],
    background: np.ndarray | str = "white",
    on_event: Callable[[Event], None] | None = None,
    options: RunOptions | None = None,
) -> RunReport:
    """Matte the plan's images with `matter` (a `p3m.inference.Matter`) as one engine run.

    Images whose outputs all exist are kept unless the plan says `overwrite`; the run's journal
    is `<out_dir>/manifest.jsonl`. Returns the run report (one record per image, input order).
    """
    options = options or RunOptions()
    if plan.overwrite and not options.overwrite:
        options = dataclasses.replace(options, overwrite=True)
    task = MatteTask(matter, plan.kinds, background, plan.overwrite)
    return run_items(plan.items(), task, plan.out_dir / MANIFEST_NAME, options, on_event)
