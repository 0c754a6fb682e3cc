"""The P3M-10k and RWP-636 folder layouts: find samples, and check a data root before training.

P3M-10k (as released, paths relative to the data root)::

    train/blurred_image/*.jpg   train/mask/*.png   [train/fg, train/bg, train/facemask]
    validation/P3M-500-P/{blurred_image, mask, trimap, facemask}
    validation/P3M-500-NP/{original_image, mask, trimap}

(the validation sets may also sit directly under the root). RWP-636: `image/` and `alpha/`.
Files are matched by their stem (`p_1a2b.jpg` <-> `p_1a2b.png`). For the N:N protocol the
normal (non-obfuscated) training images come from a user-given folder, matched the same way.

    >>> report = check_layout("P3M-10k", protocol="B")
    >>> report.raise_if_problems()           # DatasetError naming what is missing or unmatched
    >>> samples = find_samples("P3M-10k", "train")
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from p3m.errors import DatasetError
from p3m.io import IMAGE_SUFFIXES, files_by_stem
from p3m.vocabulary import DATA_SETS, TestSet, TrainingImages, values

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "SET_NAMES",
    "LayoutReport",
    "Sample",
    "SetLayout",
    "TestSet",
    "canonical_set_name",
    "check_layout",
    "find_samples",
    "resolve_set",
    "rwp_present",
    "set_label",
]

SET_NAMES = DATA_SETS
PROTOCOLS = values(TrainingImages)


@dataclass(frozen=True)
class Sample:
    """One sample's files; optional parts are None when the set does not provide them."""

    name: str
    image: Path
    alpha: Path
    trimap: Path | None = None
    facemask: Path | None = None
    foreground: Path | None = None
    background: Path | None = None


@dataclass(frozen=True)
class SetLayout:
    """Where one set's folders are: the image folder, the alpha folder and optional extras."""

    name: str
    directory: Path
    image_dir: str
    alpha_dir: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


def _set_directory(root: Path, name: str) -> Path:
    if name == "train":
        return root / "train"
    if name == "RWP":
        for candidate in (root / "RWP-636", root / "RWP", root):
            if (candidate / "image").is_dir():
                return candidate
        return root
    for candidate in (root / "validation" / name, root / name):
        if candidate.is_dir():
            return candidate
    return root / "validation" / name


def canonical_set_name(name: str) -> str:
    """'train' or a `TestSet` value for any accepted spelling ('RWP-636', 'rwp636', 'p3m-500-p');
    other names are returned as given."""
    if name in SET_NAMES:
        return name
    if name.strip().lower() == "train":
        return "train"
    test_set = TestSet.parse(name)
    return test_set.value if test_set is not None else name


def set_label(name: str) -> str:
    """The name of a set in the paper's tables: RWP-636 for RWP, the others as they are."""
    test_set = TestSet.parse(name)
    return test_set.label if test_set is not None else name


def rwp_present(root: str | PathLike[str]) -> bool:
    """True when `root` holds RWP-636 (`RWP-636/image`, `RWP/image`, or `image/` + `alpha/`)."""
    root = Path(root)
    return any((root / folder / "image").is_dir() for folder in ("RWP-636", "RWP")) or (
        (root / "image").is_dir() and (root / "alpha").is_dir()
    )


def resolve_set(root: str | PathLike[str], name: str, protocol: str = "B") -> SetLayout:
    """The folder layout of set `name` ('train', 'P3M-500-P', 'P3M-500-NP', 'RWP' or another
    spelling of it, such as 'RWP-636') under `root`."""
    root = Path(root)
    name = canonical_set_name(name)
    if name not in SET_NAMES:
        raise DatasetError(f"unknown set {name!r} (use one of {', '.join(SET_NAMES)})", root)
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown protocol {protocol!r} (use B or N)", root)
    directory = _set_directory(root, name)
    if name == "train":
        image_dir = "blurred_image" if protocol == "B" else "original_image"
        return SetLayout(name, directory, image_dir, "mask", optional=("fg", "bg", "facemask"))
    if name == "P3M-500-P":
        return SetLayout(name, directory, "blurred_image", "mask", ("trimap",), ("facemask",))
    if name == "P3M-500-NP":
        return SetLayout(name, directory, "original_image", "mask", ("trimap",))
    return SetLayout(name, directory, "image", "alpha")


def _short_list(names: Iterable[str], limit: int = 3) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


@dataclass
class LayoutReport:
    """What `check_layout` found: sample counts per set and a list of one-line problems."""

    root: Path
    counts: dict[str, int] = field(default_factory=dict)
    extras: dict[str, tuple[str, ...]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Remarks that are not problems (e.g. an optional test set that is not there)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_problems(self) -> None:
        """Raise one DatasetError listing every problem (one line)."""
        if self.problems:
            raise DatasetError("data layout problems: " + "; ".join(self.problems), self.root)


def _scan_set(
    layout: SetLayout, image_dir: Path, report: LayoutReport | None
) -> list[Sample]:
    problems = report.problems if report is not None else []
    alpha_dir = layout.directory / layout.alpha_dir
    missing_dirs = [str(d) for d in (image_dir, alpha_dir) if not d.is_dir()]
    missing_dirs += [str(layout.directory / d) for d in layout.required if not (layout.directory / d).is_dir()]
    if missing_dirs:
        problems.append(f"{layout.name}: missing folder(s) {', '.join(missing_dirs)}")
        return []
    images = files_by_stem(image_dir)
    alphas = files_by_stem(alpha_dir)
    if not images:
        problems.append(f"{layout.name}: no images in {image_dir}")
    if images.keys() - alphas.keys():
        problems.append(
            f"{layout.name}: {len(images.keys() - alphas.keys())} image(s) without a matte in "
            f"{alpha_dir} ({_short_list(images.keys() - alphas.keys())})"
        )
    if alphas.keys() - images.keys():
        problems.append(
            f"{layout.name}: {len(alphas.keys() - images.keys())} matte(s) without an image in "
            f"{image_dir} ({_short_list(alphas.keys() - images.keys())})"
        )
    stems = sorted(images.keys() & alphas.keys())
    extras: dict[str, dict[str, Path]] = {}
    for extra in (*layout.required, *layout.optional):
        directory = layout.directory / extra
        if not directory.is_dir():
            continue
        files = files_by_stem(directory)
        missing = set(stems) - files.keys()
        if missing and extra in layout.required:
            problems.append(
                f"{layout.name}: {len(missing)} sample(s) without {extra} in {directory} "
                f"({_short_list(missing)})"
            )
            continue  # not listed as a complete extra beside the problem line
        elif missing:
            # An optional folder is used only when it covers every sample.
            problems.append(
                f"{layout.name}: optional folder {directory} lacks {len(missing)} sample(s) "
                f"({_short_list(missing)}); complete it or remove it"
            )
            continue
        extras[extra] = files
    if report is not None:
        report.counts[layout.name] = len(stems)
        report.extras[layout.name] = tuple(sorted(extras))
    samples = []
    for stem in stems:

        def extra_path(key: str, stem: str = stem) -> Path | None:
            return extras[key].get(stem) if key in extras else None

        samples.append(
            Sample(
                name=stem,
                image=images[stem],
                alpha=alphas[stem],
                trimap=extra_path("trimap"),
                facemask=extra_path("facemask"),
                foreground=extra_path("fg"),
                background=extra_path("bg"),
            )
        )
    return samples


def _image_dir(layout: SetLayout, normal_images: str | PathLike[str] | None) -> Path:
    if layout.name == "train" and normal_images is not None:
        return Path(normal_images)
    return layout.directory / layout.image_dir


def find_samples(
    root: str | PathLike[str],
    set_name: str,
    protocol: str = "B",
    normal_images: str | PathLike[str] | None = None,
) -> list[Sample]:
    """The matched samples of one set, sorted by name; DatasetError if the set's layout is broken.

    For `set_name='train'` and `protocol='N'` the images come from `normal_images` (default
    `train/original_image`).
    """
    layout = resolve_set(root, set_name, protocol)
    report = LayoutReport(Path(root))
    samples = _scan_set(layout, _image_dir(layout, normal_images), report)
    report.raise_if_problems()
    return samples


def _image_size(path: Path) -> tuple[int, int] | str:
    """(width, height) of the decoded file as `p3m.io` reads it, or why it cannot be read.

    The whole file is decoded (after the pixel cap is checked from its header): a header alone
    says nothing of a file cut short, which training would meet only when it reaches it.
    """
    from p3m.errors import ImageReadError, ImageTooLargeError
    from p3m.io import image_size, read_image

    try:
        image_size(path)  # the cap, before anything is decoded
        height, width = read_image(path).shape[:2]
    except ImageTooLargeError as error:
        return f"too large: {error.problem.split(';')[0]}"
    except ImageReadError as error:
        return "truncated" if "truncated" in error.problem else "cannot be read"
    return width, height


def _check_files(name: str, samples: list[Sample], problems: list[str]) -> None:
    """Decode every file of `samples` (on a few threads: decoding releases the GIL) and add a
    problem line for unreadable ones and for parts whose size differs from their image."""
    from concurrent.futures import ThreadPoolExecutor

    unreadable: list[str] = []
    mismatched: list[str] = []

    def label(path: Path, sample: Sample, reason: str) -> str:
        shown = path.name if path == sample.image else f"{path.parent.name}/{path.name}"
        return shown if reason == "cannot be read" else f"{shown} ({reason})"

    parts = [
        [sample.image, *(p for p in (sample.alpha, sample.trimap, sample.facemask, sample.foreground, sample.background) if p is not None)]
        for sample in samples
    ]
    logger.info("%s: decoding %d files", name, sum(len(files) for files in parts))
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
        sizes = list(pool.map(lambda files: [_image_size(path) for path in files], parts))
    for sample, files, found in zip(samples, parts, sizes, strict=True):
        image_size = found[0]
        if isinstance(image_size, str):
            unreadable.append(label(sample.image, sample, image_size))
            continue
        for part, size in zip(files[1:], found[1:], strict=True):
            if isinstance(size, str):
                unreadable.append(label(part, sample, size))
            elif size != image_size:
                mismatched.append(f"{part.parent.name}/{part.name} {size[0]}x{size[1]} vs {image_size[0]}x{image_size[1]}")
    if unreadable:
        problems.append(f"{name}: {len(unreadable)} unreadable file(s) ({_short_list(unreadable)})")
    if mismatched:
        problems.append(f"{name}: {len(mismatched)} file(s) of another size than their image ({_short_list(mismatched)})")


def check_layout(
    root: str | PathLike[str],
    sets: Sequence[str] | None = None,
    protocol: str = "B",
    normal_images: str | PathLike[str] | None = None,
    deep: bool = False,
) -> LayoutReport:
    """Check every requested set under `root` and report counts and problems (never raises).

    `sets=None` checks train, P3M-500-P and P3M-500-NP, and RWP-636 when it is there (its
    absence is a note, not a problem); sets named explicitly (any spelling, e.g. 'RWP-636')
    must be there. `deep=True` also decodes every file: unreadable or truncated files and mattes,
    trimaps, masks, fg/bg whose size differs from their image are reported.
    """
    root = Path(root)
    report = LayoutReport(root)
    if not root.is_dir():
        report.problems.append("data root does not exist or is not a folder")
        return report
    if sets is None:
        sets = ["train", TestSet.P.value, TestSet.NP.value]
        if rwp_present(root):
            sets.append(TestSet.RWP.value)
        else:
            report.notes.append(
                f"{TestSet.RWP.label} (the real-world test set) not found: expected "
                f"{root / 'RWP-636'}/image and /alpha; it is optional"
            )
    for name in (canonical_set_name(name) for name in sets):
        try:
            layout = resolve_set(root, name, protocol)
        except DatasetError as error:
            report.problems.append(error.problem)
            continue
        samples = _scan_set(layout, _image_dir(layout, normal_images), report)
        if deep:
            _check_files(name, samples, report.problems)
    return report
