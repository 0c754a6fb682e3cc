"""Items, tasks, records and the loop that runs a task over items (see `p3m.runs`)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from p3m.errors import ConfigError, MissingDependencyError, P3MError
from p3m.io.atomic import output_folder, remove_stale_temporaries
from p3m.io.images import input_size, output_file_problem
from p3m.runs.journal import Journal
from p3m.runs.provenance import carry_provenance
from p3m.runs.records import DONE, FAILED, KEPT, ItemRecord
from p3m.runs.sources import SourceResolver, fingerprint_changed

__all__ = [
    "DONE",
    "FAILED",
    "KEPT",
    "Event",
    "Executor",
    "FunctionTask",
    "Item",
    "ItemFinished",
    "ItemRecord",
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
    "run_items",
]

logger = logging.getLogger(__name__)

LoadedT = TypeVar("LoadedT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Item:
    """One unit of a run.

    `key` names it uniquely within the run (the journal's key: a relative path or a stem);
    `source` is its main input file, if any; `outputs` maps each output kind to the file the
    task writes (all of them existing means done); `payload` is whatever else the task needs
    (paired files, a sample record) and must be picklable for process or Ray workers.
    `sized_like_source`: the output kinds that have the source image's size (EXIF rotation
    applied); a kept one of another size is damaged and redone.
    `redo`: set by the engine on an item whose outputs all exist but were made from another
    source than the one there now (`p3m.runs.sources`): the task writes every output, as with
    `overwrite`, not only the missing ones.
    """

    key: str
    source: Path | None = None
    outputs: Mapping[str, Path] = field(default_factory=dict)
    payload: Any = None
    sized_like_source: tuple[str, ...] = ()
    redo: bool = False

    def outputs_exist(self) -> bool:
        """True when the item has outputs and every one of them exists (a file, or a folder for
        an output that is one, such as a video's PNG sequence)."""
        return bool(self.outputs) and all(Path(path).exists() for path in self.outputs.values())


@dataclass
class Outcome:
    """What a task's `write` step reports for one item.

    `status` is "done" or a task-specific status (e.g. "needs_annotation"); `outputs` the files
    written (default: those of `item.outputs` that exist); `details` go into the item's record;
    `attachments` go with the record to the driver's events and report but not into the journal
    (see `ItemRecord.attachments`).
    """

    status: str = DONE
    outputs: Mapping[str, Path] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, Any] = field(default_factory=dict)


class Task(Protocol[LoadedT, ResultT]):
    """What a run does to each item, in three steps.

    `load` reads the inputs (runs on an I/O thread, ahead of the computation); `compute` does
    the work (runs in the calling thread, in order: models need not be thread-safe); `write`
    writes the outputs atomically and reports an `Outcome` (runs on a writer thread). Any step
    may raise: a `P3MError` (or any other exception) fails the item, errors listed in
    `RunOptions.fatal` stop the run.
    """

    def load(self, item: Item) -> LoadedT: ...

    def compute(self, item: Item, loaded: LoadedT) -> ResultT: ...

    def write(self, item: Item, result: ResultT) -> Outcome: ...

    # Optional: `output_problem(item, record) -> (path, problem) | None`, the task's own check
    # of a kept item's outputs (e.g. a video that does not demux to the end), given the item's
    # journal record (None without one); see `run_items`.


class FunctionTask(Generic[ResultT]):
    """A task from one function `process(item) -> Outcome | dict | None` (all in `compute`).

    A dict is taken as the outcome's details, None as a plain "done".
    """

    def __init__(self, process: Callable[[Item], Outcome | Mapping[str, Any] | None]) -> None:
        self.process = process

    def load(self, item: Item) -> None:
        return None

    def compute(self, item: Item, loaded: None) -> Outcome | Mapping[str, Any] | None:
        return self.process(item)

    def write(self, item: Item, result: Outcome | Mapping[str, Any] | None) -> Outcome:
        if isinstance(result, Outcome):
            return result
        return Outcome(details=dict(result or {}))


TaskFactory = Callable[[], "Task[Any, Any]"]
"""A picklable callable with no arguments that builds a `Task` where the task runs.

A task that holds a model is given to a run as a factory when the run may execute elsewhere
(a Ray worker): each worker then builds the task once, and only the small factory travels.
"""


def build_task(task: Task[Any, Any] | TaskFactory) -> Task[Any, Any]:
    """`task` itself when it is a `Task` (it has `compute`), else the task its factory (a
    callable, e.g. a Task class) builds."""
    if hasattr(task, "compute") and not isinstance(task, type):
        return task  # type: ignore[return-value]
    if not callable(task):
        raise ConfigError(f"a run needs a Task or a task factory, got {type(task).__name__}")
    return task()


@contextlib.contextmanager
def compute_threads(threads: int | None) -> Iterator[None]:
    """Within the block, torch computes with `threads` intra-op threads (None: leave as it is).

    Float reductions split over a different number of threads may round differently, so two
    engines give byte-identical outputs only with the same count per worker; the count in
    force before is restored afterwards. Without torch installed this does nothing.
    """
    if not threads:
        yield
        return
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class RunOptions:
    """How a run treats existing outputs, failures and threads.

    `resume`: keep items whose outputs all exist, or that the journal records as done (for
    tasks without output files). `overwrite`: recompute everything. `io_threads`: threads that
    load inputs ahead and write outputs behind (0: every step inline). `prefetch`: how many
    items may be loaded ahead or waiting to be written (bounds memory). `processes`: run whole
    items in that many worker processes instead (the task and items must be picklable).
    `fatal`: exception types that stop the run instead of failing one item. `preload`: modules
    the worker processes import once, in the fork server, before any item (e.g. the task's own
    module with its numeric libraries), instead of once per worker. `threads`: torch's intra-op
    threads per worker while items are computed (None: the library's default; give the same
    number to every engine for byte-identical outputs, see `compute_threads`).
    `kept_needs_record`: keep an item only when its outputs exist *and* the journal records it
    as finished (done, or a task-specific status that is not a failure), for tasks whose record carries what the run's reports are made of (e.g. an
    anonymised image's manifest entry); an item whose outputs exist without a record (a stop
    between the last write and the journal line) is then redone, its outputs replaced
    atomically, instead of kept without its details.
    """

    resume: bool = True
    overwrite: bool = False
    io_threads: int = 2
    prefetch: int = 2
    processes: int = 0
    fatal: tuple[type[BaseException], ...] = (MissingDependencyError, ConfigError)
    preload: tuple[str, ...] = ()
    threads: int | None = None
    kept_needs_record: bool = False


@dataclass(frozen=True)
class RunStarted:
    """Emitted once: `total` items, of which `pending` will be processed and `kept` are done.

    `redone`: one line per item whose outputs all exist but one of which is damaged (empty, an
    unparsable header, a PNG or JPEG cut short: `p3m.io.output_file_problem`), or whose source
    changed since its outputs were made (`p3m.runs.sources`), so the run processes it again
    instead of keeping it.
    """

    total: int
    pending: int
    kept: int
    redone: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunInterrupted:
    """Emitted when a run stops on KeyboardInterrupt (Ctrl-C), before it is re-raised.

    `done` items of `total` have complete outputs (kept, or finished by this run without
    failing; what finished is journalled), so running again resumes with the rest.
    """

    done: int
    total: int


@dataclass(frozen=True)
class ItemFinished:
    """Emitted after each processed item: its record and how many of `pending` are finished."""

    record: ItemRecord
    finished: int
    pending: int


@dataclass(frozen=True)
class RunFinished:
    """Emitted once at the end, with the report."""

    report: RunReport


Event = RunStarted | ItemFinished | RunFinished | RunInterrupted
"""A progress event of a run (typed: match on the class)."""


@dataclass
class WorkerStats:
    """What one worker of a run did: items processed and the seconds they took (summed)."""

    items: int = 0
    seconds: float = 0.0

    def add(self, record: ItemRecord) -> None:
        self.items += 1
        self.seconds += record.seconds


@dataclass
class RunReport:
    """Every item's record in input order, the run's wall time in seconds, and per worker
    (`"host:pid"`, or "process pool") what it processed."""

    records: list[ItemRecord]
    seconds: float = 0.0
    workers: dict[str, WorkerStats] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Number of records per status."""
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.status] = counts.get(record.status, 0) + 1
        return counts

    def with_status(self, status: str) -> list[ItemRecord]:
        return [record for record in self.records if record.status == status]

    @property
    def failed(self) -> list[ItemRecord]:
        return self.with_status(FAILED)

    @property
    def processed(self) -> list[ItemRecord]:
        """Records of the items this run computed (not kept)."""
        return [record for record in self.records if record.status != KEPT]


# --------------------------------------------------------------------------- one item


def _reason(error: BaseException, item: Item) -> str:
    """One line naming the file and the problem."""
    if isinstance(error, P3MError):
        return str(error)
    where = item.source if item.source is not None else item.key
    return f"{where}: {type(error).__name__}: {error}"


def _failed(item: Item, error: BaseException, seconds: float) -> ItemRecord:
    reason = _reason(error, item)
    # INFO: the record carries the reason; whoever renders the run prints it once.
    logger.info("%s", reason, exc_info=not isinstance(error, P3MError) and logger.isEnabledFor(logging.DEBUG))
    return ItemRecord(
        key=item.key,
        status=FAILED,
        source=None if item.source is None else str(item.source),
        seconds=seconds,
        error=reason,
        # A P3MError that suggests options: the renderer words them for its surface (--overwrite).
        attachments={"error": error} if isinstance(error, P3MError) and error.options else {},
    )


def _record(item: Item, outcome: Outcome, seconds: float) -> ItemRecord:
    outputs = outcome.outputs
    if outputs is None:
        outputs = {kind: path for kind, path in item.outputs.items() if Path(path).is_file()}
    return ItemRecord(
        key=item.key,
        status=outcome.status,
        source=None if item.source is None else str(item.source),
        outputs={kind: str(path) for kind, path in outputs.items()},
        seconds=seconds,
        details=dict(outcome.details),
        attachments=dict(outcome.attachments),
    )


def execute_item(
    task: Task[Any, Any],
    item: Item,
    fatal: tuple[type[BaseException], ...] = RunOptions.fatal,
) -> ItemRecord:
    """Load, compute and write one item in this thread; never raises except for `fatal` errors.

    This is what process and Ray workers call: the same record as the threaded loop gives.
    """
    started = time.perf_counter()
    try:
        outcome = task.write(item, task.compute(item, task.load(item)))
    except fatal:
        raise
    except Exception as error:  # one bad item must not end a run
        return _failed(item, error, time.perf_counter() - started)
    return _record(item, outcome, time.perf_counter() - started)


# --------------------------------------------------------------------------- the run


def _timed(step: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = step(*args)
    return value, time.perf_counter() - started


def _kept_record(item: Item, previous: ItemRecord | None, fingerprint: dict[str, Any] | None = None) -> ItemRecord:
    """A kept item's record; its `input` is the earlier record's fingerprint, or (an earlier
    record without one, trusted) the source's fingerprint now, journalled from then on."""
    return ItemRecord(
        key=item.key,
        status=KEPT,
        source=None if item.source is None else str(item.source),
        outputs={kind: str(path) for kind, path in item.outputs.items()},
        details=dict(previous.details) if previous is not None else {},
        input=previous.input if previous is not None and previous.input is not None else fingerprint,
    )


def changed_source(item: Item, previous: ItemRecord | None, fingerprint: dict[str, Any] | None) -> str | None:
    """The one-line note for an item whose source no longer matches the fingerprint its journal
    record stores (another file saved over it, a file of the same name from another folder),
    or None (no record, no fingerprint in it, or the same file); see `p3m.runs.sources`."""
    if previous is None or not fingerprint_changed(previous.input, fingerprint):
        return None
    return f"{item.source or item.key}: changed since its outputs were made; redoing"


def _is_done(item: Item, previous: ItemRecord | None, needs_record: bool = False) -> bool:
    recorded = previous is not None and previous.status == DONE
    if item.outputs:
        # With its outputs all there, a task-specific status ("needs_review": written, to be
        # checked by a person) is as finished as "done"; only a failure is not.
        written = previous is not None and previous.status not in (FAILED, KEPT)
        return item.outputs_exist() and (written or not needs_record)
    return recorded


def _damaged_output(
    item: Item,
    check: Callable[[Item, ItemRecord | None], tuple[Path, str] | None] | None = None,
    record: ItemRecord | None = None,
) -> str | None:
    """One line naming the first existing output of `item` that is not complete, or None.

    Image outputs are checked by `p3m.io.output_file_problem` (those of `sized_like_source`
    also against the source's size, read from its header once); `check` is the task's own
    check of the item's outputs (its `output_problem`), given the item's journal record."""
    found: tuple[Path, str] | None = None
    size: tuple[int, int] | None = None
    for kind, path in item.outputs.items():
        if kind in item.sized_like_source and item.source is not None and size is None:
            size = input_size(item.source)  # header only, read once per item
        problem = output_file_problem(path, size if kind in item.sized_like_source else None)
        if problem is not None:
            found = (Path(path), problem)
            break
    if found is None and check is not None:
        found = check(item, record)
    if found is None:
        return None
    path, problem = found
    return f"{path}: damaged ({problem}); redoing {item.source or item.key}"


def _pool_context(preload: tuple[str, ...] = ()) -> multiprocessing.context.BaseContext:
    # forkserver / spawn never fork a parent that may hold threads (progress bar, torch).
    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        if preload:  # effective when the fork server starts (the first pool of the process)
            context.set_forkserver_preload(list(preload))
        return context
    return multiprocessing.get_context("spawn")


class Executor(Protocol):
    """Runs a run's pending items somewhere other than this process (e.g. `p3m.scale.RayExecutor`).

    `run` executes every `(index, item)` of `pending` with `execute_item` (the task built from
    `task`, a `Task` or a `TaskFactory`, with `options.fatal` and `options.threads`) and hands
    each record back through `finish(index, record, worker)` in the calling thread as soon as it
    arrives, in any order; the engine journals it and emits its event, so the journal, resume,
    events and report are the engine's whatever runs the items. It raises the first `fatal`
    error of a worker (after handing back the records that arrived before it) and stops cleanly
    on KeyboardInterrupt.
    """

    def run(
        self,
        pending: Sequence[tuple[int, Item]],
        task: Task[Any, Any] | TaskFactory,
        options: RunOptions,
        finish: Callable[[int, ItemRecord, str], None],
    ) -> None: ...


class _GroupCommit:
    """Journal records in groups: at most `size` records or `seconds` old are held unwritten,
    so a run finishing thousands of items a second is not held to the disk's sync rate. Held
    records are written at the latest when the run ends or stops; a crash loses at most them
    (their outputs exist, so the next run keeps those items)."""

    def __init__(self, journal: Journal, seconds: float = 0.25, size: int = 256) -> None:
        self.journal = journal
        self.seconds = seconds
        self.size = size
        self.held: list[ItemRecord] = []
        self.since = time.perf_counter()

    def add(self, record: ItemRecord) -> None:
        if not self.held:
            self.since = time.perf_counter()
        self.held.append(record)
        if len(self.held) >= self.size or time.perf_counter() - self.since >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.held:
            held, self.held = self.held, []
            self.journal.append_many(held)


def _local_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _sweep_temporaries(items: Iterable[Item]) -> None:
    """Remove temporaries of the items' outputs left by writers killed mid-write (one listing
    per output folder); called when none of this run's writes is in flight."""
    names: dict[Path, set[str]] = {}
    for item in items:
        for path in item.outputs.values():
            path = Path(path)
            names.setdefault(path.parent, set()).add(path.name)
    for folder, wanted in names.items():
        for removed in remove_stale_temporaries(folder, wanted):
            logger.info("%s: removed the temporary of a write that never finished", removed)


def run_items(
    items: Iterable[Item],
    task: Task[Any, Any] | TaskFactory,
    journal: Journal | str | os.PathLike[str] | None = None,
    options: RunOptions | None = None,
    on_event: Callable[[Event], None] | None = None,
    executor: Executor | None = None,
) -> RunReport:
    """Run `task` over `items` with resume, recorded failures and progress events.

    `task` is a `Task`, or a `TaskFactory` that builds it (here once; with an `executor`, once
    per worker). `executor` runs the pending items elsewhere (e.g. `p3m.scale.RayExecutor`);
    without one they run in this process (threads, or `options.processes`). Either way this
    process alone writes the journal. `journal` (a `Journal` or its path) records each
    finished item as it finishes and is read back to resume; without one, resuming relies on
    the outputs alone. Temporaries of pending outputs left by a writer killed mid-write (an
    earlier run, a lost worker) are removed before and after the items run. Items with a key seen
    before in the same run fail ("another input has the same name"), and so do items that would
    write an output file an earlier item writes ("another input writes the same output", e.g.
    `a.png` and `a.jpg` -> `a_alpha.png`), and so do items an output of which is an input file
    of the run (an input is never overwritten); the rest runs. Returns the report with
    one record per item in input order; raises only for `options.fatal` errors (after the
    items already finished are journalled) and KeyboardInterrupt.
    """
    options = options or RunOptions()
    started = time.perf_counter()
    if journal is not None and not isinstance(journal, Journal):
        journal = Journal(journal)
    if journal is not None:
        output_folder(journal.path.parent)  # one line when -o names a file
    previous = journal.read() if journal is not None and options.resume else {}

    records: dict[int, ItemRecord] = {}
    pending: list[tuple[int, Item]] = []
    clashes: list[tuple[int, ItemRecord]] = []
    journalled_clashes: list[tuple[int, ItemRecord]] = []
    redone: list[str] = []
    seen: dict[str, Item] = {}
    claimed: dict[str, Item] = {}  # output file (absolute, normalised) -> the item writing it
    all_items = list(items)
    # A task's (or factory object's) own check of kept outputs; not a Task class's unbound method.
    check = None if isinstance(task, type) else getattr(task, "output_problem", None)
    inputs = {
        os.path.normcase(os.path.abspath(item.source)): item for item in all_items if item.source is not None
    }
    # Each record stores its source's fingerprint (`p3m.runs.sources`), taken before the item
    # runs: a source replaced while it runs is seen as changed by the next run.
    resolver = SourceResolver()
    fingerprints: dict[int, dict[str, Any] | None] = {}
    for index, item in enumerate(all_items):
        overwritten = [
            (path, inputs[key]) for path in item.outputs.values()
            if (key := os.path.normcase(os.path.abspath(path))) in inputs
        ]  # fmt: skip
        if overwritten:
            path, owner = overwritten[0]
            whose = "its own input" if owner is item else f"the input {owner.source}"
            problem = f"its output {path} would overwrite {whose}; skipped (write to another folder)"
            clashes.append((index, _failed(item, P3MError(problem, item.source), 0.0)))
            continue
        if item.key in seen:
            other = seen[item.key].source or seen[item.key].key
            problem = f"another input ({other}) has the same name {item.key!r}; skipped"
            clashes.append((index, _failed(item, P3MError(problem, item.source), 0.0)))
            continue
        outputs = [(os.path.normcase(os.path.abspath(path)), Path(path)) for path in item.outputs.values()]
        shared = [(key, path) for key, path in outputs if key in claimed]
        if shared:
            owner = claimed[shared[0][0]]
            problem = (
                f"another input ({owner.source or owner.key}) writes the same output "
                f"{', '.join(path.name for _, path in shared)}; skipped (rename one of them)"
            )
            # Journalled under its own key: the next run reports it again.
            journalled_clashes.append((index, _failed(item, P3MError(problem, item.source), 0.0)))
            continue
        seen[item.key] = item
        claimed.update((key, item) for key, _ in outputs)
        earlier = previous.get(item.key)
        if journal is not None and item.source is not None:
            fingerprints[index] = resolver.fingerprint(item.source)
        if not options.overwrite and options.resume and _is_done(item, earlier, options.kept_needs_record):
            changed = changed_source(item, earlier, fingerprints.get(index))
            damaged = changed or _damaged_output(item, check if callable(check) else None, earlier)
            if damaged is None:
                records[index] = _kept_record(item, earlier, fingerprints.get(index))
                continue
            logger.info("%s", damaged)
            redone.append(damaged)
            pending.append((index, dataclasses.replace(item, redo=True) if changed else item))
        else:
            pending.append((index, item))

    emit = on_event or (lambda event: None)
    total_pending = len(pending) + len(clashes) + len(journalled_clashes)
    emit(RunStarted(total=len(all_items), pending=total_pending, kept=len(records), redone=tuple(redone)))
    finished = 0
    workers: dict[str, WorkerStats] = {}
    local = _local_worker()
    # Records from an executor arrive faster than a disk syncs: journal them in groups.
    commit = None if journal is None else _GroupCommit(journal, seconds=0.25 if executor is not None else 0.0)

    def finish(index: int, record: ItemRecord, worker: str | None = local, journalled: bool = True) -> None:
        nonlocal finished
        if index in records:
            return  # handed back twice (a retried worker task): journalled once
        if journal is not None and journalled:
            # Which settings made each of the item's files: this run's for those it wrote, the
            # earlier record's for the others that exist (`p3m.runs.provenance`).
            record = carry_provenance(record, previous.get(record.key), journal.path.parent)
            # The source's fingerprint: this run's for an item it wrote, the earlier record's
            # for a failed one (its existing outputs are still those of that source).
            if record.status == FAILED:
                earlier = previous.get(record.key)
                record.input = None if earlier is None else earlier.input
            elif record.status != KEPT:
                record.input = fingerprints.get(index)
        records[index] = record
        if commit is not None and journalled:
            commit.add(record)
        if worker is not None:
            workers.setdefault(worker, WorkerStats()).add(record)
        finished += 1
        emit(ItemFinished(record, finished, total_pending))

    for index, record in clashes:
        # Not journalled: the key's record is the other input's.
        finish(index, record, worker=None, journalled=False)
    for index, record in journalled_clashes:
        finish(index, record, worker=None)

    if pending:
        _sweep_temporaries(item for _, item in pending)
    try:
        if executor is not None and pending:
            executor.run(pending, task, options, finish)
            _sweep_temporaries(item for _, item in pending)
        elif pending:
            task = build_task(task)
            with compute_threads(options.threads):
                if options.processes > 0 and len(pending) > 1:
                    _run_processes(pending, task, options, lambda i, r: finish(i, r, "process pool"))
                elif options.io_threads > 0 and len(pending) > 1:
                    _run_threaded(pending, task, options, finish)
                else:
                    for index, item in pending:
                        finish(index, execute_item(task, item, options.fatal))
    except KeyboardInterrupt:
        done = sum(1 for record in records.values() if record.status != FAILED)
        emit(RunInterrupted(done=done, total=len(all_items)))
        raise
    finally:
        if commit is not None:
            commit.flush()  # also when the run stops: what finished is on record

    report = RunReport(
        [records[index] for index in range(len(all_items))], time.perf_counter() - started, workers
    )
    if journal is not None:
        _compact(journal, report, previous)
    emit(RunFinished(report))
    return report


def _compact(journal: Journal, report: RunReport, previous: Mapping[str, ItemRecord]) -> None:
    """One line per item: this run's records (a kept item keeps its earlier record), then the
    records of earlier runs about items not in this run."""
    lines: list[ItemRecord] = []
    keys = set()
    for record in report.records:
        if record.key in keys:
            continue  # a duplicate key: its failure is reported, not journalled twice
        keys.add(record.key)
        earlier = previous.get(record.key)
        if record.status == KEPT and earlier is not None:
            if earlier.input is None and record.input is not None:  # trusted: stamped from now on
                earlier = dataclasses.replace(earlier, input=record.input)
            lines.append(earlier)
        else:
            lines.append(record)
    lines.extend(record for key, record in previous.items() if key not in keys)
    journal.rewrite(lines)


def _run_threaded(
    pending: list[tuple[int, Item]],
    task: Task[Any, Any],
    options: RunOptions,
    finish: Callable[[int, ItemRecord], None],
) -> None:
    """Loads ahead on I/O threads, computes here in order, writes behind on one writer thread."""
    prefetch = max(1, options.prefetch)
    fatal = options.fatal
    loads: deque[tuple[int, Item, Future[tuple[Any, float]]]] = deque()
    writes: deque[tuple[int, Item, float, Future[tuple[Outcome, float]]]] = deque()
    queue = iter(pending)

    def settle_write(block: bool) -> None:
        while writes and (block or writes[0][3].done()):
            index, item, seconds, future = writes.popleft()
            try:
                outcome, write_seconds = future.result()
            except fatal:
                raise
            except Exception as error:
                finish(index, _failed(item, error, seconds))
            else:
                finish(index, _record(item, outcome, seconds + write_seconds))
            block = False

    with ThreadPoolExecutor(max(1, options.io_threads), thread_name_prefix="p3m-load") as loader, \
            ThreadPoolExecutor(1, thread_name_prefix="p3m-write") as writer:  # fmt: skip
        try:
            def refill() -> None:
                while len(loads) < prefetch:
                    entry = next(queue, None)
                    if entry is None:
                        return
                    index, item = entry
                    loads.append((index, item, loader.submit(_timed, task.load, item)))

            refill()
            while loads:
                index, item, future = loads.popleft()
                refill()
                try:
                    loaded, seconds = future.result()
                    started = time.perf_counter()
                    result = task.compute(item, loaded)
                    del loaded
                    seconds += time.perf_counter() - started
                except fatal:
                    raise
                except Exception as error:
                    finish(index, _failed(item, error, 0.0))
                    settle_write(block=False)
                    continue
                writes.append((index, item, seconds, writer.submit(_timed, task.write, item, result)))
                del result
                settle_write(block=len(writes) > prefetch)
            settle_write(block=True)
            while writes:
                settle_write(block=True)
        except BaseException:
            for _, _, future in loads:
                future.cancel()
            # Outputs already being written are finished and journalled before the run stops,
            # so the journal agrees with the files.
            while writes:
                with contextlib.suppress(Exception):  # the first error is the one re-raised
                    settle_write(block=True)
            raise


def _execute_with_threads(
    task: Task[Any, Any], item: Item, fatal: tuple[type[BaseException], ...], threads: int | None
) -> ItemRecord:
    with compute_threads(threads):
        return execute_item(task, item, fatal)


def _run_processes(
    pending: list[tuple[int, Item]],
    task: Task[Any, Any],
    options: RunOptions,
    finish: Callable[[int, ItemRecord], None],
) -> None:
    """Whole items in worker processes; records are journalled as they complete."""
    workers = min(options.processes, len(pending))
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(options.preload)) as pool:
        futures = {
            pool.submit(_execute_with_threads, task, item, options.fatal, options.threads): (index, item)
            for index, item in pending
        }
        try:
            for future in as_completed(futures):
                index, _item = futures[future]
                finish(index, future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise
