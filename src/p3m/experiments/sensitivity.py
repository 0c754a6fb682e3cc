"""Obfuscation sensitivity (beyond the paper): how far does hiding the face move a model's matte?

P3M-10k trains and tests on face-obfuscated images; for any matting model the question it
raises is how much the obfuscation itself changes the output, and where. For each image this
study mattes the image as it is and again after each obfuscation of its face (Gaussian blur at
several strengths, mosaic, zeros; `p3m.privacy.obfuscation.obfuscate`, every pixel outside the
face mask unchanged) and measures |Δα|, the absolute change of the matte, per region:

* **face**: the face mask, i.e. the pixels that were obfuscated;
* **band**: the hair / transition band, pixels with 0 < α < 1 of the ground truth (or, without
  one, of the model's own matte of the image) dilated by `band_margin` px, outside the face mask;
* **rest**: every other pixel; and **overall**: the whole image.

Per image and obfuscation it reports the mean |Δα| of each region, the largest change, the share
of pixels changed by more than `changed_threshold`, the SAD between the two mattes and, with
ground truth, the SAD of each matte against it (ΔSAD: what the obfuscation costs in the
paper's metric). The table averages over images; `per_image.csv` has every row and
`heatmaps/<name>.png` shows the change maps (`p3m.experiments.heatmap`).

Face masks come from a folder (`facemasks`, by stem, e.g. P3M-500-P's `facemask/`) or from
p3m's own detection and landmarks (`p3m.privacy.face_masks_for_image`, the P3M-10k recipe with
the transition area left out). Any model `p3m.Matter` takes works, the offline default
(selfie-cf) included. Results are journalled per image (`manifest.jsonl`): an interrupted run
resumes; other settings (or `fresh`) compute everything again beside the earlier results,
which are replaced only once the new ones are complete.

    >>> settings = SensitivitySettings(images=(Path("photos"),), model="selfie-cf")
    >>> result = run_sensitivity(settings, Path("out"))
    >>> print(result.table.to_markdown())
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import DatasetError, ExperimentError, ShapeMismatchError
from p3m.evaluation.tables import Cell, Column, ResultTable
from p3m.experiments.events import CellReset, StudyEvent, StudyFinished, StudyStarted
from p3m.experiments.heatmap import DEFAULT_VMAX, heatmap_sheet
from p3m.experiments.runner import (
    NOTHING_WRITTEN,
    CellEvents,
    commit_run_dir,
    file_identity,
    report_resumed,
    stage_run_dir,
)
from p3m.io import atomic_write_text
from p3m.runs import Item, Outcome, RunOptions, run_items
from p3m.vocabulary import ObfuscationMethod, TestStrategy, check_choice

__all__ = [
    "DEFAULT_OBFUSCATIONS",
    "REGIONS",
    "SENSITIVITY_FILES",
    "Obfuscation",
    "SensitivityResult",
    "SensitivitySettings",
    "SensitivityTask",
    "change_statistics",
    "run_sensitivity",
]

logger = logging.getLogger(__name__)

STUDY = "sensitivity"
REGIONS: tuple[str, ...] = ("overall", "face", "band", "rest")
"""The regions |Δα| is averaged over (see the module docstring)."""

SENSITIVITY_FILES = {
    "markdown": "sensitivity.md",
    "csv": "sensitivity.csv",
    "json": "sensitivity.json",
    "per_image": "per_image.csv",
    "heatmaps": "heatmaps",
    "journal": "manifest.jsonl",
    "settings": "settings.json",
}
"""What `run_sensitivity` writes into its output folder."""

_REGION_LABELS = {"overall": "Overall", "face": "Face mask", "band": "Hair/transition band", "rest": "Rest"}
_METHOD_LABELS = {"blur": "Blur", "mosaic": "Mosaic", "mask": "Mask (zeros)"}


@dataclass(frozen=True)
class Obfuscation:
    """One obfuscation: a method (blur, mosaic, mask) and its strength (multiplies the blur
    sigma / mosaic block of `p3m.privacy.obfuscation`; ignored by mask)."""

    method: str
    strength: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.method, ObfuscationMethod, "obfuscation method")
        if not (self.strength > 0 and math.isfinite(self.strength)):
            raise ExperimentError(f"obfuscation strength must be > 0, got {self.strength}")

    @property
    def key(self) -> str:
        """E.g. "blur-x0.5", "blur" (strength 1), "mosaic", "mask" (the CSV's obfuscation column)."""
        if self.method == "mask" or self.strength == 1.0:
            return self.method
        return f"{self.method}-x{self.strength:g}"

    @property
    def label(self) -> str:
        """E.g. "Blur x0.5", "Mosaic", "Mask (zeros)"."""
        name = _METHOD_LABELS[self.method]
        if self.method == "mask" or (self.method == "mosaic" and self.strength == 1.0):
            return name
        return f"{name} x{self.strength:g}"

    @classmethod
    def parse(cls, text: str) -> Obfuscation:
        """"blur", "blur:0.5" (or "blur@0.5", "blur-x0.5"), "mosaic:2", "mask"."""
        spec = text.strip().lower()
        for separator in (":", "@", "-x"):
            if separator in spec:
                method, _, value = spec.partition(separator)
                try:
                    return cls(method.strip(), float(value))
                except ValueError:
                    raise ExperimentError(f"bad obfuscation {text!r}: expected METHOD[:STRENGTH], e.g. blur:0.5") from None
        return cls(spec)


DEFAULT_OBFUSCATIONS: tuple[Obfuscation, ...] = (
    Obfuscation("blur", 0.5),
    Obfuscation("blur", 1.0),
    Obfuscation("blur", 2.0),
    Obfuscation("mosaic"),
    Obfuscation("mask"),
)
"""Blur at half, the recipe's and twice the recipe's strength, mosaic and zeros."""


@dataclass(frozen=True)
class SensitivitySettings:
    """What the sensitivity study runs.

    `images`: image files and/or folders (their images, not recursive); `model`, `weights`,
    `strategy`, `device`: as `p3m.Matter` takes them ("auto" = P3M-Net ViTAE-S when cached,
    else selfie-cf); `max_pixels`: the matting pixel budget (None: Matter's default, 0: none); `alphas`: ground-truth mattes by stem (optional: the band then
    comes from the model's matte and there is no ΔSAD); `facemasks`: face masks by stem (0/255
    PNG; default: detected); `landmarks`: the landmark scheme of detected masks;
    `band_margin`: px the transition band is dilated by; `changed_threshold`: |Δα| above which a
    pixel counts as changed; `heatmap_tile`, `heatmap_vmax`: the heat-map sheet's tile size (px)
    and colour-scale top.
    """

    images: tuple[Path, ...]
    model: str = "auto"
    weights: str | Path | None = None
    alphas: Path | None = None
    facemasks: Path | None = None
    obfuscations: tuple[Obfuscation, ...] = DEFAULT_OBFUSCATIONS
    strategy: str = TestStrategy.hybrid.value
    device: str | None = None
    max_pixels: int | None = None
    landmarks: str = "mediapipe"
    band_margin: int = 3
    changed_threshold: float = 0.1
    heatmap_tile: int = 256
    heatmap_vmax: float = DEFAULT_VMAX


# --------------------------------------------------------------------------- measuring


def change_statistics(
    alpha: np.ndarray, obfuscated_alpha: np.ndarray, regions: Mapping[str, np.ndarray], threshold: float
) -> dict[str, float | None]:
    """|Δα| between two mattes (float32 H x W in [0, 1]): mean per region (None for an empty
    region), the largest change, the % of pixels changed by more than `threshold`, and the SAD
    between the mattes (sum |Δα| / 1000, the official SAD scale)."""
    change = np.abs(obfuscated_alpha.astype(np.float64) - alpha.astype(np.float64))
    stats: dict[str, float | None] = {}
    for name, mask in regions.items():
        stats[f"mean_abs_{name}"] = float(change[mask].mean()) if mask.any() else None
    stats["max_abs"] = float(change.max(initial=0.0))
    stats["changed_pct"] = float((change > threshold).mean() * 100.0)
    stats["sad_change"] = float(change.sum() / 1000.0)
    return stats


def _files(folder: Path | None) -> dict[str, Path] | None:
    from p3m.io import files_by_stem

    return None if folder is None else files_by_stem(folder)


def _expand(images: Sequence[Path]) -> list[Path]:
    from p3m.io import files_by_stem

    found: list[Path] = []
    for path in images:
        path = Path(path).expanduser()
        found.extend(sorted(files_by_stem(path).values()) if path.is_dir() else [path])
    return found


class SensitivityTask:
    """The `p3m.runs.Task` of one image: read it (and its ground truth / face mask), matte it as
    it is and after each obfuscation, measure, write the heat-map sheet. The outcome's details
    hold the face-mask source, region sizes, warnings and one row of numbers per obfuscation."""

    def __init__(self, settings: SensitivitySettings, matter: Any, out_dir: Path) -> None:
        self.settings = settings
        self.matter = matter
        self.heatmaps = out_dir / SENSITIVITY_FILES["heatmaps"]
        self.alphas = _files(settings.alphas)
        self.facemasks = _files(settings.facemasks)

    def item(self, path: Path) -> Item:
        return Item(path.stem, path, {}, path)

    def load(self, item: Item) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        from p3m.io import read_alpha, read_alpha_u8, read_image

        image = read_image(item.payload)
        alpha = facemask = None
        if self.alphas is not None:
            if item.key not in self.alphas:
                raise DatasetError(f"no ground-truth alpha {item.key}.* in the alpha folder", self.settings.alphas)
            alpha = read_alpha(self.alphas[item.key])
            if alpha.shape != image.shape[:2]:
                raise ShapeMismatchError(
                    f"alpha is {alpha.shape[1]}x{alpha.shape[0]}, image is {image.shape[1]}x{image.shape[0]}",
                    self.alphas[item.key],
                )
        if self.facemasks is not None:
            if item.key not in self.facemasks:
                raise DatasetError(f"no face mask {item.key}.* in the face-mask folder", self.settings.facemasks)
            values = read_alpha_u8(self.facemasks[item.key])
            facemask = values >= 128 if values.max(initial=0) > 1 else values > 0
            if facemask.shape != image.shape[:2]:
                raise ShapeMismatchError(
                    f"face mask is {facemask.shape[1]}x{facemask.shape[0]}, image is "
                    f"{image.shape[1]}x{image.shape[0]}",
                    self.facemasks[item.key],
                )
        return image, alpha, facemask

    def _matte(self, image: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(self.matter(image, foreground=False).alpha, np.float32), 0, 1)

    def compute(self, item: Item, loaded: tuple[np.ndarray, np.ndarray | None, np.ndarray | None]) -> dict[str, Any]:
        from p3m.evaluation.metrics import compute_metrics
        from p3m.privacy import face_masks_for_image
        from p3m.privacy.facemask import transition_area
        from p3m.privacy.obfuscation import obfuscate

        image, gt, facemask = loaded
        settings = self.settings
        clean = self._matte(image)
        reference = gt if gt is not None else clean
        warnings: list[str] = []
        face_boxes: list[Any] = []
        if facemask is None:
            facemask, faces, warnings = face_masks_for_image(image, reference, landmarks=settings.landmarks)
            face_boxes = [face.box for face in faces]
            source = "detected"
        else:
            source = "given"
        if not facemask.any():
            if source == "given":
                problem = "its face mask is empty"
            elif faces:
                problem = (
                    f"{len(faces)} face(s) found, but the matte is semi-transparent over all of them "
                    "(0 < alpha < 1 is left unobfuscated): nothing to obfuscate; give face masks "
                    "({facemasks})"
                )
            else:
                problem = "no face found to obfuscate; give a face-mask folder ({facemasks})"
            raise ExperimentError(problem, item.source, options={"facemasks": "DIR"})
        band = transition_area(reference, settings.band_margin) & ~facemask
        regions = {"overall": np.ones_like(facemask), "face": facemask, "band": band, "rest": ~(facemask | band)}
        sad_clean = compute_metrics(clean, gt, metrics=("sad",))["sad"] if gt is not None else None
        rows, obfuscated_images, changes = [], [], []
        for obfuscation in settings.obfuscations:
            obfuscated, parts = obfuscate(
                image, facemask, obfuscation.method, strength=obfuscation.strength, face_boxes=face_boxes
            )
            moved = self._matte(obfuscated)
            row: dict[str, Any] = {
                "obfuscation": obfuscation.key,
                "method": obfuscation.method,
                "strength": obfuscation.strength,
                "parameter": round(float(np.mean([p.parameter for p in parts])), 2) if parts else None,
            }
            row.update(change_statistics(clean, moved, regions, settings.changed_threshold))
            if gt is not None:
                sad = compute_metrics(moved, gt, metrics=("sad",))["sad"]
                row.update({"sad_clean": sad_clean, "sad_obfuscated": sad, "delta_sad": sad - sad_clean})
            rows.append(row)
            obfuscated_images.append(obfuscated)
            changes.append(np.abs(moved - clean))
        sheet = heatmap_sheet(
            image,
            clean,
            obfuscated_images,
            changes,
            [obfuscation.label for obfuscation in settings.obfuscations],
            facemask,
            band,
            tile=settings.heatmap_tile,
            vmax=settings.heatmap_vmax,
        )
        details = {
            "facemask": source,
            "face_pixels": int(facemask.sum()),
            "band_pixels": int(band.sum()),
            "pixels": int(facemask.size),
            "warnings": warnings,
            "rows": rows,
        }
        return {"sheet": sheet, "details": details}

    def write(self, item: Item, result: dict[str, Any]) -> Outcome:
        from p3m.io import write_png

        path = self.heatmaps / f"{item.key}.png"
        write_png(path, result["sheet"])
        return Outcome(outputs={"heatmap": path}, details=result["details"])


# --------------------------------------------------------------------------- the study


@dataclass
class SensitivityResult:
    """The finished study: the table, each image's details (input order), the images that
    failed (name, reason), the model used and the files written."""

    table: ResultTable
    images: dict[str, dict[str, Any]]
    failed: list[tuple[str, str]]
    model: str
    files: dict[str, Path]

    @property
    def failures(self) -> list[tuple[str, str]]:
        return list(self.failed)


def _check(settings: SensitivitySettings) -> None:
    if not settings.images:
        raise ExperimentError("no image given")
    if not settings.obfuscations:
        raise ExperimentError("no obfuscation to measure")
    keys = [o.key for o in settings.obfuscations]
    if len(set(keys)) != len(keys):
        raise ExperimentError(f"an obfuscation is listed twice: {', '.join(keys)}")
    check_choice(settings.strategy, TestStrategy, "test strategy")
    if settings.band_margin < 0:
        raise ExperimentError(f"band margin must be >= 0, got {settings.band_margin}")
    if not 0 < settings.changed_threshold < 1:
        raise ExperimentError(f"changed threshold must be in (0, 1), got {settings.changed_threshold}")
    if settings.heatmap_tile < 32 or not settings.heatmap_vmax > 0:
        raise ExperimentError("heat-map tiles must be >= 32 px and the colour scale > 0")
    for folder in (settings.alphas, settings.facemasks):
        if folder is not None and not Path(folder).is_dir():
            raise DatasetError("folder not found" if not Path(folder).exists() else "not a folder", folder)


def _identity(settings: SensitivitySettings, model: str) -> dict[str, Any]:
    """What the results depend on (a change discards them)."""
    weights = settings.weights
    weights_id: Any = None
    if weights is not None:
        weights_id = file_identity(weights) if Path(weights).expanduser().is_file() else str(weights)
    return {
        "model": model,
        "weights": weights_id,
        "strategy": settings.strategy,
        "max_pixels": settings.max_pixels,
        "alphas": None if settings.alphas is None else str(Path(settings.alphas).resolve()),
        "facemasks": None if settings.facemasks is None else str(Path(settings.facemasks).resolve()),
        "landmarks": settings.landmarks if settings.facemasks is None else None,
        "obfuscations": [[o.method, o.strength] for o in settings.obfuscations],
        "band_margin": settings.band_margin,
        "changed_threshold": settings.changed_threshold,
        "heatmap": [settings.heatmap_tile, settings.heatmap_vmax],
    }


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(present)) if present else None


def _columns(with_gt: bool) -> list[tuple[str, str, str]]:
    """(key, label, group) of the table's numeric columns."""
    columns = [(f"mean_abs_{region}", _REGION_LABELS[region], "Mean |Δα|") for region in REGIONS]
    columns += [("max_abs", "Max |Δα|", "Whole image"), ("changed_pct", "Changed (%)", "Whole image"),
                ("sad_change", "SAD(α, α')", "Whole image")]  # fmt: skip
    if with_gt:
        columns += [("sad_clean", "SAD", "Against the ground truth"), ("sad_obfuscated", "SAD obfuscated", "Against the ground truth"),
                    ("delta_sad", "ΔSAD", "Against the ground truth")]  # fmt: skip
    return columns


def _digits(key: str) -> int:
    return 4 if key.startswith("mean_abs") or key == "max_abs" else 2


def _table(
    settings: SensitivitySettings,
    images: Mapping[str, Mapping[str, Any]],
    model: str,
    failed: int,
    model_note: str | None = None,
) -> ResultTable:
    with_gt = settings.alphas is not None
    numeric = _columns(with_gt)
    columns = [Column("", "Obfuscation"), Column("parameter", "Mean parameter (px)")]
    columns += [Column(key, label, group) for key, label, group in numeric]
    rows = []
    for obfuscation in settings.obfuscations:
        entries = [row for details in images.values() for row in details["rows"] if row["obfuscation"] == obfuscation.key]
        # Zeros have no parameter: the cell is empty in every file (its recorded 0.0 means nothing).
        parameter = None if obfuscation.method == "mask" else _mean([row.get("parameter") for row in entries])
        cells = [Cell(obfuscation.label), Cell("–" if parameter is None else f"{parameter:.1f}", parameter)]
        for key, _, _ in numeric:
            value = _mean([row.get(key) for row in entries])
            cells.append(Cell("–" if value is None else f"{value:.{_digits(key)}f}", value))
        rows.append(cells)
    detected = sum(1 for details in images.values() if details.get("facemask") == "detected")
    notes = [
        f"{model}; {len(images)} image(s); means over images (each image weighs the same).",
        "|Δα|: absolute change of the alpha matte (0..1) between the image as it is and with its face "
        "obfuscated (p3m.privacy.obfuscation; pixels outside the face mask unchanged).",
        f"Regions: face mask (the obfuscated pixels); hair/transition band (0 < α < 1 of the "
        f"{'ground truth' if with_gt else 'model’s matte of the unobfuscated image'}, dilated by "
        f"{settings.band_margin} px, outside the face mask); rest (all other pixels).",
        f"Changed: pixels with |Δα| > {settings.changed_threshold:g}; SAD(α, α'): sum of |Δα| / 1000 (official SAD scale)."
        + (" SAD against the ground truth on the official scale; ΔSAD = obfuscated − unobfuscated." if with_gt else ""),
        "Parameter: blur sigma / mosaic block in pixels (obfuscation strength x the recipe's, scaled to each face).",
        f"Face masks: {detected} detected with p3m's detection and {settings.landmarks} landmarks, "
        f"{len(images) - detected} given.",
    ]
    if model_note:
        notes.append(model_note)
    if failed:
        notes.append(f"{failed} image(s) failed (see the run's output and manifest.jsonl).")
    title = "Obfuscation sensitivity: how far face obfuscation moves the matte"
    return ResultTable(title, columns, rows, notes)


def _per_image_csv(images: Mapping[str, Mapping[str, Any]], with_gt: bool) -> str:
    keys = ["image", "obfuscation", "method", "strength", "parameter", "facemask", "face_pixels", "band_pixels"]
    keys += [key for key, _, _ in _columns(with_gt)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    for name, details in images.items():
        for row in details["rows"]:
            merged = {"image": name, **{k: details.get(k) for k in ("facemask", "face_pixels", "band_pixels")}, **row}
            writer.writerow(["" if merged.get(key) is None else merged.get(key) for key in keys])
    return buffer.getvalue()


def run_sensitivity(
    settings: SensitivitySettings,
    out_dir: Path,
    *,
    fresh: bool = False,
    on_event: Callable[[StudyEvent], None] | None = None,
) -> SensitivityResult:
    """Run the study over `settings.images` into `out_dir` (see the module docstring).

    Builds the model first (ModelNotFoundError, CheckpointError, MissingDependencyError stop
    the run here), then goes through the images on the folder-run engine: an image that cannot
    be read, has no face, or lacks its ground truth or face mask is recorded with its reason
    and the rest goes on. When every image fails nothing is written (the files of an earlier
    run stay; `files` is empty). Emits `StudyStarted`, `CellProgress` (one cell,
    "sensitivity"), `StudyResumed` (images kept from an earlier run) and `StudyFinished`.
    """
    from p3m.inference import Matter

    _check(settings)
    emit = on_event or (lambda event: None)
    out_dir = Path(out_dir)
    from p3m.inference.backends import MATTE_MAX_PIXELS

    budget = MATTE_MAX_PIXELS if settings.max_pixels is None else settings.max_pixels or None
    matter = Matter(settings.model, settings.weights, settings.strategy, settings.device, budget)
    model = matter.name
    paths = _expand(settings.images)
    if not paths:
        raise ExperimentError(f"no image found in {', '.join(str(path) for path in settings.images)}")
    results = [SENSITIVITY_FILES[kind] for kind in ("journal", "heatmaps", "per_image", "markdown", "csv", "json")]
    # Results replacing earlier ones are computed beside them and moved in once complete.
    work, reason = stage_run_dir(out_dir, _identity(settings, model), fresh, results)
    if reason is not None:
        emit(CellReset(STUDY, reason, reason.settings, reason.fresh))
    task = SensitivityTask(settings, matter, work)
    items = [task.item(path) for path in paths]
    journal = work / SENSITIVITY_FILES["journal"]
    emit(StudyStarted(STUDY, (STUDY,), len(items)))
    forward = CellEvents(emit, STUDY, 0, 1)
    report = run_items(items, task, journal=journal, options=RunOptions(resume=True), on_event=forward)
    images: dict[str, dict[str, Any]] = {}
    failed: list[tuple[str, str]] = []
    for record in report.records:
        if record.failed or "rows" not in record.details:
            failed.append((record.key, record.error or "no result recorded"))
        else:
            images[record.key] = dict(record.details)
    report_resumed(STUDY, forward.kept, len(items), "images", out_dir, emit)
    emit(StudyFinished(STUDY, len(failed)))

    with_gt = settings.alphas is not None
    table = _table(settings, images, model, len(failed), matter.note)
    files = {kind: out_dir / name for kind, name in SENSITIVITY_FILES.items() if kind not in ("journal", "settings")}
    summary = {
        "format": "p3m-experiment/1",
        "study": STUDY,
        "title": table.title,
        "model": model,
        "settings": {
            **_identity(settings, model),
            "weights": None if settings.weights is None else str(settings.weights),
            "images": [str(path) for path in settings.images],
        },
        "images": {
            name: {**details, "heatmap": f"{SENSITIVITY_FILES['heatmaps']}/{name}.png"} for name, details in images.items()
        },
        "failed": [{"name": name, "reason": reason} for name, reason in failed],
        "notes": table.notes,
    }
    if not images:
        # Every image failed: the tables of an earlier run in out_dir stay as they were.
        commit_run_dir(work, out_dir, results, complete=False)
        table.notes.append(NOTHING_WRITTEN.format(out_dir=out_dir))
        return SensitivityResult(table, images, failed, model, {})
    written = {kind: work / path.name for kind, path in files.items()}
    atomic_write_text(written["markdown"], table.to_markdown())
    atomic_write_text(written["csv"], table.to_csv())
    atomic_write_text(written["per_image"], _per_image_csv(images, with_gt))
    atomic_write_text(written["json"], json.dumps(summary, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    commit_run_dir(work, out_dir, results)
    return SensitivityResult(table, images, failed, model, files)
