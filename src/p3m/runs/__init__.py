"""The folder-run engine: one way to run a task over many inputs, for every batch job in p3m.

Matting a folder, anonymising a data set, solving a baseline, evaluating a model, a video per
clip, a Ray job: each is a `Task` (load -> compute -> write) over `Item`s. The engine gives them
the same behaviour:

* **resume**: an item whose outputs all exist (image outputs checked cheaply for damage, other
  files by the task's own `output_problem` if it has one: a damaged one is redone, said in
  `RunStarted.redone`), or that the run's journal records as done, is
  kept (not recomputed) unless `overwrite`, or unless its source changed since its record was
  written (another file saved over it, or of the same name from elsewhere: each record keeps its
  source's resolved path, size and mtime, `p3m.runs.sources`; redone whole, `Item.redo`);
* **atomic outputs**: tasks write through `p3m.io` (temporary file, then rename), and the
  journal line of an item is appended only after its outputs are complete;
* **recorded failures**: a failing item becomes a `failed` record with a one-line reason and the
  run goes on (errors of the whole run, such as a missing dependency, stop it);
* **typed progress events** (`RunStarted`, `ItemFinished`, `RunFinished`, `RunInterrupted`) for whoever renders
  progress (only `p3m.cli` does);
* **overlap**: inputs are loaded ahead and outputs written behind on I/O threads while the
  calling thread computes;
* **elsewhere**: an `Executor` (e.g. `p3m.scale.RayExecutor`, Ray Data on a laptop or a
  cluster) runs the items in other processes or machines, with a `TaskFactory` building the
  task once per worker; this process still journals every record and emits every event.

    >>> from p3m.runs import FunctionTask, Item, run_items
    >>> report = run_items(items, FunctionTask(process), journal=out / "manifest.jsonl")
    >>> report.counts            # {"done": 10, "kept": 3, "failed": 1}
"""

from __future__ import annotations

from p3m.runs.engine import (
    FAILED,
    KEPT,
    Event,
    Executor,
    FunctionTask,
    Item,
    ItemFinished,
    ItemRecord,
    Outcome,
    RunFinished,
    RunInterrupted,
    RunOptions,
    RunReport,
    RunStarted,
    Task,
    TaskFactory,
    WorkerStats,
    build_task,
    compute_threads,
    execute_item,
    run_items,
)
from p3m.runs.journal import Journal, read_journal

__all__ = [
    "FAILED",
    "KEPT",
    "Event",
    "Executor",
    "FunctionTask",
    "Item",
    "ItemFinished",
    "ItemRecord",
    "Journal",
    "Outcome",
    "RunFinished",
    "RunInterrupted",
    "RunOptions",
    "RunReport",
    "RunStarted",
    "Task",
    "TaskFactory",
    "WorkerStats",
    "build_task",
    "compute_threads",
    "execute_item",
    "read_journal",
    "run_items",
]
