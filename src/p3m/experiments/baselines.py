"""Table 2: trimap-based traditional methods on the blurred and the normal images of P3M-500-P.

Does face obfuscation hurt methods that only look at low-level colour statistics around a
trimap? Each baseline of `p3m.evaluation.baselines` (closed-form, KNN, large-kernel, random
walk, shared, learning-based matting; pymatting) solves every P3M-500-P image twice with the
set's own trimaps: once as released (faces blurred) and once in its normal version. The
normal images are not part of the public release: `normal_images` names the folder holding
them (matched by stem; `p3m synth-data` writes them to `validation/P3M-500-P/original_image/`).
Scores are those of `p3m baseline` / `p3m eval` (the official convention); images above
`max_pixels` are solved at a reduced size, as `p3m baseline` does (recorded per image).

    >>> settings = BaselineStudySettings(Path("P3M-10k"), Path("P3M-500-P-normal"), methods=("cf", "knn"))
    >>> print(run_baseline_study(settings, Path("out")).table.to_markdown())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from p3m.errors import ExperimentError
from p3m.evaluation.baselines import BASELINES, DEFAULT_MAX_PIXELS, BaselineTask, get_baseline
from p3m.evaluation.tables import Cell, Column
from p3m.experiments.events import StudyEvent
from p3m.experiments.runner import (
    TABLE_METRICS,
    CellResult,
    CellSpec,
    Group,
    StudyResult,
    cell_notes,
    check_metrics,
    find_test_samples,
    grouped_table,
    run_cells,
    with_normal_images,
    write_study,
)
from p3m.vocabulary import TestSet

__all__ = ["VERSIONS", "BaselineStudySettings", "run_baseline_study"]

STUDY = "baselines"
SET = TestSet.P.value
VERSIONS: tuple[Group, ...] = (
    Group("blurred", "Blurred faces (B)"),
    Group("normal", "Normal faces (N)"),
)
"""The two versions of P3M-500-P (the table's column groups)."""


@dataclass(frozen=True)
class BaselineStudySettings:
    """What Table 2 runs: `methods` (registered baselines, default all six, in the paper's
    order), `max_pixels` (solve budget; None = full resolution), `limit` (first N images) and
    `metrics` (table columns)."""

    data_root: Path
    normal_images: Path
    methods: tuple[str, ...] = tuple(BASELINES)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    limit: int | None = None
    metrics: tuple[str, ...] = TABLE_METRICS


def run_baseline_study(
    settings: BaselineStudySettings,
    out_dir: Path,
    *,
    fresh: bool = False,
    on_event: Callable[[StudyEvent], None] | None = None,
) -> StudyResult:
    """Run Table 2 into `out_dir`: one cell per (method, version), then baselines.md / .csv / .json.

    Raises BaselineError for an unknown method, DatasetError when the normal images do not cover
    the set, before anything runs; images that fail are recorded and the rest goes on.
    """
    import pymatting

    metrics = check_metrics(settings.metrics)
    methods = [get_baseline(name) for name in dict.fromkeys(settings.methods)]
    if not methods:
        raise ExperimentError("no baseline method to run")
    if settings.max_pixels is not None and settings.max_pixels < 0:
        raise ExperimentError(f"max_pixels must be >= 0 (0 = full resolution), got {settings.max_pixels}")
    if settings.limit is not None and settings.limit < 1:
        raise ExperimentError(f"limit must be >= 1, got {settings.limit}")
    max_pixels = settings.max_pixels or None
    blurred = find_test_samples(settings.data_root, SET, settings.limit)
    without_trimap = [sample.name for sample in blurred if sample.trimap is None]
    if without_trimap:
        raise ExperimentError(f"{SET} image {without_trimap[0]} has no trimap; the baselines use the set's own")
    versions = {"blurred": blurred, "normal": with_normal_images(blurred, settings.normal_images, SET)}
    implementation = f"pymatting {getattr(pymatting, '__version__', '?')}"
    cells = []
    for baseline in methods:
        for version in VERSIONS:

            def make_task(predictions: Path, baseline=baseline) -> BaselineTask:
                return BaselineTask(baseline, predictions, max_pixels, "dataset", None, None, evaluate=True)

            source = "released" if version.key == "blurred" else str(settings.normal_images)
            cells.append(
                CellSpec(
                    row=baseline.name,
                    group=version.key,
                    samples=tuple(versions[version.key]),
                    make_task=make_task,
                    settings={
                        "method": baseline.name,
                        "solver": baseline.solver,
                        "solver_kwargs": {k: dict(v) for k, v in baseline.solver_kwargs.items()},
                        "implementation": implementation,
                        "max_pixels": max_pixels,
                        "images": source,
                    },
                    record={
                        "method": baseline.name,
                        "method_label": baseline.label,
                        "set_name": SET,
                        "extra": {
                            "images": version.key,
                            "image_source": source,
                            "citation": baseline.citation,
                            "implementation": f"{implementation} {baseline.solver}",
                            "trimaps": {"source": "dataset"},
                            "budget": {"max_pixels": max_pixels},
                        },
                    },
                    label=f"{baseline.label} on {version.key} images",
                )
            )
    results = run_cells(STUDY, cells, out_dir, fresh=fresh, on_event=on_event)

    by_row: dict[str, dict[str, CellResult]] = {}
    for result in results:
        by_row.setdefault(result.spec.row, {})[result.spec.group] = result
    rows = [
        ([Cell(baseline.label)], {group: result.means for group, result in by_row[baseline.name].items()})
        for baseline in methods
    ]
    resized = sorted(
        {
            name
            for result in results
            for name, detail in result.details.items()
            if isinstance(detail.get("solve"), dict) and detail["solve"].get("resized")
        }
    )
    notes = [
        "Official scale: SAD in 1000s of alpha units, MSE/MAD as fractions; lower is better, best in bold.",
        f"Trimap-based, with P3M-500-P's own trimaps; {implementation}. "
        + ", ".join(f"{b.label}: {b.title} ({b.citation.split('. ')[0]})" for b in methods)
        + ".",
        f"Normal images: {settings.normal_images}.",
    ]
    if resized:
        notes.append(
            f"{len(resized)} image(s) above {max_pixels:,} pixels solved at a reduced size, alpha upsampled "
            "bilinearly and the known trimap regions re-imposed (as p3m baseline does)."
        )
    notes += cell_notes(results)
    title = "Table 2: trimap-based traditional methods on the blurred and normal images of P3M-500-P"
    table = grouped_table(title, [Column("", "Method")], rows, VERSIONS, metrics, notes)
    study_settings = {
        "data_root": str(settings.data_root),
        "normal_images": str(settings.normal_images),
        "methods": [baseline.name for baseline in methods],
        "max_pixels": max_pixels,
        "limit": settings.limit,
        "metrics": list(metrics),
    }
    return write_study(STUDY, title, table, results, out_dir, study_settings)
