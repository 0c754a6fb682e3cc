"""Streaming building blocks: every stage runs ahead of the next by a bounded number of items.

Decoding, matting and encoding overlap (decode -> matte -> encode), and memory does not grow
with the clip's length: at most `size` decoded frames wait for the matting stage, at most
`lookahead` frames are being matted, and at most `size` finished frames wait for the encoder.
An exception in any stage stops the others and is raised in the caller's thread.

    >>> frames = prefetch(reader, size=4)                      # decoding in a thread
    >>> results = ordered_map(matte_one, frames, workers=2)    # in input order
    >>> with Consumer(write_one, size=4) as sink:              # encoding in a thread
    ...     for result in results:
    ...         sink.put(result)
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

__all__ = ["Consumer", "Turnstile", "ordered_map", "prefetch"]

T = TypeVar("T")
R = TypeVar("R")

_POLL = 0.1  # seconds between checks of the stop flag while a queue is full / empty


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def prefetch(iterable: Iterable[T], size: int = 4, name: str = "p3m-prefetch") -> Iterator[T]:
    """Iterate `iterable` in a background thread, at most `size` items ahead of the consumer.

    Exceptions of the producer are raised here, at the point the failed item would have come.
    Closing the returned generator early stops the producer.
    """
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    items: queue.Queue[Any] = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterable:
                if not put(item):
                    return
        except BaseException as error:  # re-raised in the consumer's thread
            put(_Failure(error))
            return
        finally:
            close = getattr(iterable, "close", None)
            if stop.is_set() and callable(close):
                close()
        put(_END)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        # Unblock a producer waiting on a full queue, then let it finish.
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                items.get(timeout=_POLL)
        thread.join()


def ordered_map(
    function: Callable[[T], R],
    items: Iterable[T],
    workers: int = 1,
    lookahead: int | None = None,
    name: str = "p3m-worker",
) -> Iterator[R]:
    """`function(item)` for each item, in `workers` threads, results yielded in input order.

    At most `lookahead` (default `workers + 1`) items are in flight. With one worker the
    function runs in the caller's thread (no pool). An exception is raised when its item's
    turn comes; items not yet started are cancelled.
    """
    if workers <= 1:
        for item in items:
            yield function(item)
        return
    limit = max(workers, lookahead if lookahead is not None else workers + 1)
    pending: deque[Future[R]] = deque()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        for item in items:
            pending.append(executor.submit(function, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)


class Consumer(Generic[T]):
    """Calls `consume(item)` in a background thread for every `put` item, in order.

    `put` blocks while `size` items wait. An exception in `consume` is raised by the next `put`
    or by `close()`; after it, items are dropped. Use as a context manager: leaving the block
    normally waits for the last item, leaving it with an exception stops without waiting.
    """

    def __init__(
        self, consume: Callable[[T], None], size: int = 4, name: str = "p3m-consumer"
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self._consume = consume
        self._items: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._items.get()
            if item is _END:
                return
            if self._error is not None or self._stop.is_set():
                continue  # drain
            try:
                self._consume(item)
            except BaseException as error:  # re-raised in the producer's thread
                self._error = error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        self._raise_if_failed()
        while True:
            try:
                self._items.put(item, timeout=_POLL)
                break
            except queue.Full:
                self._raise_if_failed()
        self._raise_if_failed()

    def close(self) -> None:
        """Wait for every item to be consumed; raise the consumer's exception if there was one."""
        if self._thread.is_alive():
            self._items.put(_END)
            self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Stop without consuming the items still waiting."""
        self._stop.set()
        if self._thread.is_alive():
            while True:
                try:
                    self._items.put(_END, timeout=_POLL)
                    break
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        self._items.get_nowait()
            self._thread.join()

    def __enter__(self) -> Consumer[T]:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Turnstile:
    """Lets frame-ordered work run in index order while the rest runs in parallel.

    `with turnstile.turn(index): ...` waits until every lower index has had its turn.
    `skip(index)` marks a turn as taken without running anything (a frame that failed early);
    taking or skipping an index twice is harmless.
    """

    def __init__(self, start: int = 0) -> None:
        self._next = start
        self._condition = threading.Condition()

    def _wait(self, index: int) -> None:
        with self._condition:
            while self._next < index:
                self._condition.wait()

    def _advance(self, index: int) -> None:
        with self._condition:
            if self._next == index:
                self._next = index + 1
                self._condition.notify_all()

    def turn(self, index: int) -> _Turn:
        return _Turn(self, index)

    def skip(self, index: int) -> None:
        self._wait(index)
        self._advance(index)


class _Turn:
    def __init__(self, turnstile: Turnstile, index: int) -> None:
        self._turnstile = turnstile
        self._index = index

    def __enter__(self) -> None:
        self._turnstile._wait(self._index)

    def __exit__(self, *exc: object) -> None:
        self._turnstile._advance(self._index)
