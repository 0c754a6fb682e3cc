"""`RayExecutor`: a `p3m.runs.Executor` running items in a Ray Data actor pool.

The pipeline, per window of pending items: `ray.data.from_items` (index and pickled item per
row, one block per batch) -> `map_batches` with `_ItemWorker`, a callable class that builds
the task once per actor from its factory and calls `p3m.runs.execute_item` on each item ->
records streamed back to the driver row by row (`iter_batches`), which hands each to the
engine: the driver is the only writer of the journal.

Exactly once: outputs are written atomically by the task; an actor that dies is restarted by
Ray and its unfinished batch run again (the same outputs, replaced atomically with the same
bytes), and a record handed back twice is journalled once; the engine removes temporaries of
writes cut short. A fatal error of a worker (a missing dependency, weights the worker cannot
find) stops the run in the driver with that error.

Without an address a local Ray is started for the run and shut down after it: loopback only
(the node's address is 127.0.0.1, so every Ray service listens on it), no dashboard, and
logical CPUs budgeted explicitly (`workers x cpus_per_worker + 1`), so that the actors never
hold every CPU Ray Data needs for its own tasks. With an address (`ray://...`, `host:port`,
"auto") the run joins that cluster; if Ray is already initialised in this process (a notebook,
a test) that instance is used and left running.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from p3m.errors import ConfigError, MissingDependencyError, P3MError
from p3m.io.images import MAX_PIXELS_ENV, OLD_MAX_PIXELS_ENV
from p3m.runs.engine import (
    Item,
    ItemRecord,
    RunOptions,
    Task,
    TaskFactory,
    build_task,
    compute_threads,
    execute_item,
)

__all__ = ["RAY_INSTALL_HINT", "RayExecutor", "ray_session", "require_ray", "start_local_ray"]

logger = logging.getLogger(__name__)

RAY_INSTALL_HINT = 'pip install "p3m[scale]"'
"""What to install for the Ray engine."""

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
"""Object store of a local Ray: items and records are small (images never go through it)."""


def require_ray() -> Any:
    """The `ray` module with Ray Data, or MissingDependencyError saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray without its data extra has no ray.data)
    except ImportError as error:
        raise MissingDependencyError(
            f"the Ray engine needs Ray Data ({error.name or error}); install it with {RAY_INSTALL_HINT}"
        ) from error
    return ray


@contextlib.contextmanager
def _ctrl_c_after_start(ray: Any) -> Iterator[None]:
    """Hold Ctrl-C while Ray starts, then honour it (after shutting Ray down again).

    Ray forks its services; a SIGINT arriving in a fork handler is lost ("Exception ignored"),
    so without this a Ctrl-C during the seconds of a start would be silently dropped.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        ray.shutdown()
        previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt


def start_local_ray(
    num_cpus: float,
    num_gpus: float | None = None,
    object_store_memory: int = LOCAL_OBJECT_STORE_BYTES,
    temp_dir: str | None = None,
) -> None:
    """Start a private Ray instance on this machine, reachable from this machine only.

    `num_cpus` logical CPUs (rounded up; they may exceed the cores: Ray only counts them),
    `num_gpus` (None: those Ray finds). The node's address is the loopback one, so its
    services listen on 127.0.0.1; no dashboard; the workers' output stays in Ray's log files.
    `temp_dir`: Ray's session folder (default: Ray's own, /tmp/ray).
    """
    ray = require_ray()
    from ray._private import ray_constants

    kwargs: dict[str, Any] = {}
    if temp_dir is not None:
        kwargs["_temp_dir"] = str(temp_dir)
    # Ray replaces 127.0.0.1 by the machine's outward address unless it believes clustering is
    # off (its rule for laptops); that address is then what every service binds to.
    clustering = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if clustering is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _ctrl_c_after_start(ray):
            ray.init(
                address="local",  # never attach to a cluster found on this machine
                num_cpus=max(1, math.ceil(num_cpus)),
                num_gpus=None if num_gpus is None else math.ceil(num_gpus),
                object_store_memory=object_store_memory,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
                logging_level=logging.ERROR,
                **kwargs,
            )
    finally:
        if clustering is not None:
            ray_constants.ENABLE_RAY_CLUSTER = clustering


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: float) -> Iterator[Any]:
    """Ray for one run: the instance already initialised in this process, else a local one
    (`start_local_ray` with `num_cpus` and the GPUs Ray finds) or the cluster at `address`; what
    this function started or joined is shut down (disconnected) at the end. Yields `ray`.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is None:
        start_local_ray(num_cpus)  # GPUs: those there are (never declared beyond them)
    else:
        try:
            with _ctrl_c_after_start(ray):
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except ConnectionError as error:  # Ray's own words name its `--address` flag, not ours
            raise ConfigError(
                f"no Ray cluster at {address}: start one with `ray start --head`, "
                "or leave out --ray-address for a local Ray"
            ) from error
        except (RuntimeError, ValueError) as error:
            raise ConfigError(f"cannot join the Ray cluster at {address}: {error}") from error
    try:
        yield ray
    finally:
        ray.shutdown()


def _dump_error(error: BaseException) -> bytes:
    """The exception pickled for the driver (as a P3MError with its message when it does not pickle)."""
    from ray import cloudpickle

    try:
        blob = cloudpickle.dumps(error)
        cloudpickle.loads(blob)
        return blob
    except Exception:
        return cloudpickle.dumps(P3MError(f"{type(error).__name__}: {error}"))


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


FORWARDED_ENVIRONMENT: tuple[str, ...] = (MAX_PIXELS_ENV, OLD_MAX_PIXELS_ENV)
"""Environment variables the driver's values of which each actor takes (set, or unset)."""


def driver_environment() -> dict[str, str | None]:
    """This process's values of `FORWARDED_ENVIRONMENT` (None: unset), for the actors."""
    return {name: os.environ.get(name) for name in FORWARDED_ENVIRONMENT}


class _ItemWorker:
    """The Ray Data callable class: one per actor, the task built once, `execute_item` per item."""

    def __init__(
        self, task_blob: bytes, fatal_blob: bytes, threads: int | None, cwd: str,
        environment: dict[str, str | None] | None = None,
    ) -> None:
        from ray import cloudpickle

        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.error: bytes | None = None
        self._threads = contextlib.ExitStack()
        # The driver's settings p3m reads from the environment (the decoding cap of
        # --max-image-pixels): an actor of a Ray started earlier, or on another node, lacks them.
        for name, value in (environment or {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        try:
            # Relative paths mean what they mean to the driver (on a cluster: a shared file
            # system mounted at the same place on every node).
            if cwd and os.path.isdir(cwd):
                os.chdir(cwd)
            self.fatal: tuple[type[BaseException], ...] = cloudpickle.loads(fatal_blob)
            self.task: Task[Any, Any] = build_task(cloudpickle.loads(task_blob))
            self._threads.enter_context(compute_threads(threads))
        except Exception as error:  # the worker cannot run anything: the run must stop
            self.error = _dump_error(error)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ray import cloudpickle

        indices: list[int] = []
        blobs: list[bytes] = []
        for index, item_blob in zip(batch["index"], batch["item"], strict=True):
            if self.error is not None:
                indices.append(-1)
                blobs.append(self.error)
                break
            item: Item = cloudpickle.loads(item_blob)
            try:
                record = execute_item(self.task, item, self.fatal)
            except Exception as error:  # execute_item lets only fatal errors through
                indices.append(-1)
                blobs.append(_dump_error(error))
                break
            indices.append(int(index))
            blobs.append(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
        return {
            "index": np.asarray(indices, dtype=np.int64),
            "record": _objects(blobs),
            "worker": _objects([self.worker] * len(indices)),
        }


@contextlib.contextmanager
def _quiet_streaming_data_context(ray: Any) -> Iterator[None]:
    """Ray Data settings for a run: no progress bars or banners of its own (the driver renders
    progress from the records), and output blocks of one row, so that each record reaches the
    driver when its item is done rather than when the actor's whole input block is."""
    context = ray.data.DataContext.get_current()
    settings = {
        "enable_progress_bars": False,
        "enable_operator_progress_bars": False,
        "print_on_execution_start": False,
        "enable_auto_log_stats": False,
        "target_max_block_size": 1,
    }
    saved = {name: getattr(context, name) for name in settings if hasattr(context, name)}
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    for name in saved:
        setattr(context, name, settings[name])
    data_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        data_logger.setLevel(level)


@dataclass(frozen=True)
class RayExecutor:
    """Run a `p3m.runs` run's items on Ray Data (pass as `run_items(..., executor=...)`).

    `address`: the cluster to join (None: a local Ray for this run, see `start_local_ray`).
    `workers`: actors, each holding one task (one model). `batch_size`: items per actor call
    (and per block: the most an actor's death makes Ray redo). `cpus_per_worker` /
    `gpus_per_worker`: Ray resources each actor reserves (torch threads per actor default to
    its CPUs: Ray sets OMP_NUM_THREADS; `RunOptions.threads` sets them explicitly). `window`:
    pending items sent to Ray at a time (bounds the driver's and the object store's memory on
    runs of millions; the actors are started again for each window).
    """

    address: str | None = None
    workers: int = 1
    batch_size: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    window: int = 10_000

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.batch_size < 1:
            raise ConfigError(f"the batch size must be at least 1, got {self.batch_size}")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"CPUs per worker must be above 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"GPUs per worker cannot be negative, got {self.gpus_per_worker}")
        if self.window < 1:
            raise ConfigError(f"the window must be at least 1 item, got {self.window}")

    @property
    def name(self) -> str:
        return f"ray ({self.address or 'local'}, {self.workers} worker(s))"

    def run(
        self,
        pending: Sequence[tuple[int, Item]],
        task: Task[Any, Any] | TaskFactory,
        options: RunOptions,
        finish: Callable[[int, ItemRecord, str], None],
    ) -> None:
        """Execute `pending` on Ray; see `p3m.runs.Executor`."""
        require_ray()
        from ray import cloudpickle

        try:
            task_blob = cloudpickle.dumps(task)
        except Exception as error:
            raise ConfigError(
                f"the task cannot be sent to Ray workers ({type(error).__name__}: {error}); "
                "give run_items a picklable task factory that builds it on the worker"
            ) from error
        constructor = {
            "task_blob": task_blob,
            "fatal_blob": cloudpickle.dumps(tuple(options.fatal)),
            "threads": options.threads,
            "cwd": os.getcwd(),
            "environment": driver_environment(),
        }
        needed_cpus = self.workers * self.cpus_per_worker
        with ray_session(self.address, needed_cpus + 1) as ray:
            self._check_resources(ray)
            with _quiet_streaming_data_context(ray):
                for start in range(0, len(pending), self.window):
                    self._run_window(ray, pending[start : start + self.window], constructor, finish)

    def _check_resources(self, ray: Any) -> None:
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if self.gpus_per_worker > 0 and gpus < self.gpus_per_worker:
            raise ConfigError(
                f"{self.gpus_per_worker:g} GPU(s) per worker asked, the Ray cluster has {gpus:g}"
            )
        if cpus < self.workers * self.cpus_per_worker:
            # An autoscaling cluster may still grow; a fixed one never starts every actor.
            logger.warning(
                "the Ray cluster has %g CPUs for %d worker(s) x %g CPUs: some workers wait for "
                "CPUs (lower --workers or the CPUs per worker if the cluster cannot grow)",
                cpus, self.workers, self.cpus_per_worker,
            )  # fmt: skip

    def _run_window(
        self,
        ray: Any,
        window: Sequence[tuple[int, Item]],
        constructor: dict[str, Any],
        finish: Callable[[int, ItemRecord, str], None],
    ) -> None:
        from ray import cloudpickle

        rows = [{"index": index, "item": cloudpickle.dumps(item)} for index, item in window]
        blocks = math.ceil(len(rows) / self.batch_size)
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
        del rows
        remote: dict[str, Any] = {"num_cpus": self.cpus_per_worker}
        if self.gpus_per_worker > 0:
            remote["num_gpus"] = self.gpus_per_worker
        records = dataset.map_batches(
            _ItemWorker,
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(self.workers, blocks)),
            fn_constructor_kwargs=constructor,
            **remote,
        )
        batches = records.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)
        try:
            for batch in batches:
                for index, blob, worker in zip(batch["index"], batch["record"], batch["worker"], strict=True):
                    if index < 0:
                        raise cloudpickle.loads(blob)
                    finish(int(index), pickle.loads(blob), str(worker))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stops the pipeline and its actors when the loop ends early
