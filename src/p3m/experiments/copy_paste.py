"""Tables 9/10: P3M-CP, the copy-and-paste of public faces, on P3M-500-P and P3M-500-NP.

Four trainings of one P3M-Net variant are compared, each a row:

==========  ===========================================  ==================  =================
key         training                                     on P3M-500-P        on P3M-500-NP
==========  ===========================================  ==================  =================
none        face-blurred P3M-10k, no P3M-CP              B:B                 B:N
icp         face-blurred P3M-10k + image-level P3M-CP    B:B                 B:N
fcp         face-blurred P3M-10k + feature-level P3M-CP  B:B                 B:N
normal      normal P3M-10k images (the upper bound)      (N:B, not a PPT     N:N
                                                         protocol)
==========  ===========================================  ==================  =================

Each checkpoint is evaluated on both test sets with the official procedure; every cell's
metrics.json carries its training images and protocol, so `p3m table --protocols` can lay the
same results out as the protocol table. The paper reports P3M-CP on several backbones (one
table per backbone family); run the study once per backbone.

    >>> checkpoints = {"none": Path("bb.pth"), "fcp": Path("fcp.pth"), "normal": Path("nn.pth")}
    >>> result = run_copy_paste_study(CopyPasteSettings(checkpoints, data_root=Path("P3M-10k")), Path("out"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from p3m.errors import ExperimentError
from p3m.evaluation.tables import Cell, Column
from p3m.experiments.events import StudyEvent
from p3m.experiments.matting import identify_checkpoint, model_cell
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
from p3m.vocabulary import Protocol, TestSet, TestStrategy, TrainingImages, check_choice

__all__ = ["ROWS", "CopyPasteRow", "CopyPasteSettings", "run_copy_paste_study"]

STUDY = "copy-paste"
SETS: tuple[str, ...] = (TestSet.P.value, TestSet.NP.value)


@dataclass(frozen=True)
class CopyPasteRow:
    """A row of Tables 9/10: its key, label, P3M-CP mode and training images."""

    key: str
    label: str
    cp_mode: str
    training: TrainingImages


ROWS: tuple[CopyPasteRow, ...] = (
    CopyPasteRow("none", "w/o P3M-CP", "none", TrainingImages.B),
    CopyPasteRow("icp", "P3M-CP (ICP)", "icp", TrainingImages.B),
    CopyPasteRow("fcp", "P3M-CP (FCP)", "fcp", TrainingImages.B),
    CopyPasteRow("normal", "Normal training images", "none", TrainingImages.N),
)
"""The rows, in the paper's order; `--checkpoints none=...,icp=...,fcp=...,normal=...`."""

ROW_KEYS: tuple[str, ...] = tuple(row.key for row in ROWS)


@dataclass(frozen=True)
class CopyPasteSettings:
    """What the P3M-CP study runs: `checkpoints` maps row keys (none, icp, fcp, normal) to
    checkpoint files; `model` their registered variant (None: identified from each file);
    `strategy`, `device`, `limit` (first N images), `metrics` (table columns)."""

    checkpoints: Mapping[str, Path]
    data_root: Path
    model: str | None = None
    strategy: str = TestStrategy.hybrid.value
    device: str | None = None
    limit: int | None = None
    metrics: tuple[str, ...] = TABLE_METRICS


def _check(settings: CopyPasteSettings) -> tuple[str, ...]:
    unknown = [key for key in settings.checkpoints if key not in ROW_KEYS]
    if unknown or not settings.checkpoints:
        raise ExperimentError(
            f"checkpoints: unknown row(s) {', '.join(unknown) or '(none given)'}; the rows are {', '.join(ROW_KEYS)}"
        )
    if settings.model is not None:
        from p3m.models import get_spec

        get_spec(settings.model)  # ModelNotFoundError listing the registered models
    check_choice(settings.strategy, TestStrategy, "test strategy")
    if settings.limit is not None and settings.limit < 1:
        raise ExperimentError(f"limit must be >= 1, got {settings.limit}")
    return check_metrics(settings.metrics)


def run_copy_paste_study(
    settings: CopyPasteSettings,
    out_dir: Path,
    *,
    fresh: bool = False,
    on_event: Callable[[StudyEvent], None] | None = None,
) -> StudyResult:
    """Run Tables 9/10 into `out_dir`: one cell per (row with a checkpoint, test set), then
    copy-paste.md / .csv / .json. Rows are evaluated in the paper's order."""
    from p3m.models.ablation import paper_label

    metrics = _check(settings)
    samples = {name: find_test_samples(settings.data_root, name, settings.limit) for name in SETS}
    models = ModelCache(settings.device)
    variants = {key: settings.model or identify_checkpoint(path) for key, path in settings.checkpoints.items()}
    cells = []
    for row in ROWS:
        checkpoint = settings.checkpoints.get(row.key)
        if checkpoint is None:
            continue
        for set_name in SETS:
            protocol = Protocol.of(row.training.value, set_name)
            cells.append(
                model_cell(
                    row.key,
                    set_name,
                    samples[set_name],
                    variants[row.key],
                    checkpoint,
                    settings.strategy,
                    models,
                    label=f"{row.label} on {TestSet(set_name).label}",
                    record={
                        "method": f"{variants[row.key]}-cp-{row.key}",
                        "method_label": row.label,
                        "set_name": set_name,
                        "training_protocol": row.training.value,
                        "protocol": None if protocol is None else protocol.value,
                        "extra": {"cp_mode": row.cp_mode},
                    },
                )
            )
    results = run_cells(STUDY, cells, out_dir, fresh=fresh, on_event=on_event)

    by_row: dict[str, dict[str, CellResult]] = {}
    for result in results:
        by_row.setdefault(result.spec.row, {})[result.spec.group] = result
    rows = [
        (
            [Cell(row.label), Cell(row.training.value), Cell(row.cp_mode.upper() if row.cp_mode != "none" else "–")],
            {group: result.means for group, result in by_row[row.key].items()},
        )
        for row in ROWS
        if row.key in by_row
    ]
    names = sorted(set(variants.values()))
    model_text = ", ".join(paper_label(name) or name for name in names)
    notes = [
        "Official scale: SAD in 1000s of alpha units, MSE/MAD as fractions; lower is better, best in bold.",
        "Training: B = face-blurred P3M-10k (protocols B:B on P3M-500-P, B:N on P3M-500-NP), "
        "N = normal images (N:N on P3M-500-NP; its P3M-500-P column is no protocol of the paper).",
        checkpoint_note(settings.strategy, settings.checkpoints),
    ]
    notes += cell_notes(results)
    title = f"Tables 9/10: P3M-CP with {model_text}"
    table = grouped_table(
        title,
        [Column("", "Method"), Column("", "Training"), Column("", "P3M-CP")],
        rows,
        [Group(name, TestSet(name).label) for name in SETS],
        metrics,
        notes,
    )
    study_settings = {
        "models": {key: variants[key] for key in settings.checkpoints},
        "checkpoints": {key: str(path) for key, path in settings.checkpoints.items()},
        "data_root": str(settings.data_root),
        "strategy": settings.strategy,
        "limit": settings.limit,
        "metrics": list(metrics),
    }
    return write_study(STUDY, title, table, results, out_dir, study_settings)
