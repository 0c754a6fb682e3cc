"""Source faces for P3M-CP: build a prepared set (index + cropped faces and masks) and load it.

Two ways to get face masks for public face images (paper section 5, Fig. 10):

* ``celebamask-hq``: CelebAMask-HQ-style parsing annotations. Per-part mask files
  ``<id>_skin.png``, ``<id>_l_brow.png``, ``<id>_r_brow.png`` (CelebAMask-HQ-mask-anno layout,
  ids zero-padded or not) and images ``<id>.jpg``, anywhere under the source folder. The face
  region is the skin below a line right above the eyebrows. The inner parts (eyes, brows, nose,
  mouth, lips, glasses) are added to the skin and holes are filled, so the region is solid even
  where an annotation leaves the skin open around them. The line goes through the topmost
  point of each eyebrow (horizontal with one eyebrow), is raised until no eyebrow pixel is above
  it, then by ``line_margin`` times the face height: the eyebrows stay inside, the forehead out.
* ``faces``: any folder of face photos; masks come from p3m's privacy pipeline
  (`p3m.privacy.face_masks_for_image`: detection, landmarks, private polygon), the same area
  that P3M-10k obfuscates; one source face per detected face.

The prepared set is ``index.json`` plus ``faces/<name>.png`` (RGB) and ``masks/<name>.png``
(uint8 0/255), each a crop around one face, no larger than ``max_size`` on its long side.

    >>> report = build_cp_sources("CelebAMask-HQ", "cp-sources", source_format="celebamask-hq")
    >>> image, mask = CPSourceSet("cp-sources").sample(np.random.default_rng(0))
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from p3m.errors import ConfigError, DatasetError, P3MError
from p3m.io import IMAGE_SUFFIXES, atomic_write_text, read_alpha_u8, read_image, write_png
from p3m.vocabulary import CPSourceFormat, values

if TYPE_CHECKING:
    import torch

__all__ = [
    "INDEX_NAME",
    "SOURCE_FORMATS",
    "BuildReport",
    "CPSourceSet",
    "build_cp_sources",
    "celebamask_face_region",
    "crop_face",
]

logger = logging.getLogger(__name__)

INDEX_NAME = "index.json"
INDEX_FORMAT = "p3m-cp-sources"
INDEX_VERSION = 1
SOURCE_FORMATS: tuple[str, ...] = values(CPSourceFormat)

# CelebAMask-HQ parts that lie inside the face below the eyebrow line.
CELEBAMASK_INNER_PARTS = (
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
)
_PART_FILE = re.compile(r"^(\d+)_([a-z_]+)$")

ProgressCallback = Callable[[int, int], None]


@dataclass
class BuildReport:
    """What `build_cp_sources` did: faces written, and inputs skipped with the reason."""

    out_dir: Path
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- masks and crops


def _topmost_point(mask: np.ndarray) -> tuple[float, float] | None:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    top = rows.min()
    return float(cols[rows == top].mean()), float(top)


def celebamask_face_region(
    skin: np.ndarray,
    left_brow: np.ndarray | None,
    right_brow: np.ndarray | None,
    inner_parts: Iterable[np.ndarray] = (),
    line_margin: float = 0.04,
) -> np.ndarray:
    """Face region of Fig. 10 (bool H x W): skin (plus inner parts, holes filled) below the brow line.

    The line passes through the topmost point of each eyebrow, is raised until every eyebrow
    pixel is below it, then by `line_margin` times the face height. Raises ValueError when there is no skin or no eyebrow.
    """
    from scipy.ndimage import binary_fill_holes

    region = np.asarray(skin, bool).copy()
    if not region.any():
        raise ValueError("the skin mask is empty")
    for part in (left_brow, right_brow, *inner_parts):
        if part is not None:
            region |= np.asarray(part, bool)
    region = binary_fill_holes(region)

    tops = [p for p in (_topmost_point(b) for b in (left_brow, right_brow) if b is not None) if p]
    if not tops:
        raise ValueError("no eyebrow annotation, so the line above the eyebrows is unknown")
    rows = np.nonzero(region.any(axis=1))[0]
    margin = line_margin * float(rows.max() - rows.min() + 1)
    if len(tops) == 2 and abs(tops[1][0] - tops[0][0]) > 1e-6:
        (x0, y0), (x1, y1) = tops
        slope = (y1 - y0) / (x1 - x0)
    else:
        x0, y0 = min(tops, key=lambda point: point[1])
        slope = 0.0
    # Raise the line until no eyebrow pixel is above it (flat-topped brows on a tilted head).
    brow_rows, brow_cols = np.nonzero(
        np.logical_or.reduce([b for b in (left_brow, right_brow) if b is not None])
    )
    overshoot = float(np.max(y0 + slope * (brow_cols - x0) - brow_rows))
    height, width = region.shape
    ys, xs = np.mgrid[0:height, 0:width]
    line_y = y0 + slope * (xs - x0) - max(overshoot, 0.0) - margin
    return region & (ys >= line_y)


def crop_face(
    image: np.ndarray, mask: np.ndarray, max_size: int = 256, padding: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Crop image and mask to the mask's box plus `padding` (fraction of the box) on each side,
    then shrink (area filter) so the long side is at most `max_size`. Mask out: uint8 0/255."""
    import cv2

    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("the face mask is empty")
    height, width = mask.shape
    pad_y = int(round(padding * (rows.max() - rows.min() + 1)))
    pad_x = int(round(padding * (cols.max() - cols.min() + 1)))
    y0, y1 = max(rows.min() - pad_y, 0), min(rows.max() + 1 + pad_y, height)
    x0, x1 = max(cols.min() - pad_x, 0), min(cols.max() + 1 + pad_x, width)
    face = np.ascontiguousarray(image[y0:y1, x0:x1])
    face_mask = mask[y0:y1, x0:x1].astype(np.float32)
    long_side = max(y1 - y0, x1 - x0)
    if long_side > max_size:
        factor = max_size / long_side
        size = (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor)))
        face = cv2.resize(face, size, interpolation=cv2.INTER_AREA)
        face_mask = cv2.resize(face_mask, size, interpolation=cv2.INTER_AREA)
    return face, np.where(face_mask >= 0.5, 255, 0).astype(np.uint8)


def _resize_mask_to(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    if mask.shape == shape:
        return mask
    resized = cv2.resize(
        mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST
    )
    return resized > 0


# --------------------------------------------------------------------------- building


def _find_celebamask_samples(
    src: Path,
) -> tuple[list[tuple[int, Path, dict[str, Path]]], list[tuple[str, str]]]:
    """(id, image, {part: mask file}) for every id that has a skin mask; and unmatched masks."""
    parts: dict[int, dict[str, Path]] = {}
    images: dict[int, Path] = {}
    for path in sorted(src.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem.isdigit():
            images.setdefault(int(path.stem), path)
            continue
        match = _PART_FILE.match(path.stem)
        if match and path.suffix.lower() == ".png":
            parts.setdefault(int(match.group(1)), {})[match.group(2)] = path
    samples, unmatched = [], []
    for face_id in sorted(parts):
        if "skin" not in parts[face_id]:
            continue
        if face_id not in images:
            unmatched.append(
                (str(parts[face_id]["skin"]), f"no image {face_id}.jpg found under {src}")
            )
            continue
        samples.append((face_id, images[face_id], parts[face_id]))
    return samples, unmatched


def _read_part(path: Path) -> np.ndarray:

    return read_alpha_u8(path) > 127


def _celebamask_faces(
    image_path: Path, part_paths: dict[str, Path], line_margin: float
) -> list[tuple[np.ndarray, np.ndarray]]:

    image = read_image(image_path)
    skin = _read_part(part_paths["skin"])
    brows = [
        _read_part(part_paths[name]) if name in part_paths else None
        for name in ("l_brow", "r_brow")
    ]
    inner = [
        _read_part(part_paths[name]) for name in CELEBAMASK_INNER_PARTS[2:] if name in part_paths
    ]
    try:
        region = celebamask_face_region(skin, brows[0], brows[1], inner, line_margin)
    except ValueError as error:
        raise P3MError(str(error), part_paths["skin"]) from error
    return [(image, _resize_mask_to(region, image.shape[:2]))]


def _photo_faces(
    image_path: Path, detectors: tuple[str, ...] | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (image, face mask) per face found by p3m's privacy pipeline (detection + landmarks)."""
    from p3m.privacy.facemask import face_mask
    from p3m.privacy.pipeline import face_masks_for_image

    image = read_image(image_path)
    options = {} if detectors is None else {"detectors": detectors}
    union, faces, warnings = face_masks_for_image(image, **options)
    for warning in warnings:
        logger.warning("%s: %s", image_path, warning)
    if len(faces) == 1:
        return [(image, union)]
    return [(image, face_mask(image.shape, [face])) for face in faces]


def build_cp_sources(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    source_format: Literal["celebamask-hq", "faces"] = "celebamask-hq",
    max_size: int = 256,
    min_face_pixels: int = 16 * 16,
    line_margin: float = 0.04,
    detectors: tuple[str, ...] | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> BuildReport:
    """Prepare a P3M-CP source set from `src` into `out` (index.json, faces/, masks/).

    Inputs that fail (unreadable, no face, no eyebrow, face smaller than `min_face_pixels`
    after cropping) are skipped and listed in the report; the rest is written. Raises
    DatasetError if `src` has nothing usable in that format or `out` already holds a set
    (unless `overwrite`).
    """

    src, out = Path(src), Path(out)
    if source_format not in SOURCE_FORMATS:
        raise ConfigError(
            f"unknown source format {source_format!r}; choose from {', '.join(SOURCE_FORMATS)}"
        )
    if not src.is_dir():
        raise DatasetError("not a folder", src)
    if (out / INDEX_NAME).exists() and not overwrite:
        raise DatasetError(
            "already holds a P3M-CP source set (pass {overwrite} to replace it)",
            out / INDEX_NAME,
            options={"overwrite": True},
        )

    report = BuildReport(out_dir=out)
    jobs: list[tuple[str, Path, Callable[[], list[tuple[np.ndarray, np.ndarray]]]]] = []
    if source_format == "celebamask-hq":
        samples, report.skipped = _find_celebamask_samples(src)
        for face_id, image_path, part_paths in samples:
            jobs.append(
                (
                    str(face_id),
                    image_path,
                    lambda i=image_path, p=part_paths: _celebamask_faces(i, p, line_margin),
                )
            )
        if not jobs:
            raise DatasetError(
                "no '<id>_skin.png' mask with a matching '<id>.jpg' image found", src
            )
    else:
        photos = sorted(
            p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        for path in photos:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(path.relative_to(src).with_suffix("")))
            jobs.append((name, path, lambda p=path: _photo_faces(p, detectors)))
        if not jobs:
            raise DatasetError("no image files found", src)

    (out / "faces").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    entries = []
    for done, (name, image_path, extract) in enumerate(jobs, start=1):
        try:
            faces = extract()
            if not faces:
                raise P3MError("no face found", image_path)
            for index, (image, mask) in enumerate(faces):
                face, face_mask = crop_face(image, mask, max_size=max_size)
                if int((face_mask > 0).sum()) < min_face_pixels:
                    report.skipped.append(
                        (str(image_path), f"face {index} is too small after cropping")
                    )
                    continue
                entry_name = name if len(faces) == 1 else f"{name}_face{index}"
                write_png(out / "faces" / f"{entry_name}.png", face)
                write_png(out / "masks" / f"{entry_name}.png", face_mask)
                entries.append(
                    {
                        "name": entry_name,
                        "image": f"faces/{entry_name}.png",
                        "mask": f"masks/{entry_name}.png",
                        "origin": str(image_path.relative_to(src)),
                        "height": int(face.shape[0]),
                        "width": int(face.shape[1]),
                    }
                )
                report.written += 1
        except (P3MError, ValueError) as error:
            reason = error.problem if isinstance(error, P3MError) else str(error)
            report.skipped.append((str(image_path), reason))
            logger.info("skipped %s: %s", image_path, reason)
        if progress is not None:
            progress(done, len(jobs))

    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "source_format": source_format,
        "source": str(src),
        "faces": entries,
    }
    atomic_write_text(out / INDEX_NAME, json.dumps(index, indent=1) + "\n")
    return report


# --------------------------------------------------------------------------- loading


class CPSourceSet:
    """A prepared P3M-CP source set: `len(set)`, `set[i] -> (image uint8 H x W x 3, mask bool H x W)`.

    Faces are read from disk on each access (a set can hold tens of thousands), so the object is
    cheap to copy into data-loader workers.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        index_path = self.root / INDEX_NAME
        if not index_path.is_file():
            raise DatasetError(
                f"no {INDEX_NAME}; build a source set with `p3m cp-sources build`", self.root
            )
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise DatasetError(f"unreadable index: {error}", index_path) from error
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
            raise DatasetError(f"not a {INDEX_FORMAT} index", index_path)
        if index.get("version") != INDEX_VERSION:
            raise DatasetError(
                f"index version {index.get('version')}, expected {INDEX_VERSION}", index_path
            )
        self.entries: list[dict] = list(index.get("faces", []))
        if not self.entries:
            raise DatasetError("the source set holds no faces", index_path)
        self.source_format: str = index.get("source_format", "")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:

        entry = self.entries[index]
        image = read_image(self.root / entry["image"])
        mask = read_alpha_u8(self.root / entry["mask"]) > 127
        if mask.shape != image.shape[:2]:
            raise DatasetError(
                f"mask is {mask.shape[1]}x{mask.shape[0]}, face is {image.shape[1]}x{image.shape[0]}",
                self.root / entry["mask"],
            )
        return image, mask

    def sample(
        self, generator: np.random.Generator | torch.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A face drawn uniformly at random (numpy or torch generator; None = torch's global one)."""
        if isinstance(generator, np.random.Generator):
            return self[int(generator.integers(len(self)))]
        import torch

        return self[int(torch.randint(len(self), (1,), generator=generator))]

    def __repr__(self) -> str:
        return f"CPSourceSet({str(self.root)!r}, faces={len(self)})"
