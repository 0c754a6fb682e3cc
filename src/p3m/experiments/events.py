"""Typed progress events of a study: what `p3m.cli` renders while an experiment runs.

A study is a sequence of runs of the folder-run engine (`p3m.runs`), one per cell of its table
(a model on a test set, a baseline on the blurred images, ...). It reports:

* `StudyStarted` once, with the number of cells and of items over all cells;
* `CellReset` when the results already in a cell's folder were made with other settings (another
  checkpoint, strategy, obfuscation strength) or `fresh` was asked for, and are computed again;
* `CellProgress` for every event of a cell's run (`p3m.runs.RunStarted`, `ItemFinished`,
  `RunFinished`), tagged with the cell;
* `StudyResumed` when results of an earlier run in the output folder were kept (how many cells,
  or images for a one-cell study, of how many);
* `StudyFinished` once at the end, with the number of images that failed.

    >>> def on_event(event):
    ...     if isinstance(event, CellProgress) and isinstance(event.event, ItemFinished): ...
"""

from __future__ import annotations

from dataclasses import dataclass

from p3m.runs import Event

__all__ = ["CellProgress", "CellReset", "StudyEvent", "StudyFinished", "StudyResumed", "StudyStarted"]


@dataclass(frozen=True)
class StudyStarted:
    """Emitted once: the study's name, its cells (labels, in run order) and items over all cells."""

    study: str
    cells: tuple[str, ...]
    items: int


@dataclass(frozen=True)
class CellReset:
    """The results in a cell's folder are computed again; `reason` says why. The earlier results
    stay in place until the new ones are complete (`p3m.experiments.runner.stage_run_dir`).
    `settings`: the keys of the settings that changed (as the study's settings name them, e.g.
    "changed_threshold"), if that is why; `fresh`: recomputing was asked for."""

    cell: str
    reason: str
    settings: tuple[str, ...] = ()
    fresh: bool = False


@dataclass(frozen=True)
class CellProgress:
    """One event of a cell's run (`index` of `cells`, from 0), tagged with the cell's label."""

    cell: str
    index: int
    cells: int
    event: Event


@dataclass(frozen=True)
class StudyResumed:
    """Results of an earlier run in `out_dir` were kept: `kept` of `total` `unit` ("cells", or
    "images" for a study that is one run over images) were not computed again. `message` is the
    one-line note the CLI prints."""

    study: str
    kept: int
    total: int
    unit: str
    out_dir: str

    @property
    def message(self) -> str:
        return self.worded("fresh=True")

    def worded(self, fresh: str) -> str:
        """The note with the option that recomputes named as a surface names it (`--fresh`)."""
        return f"resumed: {self.kept} of {self.total} {self.unit} from an earlier run in {self.out_dir} ({fresh} recomputes)"


@dataclass(frozen=True)
class StudyFinished:
    """Emitted once at the end: the study's name and how many images failed over all cells."""

    study: str
    failed: int


StudyEvent = StudyStarted | CellReset | CellProgress | StudyResumed | StudyFinished
"""A progress event of a study (typed: match on the class)."""
