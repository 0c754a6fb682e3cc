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

At scale: inputs from lists of paths (`input_lists`: text, CSV, Parquet), outputs in shards of
at most N images (`shard_size`, see `p3m.runs.shards`), and the images matted on Ray
(`executor=p3m.scale.RayExecutor(...)`, the model given as a `MatterSpec` that each worker
builds once):

    >>> plan = plan_matte([], Path("out"), input_lists=["inputs.parquet"], shard_size=1000)
    >>> run_matte(plan, MatterSpec("selfie-cf"), executor=RayExecutor(workers=8))
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from p3m.errors import ConfigError, ImageReadError
from p3m.io import IMAGE_SUFFIXES, is_image_file, read_path_list
from p3m.runs import Event, Executor, Item, Outcome, RunOptions, RunReport, read_journal, run_items
from p3m.runs.shards import SHARD_MAP_NAME, plan_shards, provisional_shard_map
from p3m.vocabulary import OutputKind, values

__all__ = [
    "IMAGE_SUFFIXES",
    "MANIFEST_NAME",
    "OUTPUT_KINDS",
    "OUTPUT_SUFFIXES",
    "MatteJob",
    "MattePlan",
    "MatteTask",
    "MatteTaskFactory",
    "MatterSpec",
    "OwnOutputs",
    "collect_inputs",
    "collect_listed",
    "leave_out_own_outputs",
    "looks_like_output",
    "output_image",
    "parse_save",
    "plan_matte",
    "plan_outputs",
    "UNRECORDED",
    "raise_other_settings",
    "recorded_other_settings",
    "run_matte",
    "write_outputs",
]

MANIFEST_NAME = "manifest.jsonl"
"""The run journal `run_matte` keeps in the output folder (one JSON line per image)."""

OUTPUT_KINDS: tuple[str, ...] = values(OutputKind)

logger = logging.getLogger(__name__)


def parse_save(text: str) -> tuple[str, ...]:
    """'alpha,rgba' -> ('alpha', 'rgba'); unknown kinds raise ConfigError."""
    kinds = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in OUTPUT_KINDS]
    if unknown or not kinds:
        raise ConfigError(
            f"--save takes a comma list of {', '.join(OUTPUT_KINDS)}; got {text!r}"
        )
    return kinds


OUTPUT_SUFFIXES: tuple[str, ...] = tuple(f"_{kind}.png" for kind in OUTPUT_KINDS)
"""The endings of the files `p3m matte` writes (`<stem>_alpha.png`, `<stem>_rgba.png`, ...)."""


RUN_FILES: frozenset[str] = frozenset({
    MANIFEST_NAME, "manifest.json", "manifest.csv", "shards.jsonl", "needs_annotation.txt",
    "privacy_report.json", "privacy_report.html",
})
"""Names of the files p3m runs write beside their outputs (journals, manifests, reports): never
inputs, and not mentioned as left out."""


def looks_like_output(path: Path) -> bool:
    """True for a name `p3m matte` writes: `<stem>_<kind>.png` for an output kind (any case)."""
    return path.name.lower().endswith(OUTPUT_SUFFIXES)


class OwnOutputs:
    """The files p3m runs wrote, as their journals (`manifest.jsonl`) list them.

    A run's journal sits in its output folder and lists every output of every image, so a file
    is p3m's own when a journal in its folder or in any folder above it lists it. A relative
    path in a journal is placed by the journal's folder and the image's key (the output of key
    `sub/a.jpg` lies in `<journal folder>/sub/`), never by the current directory, so journals
    written from another directory are read right. Journals are read once per folder, quietly
    (a `manifest.jsonl` of another tool lists nothing).
    """

    def __init__(self) -> None:
        self._listed: dict[Path, frozenset[Path]] = {}
        self._folders: dict[Path, str | None] = {}

    def output_folder(self, path: Path) -> tuple[Path, str] | None:
        """The p3m output folder `path` lies in (a PNG sequence p3m wrote), with how it is known
        (`p3m.io.output_folder_kind`: "marked" or "sequence"), or None. Folders are looked at
        once each."""
        for folder in path.resolve().parents:
            kind = self.folder_kind(folder)
            if kind is not None:
                return folder, kind
        return None

    def folder_kind(self, folder: Path) -> str | None:
        """`p3m.io.output_folder_kind` of a resolved folder, looked at once."""
        from p3m.io import output_folder_kind

        if folder not in self._folders:
            self._folders[folder] = output_folder_kind(folder)
        return self._folders[folder]

    def _journal_outputs(self, folder: Path) -> frozenset[Path]:
        if folder not in self._listed:
            self._listed[folder] = frozenset(_read_journal_outputs(folder))
        return self._listed[folder]

    def listed(self, path: Path) -> bool:
        """True when a run journal in `path`'s folder or above lists `path` as an output."""
        resolved = path.resolve()
        return any(resolved in self._journal_outputs(folder) for folder in resolved.parents)


FACEMASK_SUFFIX = ".facemask.png"
"""The ending of the face masks `p3m anonymize` writes in single-image mode (`<stem>.facemask.png`)."""


def leave_out_own_outputs(
    paths: Sequence[Path], named: Iterable[Path] = (), by_name: bool = True
) -> tuple[list[Path], list[Path], list[Path]]:
    """(inputs, files a p3m run wrote, files named like its outputs) of files given as inputs.

    A run's journal in the file's folder or above lists it, it lies in a folder p3m marked as
    its output, or it is one of the files runs write beside their outputs (`RUN_FILES`): it is
    p3m's own, left out quietly, also when a shell expanded `photos/*` into it. With `by_name`, a
    file found in a folder (not in `named`, the files the user named) that is named like an
    output (`<stem>_<kind>.png`, `<stem>.facemask.png`) and that no journal lists is left out
    too, to be mentioned in a note; a file named explicitly is taken. As `plan_matte` does for
    its own. Without `by_name` (`p3m anonymize`: a user's `face_rgba.png` left out would be a
    face never anonymised) only what p3m knows it wrote is left out; the third list is empty."""
    named = {Path(path) for path in named}
    own = OwnOutputs()
    inputs: list[Path] = []
    wrote: list[Path] = []
    named_like: list[Path] = []
    for path in paths:
        folder = own.output_folder(path) if path.exists() else None
        if path.name in RUN_FILES or (path.exists() and own.listed(path)) or (folder is not None and folder[1] == "marked"):
            wrote.append(path)
        elif by_name and path not in named and (looks_like_output(path) or path.name.lower().endswith(FACEMASK_SUFFIX)):
            named_like.append(path)
        else:
            inputs.append(path)
    return inputs, wrote, named_like


def _read_journal_outputs(folder: Path) -> set[Path]:
    try:
        text = (folder / MANIFEST_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return set()
    listed: set[Path] = set()
    for line in text.splitlines():
        try:
            record = json.loads(line)
            key = PurePosixPath(str(record["key"]))
            outputs = record.get("outputs") or {}
            paths = [Path(str(value)) for value in outputs.values()]
            # Files of the item an earlier run wrote and this record carried over (another
            # container of a clip, a kind not asked for again): keyed from the journal's folder.
            made = (record.get("details") or {}).get("output_settings") or {}
            listed.update(folder / str(name) for name in made)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        for stored in paths:
            listed.add(folder / key.parent / stored.name)
            if stored.is_absolute():
                listed.add(stored.resolve())
            else:
                # Written from another directory, perhaps into a shard folder (`<out>/0003/sub/
                # a_alpha.png`): every tail of the stored path, placed in the journal's folder.
                parts = stored.parts
                listed.update(folder.joinpath(*parts[start:]) for start in range(len(parts)))
    return listed


def collect_inputs(
    inputs: Iterable[str],
    recursive: bool = False,
    missing: list[tuple[str, str]] | None = None,
    passed_over: list[Path] | None = None,
    own_outputs: OwnOutputs | None = None,
    left_out: list[Path] | None = None,
) -> list[tuple[Path, Path]]:
    """(image path, path relative to its input root) for every file, folder entry or glob match.

    `left_out` (when given) receives what a folder holds but the run does not take: files that
    are not images by their suffix (hidden files excepted) and, without `recursive`, sub-folders,
    for the caller to mention.

    Folders give their image files (sorted; with `recursive`, sub-folders too). A named file is
    taken whatever its suffix (so a bad file is reported, not silently ignored). A missing file
    or a glob matching no image raises ImageReadError, or, when a `missing` list is given, is
    appended to it as (input, reason) and passed over, so a batch run can report it and go on.

    p3m never takes its own outputs as inputs: a file a run journal lists (see `OwnOutputs`) is
    left out wherever it comes from (also when a shell expanded `photos/*` into names), quietly:
    it is certainly p3m's (so is the journal itself, `manifest.jsonl`), and so is every file in a
    folder marked as a p3m output (`p3m.io.OUTPUT_FOLDER_MARKER`: the PNG sequences of
    `p3m matte --format png-sequence`). A folder or pattern also passes over the files named like
    outputs (`looks_like_output`: `<stem>_alpha.png`, ...) and the frames of an unmarked PNG
    sequence (a folder with a v2 `timestamps.txt`, as p3m wrote them before the marker), so that
    deleting a journal or marker does not make a second run matte the first one's outputs; those
    are appended to `passed_over` (when given), for the caller to mention, since a user's own
    file may be so. Name such a file explicitly to matte it.
    """
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    own = own_outputs or OwnOutputs()

    def not_found(reason: str, text: str) -> None:
        if missing is None:
            raise ImageReadError(reason, text)
        missing.append((text, reason))

    def add(path: Path, relative: Path, named: bool) -> None:
        key = path.resolve()
        if key in seen:
            return
        seen.add(key)
        if path.name == MANIFEST_NAME or own.listed(path):
            logger.info("%s: left out, a p3m run wrote it", path)
            return
        in_folder = own.output_folder(path)
        if in_folder is not None and in_folder[1] == "marked":
            logger.info("%s: left out, it is in %s, an output folder of p3m", path, in_folder[0])
            return
        if not named and (looks_like_output(path) or in_folder is not None):
            if passed_over is not None:
                passed_over.append(path)
            return
        found.append((path, relative))

    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for entry in sorted(path.glob(pattern)):
                if is_image_file(entry):
                    add(entry, entry.relative_to(path), named=False)
                elif (
                    left_out is not None
                    and not entry.name.startswith(".")
                    and entry.name not in RUN_FILES
                    and own.output_folder(entry) is None
                    and not (entry.is_dir() and own.folder_kind(entry.resolve()) is not None)
                    and (entry.is_file() or (entry.is_dir() and not recursive))
                ):
                    left_out.append(entry)
        elif path.exists():
            add(path, Path(path.name), named=True)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(str(path), recursive=recursive))
            files = [Path(match) for match in matches if is_image_file(Path(match))]
            if not files:
                not_found("no image matches this pattern", text)
            for entry in files:
                add(entry, Path(entry.name), named=False)
        else:
            not_found("no such file or folder", text)
    return found


def collect_listed(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """(image path, path relative to the listed files' common folder) for files from a list.

    The common folder keeps the listed tree's layout in the outputs (`/data/a/1.jpg`,
    `/data/b/1.jpg` -> `a/1`, `b/1`), so equal names in different folders do not clash. Paths
    are made absolute without touching the file system (see `p3m.io.lists`); the same file
    listed twice is taken once.
    """
    absolute = list(dict.fromkeys(os.path.abspath(os.path.expanduser(os.fspath(path))) for path in paths))
    if not absolute:
        return []
    root = os.path.commonpath([os.path.dirname(path) for path in absolute])
    start = len(root.rstrip(os.sep)) + 1  # string slicing: millions of relpath calls are slow
    return [(Path(path), Path(path[start:])) for path in absolute]


@dataclass(frozen=True)
class MatteJob:
    """One input image and the output file of each kind; `folder` is the outputs' folder
    relative to the run's output folder ("" at its top; e.g. "00000/photos" with shards)."""

    source: Path
    outputs: dict[str, Path]
    folder: str = ""

    def missing(self, kinds: Sequence[str]) -> tuple[str, ...]:
        """The kinds whose output file is missing or damaged (`p3m.io.output_file_problem`: a
        cheap header and end check, and the input's size, read from its header), so a resumed
        run writes them again."""
        from p3m.io import input_size, output_file_problem

        existing = [kind for kind in kinds if self.outputs[kind].exists()]
        size = input_size(self.source) if existing else None
        return tuple(
            kind for kind in kinds
            if kind not in existing or output_file_problem(self.outputs[kind], size) is not None
        )  # fmt: skip

    def item(self, kinds: Sequence[str], key: str | None = None) -> Item:
        """The run item: done when the files of `kinds` all exist (each of the input's size)."""
        outputs = {kind: self.outputs[kind] for kind in kinds}
        return Item(key or self.source.name, self.source, outputs, self, sized_like_source=tuple(kinds))


def plan_outputs(inputs: Sequence[tuple[Path, Path]], out_dir: Path) -> list[MatteJob]:
    """`<out_dir>/<relative folder>/<stem>_<kind>.png` for every input.

    Two inputs with one stem (`a.png`, `a.jpg`) get the same outputs; the run (`run_matte`, the
    engine) mattes the first and fails the other alone, naming both.
    """
    jobs = []
    for source, relative in inputs:
        base = out_dir / relative.parent / relative.stem
        outputs = {kind: base.with_name(f"{base.name}_{kind}.png") for kind in OUTPUT_KINDS}
        folder = relative.parent.as_posix()
        jobs.append(MatteJob(source, outputs, "" if folder == "." else folder))
    return jobs


def output_image(result: Any, kind: str, background: np.ndarray | str = "white") -> np.ndarray | None:
    """The image of one output kind of a `MatteResult`, as written to `<stem>_<kind>.png`.

    alpha: uint8 H x W; rgba: uint8 H x W x 4 (straight alpha); foreground, composite (over
    `background`, a colour or an RGB image): RGB uint8 H x W x 3; trimap: uint8 H x W in
    {0, 128, 255}, or None when the model gives none.
    """
    from p3m.io import alpha_to_uint8

    if kind == "alpha":
        return alpha_to_uint8(result.alpha)
    if kind == "rgba":
        return result.rgba()
    if kind == "foreground":
        return result.ensure_foreground()
    if kind == "composite":
        return result.composite(background)
    if kind == "trimap":
        return result.trimap
    raise ConfigError(f"unknown output kind {kind!r}; use one of {', '.join(OUTPUT_KINDS)}")


def write_outputs(
    job: MatteJob,
    result: object,
    kinds: Sequence[str],
    background: np.ndarray | str = "white",
) -> list[Path]:
    """Write the requested kinds of a `MatteResult` atomically as PNGs (no metadata)."""
    from p3m.io import write_png

    written = []
    for kind in kinds:
        image = output_image(result, kind, background)
        if image is None:  # a model without a trimap
            continue
        write_png(job.outputs[kind], image)
        written.append(job.outputs[kind])
    return written


# --------------------------------------------------------------------------- a folder run


@dataclass
class MattePlan:
    """What a matte run will do: the images with their outputs, and the inputs that do not exist.

    `missing` lists (input as given, reason) for files, folders or patterns that name no image;
    `passed_over` the files found that are named like p3m's outputs, `left_out` the folder
    entries that are not images (see `collect_inputs`).
    """

    jobs: list[MatteJob]
    kinds: tuple[str, ...]
    out_dir: Path
    overwrite: bool = False
    missing: list[tuple[str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    passed_over: list[Path] = field(default_factory=list)
    left_out: list[Path] = field(default_factory=list)
    new_shard_map: bool = False
    """The plan wrote `<out_dir>/shards.jsonl` afresh (removed if the run never starts)."""

    @property
    def pending(self) -> list[MatteJob]:
        """The jobs the run will process: all with `overwrite`, else those missing an output,
        those whose source changed since the manifest's record of it (`p3m.runs.sources`), and
        those whose outputs an earlier job writes (the run reports them as clashes)."""
        from p3m.runs.sources import SourceResolver, fingerprint_changed

        pending = []
        claimed: set[Path] = set()
        records: dict[str, Any] | None = None
        resolver = SourceResolver()
        for job, key in zip(self.jobs, self.keys or [job.source.name for job in self.jobs], strict=True):
            outputs = {job.outputs[kind] for kind in self.kinds}
            todo = self.overwrite or bool(job.missing(self.kinds)) or bool(outputs & claimed)
            if not todo:
                if records is None:
                    records = read_journal(self.out_dir / MANIFEST_NAME)
                record = records.get(key)
                todo = record is not None and fingerprint_changed(record.input, resolver.fingerprint(job.source))
            if todo:
                pending.append(job)
            claimed |= outputs
        return pending

    def items(self) -> list[Item]:
        return [job.item(self.kinds, key) for job, key in zip(self.jobs, self.keys, strict=True)]


def plan_matte(
    inputs: Iterable[str],
    out_dir: str | Path,
    kinds: Sequence[str] | str = ("alpha", "rgba"),
    recursive: bool = False,
    overwrite: bool = False,
    input_lists: Sequence[str | os.PathLike[str]] = (),
    shard_size: int = 0,
) -> MattePlan:
    """Collect the inputs (files, folders, globs) and name every output; see `collect_inputs`.

    `kinds`: output kinds (`OUTPUT_KINDS`), as a sequence or the CLI's comma list ("alpha,rgba");
    an unknown kind raises ConfigError naming the valid ones.

    Inputs that do not exist are listed in `missing`, not raised; files p3m wrote are left out
    (those recognised by their name alone are listed in `passed_over`); two inputs that would
    write the same outputs are both planned and the run fails the second alone (see
    `plan_outputs`). Each image's run key is its path relative to its input root.
    `input_lists`: files listing more inputs (text, CSV, Parquet: `p3m.io.read_path_list`; keys
    relative to the listed files' common folder, see `collect_listed`); a missing or unreadable
    list raises DatasetError. `shard_size` > 0: the outputs go to `<out_dir>/<shard>/...`, at
    most that many images per shard, each image in the same shard on every run
    (`p3m.runs.shards`, recorded in `<out_dir>/shards.jsonl`).
    """
    kinds = parse_save(kinds) if isinstance(kinds, str) else parse_save(",".join(kinds))
    missing: list[tuple[str, str]] = []
    passed_over: list[Path] = []
    left_out: list[Path] = []
    collected = collect_inputs(
        inputs, recursive=recursive, missing=missing, passed_over=passed_over, left_out=left_out
    )
    if input_lists:
        taken = {os.path.abspath(source) for source, _ in collected}
        listed = [path for listing in input_lists for path in read_path_list(listing)]
        collected += [entry for entry in collect_listed(listed) if os.path.abspath(entry[0]) not in taken]
    keys = [relative.as_posix() for _, relative in collected]
    new_shard_map = False
    if shard_size:
        relatives = {key: relative for key, (_, relative) in zip(keys, collected, strict=True)}

        def outputs(key: str) -> list[Path]:  # to find earlier outputs if shards.jsonl is lost
            relative = relatives[key]
            return [relative.parent / f"{relative.stem}_{kind}.png" for kind in kinds]

        new_shard_map = not (Path(out_dir) / SHARD_MAP_NAME).exists()
        shards = plan_shards(Path(out_dir), keys, shard_size, outputs)
        collected = [(source, Path(shards[key]) / relative) for key, (source, relative) in zip(keys, collected, strict=True)]
    jobs = plan_outputs(collected, Path(out_dir))
    return MattePlan(
        jobs, tuple(kinds), Path(out_dir), overwrite, missing, keys, passed_over, left_out,
        new_shard_map=new_shard_map,
    )


class MatteTask:
    """The `p3m.runs.Task` of `p3m matte`: read an image, matte it, write the kinds asked for.

    `load` reads the image (RGB uint8, EXIF-rotated; I/O thread); `compute` runs the `Matter`
    and, when a colour output is wanted, estimates the foreground (calling thread: models and
    numba kernels stay on one thread); `write` encodes the PNGs atomically (writer thread).
    Without `overwrite`, only the kinds whose files are missing are written (all of them for an
    item the engine redoes because its source changed, `Item.redo`). The outcome's
    details: the files written ("written"), the model, the resize note if any, and a "note"
    (only the first frame of an animated or multi-page file was used; no person found).
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
        self.settings = run_settings(matter, self.kinds, background)

    def load(self, item: Item) -> tuple[np.ndarray, np.ndarray | None, str | None]:
        from p3m.io import first_frame_note, read_image_and_alpha

        image, input_alpha = read_image_and_alpha(item.source)
        return image, input_alpha, first_frame_note(item.source)

    def compute(
        self, item: Item, loaded: tuple[np.ndarray, np.ndarray | None, str | None]
    ) -> tuple[Any, tuple[str, ...], str | None]:
        job: MatteJob = item.payload
        image, input_alpha, frames_note = loaded
        wanted = self.kinds if self.overwrite or item.redo else job.missing(self.kinds)
        needs_colour = any(kind in ("rgba", "foreground", "composite") for kind in wanted)
        return self.matter(image, foreground=needs_colour, input_alpha=input_alpha), wanted, frames_note

    def write(self, item: Item, result: tuple[Any, tuple[str, ...], str | None]) -> Outcome:
        matted, wanted, frames_note = result
        written = write_outputs(item.payload, matted, wanted, self.background)
        job: MatteJob = item.payload
        # Named from the output folder: with shards or a tree, "00000/photos/a_alpha.png".
        names = [f"{job.folder}/{path.name}" if job.folder else path.name for path in written]
        details: dict[str, Any] = {"written": names, "model": matted.model, "settings": self.settings}
        if matted.resized is not None:
            details["resized"] = matted.resized.describe()
            details["resized_explained"] = matted.resized.explain()  # said once per run
        notes = [note for note in (frames_note, matted.image_note) if note]
        if notes:
            details["note"] = "; ".join(notes)
        return Outcome(outputs={kind: item.outputs[kind] for kind in self.kinds if item.outputs[kind].is_file()}, details=details)


def matte_settings(matter: Any) -> dict[str, Any]:
    """`Matter.settings` of `matter` ({"model": name} for a plain callable): what a folder run
    records with each image, to tell outputs of other settings from its own."""
    settings = getattr(matter, "settings", None)
    if isinstance(settings, dict):
        return dict(settings)
    return {"model": str(getattr(matter, "name", type(matter).__name__))}


def run_settings(matter: Any, kinds: Sequence[str], background: Any = "white") -> dict[str, Any]:
    """What a folder run records with each image: `matte_settings(matter)`, and the composite
    background when composites are written."""
    settings = matte_settings(matter)
    if "composite" in kinds:
        settings["background"] = background_identity(background)
    return settings


def background_identity(background: Any) -> str:
    """A composite background as recorded with the outputs: the colour as given, or an image's
    size and the SHA-1 of its pixels."""
    if isinstance(background, np.ndarray):
        import hashlib

        digest = hashlib.sha1(np.ascontiguousarray(background).tobytes()).hexdigest()[:16]
        return f"image {background.shape[1]}x{background.shape[0]} sha1 {digest}"
    return str(background)


def outputs_of_other_settings(plan: MattePlan, settings: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The images with an output file from an earlier run (any kind; a run that adds a kind
    writes it beside them) that the manifest says other settings made, or that no record
    lists (see `recorded_other_settings`): (key, the recorded settings), in plan order.
    Images recorded before settings were are not listed (nothing to compare); nothing is
    listed with `overwrite`."""
    if plan.overwrite:
        return []
    entries = ((key, job.outputs.values()) for job, key in zip(plan.jobs, plan.keys, strict=True))
    return recorded_other_settings(plan.out_dir / MANIFEST_NAME, entries, settings)


def recorded_other_settings(
    journal: str | os.PathLike[str],
    entries: Iterable[tuple[str, Iterable[Path]]],
    settings: dict[str, Any],
    unrecorded: bool = True,
    legacy: Callable[[Any], dict[str, Any] | None] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(key, recorded settings) of each entry (its run key and its output paths) with an output
    file that exists and was made with settings other than `settings`, in the entries' order.

    Which settings made a file is what the run journal `journal` records for that file
    (`p3m.runs.provenance`: per output file, carried over by later runs that left it as it
    was; in a journal from before that, the record's settings for the outputs it lists). A file
    with no known provenance (no record of its item, or a record that does not list it: made by
    a run p3m has no record of) counts as made with other settings, as {UNRECORDED: file name},
    with {MADE_FROM: source} when the record of another input lists the file (an input with the
    same name stem from an earlier run: `a.png` then `a.jpg` both write `a_alpha.png`), unless
    `unrecorded` is False (a run that redoes such files anyway). A record without
    settings at all (journalled before settings were) is not compared, unless `legacy(record)`
    reads its settings from what it does record.
    What `outputs_of_other_settings` does for images, for any run that records `settings` in
    its records' details (`p3m.video.runs`, `p3m.privacy.dataset`)."""
    from p3m.runs.provenance import output_key, settings_of_outputs

    folder = Path(journal).parent
    records = read_journal(journal)
    owners: dict[str, str] | None = None  # output key -> the source of the record listing it
    found = []
    for key, outputs in entries:
        made_by = settings_of_outputs(records.get(key), folder, legacy)
        if made_by is None:
            continue
        for path in (Path(path) for path in outputs):
            if not path.exists():
                continue
            made = made_by.get(output_key(path, folder))
            if made is None:
                if unrecorded:
                    if owners is None:
                        owners = _recorded_owners(records, folder)
                    owner = owners.get(output_key(path, folder))
                    found.append((key, {UNRECORDED: path.name, **({MADE_FROM: owner} if owner else {})}))
                    break
            elif not _same_settings(made, settings):
                found.append((key, made))
                break
    return found


UNRECORDED = "unrecorded"
"""The key `recorded_other_settings` gives an output file no record tells the settings of."""
MADE_FROM = "made_from"
"""With `UNRECORDED`: the source of another input whose record lists that file."""


def _recorded_owners(records: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """{output key: the source (as the user gave it) of the record that lists the file}, from
    the per-file provenance or, in older records, the outputs they list."""
    from p3m.runs.provenance import OUTPUT_SETTINGS, stored_output_key

    owners: dict[str, str] = {}
    for record in records.values():
        per_file = (record.details or {}).get(OUTPUT_SETTINGS)
        if isinstance(per_file, Mapping):
            keys = [str(key) for key in per_file]
        else:
            keys = [stored_output_key(path, folder) for path in record.outputs.values()]
        for key in keys:
            owners.setdefault(key, record.source or record.key)
    return owners

OPTIONAL_SETTINGS = ("background", "format", "max_pixels")
"""Settings recorded only when the outputs depend on them (a composite's background, a video's
container for alpha and rgba) or only by newer runs (selfie-cf's `max_pixels`, beside the
`solve_pixels` it sets): one recorded by only one side of a comparison is no difference."""


def _compared(made: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings to compare: all, but an optional one recorded by only one side."""
    keys = set(made) | set(now)
    for name in OPTIONAL_SETTINGS:
        if (name in made) != (name in now):
            keys.discard(name)
    return sorted(keys)


def _same_settings(made: dict[str, Any], now: dict[str, Any]) -> bool:
    """Equal, apart from an optional setting recorded by only one side (a run without composites)."""
    return all(made.get(key) == now.get(key) for key in _compared(made, now))


SETTING_OPTIONS = {
    "model": "--model", "weights": "--weights", "strategy": "--strategy", "max_pixels": "--max-pixels",
    "solve_pixels": "--max-pixels", "band_fraction": "--trimap-band", "threshold": "--threshold",
    "background": "--background", "format": "--format", "temporal": "--temporal",
    "method": "--method", "strength": "--strength", "detectors": "--detectors", "landmarks": "--landmarks",
    "min_confidence": "--min-confidence", "transition_margin": "--transition-margin",
    "alpha_from": "--alpha-from", "trimap_kernel": "--trimap-kernel", "layout": "--layout",
    "detection": "--detect", "verify": "--verify", "identity_margin": "--identity-margin",
    "alpha_estimated": "--alpha-estimated", "audit": "--audit", "audit_detectors": "--audit-detectors",
}  # fmt: skip
"""The CLI option behind each recorded setting (for the other-settings message)."""


def settings_difference(made: dict[str, Any], now: dict[str, Any]) -> str:
    """What differs, in the options a user types and their values as typed:
    "--model selfie-cf -> p3mnet-r34", "--trimap-band 0.02 -> 0.04, --threshold 0.5 -> 0.6",
    "--max-pixels default -> 50000", "--background white (the default) -> #ff0000". Another
    model is named alone (its options are another model's). For a file no record tells the
    settings of ({UNRECORDED: name}): "<name> was made by a run with no record of its settings",
    or one made for another input ({UNRECORDED: name, MADE_FROM: source}): "<name> was made from
    <source>, another input with the same name stem"."""
    if UNRECORDED in made and made.get(MADE_FROM):
        return f"{made[UNRECORDED]} was made from {made[MADE_FROM]}, another input with the same name stem"
    if UNRECORDED in made:
        return f"{made[UNRECORDED]} was made by a run with no record of its settings"
    names = ["model", "weights"] if made.get("model") != now.get("model") else _compared(made, now)
    parts = []
    for name in names:
        before, after = made.get(name), now.get(name)
        if before == after:
            continue
        option = SETTING_OPTIONS.get(name, "--" + name.replace("_", "-"))
        if name == "solve_pixels":  # selfie-cf's: shown as the budget the user gave
            before, after = _budget_shown(made), _budget_shown(now)
        if f"{option} " in " ".join(parts) + " ":
            continue
        parts.append(f"{option} {_shown(name, before, name in made)} -> {_shown(name, after, name in now)}")
    return ", ".join(parts[:3])


def _budget_shown(settings: dict[str, Any]) -> Any:
    """The --max-pixels behind recorded settings: as recorded, or (a record from before
    selfie-cf recorded it) from its `solve_pixels`."""
    from p3m.inference.api import MATTE_MAX_PIXELS
    from p3m.inference.selfie_cf import DEFAULT_SOLVE_PIXELS

    if "max_pixels" in settings:
        return settings["max_pixels"]
    solve = settings.get("solve_pixels")
    if solve is None:
        return None
    return round(solve * MATTE_MAX_PIXELS / DEFAULT_SOLVE_PIXELS) if DEFAULT_SOLVE_PIXELS else solve


def _shown(name: str, value: Any, recorded: bool = True) -> str:
    """A recorded setting as the user would type it."""
    if name in ("max_pixels", "solve_pixels"):
        from p3m.inference.budget import MATTE_MAX_PIXELS

        if value is None:
            return "none" if recorded else "default"
        return "default" if value == MATTE_MAX_PIXELS else str(value)
    if name in _SHOWN_WHEN_EMPTY and not value:
        return _SHOWN_WHEN_EMPTY[name]
    if value is None:
        return "default"
    if name == "background":
        return _colour_shown(str(value))
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(str(part) for part in value) or "none"
    return str(value)


_SHOWN_WHEN_EMPTY = {"alpha_from": "none (--no-alpha)", "audit_detectors": "every available detector"}
"""Settings whose None / empty value means something other than a default, as a user says it."""

_COLOUR_NAMES = {
    (255, 255, 255): "white", (0, 0, 0): "black", (255, 0, 0): "red", (0, 0, 255): "blue",
}  # fmt: skip
"""Colours shown by name in messages (names whose #rrggbb everyone agrees on); others as #rrggbb."""


def _colour_shown(identity: str) -> str:
    """A recorded background ("(255, 0, 0)", "white", "#ff0000", "image 640x480 sha1 ...") as a
    user names it: "red", "#12ab34", "white (the default)"; an image or video as recorded."""
    import re

    numbers = re.fullmatch(r"\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)", identity.strip())
    if numbers is not None:
        rgb: tuple[int, ...] | None = tuple(int(part) for part in numbers.groups())
    else:
        from p3m.inference.foreground import parse_color

        try:
            rgb = parse_color(identity)
        except (ConfigError, ValueError):
            rgb = None
    if rgb is None:
        return identity
    shown = _COLOUR_NAMES.get(rgb) or "#{:02x}{:02x}{:02x}".format(*rgb)
    return f"{shown} (the default)" if rgb == (255, 255, 255) else shown


def check_kept_outputs(plan: MattePlan, settings: dict[str, Any]) -> None:
    """Raise ConfigError when the run would keep, or write beside, outputs that other settings
    made (another model, checkpoint, strategy, budget, selfie-cf refinement or composite
    background), or outputs the manifest has no record of: a changed command must not silently
    leave the old mattes in place, nor mix them with new ones. The message names what changed,
    in CLI options as typed (`settings_difference`), and the way out."""
    raise_other_settings(plan.out_dir, outputs_of_other_settings(plan, settings), settings, "image")


def raise_other_settings(
    out_dir: Path, other: Sequence[tuple[str, dict[str, Any]]], settings: dict[str, Any], noun: str
) -> None:
    """The ConfigError of `check_kept_outputs` for the `other` (key, recorded settings) found,
    counted as `noun`s ("image", "video"); nothing when `other` is empty."""
    if not other:
        return
    key, made = other[0]
    raise ConfigError(
        f"{out_dir} holds the outputs of {len(other)} {noun}(s) made with other settings "
        f"({key}: {settings_difference(made, settings)}); pass {{overwrite}} to redo them, "
        "or write to another folder",
        options={"overwrite": True},
    )


@dataclass(frozen=True)
class MatterSpec:
    """How to build a `p3m.inference.Matter` (its arguments; picklable, a few bytes).

    What a worker in another process or on another machine gets instead of a loaded model: it
    builds the `Matter` itself, once (`build`). Give a concrete model name rather than "auto"
    when workers may have different weights caches (`p3m matte --engine ray` resolves it);
    `weights` paths must exist on every worker. `max_pixels`: the pixel budget, None for none,
    "default" for `Matter`'s default (`MATTE_MAX_PIXELS`).
    """

    model: str = "auto"
    weights: str | None = None
    strategy: str = "hybrid"
    device: str | None = None
    max_pixels: int | str | None = "default"
    selfie_config: Any = None
    """A `SelfieCFConfig` refining selfie-cf (None: its defaults)."""

    def build(self, download: bool = False, on_download: Callable[[str], None] | None = None) -> Any:
        """The `Matter` (raises what `Matter` raises: unknown model, weights not installed, ...).

        `download`: fetch the model's published weights first when they are not cached (no
        `weights` given; not for selfie-cf or an .onnx file; "auto" fetches
        `AUTO_PREFERRED_MODEL`), calling `on_download(model name)` before the download."""
        from p3m.inference.api import AUTO_PREFERRED_MODEL, MATTE_MAX_PIXELS, Matter

        model = self.model
        if download and self.weights is None and model != "selfie-cf" and not model.lower().endswith(".onnx"):
            from p3m.models.hub import download_weights, installed_weights

            wanted = AUTO_PREFERRED_MODEL if model == "auto" else model
            if installed_weights(wanted) is None:
                if on_download is not None:
                    on_download(wanted)
                download_weights(wanted)
        budget = MATTE_MAX_PIXELS if self.max_pixels == "default" else self.max_pixels
        return Matter(
            self.model, self.weights, self.strategy, self.device, budget, selfie_config=self.selfie_config
        )


@dataclass(frozen=True)
class MatteTaskFactory:
    """A `p3m.runs.TaskFactory` for `MatteTask`: the model is built where the task runs."""

    spec: MatterSpec
    kinds: tuple[str, ...]
    background: Any = "white"
    overwrite: bool = False

    def __call__(self) -> MatteTask:
        return MatteTask(self.spec.build(), self.kinds, self.background, self.overwrite)


def run_matte(
    plan: MattePlan,
    matter: Callable[..., Any] | MatterSpec,
    background: np.ndarray | str = "white",
    on_event: Callable[[Event], None] | None = None,
    options: RunOptions | None = None,
    executor: Executor | None = None,
) -> RunReport:
    """Matte the plan's images with `matter` (a `p3m.inference.Matter`) as one engine run.

    Images whose outputs all exist are kept unless the plan says `overwrite`; the run's journal
    is `<out_dir>/manifest.jsonl`. `matter` may be a `MatterSpec`, built once here or, with an
    `executor` (e.g. `p3m.scale.RayExecutor`), once per worker; an executor needs a spec
    (ConfigError otherwise). Returns the run report (one record per image, input order).
    """
    options = options or RunOptions()
    if plan.overwrite and not options.overwrite:
        options = dataclasses.replace(options, overwrite=True)
    kinds = tuple(plan.kinds)
    if isinstance(matter, MatterSpec):
        task: Any = MatteTaskFactory(matter, kinds, background, plan.overwrite)
    elif executor is not None:
        raise ConfigError("a run on other workers needs the model as a MatterSpec (built on each worker), not a loaded Matter")
    else:
        task = MatteTask(matter, kinds, background, plan.overwrite)
        check_kept_outputs(plan, task.settings)
    with provisional_shard_map(plan.out_dir, on_event, existed=not plan.new_shard_map) as forward:
        return run_items(plan.items(), task, plan.out_dir / MANIFEST_NAME, options, forward, executor=executor)
