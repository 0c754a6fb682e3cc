"""What users of rembg-style tools expect from `p3m matte` and `p3m.matte`: stdin / stdout,
a list of inputs, a watched folder, and the refinement options of selfie-cf."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

import p3m
from p3m.cli import app
from p3m.errors import ConfigError
from p3m.inference.api import Matter
from p3m.inference.selfie_cf import SelfieCFConfig

runner = CliRunner()

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("P3M_HOME", str(tmp_path / "p3m-home"))


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return np.asarray(Image.fromarray(data.astronaut()[:, 64:448]).resize((96, 128), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def portrait_jpeg(portrait) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(portrait).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _one_png(payload: bytes) -> Image.Image:
    """The bytes are exactly one PNG: nothing before its signature, nothing after its end."""
    assert payload.startswith(PNG_SIGNATURE) and payload.endswith(PNG_END), payload[:80]
    assert payload.count(PNG_END) == 1
    image = Image.open(io.BytesIO(payload))
    image.load()
    return image


# --------------------------------------------------------------------------- stdin / stdout


@pytest.mark.slow
def test_stdin_to_stdout_in_a_real_pipe(portrait_jpeg, tmp_path):
    """`cat a.jpg | p3m matte - -o - > a.png`: stdout holds the cut-out (RGBA) and nothing else."""
    env = {**os.environ, "P3M_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-m", "p3m.cli", "matte", "-", "-o", "-"],
        input=portrait_jpeg, capture_output=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode()
    image = _one_png(result.stdout)
    assert (image.mode, image.size) == ("RGBA", (96, 128))
    assert b"selfie-cf" in result.stderr  # what would be printed goes to stderr
    assert not list(tmp_path.glob("p3m-output*"))


def test_stdout_gets_the_first_kind_of_save_and_only_it(portrait, portrait_jpeg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a folder named "-" (or any other output) would show up below
    source = tmp_path / "a.png"
    Image.fromarray(portrait).save(source)
    alpha = runner.invoke(app, ["matte", str(source), "-o", "-", "--save", "alpha,rgba"])
    assert alpha.exit_code == 0, alpha.stderr
    image = _one_png(alpha.stdout_bytes)
    assert (image.mode, image.size) == ("L", (96, 128))
    assert "only alpha" in alpha.stderr  # says that the other kinds are not written
    composite = runner.invoke(
        app, ["matte", "-", "-o", "-", "--save", "composite", "-b", "#00ff00"], input=portrait_jpeg
    )
    assert composite.exit_code == 0, composite.stderr
    assert _one_png(composite.stdout_bytes).mode == "RGB"
    assert not (tmp_path / "p3m-output").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_stdin_to_a_folder_and_stream_errors(portrait_jpeg, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["matte", "-", "-o", str(out), "--save", "alpha"], input=portrait_jpeg)
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(out / "stdin_alpha.png")).shape == (128, 96)
    # Bad input on stdin: one line, nothing on stdout.
    # An image that cannot be matted is exit code 1 as in a folder run (2 is for usage errors).
    broken = runner.invoke(app, ["matte", "-", "-o", "-"], input=portrait_jpeg[: len(portrait_jpeg) // 3])
    assert broken.exit_code == 1 and broken.stdout_bytes == b""
    errors = [line for line in broken.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: stdin: "), broken.stderr
    empty = runner.invoke(app, ["matte", "-", "-o", "-"], input=b"")
    assert empty.exit_code == 1 and empty.stdout_bytes == b""
    assert "error: stdin: no image data on stdin" in empty.stderr
    # stdout holds one image: a folder or several inputs are refused before any work.
    for inputs in ([str(tmp_path)], [str(out / "stdin_alpha.png"), str(out / "stdin_alpha.png")]):
        refused = runner.invoke(app, ["matte", *inputs, "-o", "-"])
        assert isinstance(refused.exception, ConfigError) and refused.stdout_bytes == b""
    mixed = runner.invoke(app, ["matte", "-", str(out / "stdin_alpha.png"), "-o", str(out)], input=portrait_jpeg)
    assert isinstance(mixed.exception, ConfigError)


# --------------------------------------------------------------------------- lists, Matter


def test_matte_takes_a_list_and_returns_a_list(portrait, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(portrait).save(path)
    results = p3m.matte([portrait, path, Image.fromarray(portrait[:64])], model="selfie-cf", foreground=False)
    assert isinstance(results, list) and len(results) == 3
    assert [r.alpha.shape for r in results] == [(128, 96), (128, 96), (64, 96)]
    assert np.array_equal(results[0].alpha, results[1].alpha)
    assert p3m.matte([], model="selfie-cf") == []
    single = p3m.matte(portrait, model="selfie-cf", foreground=False)
    assert not isinstance(single, list)


# --------------------------------------------------------------------------- selfie-cf options


def test_selfie_cf_refinement_options(portrait, tmp_path):
    default = Matter("selfie-cf")(portrait, foreground=False)
    wide = Matter("selfie-cf", selfie_config=SelfieCFConfig(band_fraction=0.08))(portrait, foreground=False)
    assert (wide.trimap == 128).sum() > 2 * (default.trimap == 128).sum()
    strict = p3m.matte(portrait, model="selfie-cf", selfie_config=SelfieCFConfig(threshold=0.95), foreground=False)
    assert (strict.trimap > 0).sum() < (default.trimap > 0).sum()
    with pytest.raises(ConfigError, match="selfie-cf"):
        Matter("p3mnet-r34", selfie_config=SelfieCFConfig(threshold=0.7))
    for bad in (SelfieCFConfig(threshold=1.0), SelfieCFConfig(band_fraction=0.0), SelfieCFConfig(band_fraction=0.6)):
        with pytest.raises(ConfigError):
            Matter("selfie-cf", selfie_config=bad)
    # The command line: --trimap-band and --threshold.
    source = tmp_path / "a.png"
    Image.fromarray(portrait).save(source)
    result = runner.invoke(
        app, ["matte", str(source), "-o", str(tmp_path / "o"), "-m", "selfie-cf", "--save", "trimap",
              "--trimap-band", "0.08"],
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "a_trimap.png")), wide.trimap)
    result = runner.invoke(app, ["matte", str(source), "-o", str(tmp_path / "o"), "--threshold", "1.5"])
    assert result.exit_code == 2 and "threshold" in result.output.lower()


# --------------------------------------------------------------------------- watch


def test_watcher_waits_until_a_file_is_completely_written(tmp_path):
    from p3m.inference.watch import FolderWatcher

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_alpha.png").write_bytes(b"p3m's own output is never an input")
    watcher = FolderWatcher(folder, settle_seconds=1.0)
    assert watcher.poll(now=0.0) == []
    payload = (Path(data.__file__).parent / "astronaut.png").read_bytes()
    target = folder / "b.png"
    target.write_bytes(payload[:1000])  # a copy in progress
    assert watcher.poll(now=10.0) == []  # first seen
    with target.open("ab") as handle:
        handle.write(payload[1000:2000])
    assert watcher.poll(now=20.0) == []  # grew since: still being written
    with target.open("ab") as handle:
        handle.write(payload[2000:])
    assert watcher.poll(now=30.0) == []
    assert watcher.poll(now=30.5) == []  # unchanged, but not for long enough
    ready = watcher.poll(now=31.0)
    assert [(entry.path.name, entry.changed) for entry in ready] == [("b.png", False)]
    watcher.handled(ready[0])
    assert watcher.poll(now=40.0) == [] and watcher.poll(now=50.0) == []  # done: not again
    target.write_bytes(payload)  # replaced by a new version: matted again once settled
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert watcher.poll(now=60.0) == []
    assert [(e.path.name, e.changed) for e in watcher.poll(now=61.0)] == [("b.png", True)]


@pytest.mark.slow
def test_watch_mattes_new_files_and_stops_cleanly_on_sigterm(portrait, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "in" / "out"  # outputs inside the watched folder
    folder.mkdir()
    env = {**os.environ, "P3M_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [sys.executable, "-m", "p3m.cli", "matte", "--watch", str(folder), "-o", str(out), "--save", "alpha",
         "--poll", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        # Dropped in the usual safe way: written under a hidden name, then renamed.
        hidden = folder / ".new.png.part"
        Image.fromarray(portrait).save(hidden, format="PNG")
        hidden.rename(folder / "new.png")
        deadline = time.monotonic() + 180
        while not (out / "new_alpha.png").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no output within the time limit"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    assert np.asarray(Image.open(out / "new_alpha.png")).shape == (128, 96)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "new_alpha.png"]
    assert b"matted 1 image(s)" in stdout


def test_plan_matte_takes_the_cli_kind_list_and_names_unknown_kinds(tmp_path):
    from p3m.inference.batch import plan_matte
    from p3m.inference.foreground import parse_color

    plan = plan_matte([str(tmp_path)], tmp_path / "out", "alpha,rgba")
    assert plan.kinds == ("alpha", "rgba")
    with pytest.raises(ConfigError, match="alpha"):
        plan_matte([str(tmp_path)], tmp_path / "out", ["alhpa"])
    with pytest.raises(ConfigError, match="nosuch.jpg: background image not found"):
        parse_color("nosuch.jpg")
    with pytest.raises(ConfigError, match="cannot read the colour"):
        parse_color("blurple")


def test_watch_goes_on_past_an_image_whose_outputs_other_settings_made(portrait, tmp_path):
    """One image whose earlier outputs another threshold made ended `--watch` for good (exit 2);
    it now fails alone, with the difference, and the next image is matted."""
    import threading

    from p3m.inference import Matter
    from p3m.inference.batch import plan_matte, run_matte
    from p3m.inference.selfie_cf import SelfieCFConfig
    from p3m.inference.watch import watch_matte
    from p3m.runs import ItemFinished

    earlier, folder, out = tmp_path / "earlier", tmp_path / "in", tmp_path / "out"
    earlier.mkdir()
    folder.mkdir()
    Image.fromarray(portrait).save(earlier / "a.png")
    run_matte(plan_matte([str(earlier)], out, "alpha"), Matter("selfie-cf", selfie_config=SelfieCFConfig(threshold=0.6)))
    finished: list = []
    stop = threading.Event()

    def on_event(event):  # type: ignore[no-untyped-def]
        if isinstance(event, ItemFinished):
            finished.append(event.record)
            if len(finished) == 2:
                stop.set()

    watcher = threading.Thread(
        target=watch_matte, args=(folder, out, Matter("selfie-cf"), ("alpha",)),
        kwargs={"stop": stop, "poll_seconds": 0.1, "on_event": on_event},
    )  # fmt: skip
    watcher.start()
    for name in ("a.png", "b.png"):
        Image.fromarray(portrait).save(folder / f".{name}.part", format="PNG")
        (folder / f".{name}.part").rename(folder / name)
    watcher.join(timeout=180)
    stop.set()
    assert not watcher.is_alive()
    by_key = {record.key: record for record in finished}
    assert by_key["a.png"].failed and "--threshold 0.6 -> 0.5" in by_key["a.png"].error
    assert by_key["b.png"].status == "done" and (out / "b_alpha.png").is_file()
    # The hint names the option as the surface that shows it: Python's keyword, the CLI's flag.
    from p3m.cli._ui import record_error

    assert "pass overwrite=True" in by_key["a.png"].error
    assert "pass --overwrite" in record_error(by_key["a.png"]) and "=True" not in record_error(by_key["a.png"])


def test_watch_with_overwrite_mattes_again_what_other_settings_made(portrait, tmp_path):
    """`--watch` said "run with --overwrite" for outputs other settings made, but took no
    --overwrite: with it, such an image is matted again."""
    import threading

    from p3m.inference import Matter
    from p3m.inference.batch import plan_matte, run_matte
    from p3m.inference.selfie_cf import SelfieCFConfig
    from p3m.inference.watch import watch_matte
    from p3m.runs import ItemFinished

    earlier, folder, out = tmp_path / "earlier", tmp_path / "in", tmp_path / "out"
    earlier.mkdir()
    folder.mkdir()
    Image.fromarray(portrait).save(earlier / "a.png")
    run_matte(plan_matte([str(earlier)], out, "alpha"), Matter("selfie-cf", selfie_config=SelfieCFConfig(threshold=0.9)))
    before = np.asarray(Image.open(out / "a_alpha.png"))
    finished: list = []
    stop = threading.Event()

    def on_event(event):  # type: ignore[no-untyped-def]
        if isinstance(event, ItemFinished):
            finished.append(event.record)
            stop.set()

    watcher = threading.Thread(
        target=watch_matte, args=(folder, out, Matter("selfie-cf"), ("alpha",)),
        kwargs={"stop": stop, "poll_seconds": 0.1, "on_event": on_event, "overwrite": True},
    )  # fmt: skip
    watcher.start()
    Image.fromarray(portrait).save(folder / ".a.png.part", format="PNG")
    (folder / ".a.png.part").rename(folder / "a.png")
    watcher.join(timeout=180)
    stop.set()
    assert not watcher.is_alive()
    assert [record.status for record in finished] == ["done"], finished
    assert not np.array_equal(np.asarray(Image.open(out / "a_alpha.png")), before)


def test_watch_mattes_again_an_image_replaced_since_an_earlier_run(portrait, tmp_path):
    """An image replaced while no watch ran (same name, same size) was kept with the old
    picture's matte; the engine's source fingerprint has it matted again, once, with a note."""
    import os
    import threading

    from p3m.inference import Matter
    from p3m.inference.batch import plan_matte, run_matte
    from p3m.inference.watch import watch_matte
    from p3m.runs import ItemFinished, RunStarted

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    Image.fromarray(portrait).save(folder / "a.png")
    run_matte(plan_matte([str(folder)], out, "alpha"), Matter("selfie-cf"))
    before = np.asarray(Image.open(out / "a_alpha.png"))
    stamp = (folder / "a.png").stat().st_mtime_ns + 10**9
    Image.fromarray(np.ascontiguousarray(portrait[:, ::-1])).save(folder / "a.png")
    os.utime(folder / "a.png", ns=(stamp, stamp))
    events: list = []
    stop = threading.Event()

    def on_event(event):  # type: ignore[no-untyped-def]
        events.append(event)
        if isinstance(event, ItemFinished):
            stop.set()

    watcher = threading.Thread(
        target=watch_matte, args=(folder, out, Matter("selfie-cf"), ("alpha",)),
        kwargs={"stop": stop, "poll_seconds": 0.1, "on_event": on_event},
    )  # fmt: skip
    watcher.start()
    watcher.join(timeout=180)
    stop.set()
    assert not watcher.is_alive()
    assert [event.record.status for event in events if isinstance(event, ItemFinished)] == ["done"]
    started = [event for event in events if isinstance(event, RunStarted)]
    assert len(started) == 1 and started[0].redone == (f"{folder / 'a.png'}: changed since its outputs were made; redoing",)
    assert not np.array_equal(np.asarray(Image.open(out / "a_alpha.png")), before)


def test_watch_says_once_per_clip_that_videos_are_not_watched(tmp_path):
    """A clip copied into a watched folder was passed over without a word."""
    import threading

    from p3m.inference import Matter
    from p3m.inference.watch import FolderWatcher, VideoNotWatched, watch_matte

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(b"x")
    watcher = FolderWatcher(folder)
    assert watcher.new_videos() == [folder / "clip.mp4"] and watcher.new_videos() == []  # once
    stop = threading.Event()
    seen: list = []

    def on_event(event):  # type: ignore[no-untyped-def]
        seen.append(event)
        stop.set()

    watch_matte(folder, tmp_path / "out", Matter("selfie-cf"), ("alpha",), stop=stop, poll_seconds=0.05, on_event=on_event)
    assert seen == [VideoNotWatched(folder / "clip.mp4")]
