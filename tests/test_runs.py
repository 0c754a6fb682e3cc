"""The folder-run engine: resume, atomic outputs, recorded failures, events, threads, processes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from p3m.errors import ImageReadError, MissingDependencyError
from p3m.io import atomic_write_text
from p3m.runs import (
    FunctionTask,
    Item,
    ItemFinished,
    ItemRecord,
    Journal,
    Outcome,
    RunFinished,
    RunOptions,
    RunStarted,
    read_journal,
    run_items,
)


class CopyTask:
    """Reads a text file, upper-cases it, writes it atomically; 'bad' inputs fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.computed: list[str] = []
        self.lock = threading.Lock()
        self.loaded_ahead = 0
        self.max_loaded_ahead = 0

    def load(self, item: Item) -> str:
        text = Path(item.source).read_text()
        if text == "unreadable":
            raise ImageReadError("not a text file", item.source)
        with self.lock:
            self.loaded_ahead += 1
            self.max_loaded_ahead = max(self.max_loaded_ahead, self.loaded_ahead)
        time.sleep(self.delay)
        return text

    def compute(self, item: Item, loaded: str) -> str:
        with self.lock:
            self.loaded_ahead -= 1
        if loaded == "crash":
            raise ValueError("cannot upper-case this")
        if loaded == "fatal":
            raise MissingDependencyError("needs a package; install it")
        self.computed.append(item.key)
        return loaded.upper()

    def write(self, item: Item, result: str) -> Outcome:
        atomic_write_text(item.outputs["upper"], result)
        return Outcome(details={"length": len(result)})


# Module level, so that it pickles for the process pool.
def _square(item: Item) -> dict:
    value = int(Path(item.source).read_text())
    if value < 0:
        raise ValueError("negative")
    atomic_write_text(item.outputs["out"], str(value * value))
    return {"value": value}


def make_items(folder: Path, texts: dict[str, str], kind: str = "upper") -> list[Item]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for name, text in texts.items():
        source = folder / f"{name}.txt"
        source.write_text(text)
        items.append(Item(name, source, {kind: folder / "out" / f"{name}.{kind}"}))
    return items


@pytest.mark.parametrize("io_threads", [0, 2])
def test_records_events_and_failures(tmp_path: Path, io_threads: int) -> None:
    items = make_items(tmp_path, {"a": "x", "b": "unreadable", "c": "crash", "d": "yy"})
    events = []
    report = run_items(
        items, CopyTask(), tmp_path / "manifest.jsonl", RunOptions(io_threads=io_threads), events.append
    )
    assert [r.key for r in report.records] == ["a", "b", "c", "d"]
    assert [r.status for r in report.records] == ["done", "failed", "failed", "done"]
    assert report.counts == {"done": 2, "failed": 2}
    assert report.records[1].error == f"{tmp_path / 'b.txt'}: not a text file"
    assert report.records[2].error == f"{tmp_path / 'c.txt'}: ValueError: cannot upper-case this"
    assert report.records[3].details == {"length": 2}
    assert (tmp_path / "out" / "d.upper").read_text() == "YY"
    assert not (tmp_path / "out" / "b.upper").exists()
    assert isinstance(events[0], RunStarted) and events[0] == RunStarted(4, 4, 0)
    finished = [e for e in events if isinstance(e, ItemFinished)]
    assert [e.finished for e in finished] == [1, 2, 3, 4] and {e.pending for e in finished} == {4}
    assert isinstance(events[-1], RunFinished) and events[-1].report is report
    journal = read_journal(tmp_path / "manifest.jsonl")
    assert {k: r.status for k, r in journal.items()} == {"a": "done", "b": "failed", "c": "failed", "d": "done"}
    assert journal["d"].outputs == {"upper": str(tmp_path / "out" / "d.upper")}


def test_resume_keeps_done_and_retries_failed(tmp_path: Path) -> None:
    items = make_items(tmp_path, {"a": "x", "b": "unreadable", "c": "z"})
    run_items(items, CopyTask(), tmp_path / "j.jsonl")
    (tmp_path / "b.txt").write_text("fixed")
    (tmp_path / "out" / "c.upper").unlink()  # an output deleted since: redone
    task = CopyTask()
    report = run_items(items, task, tmp_path / "j.jsonl")
    assert [r.status for r in report.records] == ["kept", "done", "done"]
    assert task.computed == ["b", "c"]
    assert report.records[0].details == {"length": 1}  # the earlier record's details
    overwrite = CopyTask()
    run_items(items, overwrite, tmp_path / "j.jsonl", RunOptions(overwrite=True))
    assert overwrite.computed == ["a", "b", "c"]
    # Compacted: one line per key.
    lines = (tmp_path / "j.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["key"] for line in lines) == ["a", "b", "c"]


def test_kept_needs_record_redoes_outputs_without_a_record_and_attachments_stay_out_of_the_journal(
    tmp_path: Path,
) -> None:
    items = make_items(tmp_path, {"a": "x", "b": "y"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.upper").write_text("Y")  # written, but its record never journalled
    plain = CopyTask()
    assert [r.status for r in run_items(items, plain, tmp_path / "plain.jsonl").records] == ["done", "kept"]

    class Attaching(CopyTask):
        def write(self, item: Item, result: str) -> Outcome:
            outcome = super().write(item, result)
            outcome.attachments["thumbnail"] = "x" * 1000
            return outcome

    task = Attaching()
    report = run_items(items, task, tmp_path / "j.jsonl", RunOptions(kept_needs_record=True))
    assert [r.status for r in report.records] == ["done", "done"] and task.computed == ["a", "b"]
    assert report.records[1].attachments == {"thumbnail": "x" * 1000}
    assert "thumbnail" not in (tmp_path / "j.jsonl").read_text()
    again = run_items(items, Attaching(), tmp_path / "j.jsonl", RunOptions(kept_needs_record=True))
    assert [r.status for r in again.records] == ["kept", "kept"] and again.records[0].details == {"length": 1}


def test_outputless_items_resume_from_the_journal(tmp_path: Path) -> None:
    calls: list[str] = []

    def score(item: Item) -> dict:
        calls.append(item.key)
        if item.key == "bad":
            raise ValueError("no")
        return {"score": len(item.key)}

    items = [Item(name) for name in ("one", "bad", "three")]
    run_items(items, FunctionTask(score), tmp_path / "j.jsonl")
    calls.clear()
    report = run_items(items, FunctionTask(score), tmp_path / "j.jsonl")
    assert calls == ["bad"]
    assert [r.status for r in report.records] == ["kept", "failed", "kept"]
    assert report.records[2].details == {"score": 5}
    # Without the journal nothing is known to be done.
    calls.clear()
    run_items(items, FunctionTask(score))
    assert calls == ["one", "bad", "three"]


def test_duplicate_keys_fail_alone(tmp_path: Path) -> None:
    items = make_items(tmp_path / "x", {"a": "1"}) + make_items(tmp_path / "y", {"a": "2", "b": "3"})
    report = run_items(items, CopyTask(), tmp_path / "j.jsonl")
    assert [r.status for r in report.records] == ["done", "failed", "done"]
    assert "has the same name 'a'" in report.records[1].error
    assert str(tmp_path / "x" / "a.txt") in report.records[1].error
    assert read_journal(tmp_path / "j.jsonl")["a"].status == "done"


@pytest.mark.parametrize("io_threads", [0, 2])
def test_fatal_error_stops_the_run_after_journalling_finished_items(tmp_path: Path, io_threads: int) -> None:
    items = make_items(tmp_path, {"a": "x", "b": "fatal", "c": "z"})
    with pytest.raises(MissingDependencyError):
        run_items(items, CopyTask(), tmp_path / "j.jsonl", RunOptions(io_threads=io_threads))
    journal = read_journal(tmp_path / "j.jsonl")
    assert journal["a"].status == "done" and "c" not in journal


def test_threads_load_ahead_within_the_bound_and_match_inline(tmp_path: Path) -> None:
    texts = {f"i{n:02d}": f"text {n}" for n in range(12)}
    inline = run_items(make_items(tmp_path / "inline", texts), CopyTask(), options=RunOptions(io_threads=0))
    task = CopyTask(delay=0.01)
    threaded = run_items(make_items(tmp_path / "threaded", texts), task, options=RunOptions(io_threads=2, prefetch=3))
    assert task.computed == sorted(texts)  # computed in input order
    assert task.max_loaded_ahead <= 3 + 1
    assert [(r.key, r.status, r.details) for r in threaded.records] == [
        (r.key, r.status, r.details) for r in inline.records
    ]
    for name, text in texts.items():
        assert (tmp_path / "threaded" / "out" / f"{name}.upper").read_text() == text.upper()


def test_process_workers_give_the_same_records(tmp_path: Path) -> None:
    items = make_items(tmp_path, {"a": "3", "b": "-1", "c": "5"}, kind="out")
    report = run_items(items, FunctionTask(_square), tmp_path / "j.jsonl", RunOptions(processes=2))
    assert [(r.key, r.status) for r in report.records] == [("a", "done"), ("b", "failed"), ("c", "done")]
    assert report.records[2].details == {"value": 5}
    assert (tmp_path / "out" / "c.out").read_text() == "25"
    assert set(read_journal(tmp_path / "j.jsonl")) == {"a", "b", "c"}


def test_interrupted_run_resumes_exactly_once(tmp_path: Path) -> None:
    texts = {f"i{n}": str(n) for n in range(6)}
    items = make_items(tmp_path, texts)

    class Interrupting(CopyTask):
        def compute(self, item: Item, loaded: str) -> str:
            if item.key == "i3":
                raise KeyboardInterrupt
            return super().compute(item, loaded)

    with pytest.raises(KeyboardInterrupt):
        run_items(items, Interrupting(), tmp_path / "j.jsonl", RunOptions(io_threads=2))
    done_before = set(read_journal(tmp_path / "j.jsonl"))
    assert {"i0", "i1", "i2"} <= done_before and "i3" not in done_before
    task = CopyTask()
    report = run_items(items, task, tmp_path / "j.jsonl")
    assert "i3" in task.computed and not set(task.computed) & {"i0", "i1", "i2"}
    assert all(r.status in ("kept", "done") for r in report.records)
    # No temporary files left beside the outputs.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{n}.upper" for n in texts)


def test_journal_ignores_a_torn_line_and_keeps_other_runs(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.append(ItemRecord("old", "done", details={"x": 1}))
    with open(path, "a") as handle:
        handle.write('{"key": "torn", "sta')
    assert set(journal.read()) == {"old"}
    run_items([Item("new")], FunctionTask(lambda item: None), path)
    assert set(read_journal(path)) == {"old", "new"}


def test_items_writing_the_same_output_fail_alone(tmp_path: Path) -> None:
    """Different keys, one output file (a.png and a.jpg -> a_alpha.png): the later item fails,
    naming the earlier one; its failure is journalled under its own key; the rest runs."""
    items = make_items(tmp_path / "x", {"a": "1", "b": "2"})
    clash = Item("a-again", tmp_path / "x" / "a.txt", {"upper": items[0].outputs["upper"]})
    report = run_items([items[0], clash, items[1]], CopyTask(), tmp_path / "j.jsonl")
    assert [r.status for r in report.records] == ["done", "failed", "done"]
    assert f"another input ({tmp_path / 'x' / 'a.txt'}) writes the same output a.upper" in report.records[1].error
    assert read_journal(tmp_path / "j.jsonl")["a-again"].status == "failed"


def test_an_input_file_is_never_an_output(tmp_path: Path) -> None:
    """`p3m anonymize a.png -o <a's folder>` would write a.png over the photo: that item fails
    with one line, also when the output is another item's input; the input bytes stay."""
    items = make_items(tmp_path / "x", {"a": "1", "b": "2", "c": "3"})
    own = Item("a", items[0].source, {"upper": items[0].source})
    other = Item("b", items[1].source, {"upper": items[2].source})
    report = run_items([own, other, items[2]], CopyTask(), tmp_path / "j.jsonl")
    assert [r.status for r in report.records] == ["failed", "failed", "done"]
    assert f"its output {items[0].source} would overwrite its own input" in report.records[0].error
    assert f"would overwrite the input {items[2].source}" in report.records[1].error
    assert items[0].source.read_text() == "1" and items[2].source.read_text() == "3"


def test_a_task_factory_is_built_once_here_and_threads_are_set_for_the_run(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    built: list[CopyTask] = []
    seen_threads: list[int] = []

    class ThreadsSeen(CopyTask):
        def compute(self, item: Item, loaded: str) -> str:
            seen_threads.append(torch.get_num_threads())
            return super().compute(item, loaded)

    def factory() -> CopyTask:
        built.append(ThreadsSeen())
        return built[-1]

    before = torch.get_num_threads()
    items = make_items(tmp_path, {"a": "x", "b": "y", "c": "z"})
    report = run_items(items, factory, tmp_path / "j.jsonl", RunOptions(threads=1))
    assert len(built) == 1 and built[0].computed == ["a", "b", "c"]
    assert seen_threads == [1, 1, 1] and torch.get_num_threads() == before
    # One worker, this process, did the three items.
    assert [stats.items for stats in report.workers.values()] == [3]


def test_temporaries_left_by_a_killed_writer_are_removed(tmp_path: Path) -> None:
    items = make_items(tmp_path, {"a": "x", "b": "y"})
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.upper.0123456789ab.tmp").write_text("X")  # a.upper's write never finished
    (out / ".other.txt.0123456789ab.tmp").write_text("?")  # not this run's: left alone
    (out / "b.upper").write_text("Y")  # b is done
    report = run_items(items, CopyTask(), tmp_path / "j.jsonl")
    assert [r.status for r in report.records] == ["done", "kept"]
    assert sorted(p.name for p in out.iterdir()) == [".other.txt.0123456789ab.tmp", "a.upper", "b.upper"]


def test_an_executor_hands_records_back_and_the_engine_journals_them_in_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from p3m.runs import build_task, execute_item

    class TwoWorkers:
        """Runs items in this process as two named workers; hands one record back twice, as a
        retried worker task may."""

        def run(self, pending, task, options, finish) -> None:
            built = build_task(task)
            for number, (index, item) in enumerate(pending):
                record = execute_item(built, item, options.fatal)
                finish(index, record, f"host:{number % 2}")
                if number == 0:
                    finish(index, record, "host:0")

    syncs: list[int] = []
    append_many = Journal.append_many
    monkeypatch.setattr(Journal, "append_many", lambda self, records: (syncs.append(len(list(records))), append_many(self, records))[1])  # fmt: skip
    texts = {f"i{n:03d}": str(n) for n in range(300)}
    events: list = []
    report = run_items(make_items(tmp_path, texts), CopyTask, tmp_path / "j.jsonl", on_event=events.append, executor=TwoWorkers())
    assert report.counts == {"done": 300}
    assert [e.finished for e in events if isinstance(e, ItemFinished)] == list(range(1, 301))
    assert {name: stats.items for name, stats in report.workers.items()} == {"host:0": 150, "host:1": 150}
    assert len(syncs) < 10 and sum(syncs) == 300  # a few group commits, every record once
    assert len(read_journal(tmp_path / "j.jsonl")) == 300


class PngTask:
    """Writes a tiny PNG per item; counts what it computes."""

    def __init__(self, interrupt_at: str | None = None) -> None:
        self.computed: list[str] = []
        self.interrupt_at = interrupt_at

    def load(self, item: Item) -> None:
        return None

    def compute(self, item: Item, loaded: None) -> None:
        if item.key == self.interrupt_at:
            raise KeyboardInterrupt
        self.computed.append(item.key)

    def write(self, item: Item, result: None) -> Outcome:
        import numpy as np

        from p3m.io import write_png

        write_png(item.outputs["alpha"], np.full((4, 5), 200, np.uint8))
        return Outcome()


def _png_items(folder: Path, names: list[str]) -> list[Item]:
    return [Item(name, None, {"alpha": folder / f"{name}_alpha.png"}) for name in names]


def test_resume_redoes_an_output_that_exists_but_is_damaged(tmp_path):
    items = _png_items(tmp_path, ["a", "b", "c", "d"])
    run_items(items, PngTask(), journal=tmp_path / "manifest.jsonl", options=RunOptions(io_threads=0))
    (tmp_path / "a_alpha.png").write_bytes(b"junk!")  # not an image
    whole = (tmp_path / "b_alpha.png").read_bytes()
    (tmp_path / "b_alpha.png").write_bytes(whole[:-12])  # a PNG cut short before its IEND
    events: list = []
    task = PngTask()
    report = run_items(items, task, journal=tmp_path / "manifest.jsonl", options=RunOptions(io_threads=0),
                       on_event=events.append)  # fmt: skip
    assert task.computed == ["a", "b"] and report.counts == {"done": 2, "kept": 2}
    started = events[0]
    assert isinstance(started, RunStarted) and started.kept == 2 and started.pending == 2
    assert len(started.redone) == 2 and "a_alpha.png" in started.redone[0] and "b_alpha.png" in started.redone[1]
    assert "cut short" in started.redone[1]
    assert (tmp_path / "b_alpha.png").read_bytes() == whole  # redone whole


class CheckedCopyTask(CopyTask):
    """A CopyTask whose own check finds a kept output shorter than its journal record says."""

    def output_problem(self, item: Item, record: ItemRecord | None) -> tuple[Path, str] | None:
        path = Path(item.outputs["upper"])
        if record is not None and len(path.read_text()) < record.details["length"]:
            return path, "shorter than recorded"
        return None


def test_a_task_checks_its_own_kept_outputs_with_their_record(tmp_path):
    items = make_items(tmp_path, {"a": "hello", "b": "world", "c": "again"})
    journal = tmp_path / "manifest.jsonl"
    run_items(items, CheckedCopyTask(), journal, RunOptions(io_threads=0))
    (tmp_path / "out" / "b.upper").write_text("WOR")  # cut short: the task's check finds it
    events: list = []
    task = CheckedCopyTask()
    report = run_items(items, task, journal, RunOptions(io_threads=0), on_event=events.append)
    assert task.computed == ["b"] and report.counts == {"kept": 2, "done": 1}
    assert events[0].redone == (f"{tmp_path / 'out' / 'b.upper'}: damaged (shorter than recorded); redoing {items[1].source}",)
    assert (tmp_path / "out" / "b.upper").read_text() == "WORLD"
    # A Task class given as the factory: its unbound check is not called.
    assert run_items(items, CheckedCopyTask, journal, RunOptions(io_threads=0)).counts == {"kept": 3}


def test_ctrl_c_reports_how_far_the_run_got_and_resume_finishes_it(tmp_path):
    from p3m.runs import RunInterrupted

    items = _png_items(tmp_path, ["a", "b", "c", "d", "e"])
    run_items(items[:1], PngTask(), journal=tmp_path / "manifest.jsonl")  # one kept next time
    events: list = []
    with pytest.raises(KeyboardInterrupt):
        run_items(items, PngTask(interrupt_at="d"), journal=tmp_path / "manifest.jsonl", on_event=events.append)
    assert events[-1] == RunInterrupted(done=3, total=5)  # a kept, b and c done
    task = PngTask()
    report = run_items(items, task, journal=tmp_path / "manifest.jsonl")
    assert task.computed == ["d", "e"] and report.counts == {"kept": 3, "done": 2}


def test_the_cli_says_how_far_an_interrupted_run_got(capsys):
    from rich.console import Console

    from p3m.cli._ui import run_progress
    from p3m.runs import RunInterrupted

    console = Console(file=None, stderr=True, width=100)
    with pytest.raises(KeyboardInterrupt), run_progress("run", console) as on_event:
        on_event(RunStarted(total=24, pending=24, kept=0, redone=("x_alpha.png: it is empty; redoing x",)))
        on_event(RunInterrupted(done=5, total=24))
        raise KeyboardInterrupt
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == "interrupted: 5/24 done; run again to resume"
    assert "note: x_alpha.png: it is empty; redoing x" in lines


def test_the_cli_shows_no_bar_when_every_item_is_kept():
    """An all-kept `p3m anonymize` left two "0/0" bars on the terminal before its summary."""
    import io

    from rich.console import Console

    from p3m.cli._ui import run_progress

    def shown(started: RunStarted) -> str:
        stream = io.StringIO()
        console = Console(file=stream, force_terminal=True, width=100)
        with run_progress("anonymizing", console, unit="images") as on_event:
            on_event(started)
        return stream.getvalue()

    all_kept = shown(RunStarted(total=2, pending=0, kept=2))
    assert "0/0" not in all_kept and "anonymizing" not in all_kept
    assert "0/1" in shown(RunStarted(total=2, pending=1, kept=1))  # work left: the bar is there


def test_the_journal_keeps_which_settings_made_each_output_file(tmp_path):
    """A record's `output_settings`: this run's settings for the files it wrote, the earlier
    record's for the item's other files that still exist (also when the item then fails)."""
    from p3m.runs import FunctionTask, Item, Outcome, RunOptions, read_journal, run_items
    from p3m.runs.provenance import settings_of_outputs

    journal = tmp_path / "manifest.jsonl"
    a, b = tmp_path / "x_a.txt", tmp_path / "x_b.txt"

    def writing(paths, settings, fail=False):
        def process(item):
            if fail:
                raise ValueError("broken")
            for path in paths:
                path.write_text(str(settings))
            return Outcome(details={"settings": settings, "written": [path.name for path in paths]})

        return FunctionTask(process)

    both = Item("x", None, {"a": a, "b": b})
    run_items([both], writing([a, b], {"band": 1}), journal)
    only_a = Item("x", None, {"a": a})
    run_items([only_a], writing([a], {"band": 2}), journal, RunOptions(overwrite=True))
    made = settings_of_outputs(read_journal(journal)["x"], tmp_path)
    assert made == {"x_a.txt": {"band": 2}, "x_b.txt": {"band": 1}}
    run_items([only_a], writing([a], {"band": 3}, fail=True), journal, RunOptions(overwrite=True))
    assert settings_of_outputs(read_journal(journal)["x"], tmp_path) == made  # a failure forgets nothing
    b.unlink()
    run_items([only_a], writing([a], {"band": 2}), journal, RunOptions(overwrite=True))
    assert settings_of_outputs(read_journal(journal)["x"], tmp_path) == {"x_a.txt": {"band": 2}}


def test_a_source_replaced_since_its_outputs_were_made_is_redone(tmp_path):
    """Each record stores its source's fingerprint (resolved path, size, mtime_ns): a source
    saved over with another file of the same size, or a file of the same name from another
    folder, is redone with a note; a failed redo keeps the old fingerprint (the outputs there
    are still the old source's); a record without one (an older journal) is trusted, and
    stamped; a copy of the output folder elsewhere keeps everything."""
    import os
    import shutil

    out = tmp_path / "out"
    items = make_items(tmp_path, {"a": "x", "b": "y"})
    journal = out / "j.jsonl"
    run_items(items, CopyTask(), journal)
    first = read_journal(journal)["a"].input
    source = tmp_path / "a.txt"
    assert first == {"path": str(source.resolve()), "bytes": 1, "mtime_ns": source.stat().st_mtime_ns}

    def replace(path: Path, text: str) -> None:  # a later save: another mtime, the same size
        before = path.stat().st_mtime_ns
        path.write_text(text)
        os.utime(path, ns=(before + 10**9, before + 10**9))

    replace(source, "w")
    task, events = CopyTask(), []
    report = run_items(items, task, journal, on_event=events.append)
    assert [r.status for r in report.records] == ["done", "kept"] and task.computed == ["a"]
    assert events[0].redone == (f"{source}: changed since its outputs were made; redoing",)
    assert (out / "a.upper").read_text() == "W"
    assert read_journal(journal)["a"].input["mtime_ns"] == source.stat().st_mtime_ns
    # Another file of the same name (key) from another folder.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.txt").write_text("y")
    moved = [items[0], Item("b", tmp_path / "other" / "b.txt", items[1].outputs)]
    task = CopyTask()
    assert run_items(moved, task, journal).counts == {"kept": 1, "done": 1} and task.computed == ["b"]
    assert run_items(moved, CopyTask(), journal).counts == {"kept": 2}
    # The output folder copied elsewhere (sources where they were): nothing redone.
    shutil.copytree(out, tmp_path / "copy")
    copied = [Item(i.key, i.source, {"upper": tmp_path / "copy" / Path(i.outputs["upper"]).name}) for i in moved]
    assert run_items(copied, CopyTask(), tmp_path / "copy" / "j.jsonl").counts == {"kept": 2}
    # A redo that fails keeps the old fingerprint: the next run redoes it again, not keeps it.
    replace(source, "unreadable")
    assert run_items(moved, CopyTask(), journal).counts == {"failed": 1, "kept": 1}
    assert read_journal(journal)["a"].input["mtime_ns"] != source.stat().st_mtime_ns
    assert run_items(moved, CopyTask(), journal).counts == {"failed": 1, "kept": 1}
    replace(source, "v")
    assert run_items(moved, CopyTask(), journal).counts == {"done": 1, "kept": 1}
    # An older journal (no fingerprint): trusted as before, and stamped from then on.
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    journal.write_text("".join(json.dumps({k: v for k, v in line.items() if k != "input"}) + "\n" for line in lines))
    replace(source, "u")
    assert run_items(moved, CopyTask(), journal).counts == {"kept": 2}
    assert read_journal(journal)["a"].input["mtime_ns"] == source.stat().st_mtime_ns
    replace(source, "t")
    assert run_items(moved, CopyTask(), journal).counts == {"done": 1, "kept": 1}
