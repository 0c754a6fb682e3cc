"""Table 8: one model on P3M-500-P with its faces obfuscated by each method (blur, mosaic, zeros).

P3M-10k hides faces by blurring them; the paper's Table 8 asks how a matting model fares when
the faces are hidden otherwise. Every test image of P3M-500-P is obfuscated inside its face
mask (the set's `facemask/` folder) with `p3m.privacy.obfuscation.obfuscate` (blur sigma and
mosaic block size scale with the face, every pixel outside the mask bit-identical) and matted
with the official procedure; one row per method.

Which faces are obfuscated:

* with `normal_images` (the unobfuscated P3M-500-P photos, not in the public release; matched by
  stem), each method is applied to the normal faces, as in the paper, and a first row
  "None (normal faces)" scores the normal images themselves;
* without them, the released P3M-500-P images are the source: the blurring row is the set as
  released (its faces are blurred already) and mosaic / zeros are applied on top of those
  blurred faces. Zeros hide everything either way; mosaic blocks average the blurred face
  almost as they would the sharp one. The table's notes say which source was used.

Each row is a cell of `p3m.experiments.runner` (predictions, per-image metrics.csv,
metrics.json, journal; resumable).

    >>> result = run_obfuscation_study(ObfuscationSettings(weights=Path("r34.pth"), data_root=Path("P3M-10k")), Path("out"))
    >>> print(result.table.to_markdown())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p3m.data.layout import Sample
from p3m.errors import DatasetError, ExperimentError, ShapeMismatchError
from p3m.evaluation.tables import Cell, Column
from p3m.experiments.events import StudyEvent
from p3m.experiments.matting import ImageTransform, identify_checkpoint, model_cell
from p3m.experiments.runner import (
    TABLE_METRICS,
    CellSpec,
    Group,
    ModelCache,
    StudyResult,
    cell_notes,
    check_metrics,
    find_test_samples,
    grouped_table,
    run_cells,
    with_normal_images,
    write_study,
)
from p3m.vocabulary import ObfuscationMethod, TestSet, TestStrategy, check_choice, values

__all__ = ["NONE", "ObfuscationSettings", "read_facemask", "row_label", "run_obfuscation_study"]

NONE = "none"
"""The row of the unobfuscated (normal) faces."""

STUDY = "obfuscation"
SET = TestSet.P.value

_LABELS = {NONE: "None (normal faces)", "blur": "Blurring", "mosaic": "Mosaicing", "mask": "Masking (zeros)"}


def row_label(method: str, released_blur: bool = False) -> str:
    """The row's label in Table 8 ("Blurring (as released)" for the released images' own blur)."""
    return "Blurring (as released)" if released_blur and method == "blur" else _LABELS[method]


@dataclass(frozen=True)
class ObfuscationSettings:
    """What the obfuscation study runs.

    `weights`: the checkpoint (a file, or a model name with cached weights); `model`: its
    registered variant (None: identified from the checkpoint); `data_root`: a P3M-10k layout
    whose P3M-500-P has `facemask/`; `methods`: rows, of blur / mosaic / mask (paper order);
    `normal_images`: the normal P3M-500-P photos (adds the "none" row, see the module docstring);
    `strength`: multiplies the blur sigma and mosaic block (`obfuscate`'s strength); `strategy`:
    hybrid (the paper's) or resize; `limit`: only the first N images; `metrics`: table columns.
    """

    weights: Path
    data_root: Path
    model: str | None = None
    methods: tuple[str, ...] = values(ObfuscationMethod)
    normal_images: Path | None = None
    strength: float = 1.0
    strategy: str = TestStrategy.hybrid.value
    device: str | None = None
    limit: int | None = None
    metrics: tuple[str, ...] = TABLE_METRICS


def read_facemask(sample: Sample) -> np.ndarray:
    """The sample's face mask as bool H x W (P3M-10k: 0 / 255 PNG; a 0 / 1 file works too)."""
    from p3m.io import read_alpha_u8

    if sample.facemask is None:
        raise DatasetError("no face mask for this image in facemask/", sample.image)
    values_u8 = read_alpha_u8(sample.facemask)
    return values_u8 >= 128 if values_u8.max(initial=0) > 1 else values_u8 > 0


def _obfuscator(method: str, strength: float) -> ImageTransform:
    from p3m.privacy.obfuscation import obfuscate

    def transform(image: np.ndarray, sample: Sample) -> tuple[np.ndarray, dict[str, Any]]:
        facemask = read_facemask(sample)
        if facemask.shape != image.shape[:2]:
            raise ShapeMismatchError(
                f"face mask is {facemask.shape[1]}x{facemask.shape[0]}, image is "
                f"{image.shape[1]}x{image.shape[0]}",
                sample.facemask,
            )
        obfuscated, regions = obfuscate(image, facemask, method, strength=strength)
        return obfuscated, {
            "obfuscation": {
                "method": method,
                "pixels": int(facemask.sum()),
                "parameters": [region.parameter for region in regions],
            }
        }

    return transform


def _check(settings: ObfuscationSettings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    methods = tuple(dict.fromkeys(check_choice(m, ObfuscationMethod, "obfuscation method").value for m in settings.methods))
    if not methods:
        raise ExperimentError("no obfuscation method to compare")
    check_choice(settings.strategy, TestStrategy, "test strategy")
    if settings.strength <= 0:
        raise ExperimentError(f"strength must be > 0, got {settings.strength}")
    if settings.limit is not None and settings.limit < 1:
        raise ExperimentError(f"limit must be >= 1, got {settings.limit}")
    return methods, check_metrics(settings.metrics)


def _samples(settings: ObfuscationSettings) -> list[Sample]:
    samples = find_test_samples(settings.data_root, SET, settings.limit)
    missing = [sample.name for sample in samples if sample.facemask is None]
    if missing:
        raise DatasetError(
            f"{SET} has no facemask/ folder (or it lacks {missing[0]}): the obfuscation study "
            "obfuscates inside the face masks",
            settings.data_root,
        )
    return samples


def run_obfuscation_study(
    settings: ObfuscationSettings,
    out_dir: Path,
    *,
    fresh: bool = False,
    on_event: Callable[[StudyEvent], None] | None = None,
) -> StudyResult:
    """Run Table 8 into `out_dir` (one cell per row, then obfuscation.md / .csv / .json).

    Raises ExperimentError / DatasetError / CheckpointError for bad settings, a data root
    without face masks or normal images that do not cover the set, before anything runs.
    Images that fail are recorded (`StudyResult.failures`) and the rest goes on.
    """
    from p3m.models.ablation import paper_label
    from p3m.models.hub import resolve_weights

    methods, metrics = _check(settings)
    weights = resolve_weights(settings.weights, model=settings.model)
    model = settings.model or identify_checkpoint(weights)
    released = _samples(settings)
    source = released if settings.normal_images is None else with_normal_images(released, settings.normal_images, SET)
    source_name = "released (blurred)" if settings.normal_images is None else str(settings.normal_images.resolve())
    rows = ([NONE] if settings.normal_images is not None else []) + list(methods)
    models = ModelCache(settings.device)
    cells: list[CellSpec] = []
    for method in rows:
        released_blur = method == "blur" and settings.normal_images is None
        if method == NONE or released_blur:
            samples, transform, described = (source if method == NONE else released), None, {"method": method}
        else:
            samples = source
            transform = _obfuscator(method, settings.strength)
            described = {"method": method, "strength": settings.strength, "inside": "facemask/"}
        described["faces"] = source_name
        label = row_label(method, released_blur)
        cells.append(
            model_cell(
                method,
                SET,
                samples,
                model,
                weights,
                settings.strategy,
                models,
                label=label,
                record={
                    "method": f"obfuscation-{method}",
                    "method_label": label,
                    "set_name": SET,
                    "extra": {"obfuscation": described},
                },
                transform=transform,
                transform_settings=described,
            )
        )
    results = run_cells(STUDY, cells, out_dir, fresh=fresh, on_event=on_event)

    model_label = paper_label(model) or model
    notes = [
        "Official scale: SAD in 1000s of alpha units, MSE/MAD as fractions; lower is better, best in bold.",
        (
            f"Faces obfuscated inside P3M-500-P's facemask/ with p3m.privacy.obfuscation "
            f"(strength {settings.strength:g}: blur sigma = 0.12 x face size, mosaic blocks = face size / 7, "
            "masking = zeros); every pixel outside the mask unchanged."
        ),
        (
            f"Source faces: the normal P3M-500-P images in {settings.normal_images}."
            if settings.normal_images is not None
            else "Source faces: the released P3M-500-P images (already blurred): the blurring row is the set as "
            "released, mosaic and zeros are applied on top of the blurred faces; pass the normal images for "
            "the paper's setting."
        ),
        f"{model} ({weights.name}), {settings.strategy} test strategy.",
    ]
    empty = sorted(
        {name for result in results for name, detail in result.details.items() if detail.get("obfuscation", {}).get("pixels") == 0}
    )
    if empty:
        notes.append(f"{len(empty)} image(s) have an empty face mask (nothing obfuscated), e.g. {empty[0]}.")
    notes += cell_notes(results)
    title = f"Table 8: {model_label} on {SET} with the faces obfuscated by each method"
    table = grouped_table(
        title,
        [Column("", "Obfuscation")],
        [([Cell(result.spec.name)], {SET: result.means}) for result in results],
        [Group(SET, TestSet.P.label)],
        metrics,
        notes,
    )
    study_settings = {
        "model": model,
        "weights": str(weights),
        "data_root": str(settings.data_root),
        "normal_images": None if settings.normal_images is None else str(settings.normal_images),
        "methods": list(methods),
        "strength": settings.strength,
        "strategy": settings.strategy,
        "limit": settings.limit,
        "metrics": list(metrics),
    }
    return write_study(STUDY, title, table, results, out_dir, study_settings)
