"""Table 7: the integration modules of P3M-Net ablated, each row's checkpoint on P3M-500-P/NP.

The rows are `p3m.models.ablation.ABLATIONS` (Basic, +TFI, +TFI+sBFI, +TFI+dBFI, the full
P3M-Net) on one backbone; each row's checkpoint is a model of that registered variant
(`basic-r34`, `p3mnet-r34-tfi`, ..., `p3mnet-r34`) trained by the user (`p3m train --model ...`)
and is evaluated on each test set with the official procedure. The table lists, as the
paper's does, the modules each row keeps and its parameter count (distinct parameters, as
Table 7 counts them: 37.67M ... 39.48M on ResNet-34) next to the metrics; a row given no
checkpoint keeps its counts and shows "–" for the metrics.

    >>> checkpoints = {"basic": Path("basic.pth"), "full": Path("p3mnet.pth")}
    >>> result = run_ablation_study(AblationSettings(checkpoints, data_root=Path("P3M-10k")), Path("out"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from p3m.errors import ExperimentError
from p3m.evaluation.tables import Cell, Column
from p3m.experiments.events import StudyEvent
from p3m.experiments.matting import model_cell
from p3m.experiments.runner import (
    TABLE_METRICS,
    CellResult,
    Group,
    ModelCache,
    StudyResult,
    cell_notes,
    check_metrics,
    checkpoint_note,
    find_test_samples,
    grouped_table,
    run_cells,
    write_study,
)
from p3m.models.ablation import ABLATIONS
from p3m.vocabulary import TestSet, TestStrategy, check_choice

__all__ = ["ROW_KEYS", "AblationSettings", "run_ablation_study"]

STUDY = "ablation"
DEFAULT_SETS: tuple[str, ...] = (TestSet.P.value, TestSet.NP.value)


ROW_KEYS: tuple[str, ...] = tuple(ablation.key for ablation in ABLATIONS)
"""The rows' keys (`--checkpoints basic=...,tfi=...`), as `p3m.models.ablation.ABLATIONS`."""


@dataclass(frozen=True)
class AblationSettings:
    """What the ablation study runs: `checkpoints` maps row keys (basic, tfi, tfi-sbfi,
    tfi-dbfi, full) to checkpoint files of the variants on `backbone` (r34, swin-t, vitae-s);
    `sets` the test sets (columns); `strategy`, `device`, `limit` (first N images), `metrics`
    (table columns) as in the other studies."""

    checkpoints: Mapping[str, Path]
    data_root: Path
    backbone: str = "r34"
    sets: tuple[str, ...] = DEFAULT_SETS
    strategy: str = TestStrategy.hybrid.value
    device: str | None = None
    limit: int | None = None
    metrics: tuple[str, ...] = TABLE_METRICS


def _check(settings: AblationSettings) -> tuple[list[str], tuple[str, ...]]:
    from p3m.models.ablation import BACKBONES

    if settings.backbone not in BACKBONES:
        raise ExperimentError(f"unknown backbone {settings.backbone!r} (backbones: {', '.join(BACKBONES)})")
    unknown = [key for key in settings.checkpoints if key not in ROW_KEYS]
    if unknown or not settings.checkpoints:
        raise ExperimentError(
            f"checkpoints: unknown row(s) {', '.join(unknown) or '(none given)'}; Table 7's rows are {', '.join(ROW_KEYS)}"
        )
    sets = []
    for name in settings.sets:
        test_set = TestSet.parse(name)
        if test_set is None:
            raise ExperimentError(f"unknown test set {name!r} (use P3M-500-P, P3M-500-NP or RWP)")
        sets.append(test_set.value)
    if not sets:
        raise ExperimentError("no test set to evaluate on")
    check_choice(settings.strategy, TestStrategy, "test strategy")
    if settings.limit is not None and settings.limit < 1:
        raise ExperimentError(f"limit must be >= 1, got {settings.limit}")
    return list(dict.fromkeys(sets)), check_metrics(settings.metrics)


def run_ablation_study(
    settings: AblationSettings,
    out_dir: Path,
    *,
    fresh: bool = False,
    on_event: Callable[[StudyEvent], None] | None = None,
) -> StudyResult:
    """Run Table 7 into `out_dir`: one cell per (row with a checkpoint, test set), then
    ablation.md / .csv / .json. A checkpoint of another variant than its row's stops the study
    with a CheckpointError naming the file (before its row runs)."""
    from p3m.models.ablation import ablation_parameter_counts, paper_label

    sets, metrics = _check(settings)
    samples = {name: find_test_samples(settings.data_root, name, settings.limit) for name in sets}
    counts = ablation_parameter_counts(settings.backbone)
    models = ModelCache(settings.device)
    cells = []
    for ablation in ABLATIONS:
        checkpoint = settings.checkpoints.get(ablation.key)
        if checkpoint is None:
            continue
        model = ablation.integration.variant_name(settings.backbone)
        for set_name in sets:
            cells.append(
                model_cell(
                    ablation.key,
                    set_name,
                    samples[set_name],
                    model,
                    checkpoint,
                    settings.strategy,
                    models,
                    label=f"{ablation.label.split(' (')[0]} on {TestSet(set_name).label}",
                    record={
                        "method": model,
                        "method_label": ablation.label,
                        "set_name": set_name,
                        "extra": {"parameters": counts[ablation.key], "ablation": ablation.key},
                    },
                )
            )
    results = run_cells(STUDY, cells, out_dir, fresh=fresh, on_event=on_event)

    by_row: dict[str, dict[str, CellResult]] = {}
    for result in results:
        by_row.setdefault(result.spec.row, {})[result.spec.group] = result
    rows = []
    for ablation in ABLATIONS:
        modules = ablation.integration
        lead = [
            Cell(ablation.label),
            Cell("✓" if modules.tfi else ""),
            Cell("✓" if modules.sbfi else ""),
            Cell("✓" if modules.dbfi else ""),
            Cell(f"{counts[ablation.key] / 1e6:.2f}", counts[ablation.key] / 1e6),
        ]
        rows.append((lead, {group: result.means for group, result in by_row.get(ablation.key, {}).items()}))
    backbone_label = (paper_label(f"p3mnet-{settings.backbone}") or settings.backbone).removeprefix("P3M-Net ")
    missing = [ablation.label for ablation in ABLATIONS if ablation.key not in settings.checkpoints]
    notes = [
        "Official scale: SAD in 1000s of alpha units, MSE/MAD as fractions; lower is better, best in bold.",
        "Params: distinct parameters of the registered variant (shared tensors once, unused heads included), "
        "as Table 7 counts them.",
        checkpoint_note(settings.strategy, settings.checkpoints),
    ]
    if missing:
        notes.append(f"No checkpoint given for {', '.join(missing)}: metrics shown as –.")
    notes += cell_notes(results)
    title = f"Table 7: ablation of the integration modules, P3M-Net {backbone_label}"
    table = grouped_table(
        title,
        [Column("", "Method"), Column("", "TFI"), Column("", "sBFI"), Column("", "dBFI"), Column("params_m", "Params (M)")],
        rows,
        [Group(name, TestSet(name).label) for name in sets],
        metrics,
        notes,
    )
    study_settings = {
        "backbone": settings.backbone,
        "checkpoints": {key: str(path) for key, path in settings.checkpoints.items()},
        "data_root": str(settings.data_root),
        "sets": sets,
        "strategy": settings.strategy,
        "limit": settings.limit,
        "metrics": list(metrics),
    }
    extra = {"parameters": {ablation.key: counts[ablation.key] for ablation in ABLATIONS}}
    return write_study(STUDY, title, table, results, out_dir, study_settings, extra)
