"""The Ray engine end to end: one local Ray (loopback only) for the module, shut down after it.

The stand-in task (`scale_tasks.py`) keeps the engine tests to tiny text files; one test mattes
real images through `p3m matte --engine ray` and compares them with the local engine. Each test
is bounded in time: a hang dumps the stacks and ends the test process.
"""

from __future__ import annotations

import faulthandler
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data, transform
from typer.testing import CliRunner

import scale_tasks
from p3m.cli import app
from p3m.errors import MissingDependencyError
from p3m.runs import ItemFinished, RunFinished, RunOptions, RunStarted, read_journal, run_items
from p3m.scale import RayExecutor, require_ray, start_local_ray
from scale_tasks import SquareTask, SquareTaskFactory, make_items

TEST_SECONDS = 240  # per test, a bound far above what each takes, for a hung Ray

runner = CliRunner()


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray for this module: 4 logical CPUs (2 workers + Ray Data's own tasks)."""
    ray = pytest.importorskip("ray", reason='the Ray engine is the [scale] extra: pip install "p3m[scale]"')
    from ray import cloudpickle

    assert not ray.is_initialized()
    cloudpickle.register_pickle_by_value(scale_tasks)  # workers cannot import tests/
    temp_dir = tempfile.mkdtemp(prefix="p3mray")  # short: Ray's socket paths must fit 107 bytes
    faulthandler.dump_traceback_later(TEST_SECONDS, exit=True)
    try:
        start_local_ray(num_cpus=4, temp_dir=temp_dir)
        yield ray
    finally:
        faulthandler.cancel_dump_traceback_later()
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(scale_tasks)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _time_bound():
    faulthandler.dump_traceback_later(TEST_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _out_files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def _assert_exactly_once(folder: Path, journal: Path, keys: list[str]) -> None:
    """Every key's output exists once, nothing else (no temporary) is there, and the journal
    (one line per key after the run's compaction) lists exactly the files that exist."""
    out = folder / "out"
    assert _out_files(out) == sorted(f"{key}.out" for key in keys)
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted(line["key"] for line in lines) == sorted(keys)
    assert {line["status"] for line in lines} <= {"done", "kept"}
    listed = sorted(Path(line["outputs"]["out"]).name for line in lines)
    assert listed == _out_files(out)
    for key in keys:
        assert (out / f"{key}.out").read_text() == str(int(key[1:]) ** 2)


def test_ray_gives_the_local_engines_records_and_events(local_ray, tmp_path: Path) -> None:
    assert {node["NodeManagerAddress"] for node in local_ray.nodes()} == {"127.0.0.1"}  # loopback only
    texts = {"n1": "1", "n2": "bad", "n3": "3", "n4": "4", "n5": "5"}
    local = run_items(make_items(tmp_path / "local", texts), SquareTask(), tmp_path / "local" / "j.jsonl")
    events: list = []
    report = run_items(
        make_items(tmp_path / "ray", texts),
        SquareTaskFactory(),
        tmp_path / "ray" / "j.jsonl",
        RunOptions(threads=1),
        events.append,
        executor=RayExecutor(workers=2, batch_size=2),
    )
    assert [(r.key, r.status, r.details) for r in report.records] == [
        (r.key, r.status, r.details) for r in local.records
    ]
    assert report.records[1].error == f"{tmp_path / 'ray' / 'n2.txt'}: not a number"
    assert events[0] == RunStarted(5, 5, 0) and isinstance(events[-1], RunFinished)
    assert sorted(e.finished for e in events if isinstance(e, ItemFinished)) == [1, 2, 3, 4, 5]
    assert sum(stats.items for stats in report.workers.values()) == 5
    assert all(name.count(":") == 1 for name in report.workers)  # host:pid of the Ray actors
    assert {k: r.status for k, r in read_journal(tmp_path / "ray" / "j.jsonl").items()} == {
        k: r.status for k, r in read_journal(tmp_path / "local" / "j.jsonl").items()
    }


def test_a_worker_killed_mid_write_is_redone_and_every_output_exists_once(local_ray, tmp_path: Path) -> None:
    keys = [f"k{n}" for n in range(8)]
    items = make_items(tmp_path, {key: key[1:] for key in keys})
    marker = tmp_path / "killed"
    report = run_items(
        items,
        SquareTaskFactory(victim="k5", marker=str(marker)),
        tmp_path / "j.jsonl",
        executor=RayExecutor(workers=2, batch_size=2),
    )
    assert marker.is_file()  # a worker did die, half-way through writing k5
    assert report.counts == {"done": 8}
    assert len(report.workers) >= 2
    _assert_exactly_once(tmp_path, tmp_path / "j.jsonl", keys)


def test_an_interrupted_driver_resumes_and_every_output_exists_once(local_ray, tmp_path: Path) -> None:
    keys = [f"k{n}" for n in range(10)]
    items = make_items(tmp_path, {key: key[1:] for key in keys})
    journal = tmp_path / "j.jsonl"

    def interrupt(event: object) -> None:
        if isinstance(event, ItemFinished) and event.finished == 3:
            raise KeyboardInterrupt  # Ctrl-C in the driver while the workers are busy

    with pytest.raises(KeyboardInterrupt):
        run_items(
            items, SquareTaskFactory(delay=0.05), journal, on_event=interrupt,
            executor=RayExecutor(workers=2, batch_size=1),
        )  # fmt: skip
    journalled = read_journal(journal)
    assert 3 <= len(journalled) < len(keys)
    assert all(Path(record.outputs["out"]).is_file() for record in journalled.values())  # no claim beyond the files
    report = run_items(items, SquareTaskFactory(), journal, executor=RayExecutor(workers=2, batch_size=2))
    assert report.counts.get("failed", 0) == 0
    assert set(journalled) <= {r.key for r in report.records if r.status == "kept"}
    _assert_exactly_once(tmp_path, journal, keys)


def test_a_worker_that_cannot_build_its_task_stops_the_run_with_its_error(local_ray, tmp_path: Path) -> None:
    items = make_items(tmp_path, {"a1": "1", "a2": "2"})
    with pytest.raises(MissingDependencyError, match="onnxruntime on every worker"):
        run_items(items, SquareTaskFactory(fail=True), tmp_path / "j.jsonl", executor=RayExecutor(workers=1))
    assert not (tmp_path / "out").exists()


def _portraits(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    astronaut = data.astronaut()
    paths = []
    for number, size in enumerate((72, 80, 88)):
        image = (transform.resize(astronaut, (size, size), anti_aliasing=True) * 255).astype(np.uint8)
        path = folder / ("sub" if number == 2 else ".") / f"portrait{number}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(image[:, ::-1] if number % 2 else image).save(path)
        paths.append(path)
    return paths


def _manifest(folder: Path) -> dict[str, dict]:
    """The journal without timings, output paths relative to the output folder."""
    records = {}
    for key, record in read_journal(folder / "manifest.jsonl").items():
        entry = record.to_json()
        entry.pop("seconds")
        entry["outputs"] = {kind: str(Path(path).relative_to(folder)) for kind, path in record.outputs.items()}
        records[key] = entry
    return records


def test_p3m_matte_on_ray_writes_the_local_engines_bytes_and_manifest(local_ray, tmp_path: Path) -> None:
    paths = _portraits(tmp_path / "photos")
    listing = tmp_path / "photos" / "inputs.txt"
    listing.write_text("# portraits\n" + "".join(f"{path.relative_to(listing.parent)}\n" for path in paths))
    common = ["matte", "--input-list", str(listing), "--model", "selfie-cf", "--save", "alpha,rgba",
              "--shard-size", "2", "--threads", "1"]  # fmt: skip
    local = runner.invoke(app, [*common, "-o", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    ray = runner.invoke(
        app, [*common, "-o", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2", "--batch-size", "1"]
    )
    assert ray.exit_code == 0, ray.output
    assert "done 3, kept 0, failed 0" in ray.output and "worker " in ray.output
    files = _out_files(tmp_path / "local")
    assert files == _out_files(tmp_path / "ray")
    assert "00000/portrait0_alpha.png" in files and "00001/sub/portrait2_rgba.png" in files
    for name in files:
        if name.endswith(".png"):
            assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    assert _manifest(tmp_path / "local") == _manifest(tmp_path / "ray")
    assert (tmp_path / "local" / "shards.jsonl").read_text() == (tmp_path / "ray" / "shards.jsonl").read_text()
    # Run again: every image is found in its shard and kept; nothing is written.
    again = runner.invoke(app, [*common, "-o", str(tmp_path / "ray"), "--engine", "ray"])
    assert again.exit_code == 0 and "kept 3" in again.output
    assert _out_files(tmp_path / "ray") == files


def test_ray_options_belong_to_the_ray_engine(tmp_path: Path) -> None:
    from p3m.errors import ConfigError

    result = runner.invoke(app, ["matte", str(tmp_path), "-o", str(tmp_path / "out"), "--workers", "2"])
    assert isinstance(result.exception, ConfigError) and "--workers applies to --engine ray" in str(result.exception)
    nothing = runner.invoke(app, ["matte", "-o", str(tmp_path / "out")])
    assert isinstance(nothing.exception, ConfigError) and "--input-list" in str(nothing.exception)
    anonymize = runner.invoke(
        app, ["anonymize", "--images", str(tmp_path), "--alphas", str(tmp_path), "-o", str(tmp_path / "out"), "--batch-size", "2"]
    )
    assert isinstance(anonymize.exception, ConfigError) and "--batch-size applies to --engine ray" in str(anonymize.exception)


def test_no_cluster_at_the_ray_address_is_one_p3m_line_and_leaves_no_plan(monkeypatch, tmp_path: Path) -> None:
    """`--ray-address auto` with no cluster printed Ray's own words (its `--address` flag, not
    p3m's option) and left `<out>/shards.jsonl` of a run that never started."""
    ray = pytest.importorskip("ray")
    from p3m.errors import ConfigError

    def no_cluster(*args, **kwargs):
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to "
                              "by setting `--address` flag or `RAY_ADDRESS` environment variable.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_cluster)
    listing, alphas = _anonymize_inputs(tmp_path / "in")
    out = tmp_path / "out"
    result = runner.invoke(app, ["anonymize", "--input-list", str(listing), "--alphas", str(alphas), "-o", str(out),
                                 "--shard-size", "2", "--engine", "ray", "--ray-address", "auto"])  # fmt: skip
    assert isinstance(result.exception, ConfigError), result.output
    message = str(result.exception)
    assert "no Ray cluster at auto" in message and "ray start --head" in message and "--ray-address" in message
    assert "--address`" not in message and "\n" not in message
    assert not (out / "shards.jsonl").exists()
    # `p3m matte` plans shards the same way: no plan is left either.
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photos" / "a.png")
    matte = runner.invoke(app, ["matte", str(tmp_path / "photos"), "-o", str(tmp_path / "mattes"), "--shard-size", "2",
                                "--engine", "ray", "--ray-address", "auto"])  # fmt: skip
    assert isinstance(matte.exception, ConfigError) and "no Ray cluster at auto" in str(matte.exception), matte.output
    assert not (tmp_path / "mattes" / "shards.jsonl").exists()


def test_the_ray_engine_without_ray_is_one_line_naming_the_extra(monkeypatch, tmp_path: Path) -> None:
    for name in [name for name in sys.modules if name == "ray" or name.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "p3m\[scale\]"'):
        require_ray()
    (tmp_path / "a.png").write_bytes(b"")
    result = runner.invoke(app, ["matte", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--engine", "ray"])
    assert isinstance(result.exception, MissingDependencyError)  # `p3m` prints it as one red line, exit 2
    assert "\n" not in str(result.exception) and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- p3m anonymize on Ray


def _anonymize_inputs(folder: Path) -> tuple[Path, Path]:
    """Synthetic portraits (`p3m.privacy.testdata`): two with faces, a smooth gradient with none,
    one broken file; mattes with a semi-transparent band; a CSV list of the images. Returns
    (list, mattes)."""
    pytest.importorskip("mediapipe")
    from p3m.privacy.testdata import group_photo

    images, alphas = folder / "images", folder / "alphas"
    images.mkdir(parents=True)
    alphas.mkdir()
    names = []
    gradient = np.dstack([np.tile(np.linspace(40, 220, 320, dtype=np.uint8), (240, 1))] * 3)
    for number in range(3):
        photo = group_photo(number, (240, 320), faces=2, size_range=(48, 100), turned_fraction=0, cut_fraction=0)
        Image.fromarray(photo.image if number < 2 else gradient).save(images / f"group{number}.png")
        alpha = np.full((240, 320), 255, np.uint8)
        alpha[:, 150:154] = 128  # a strand of hair: left untouched
        Image.fromarray(alpha).save(alphas / f"group{number}.png")
        names.append(f"group{number}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.fromarray(np.full((240, 320), 255, np.uint8)).save(alphas / "broken.png")
    listing = folder / "inputs.csv"
    listing.write_text("path,comment\n" + "".join(f"images/{name},x\n" for name in [*names, "broken.png"]))
    return listing, alphas


_TIMINGS = {"seconds", "seconds_per_megapixel", "detection_seconds", "detection_seconds_per_megapixel"}


def _timeless(value, folder: Path | None = None):
    """`value` without timings, paths below `folder` made relative to it."""
    if isinstance(value, dict):
        return {key: _timeless(item, folder) for key, item in value.items() if key not in _TIMINGS}
    if isinstance(value, list):
        return [_timeless(item, folder) for item in value]
    if folder is not None and isinstance(value, str) and value.startswith(str(folder)):
        return str(Path(value).relative_to(folder))
    return value


def test_p3m_anonymize_on_ray_writes_the_local_engines_bytes_manifests_and_report(local_ray, tmp_path: Path) -> None:
    listing, alphas = _anonymize_inputs(tmp_path / "in")
    common = ["anonymize", "--input-list", str(listing), "--alphas", str(alphas), "--layout", "P3M-500-P",
              "--audit-detectors", "mediapipe", "--review", "--shard-size", "2", "--threads", "1"]  # fmt: skip
    local = runner.invoke(app, [*common, "--out", str(tmp_path / "local")])
    assert local.exit_code == 1, local.output  # the broken file
    ray = runner.invoke(
        app, [*common, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2", "--batch-size", "1"]
    )
    assert ray.exit_code == 1, ray.output
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    statuses = [r["status"] for r in manifest["images"]]
    # One status per image: a written image with a face left to check is needs_review, not done.
    assert set(statuses[:2]) <= {"done", "needs_review"} and statuses[2:] == ["needs_annotation", "error"]
    reviewed = statuses.count("needs_review")
    summary = f"done {2 - reviewed}, kept 0, failed 1" + (", needs review 1" if reviewed else "")
    assert summary + ", not written (no face found) 1" in " ".join(ray.output.split()) and "worker " in ray.output
    files = _out_files(tmp_path / "local")
    assert files == _out_files(tmp_path / "ray")
    assert "00000/blurred_image/group0.png" in files and "00001/trimap/group2.png" not in files
    for name in files:
        if name.endswith(".png"):
            assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    for name in ("manifest.json", "privacy_report.json"):
        local_document = _timeless(json.loads((tmp_path / "local" / name).read_text()), tmp_path / "local")
        ray_document = _timeless(json.loads((tmp_path / "ray" / name).read_text()), tmp_path / "ray")
        assert local_document == ray_document, name
    assert "broken.png" in manifest["images"][3]["error"]
    privacy = json.loads((tmp_path / "ray" / "privacy_report.json").read_text())
    assert privacy["images"] == 4 and privacy["faces"] >= 4 and privacy["needs_annotation"]["group2"] == ["no face found"]
    for name in ("manifest.csv", "needs_annotation.txt", "shards.jsonl"):
        assert (tmp_path / "local" / name).read_text() == (tmp_path / "ray" / name).read_text(), name
    for name in ("review.html", "privacy_report.html"):  # thumbnails came back from the workers
        sheet = (tmp_path / "ray" / name).read_text()
        flagged = sheet.count("<figure class='flagged'>")
        assert sheet.count("data:image/png;base64,") == (3 if name == "review.html" else flagged) and flagged >= 1
        timing = re.compile(r"<tr><th>detection</th><td>[^<]*</td></tr>")
        assert timing.sub("", sheet) == timing.sub("", (tmp_path / "local" / name).read_text()), name
    journal = _timeless({k: r.to_json() for k, r in read_journal(tmp_path / "ray" / "manifest.jsonl").items()}, tmp_path / "ray")
    assert journal == _timeless(
        {k: r.to_json() for k, r in read_journal(tmp_path / "local" / "manifest.jsonl").items()}, tmp_path / "local"
    )
    assert "thumbnail" not in (tmp_path / "ray" / "manifest.jsonl").read_text()  # attachments never journalled


def test_an_interrupted_anonymize_run_redoes_only_what_is_missing(local_ray, tmp_path: Path) -> None:
    from p3m.privacy.dataset import AnonymizeConfig, anonymize_samples, samples_from_paths

    listing, alphas = _anonymize_inputs(tmp_path / "in")
    paths = [tmp_path / "in" / line.split(",")[0] for line in listing.read_text().splitlines()[1:4]]
    samples = samples_from_paths(paths, alphas)
    config = AnonymizeConfig(audit=False, verify="none")
    out = tmp_path / "out"

    def interrupt(event: object) -> None:
        if isinstance(event, ItemFinished) and event.finished == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        anonymize_samples(samples, out, config, interrupt, executor=RayExecutor(workers=2, batch_size=1))
    first = read_journal(out / "manifest.jsonl")
    assert 1 <= len(first) < 3
    stamps = {path: Path(path).stat().st_mtime_ns for r in first.values() for path in r.outputs.values()}
    report = anonymize_samples(samples, out, config, executor=RayExecutor(workers=2, batch_size=1))
    statuses = {r["name"]: r["status"] for r in report.records}
    assert {name for name, status in statuses.items() if status == "kept"} == {
        key for key, r in first.items() if r.status == "done"
    }
    assert statuses["group2"] == "needs_annotation" and set(statuses.values()) <= {"kept", "done", "needs_review", "needs_annotation"}
    assert all(Path(path).stat().st_mtime_ns == stamp for path, stamp in stamps.items())  # not rewritten
    # Every output exactly once, no temporary left, and the journal lists exactly the files there are.
    written = sorted(f"{sub}/group{n}.png" for n in (0, 1) for sub in ("blurred_image", "facemask", "mask"))
    assert [name for name in _out_files(out) if name.endswith(".png")] == written
    listed = sorted(str(Path(p).relative_to(out)) for r in read_journal(out / "manifest.jsonl").values() for p in r.outputs.values())
    assert listed == written
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r["name"]: r["status"] for r in manifest["images"]} == statuses
