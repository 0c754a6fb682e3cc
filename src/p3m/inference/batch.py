"""Many images at once: expand files / folders / globs, name outputs, write what was asked for.

    >>> jobs = plan_outputs(collect_inputs(["photos/", "*.jpg"]), Path("out"))
    >>> for job in jobs: write_outputs(job, matter(job.source), ("alpha", "rgba"))
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p3m.errors import ConfigError, ImageReadError
from p3m.io import IMAGE_SUFFIXES, is_image_file
from p3m.vocabulary import OutputKind, values

__all__ = [
    "IMAGE_SUFFIXES",
    "OUTPUT_KINDS",
    "MatteJob",
    "collect_inputs",
    "parse_save",
    "plan_outputs",
    "write_outputs",
]

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
