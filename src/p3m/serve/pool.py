"""A bounded pool of inference workers for the service: off the event loop, bounded queue, deadlines.

Each worker is a thread that owns its own state (for the service, one loaded `p3m.Matter`), so
a model backend never sees two images at once from the same object; the heavy parts (PyTorch,
ONNX Runtime, pymatting's numba kernels, MediaPipe behind p3m's own lock) release the GIL, so
the event loop keeps answering (`GET /api/health`) while the workers compute.

Admission is bounded: a request takes a ticket before its body is read, and is turned away at
once (`ServiceBusy`, HTTP 503 with `Retry-After`) when `workers + max_queue` tickets are out or
when the work ahead of it, at the measured seconds per job, would not finish well within the
time bound (the estimate moves with the machine's load). Every request has a deadline: a job
still queued when it passes is dropped unrun, and the waiting request gets `ServiceTimeout`
(HTTP 504). A job already running cannot be
interrupted (a thread cannot be killed); its ticket is returned when it ends, so abandoned work
still counts against the queue and the service never takes on more than it can hold.

Work that holds the GIL for long stretches (dlib's HOG and CNN face detectors and its face
descriptor, run by anonymisation and its audit, hold it for seconds at a time) would stall the
event loop from a thread, so such a job is handed on by its worker thread to a `ProcessRunner`,
a few spawned worker processes: the thread waits for it without the GIL, and the job keeps its
place in the pool's admission, queue and deadlines.

    >>> pool = InferencePool(lambda: Matter("selfie-cf"), workers=1, max_queue=8, timeout=60)
    >>> ticket = pool.admit()                       # ServiceBusy when full
    >>> result = await pool.run(ticket, lambda matter: matter(image))
    >>> processes = ProcessRunner(workers=1)
    >>> result = await pool.run(ticket, lambda _: processes.call(job))   # job: picklable
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import multiprocessing
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "InferencePool",
    "ProcessCrashed",
    "ProcessRunner",
    "ServiceBusy",
    "ServiceTimeout",
    "Ticket",
    "WorkerSetupError",
]

logger = logging.getLogger(__name__)

State = TypeVar("State")
Result = TypeVar("Result")

_EWMA_WEIGHT = 0.3  # weight of the newest job in the seconds-per-job estimate
# Admit only work expected to end within this share of the time bound: the estimate moves with
# the machine's load, and a 503 at once serves a client better than a 504 after the whole wait.
_ADMISSION_SHARE = 0.75


class ServiceBusy(Exception):
    """The queue is full, or the work ahead would not finish in time: retry after `retry_after` s."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceTimeout(Exception):
    """The request's deadline passed before its job finished."""


class WorkerSetupError(Exception):
    """A worker could not build its state (for the service: the model failed to load)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class Ticket:
    """A place in the pool, held from admission until the job ends (or is dropped)."""

    deadline: float  # time.monotonic() seconds
    released: bool = False


@dataclass
class _Job:
    function: Callable[[Any], Any]
    future: concurrent.futures.Future
    ticket: Ticket


class InferencePool(Generic[State]):
    """`workers` threads, each with its own state from `make_state`, fed through a bounded queue.

    `timeout` (seconds) bounds each request from admission to answer; `max_queue` is the
    number of admitted requests beyond those being computed.
    """

    def __init__(
        self,
        make_state: Callable[[], State],
        workers: int = 1,
        max_queue: int = 32,
        timeout: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be at least 0, got {max_queue}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.workers = workers
        self.max_queue = max_queue
        self.timeout = float(timeout)
        self._make_state = make_state
        self._states: list[State | None] = [None] * workers
        self._state_lock = threading.Lock()  # states are built one at a time
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._outstanding = 0  # tickets not yet released
        self._running = 0
        self._seconds_per_job: float | None = None
        self._served = 0
        self._rejected = 0
        self._timed_out = 0
        self._threads: list[threading.Thread] = []
        self._closed = False

    # ----------------------------------------------------------------- life cycle

    def load(self) -> None:
        """Build every worker's state now, in this thread (so that a bad model fails at start)."""
        for index in range(self.workers):
            self._state(index)

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        with self._lock:
            if self._threads or self._closed:
                return
            for index in range(self.workers):
                thread = threading.Thread(
                    target=self._work, args=(index,), name=f"p3m-serve-worker-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def close(self, wait: float | None = 30.0) -> None:
        """Stop the workers after the jobs already queued, waiting at most `wait` seconds.

        A job that runs on past that (abandoned work of a request that timed out) is left to
        its daemon thread, which ends with the process.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        if wait is None:
            return
        deadline = time.monotonic() + wait
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("an inference worker is still busy at shutdown; not waiting for it")
                return

    @property
    def loaded(self) -> State | None:
        """The first worker's state if built (for health reports), else None."""
        return self._states[0]

    # ----------------------------------------------------------------- admission

    def admit(self) -> Ticket:
        """A ticket for one request, or `ServiceBusy` when the pool cannot take it in time."""
        now = time.monotonic()
        with self._lock:
            if self._closed:
                raise ServiceBusy("the service is shutting down", retry_after=5)
            capacity = self.workers + self.max_queue
            ahead = self._outstanding
            if ahead >= capacity:
                self._rejected += 1
                raise ServiceBusy(
                    f"the service is busy ({ahead} request(s) in hand: {self.workers} being computed, "
                    f"a queue of {self.max_queue})",
                    self._retry_after(ahead),
                )
            per_job = self._seconds_per_job
            if per_job is not None:
                # Jobs run `workers` at a time: this one finishes after the rounds ahead of it.
                expected = (ahead // self.workers + 1) * per_job
                if ahead >= self.workers and expected > _ADMISSION_SHARE * self.timeout:
                    self._rejected += 1
                    raise ServiceBusy(
                        f"the service is busy: {ahead} requests ahead at about {per_job:.1f} s "
                        f"each would not finish within its time bound of {self.timeout:g} s",
                        self._retry_after(ahead),
                    )
            self._outstanding += 1
        return Ticket(deadline=now + self.timeout)

    def _retry_after(self, ahead: int) -> int:
        """Seconds until about half of the work ahead is done (at least 1)."""
        per_job = self._seconds_per_job or 1.0
        return max(1, min(300, math.ceil(per_job * max(1, ahead) / self.workers / 2)))

    def release(self, ticket: Ticket) -> None:
        """Give a ticket's place back (an upload refused on the way in, a dropped job); idempotent."""
        with self._lock:
            if not ticket.released:
                ticket.released = True
                self._outstanding -= 1

    # ----------------------------------------------------------------- running jobs

    async def run(
        self,
        ticket: Ticket,
        function: Callable[[State], Result],
        abandoned: Awaitable[Any] | None = None,
    ) -> Result:
        """Run `function(state)` on a worker and return its result, by the ticket's deadline.

        Raises `ServiceTimeout` when the deadline passes first (the job is dropped if it has
        not started), `WorkerSetupError` when the worker's state cannot be built, and whatever
        `function` raises. `abandoned`: an awaitable that completes when the client has gone
        (the job is then dropped if not started, and `ServiceTimeout` raised).
        """
        if not self._threads:
            self.start()
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put(_Job(function, future, ticket))
        waiting = asyncio.wrap_future(future)
        watchers = {waiting}
        gone = None if abandoned is None else asyncio.ensure_future(abandoned)
        if gone is not None:
            watchers.add(gone)
        remaining = ticket.deadline - time.monotonic()
        try:
            done, _ = await asyncio.wait(
                watchers, timeout=max(0.0, remaining), return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # the server is stopping this request
            if future.cancel():
                self.release(ticket)
            raise
        finally:
            if gone is not None and not gone.done():
                gone.cancel()
        if waiting in done:
            return waiting.result()
        # Deadline passed or client gone: drop the job if it has not started yet (its place
        # in the queue is free at once; a running job keeps its place until it ends).
        if future.cancel():
            self.release(ticket)
        waiting.cancel()
        if gone is None or gone not in done:
            with self._lock:
                self._timed_out += 1
        raise ServiceTimeout(
            f"no answer within the service's time bound of {self.timeout:g} s"
            if gone is None or gone not in done
            else "the client went away"
        )

    def _state(self, index: int) -> State:
        if self._states[index] is None:
            with self._state_lock:
                if self._states[index] is None:
                    self._states[index] = self._make_state()
        return self._states[index]  # type: ignore[return-value]

    def _work(self, index: int) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if not job.future.set_running_or_notify_cancel():
                    continue  # the request timed out or went away while queued
                if time.monotonic() > job.ticket.deadline:
                    job.future.set_exception(ServiceTimeout("deadline passed while queued"))
                    continue
                try:
                    state = self._state(index)
                except Exception as error:  # noqa: BLE001 - reported to the request
                    logger.error("worker %d could not load its model: %s", index, error)
                    job.future.set_exception(WorkerSetupError(error))
                    continue
                with self._lock:
                    self._running += 1
                started = time.monotonic()
                elapsed: float | None = None
                try:
                    result = job.function(state)
                    # Only finished jobs teach the estimate: a rejected upload costs nothing.
                    elapsed = time.monotonic() - started
                except BaseException as error:  # noqa: BLE001 - handed to the waiting request
                    job.future.set_exception(error)
                else:
                    job.future.set_result(result)
                finally:
                    with self._lock:
                        self._running -= 1
                        self._served += 1
                        previous = self._seconds_per_job
                        if elapsed is not None:
                            self._seconds_per_job = (
                                elapsed
                                if previous is None
                                else (1 - _EWMA_WEIGHT) * previous + _EWMA_WEIGHT * elapsed
                            )
            finally:
                self.release(job.ticket)

    # ----------------------------------------------------------------- reporting

    def stats(self) -> dict[str, Any]:
        """Counters for `GET /api/health`: workers, queue, seconds per job, served and rejected."""
        with self._lock:
            per_job = self._seconds_per_job
            return {
                "workers": self.workers,
                "running": self._running,
                "waiting": max(0, self._outstanding - self._running),
                "capacity": self.workers + self.max_queue,
                "timeout_s": self.timeout,
                "seconds_per_job": None if per_job is None else round(per_job, 3),
                "served": self._served,
                "rejected_busy": self._rejected,
                "timed_out": self._timed_out,
            }


class ProcessCrashed(Exception):
    """A worker process of a `ProcessRunner` died while running a job (killed, out of memory, a
    crash in native code); the runner starts new processes for the next job."""


class ProcessRunner:
    """`workers` spawned worker processes for jobs that would hold the GIL in a thread.

    `call(function, *args)` runs `function(*args)` in one of them and returns its result (all
    picklable: module-level functions and dataclasses). It blocks the calling thread (an
    `InferencePool` worker), never the event loop, and without the GIL. The processes start
    on the first call (or `start()`), each loading what its jobs need once (models are cached
    per process), and are spawned, not forked: the server's threads are not copied into them.
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.calls = 0
        self.crashes = 0

    def _current(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise ServiceBusy("the service is shutting down", retry_after=5)
            if self._executor is None:
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
                )
            return self._executor

    def start(self) -> None:
        """Start the processes now (in the background) so that the first job does not wait."""
        executor = self._current()
        for _ in range(self.workers):
            executor.submit(_warm_up)

    def call(self, function: Callable[..., Result], *args: Any) -> Result:
        """`function(*args)` in a worker process. Raises what it raises, `ProcessCrashed` when
        the process died on the way (new processes are started for the next call)."""
        executor = self._current()
        with self._lock:
            self.calls += 1
        try:
            return executor.submit(function, *args).result()
        except concurrent.futures.BrokenExecutor as error:  # BrokenProcessPool
            with self._lock:
                self.crashes += 1
                if self._executor is executor:
                    self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)
            logger.error("a worker process died: %s", error)
            raise ProcessCrashed(f"a worker process died ({error})") from None

    def close(self, wait: bool = True) -> None:
        """Stop the processes (after their current jobs with `wait`); idempotent."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)


def _warm_up() -> None:
    """Import the anonymisation pipeline in a fresh worker process (its first job is then faster)."""
    import p3m.privacy  # noqa: F401
