"""Stand-in tasks for the engine tests on Ray: tiny text files instead of images.

Ray workers cannot import the tests folder, so the tests send this module by value
(`cloudpickle.register_pickle_by_value`).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from p3m.errors import ImageReadError, MissingDependencyError
from p3m.io import atomic_write_text, temporary_path
from p3m.runs import Item, Outcome


class SquareTask:
    """Reads an integer, squares it, writes it atomically; "bad" inputs fail, "fatal" stops the run.

    `victim`: the key whose write kills its own worker (SIGKILL, a temporary half written) the
    first time, as a crash or an out-of-memory kill would; `marker` records that it happened.
    """

    def __init__(self, victim: str | None = None, marker: str | None = None, delay: float = 0.0) -> None:
        self.victim = victim
        self.marker = marker
        self.delay = delay

    def load(self, item: Item) -> str:
        text = Path(item.source).read_text()
        if text == "bad":
            raise ImageReadError("not a number", item.source)
        return text

    def compute(self, item: Item, text: str) -> int:
        if text == "fatal":
            raise MissingDependencyError("needs a package the worker lacks; install it")
        time.sleep(self.delay)
        return int(text) ** 2

    def write(self, item: Item, square: int) -> Outcome:
        path = Path(item.outputs["out"])
        if item.key == self.victim and self.marker is not None:
            try:
                descriptor = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                pass  # killed once already: this time the write goes through
            else:
                os.write(descriptor, str(os.getpid()).encode())
                os.close(descriptor)
                partial = temporary_path(path)
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.write_text(str(square)[:1])
                os.kill(os.getpid(), signal.SIGKILL)
        atomic_write_text(path, str(square))
        return Outcome(details={"square": square})


class SquareTaskFactory:
    """A picklable task factory; `fail` makes building the task fail (a worker that cannot start)."""

    def __init__(self, fail: bool = False, **options: object) -> None:
        self.fail = fail
        self.options = options

    def __call__(self) -> SquareTask:
        if self.fail:
            raise MissingDependencyError("the model needs onnxruntime on every worker: pip install onnxruntime")
        return SquareTask(**self.options)  # type: ignore[arg-type]


def make_items(folder: Path, texts: dict[str, str]) -> list[Item]:
    """One item per text: `<folder>/<key>.txt` -> `<folder>/out/<key>.out`."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for key, text in texts.items():
        source = folder / f"{key}.txt"
        source.write_text(text)
        items.append(Item(key, source, {"out": folder / "out" / f"{key}.out"}))
    return items
