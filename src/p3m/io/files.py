"""Finding image files in folders, and pairing them by file stem (`p_1a2b.jpg` <-> `p_1a2b.png`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from p3m.errors import DatasetError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
"""Suffixes (lower case) of the files p3m treats as images when it scans a folder."""


VIDEO_SUFFIXES: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".avi", ".wmv", ".flv", ".mpg", ".mpeg",
    ".m2v", ".ts", ".mts", ".m2ts", ".3gp", ".3g2", ".ogv", ".mxf", ".dv", ".y4m",
)  # fmt: skip
"""Suffixes (lower case) that p3m treats as video files when it routes inputs."""


def is_video_file(path: Path) -> bool:
    """True for a regular, non-hidden file with a video suffix (`VIDEO_SUFFIXES`, any case)."""
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".") and path.is_file()


def expand_folders(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """(files for the image code, video files) of files and folders given as inputs.

    A folder stands for its image files and its video files (sorted, not recursive); a file is
    kept as given whatever its suffix (a bad one is then reported by whoever reads it), among
    the videos when its suffix is a video's. Used by runs that send videos one way and images
    another (`p3m anonymize FOLDER`, as `p3m matte FOLDER` does), so no video in a folder is
    silently ignored.
    """
    images: list[Path] = []
    videos: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            entries = sorted(entry for entry in path.iterdir() if entry.is_file())
            images += [entry for entry in entries if is_image_file(entry)]
            videos += [entry for entry in entries if is_video_file(entry)]
        elif path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith("."):
            videos.append(path)
        else:
            images.append(path)
    return list(dict.fromkeys(images)), list(dict.fromkeys(videos))


def is_image_file(path: Path, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> bool:
    """True for a regular, non-hidden file whose suffix (any case) is one of `suffixes`."""
    return (
        path.suffix.lower() in tuple(suffixes)
        and not path.name.startswith(".")
        and path.is_file()
    )


OUTPUT_FOLDER_MARKER = ".p3m-output"
"""A hidden file p3m writes into every folder that is wholly one of its outputs (a PNG sequence
of `p3m matte --format png-sequence`): nothing under such a folder is ever taken as an input."""

SEQUENCE_TIMESTAMPS = "timestamps.txt"
_SEQUENCE_HEADER = "# timestamp format v2"


def mark_output_folder(folder: str | os.PathLike[str]) -> None:
    """Write the `OUTPUT_FOLDER_MARKER` into `folder` (a folder p3m is writing as one output)."""
    (Path(folder) / OUTPUT_FOLDER_MARKER).write_text(
        "This folder is an output of p3m; p3m never takes the files in it as inputs.\n", encoding="utf-8"
    )


def output_folder_kind(folder: str | os.PathLike[str]) -> str | None:
    """How `folder` is known to be a p3m output folder: "marked" (it holds the
    `OUTPUT_FOLDER_MARKER`), "sequence" (no marker, but it holds a `timestamps.txt` in mkvmerge's
    "timestamp format v2" beside its PNGs, as p3m's PNG sequences did before the marker: likely
    p3m's, perhaps another tool's), or None."""
    folder = Path(folder)
    if (folder / OUTPUT_FOLDER_MARKER).is_file():
        return "marked"
    try:
        with open(folder / SEQUENCE_TIMESTAMPS, encoding="utf-8") as handle:
            first = handle.readline().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return "sequence" if first == _SEQUENCE_HEADER else None


def files_by_stem(
    directory: str | os.PathLike[str], suffixes: Iterable[str] = IMAGE_SUFFIXES
) -> dict[str, Path]:
    """Image files of a folder (not recursive) by stem; the first name in sort order wins a stem.

    Hidden files (e.g. macOS `._x.png`) are ignored; a stem present twice (`a.jpg`, `a.png`)
    is logged as a warning, since pairing by stem is then ambiguous. Raises `DatasetError` when
    `directory` is not a folder.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise DatasetError("folder not found" if not folder.exists() else "not a folder", folder)
    wanted = tuple(suffix.lower() for suffix in suffixes)
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not is_image_file(path, wanted):
            continue
        if path.stem in files:
            logger.warning(
                "%s: two files with stem %r; using %s", directory, path.stem, files[path.stem].name
            )
            continue
        files[path.stem] = path
    return files


__all__ = [
    "IMAGE_SUFFIXES",
    "OUTPUT_FOLDER_MARKER",
    "VIDEO_SUFFIXES",
    "expand_folders",
    "is_video_file",
    "SEQUENCE_TIMESTAMPS",
    "files_by_stem",
    "is_image_file",
    "mark_output_folder",
    "output_folder_kind",
]
