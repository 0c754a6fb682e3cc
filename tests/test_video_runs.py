"""Videos in folder runs go through the run engine (`p3m.video.runs`): settings kept with each
clip's record and compared on resume, damaged kept outputs redone, a journal record per clip,
videos in the run's summary, and p3m's own video outputs never taken as inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from p3m.cli import app
from p3m.errors import ConfigError
from p3m.runs import read_journal
from p3m.video.reader import probe_video
from p3m.video.synthetic import SyntheticClip

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("P3M_HOME", str(tmp_path / "p3m-home"))  # "auto" = the offline selfie-cf


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return SyntheticClip(height=48, width=64, seconds=0.12, fps=25).write(tmp_path_factory.mktemp("runs") / "clip.mp4")


def _matte(*args: str):
    return runner.invoke(app, ["matte", *args])


def test_kept_video_outputs_of_other_settings_stop_the_run_naming_the_difference(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _matte(str(clip), "-o", str(out), "--save", "alpha")
    assert first.exit_code == 0, first.output
    made = (out / "clip_alpha.mov").stat().st_mtime_ns
    for option, changed in (
        (["--max-pixels", "200000"], "--max-pixels"),
        (["--trimap-band", "0.05"], "--trimap-band 0.02 -> 0.05"),
        (["--temporal", "off"], "--temporal on -> off"),
        (["--format", "webm-vp9"], None),  # other files: nothing kept, nothing to compare
    ):
        result = _matte(str(clip), "-o", str(out), "--save", "alpha", *option)
        if changed is None:
            assert result.exit_code == 0, result.output
            continue
        assert isinstance(result.exception, ConfigError), result.output  # exit code 2, one line
        from p3m.cli import command_line_option

        message = result.exception.worded(command_line_option)  # as `p3m` prints it
        assert "holds the outputs of 1 video(s) made with other settings" in message
        assert f"clip.mp4: {changed}" in message and "--overwrite" in message
    assert (out / "clip_alpha.mov").stat().st_mtime_ns == made  # nothing was touched
    # A composite over another background is other settings too; --overwrite redoes the clip.
    composite = _matte(str(clip), "-o", str(tmp_path / "c"), "--save", "composite", "-b", "red")
    assert composite.exit_code == 0, composite.output
    green = _matte(str(clip), "-o", str(tmp_path / "c"), "--save", "composite", "-b", "green")
    assert isinstance(green.exception, ConfigError) and "--background" in str(green.exception)
    redo = _matte(str(clip), "-o", str(out), "--save", "alpha", "--temporal", "off", "--overwrite")
    assert redo.exit_code == 0 and "temporal smoothing off" in redo.output
    assert read_journal(out / "manifest.jsonl")["clip.mp4"].details["settings"]["temporal"] == "off"


def test_damaged_kept_video_outputs_are_redone_with_a_note(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _matte(str(clip), "-o", str(out)).exit_code == 0
    alpha, rgba = out / "clip_alpha.mov", out / "clip_rgba.mov"
    alpha.write_bytes(alpha.read_bytes()[: alpha.stat().st_size // 2])  # cut short
    rgba.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())  # junk
    again = _matte(str(clip), "-o", str(out))
    assert again.exit_code == 0, again.output
    assert f"{alpha}: damaged" in again.output and "redoing" in again.output
    assert probe_video(alpha).frame_count == 3 and probe_video(rgba).frame_count == 3
    assert "kept" in _matte(str(clip), "-o", str(out)).output  # whole again: kept


def test_a_webm_cut_short_is_damaged_by_its_recorded_frame_count(clip: Path, tmp_path: Path) -> None:
    from p3m.video.runs import video_output_problem

    out = tmp_path / "out"
    assert _matte(str(clip), "-o", str(out), "--save", "alpha", "--format", "webm-vp9").exit_code == 0
    webm = out / "clip_alpha.webm"
    assert video_output_problem(webm, frames=3) is None
    webm.write_bytes(webm.read_bytes()[: webm.stat().st_size * 2 // 3])
    assert "of its 3 frames" in (video_output_problem(webm, frames=3) or "")
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    assert video_output_problem(empty) == "it is empty"
    assert _matte(str(clip), "-o", str(out), "--save", "alpha").exit_code == 0
    mov = out / "clip_alpha.mov"
    whole = mov.read_bytes()
    assert video_output_problem(mov, frames=3) is None
    assert video_output_problem(mov, frames=4) == "it holds 3 of its 4 frames"
    for damaged in (whole[:-1], whole + b"\0" * 10, b"\xff" * 100 + whole[100:]):
        mov.write_bytes(damaged)
        assert video_output_problem(mov, frames=3) is not None


def test_one_output_file_is_journalled_in_its_folder(clip: Path, tmp_path: Path) -> None:
    one = tmp_path / "cutout.mov"
    result = _matte(str(clip), "-o", str(one), "--save", "rgba")
    assert result.exit_code == 0, result.output
    assert probe_video(one).has_alpha
    assert read_journal(tmp_path / "manifest.jsonl")["clip.mp4"].outputs == {"rgba": str(one)}
    assert "kept clip.mp4" in _matte(str(clip), "-o", str(one), "--save", "rgba").output


def test_the_journal_records_each_video_and_the_summary_counts_them(clip: Path, tmp_path: Path) -> None:
    from p3m.inference.api import Matter
    from p3m.io import write_png
    from p3m.runs import ItemFinished, RunStarted
    from p3m.video.events import VideoProgress, VideoStarted
    from p3m.video.runs import plan_video_matte, run_video_matte

    out = tmp_path / "lib"
    events: list = []
    plan = plan_video_matte([clip, tmp_path / "gone.mp4"], out, save="alpha")
    report = run_video_matte(plan, Matter("selfie-cf"), temporal=False, on_event=events.append)
    assert report.counts == {"done": 1, "failed": 1}
    kinds = [type(event) for event in events]
    assert kinds[0] is RunStarted and VideoStarted in kinds and VideoProgress in kinds and ItemFinished in kinds
    records = read_journal(out / "manifest.jsonl")
    done = records["clip.mp4"]
    assert done.outputs == {"alpha": str(out / "clip_alpha.mov")} and done.details["frames"] == 3
    assert done.details["settings"] == {**Matter("selfie-cf").settings, "format": "mov-prores4444", "temporal": "off"}
    assert records["gone.mp4"].status == "failed" and "not found" in records["gone.mp4"].error

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    write_png(folder / "photo.png", np.full((24, 32, 3), 120, np.uint8))
    mixed = _matte(str(folder), "-o", str(tmp_path / "mixed"))
    assert mixed.exit_code == 0, mixed.output
    assert "matted 1 image(s) and 1 video(s)" in mixed.output
    assert "done 2, kept 0, failed 0" in mixed.output  # one summary of the run, videos counted
    journal = read_journal(tmp_path / "mixed" / "manifest.jsonl")
    assert set(journal) == {"clip.mp4", "photo.png"}  # each run kept the other's records
    again = _matte(str(folder), "-o", str(tmp_path / "mixed"))
    assert again.exit_code == 0 and "done 0, kept 2, failed 0" in again.output


@pytest.fixture
def call(tmp_path: Path) -> Path:
    folder = tmp_path / "D"
    folder.mkdir()
    return SyntheticClip(height=96, width=160, seconds=0.16, fps=25).write(folder / "call.mov")  # a face


def test_anonymize_summary_and_manifest_include_the_videos(call: Path) -> None:
    from PIL import Image
    from skimage import data
    from skimage.transform import rescale

    folder = call.parent
    face = (rescale(data.astronaut(), 0.5, channel_axis=2) * 255).astype(np.uint8)
    Image.fromarray(face).save(folder / "astro.jpg", quality=95)
    result = runner.invoke(
        app, ["anonymize", str(call), str(folder / "astro.jpg"), "-o", str(folder), "--audit-detectors", "mediapipe"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((folder / "manifest.json").read_text())
    entries = {entry["name"]: entry for entry in manifest["images"]}
    assert entries["call.mov"]["kind"] == "video" and entries["call.mov"]["status"] == "done"
    assert entries["call.mov"]["frames"] == 4 and entries["astro"]["status"] == "done"
    assert manifest["summary"]["done"] == 2 and "call.mov" in (folder / "manifest.csv").read_text()
    assert "│ call.mov" in result.output and "done 2, kept 0, failed 0" in result.output
    assert read_journal(folder / "manifest.jsonl")["call.mov"].outputs["video"] == str(folder / "call.mp4")
    # The clip is counted apart from the images (it was an image "without faces").
    privacy = json.loads((folder / "privacy_report.json").read_text())
    assert privacy["images"] == 1 and privacy["images_with_faces"] == 1
    assert privacy["videos"] == 1 and privacy["video_frames"] == 4
    assert privacy["video_frames_with_faces"] == entries["call.mov"]["frames_with_faces"] > 0
    assert privacy["video_tracks"] == entries["call.mov"]["tracks"] > 0
    assert manifest["summary"]["images"] == 1 and manifest["summary"]["videos"] == 1
    import csv

    rows = {row["name"]: row for row in csv.DictReader((folder / "manifest.csv").open())}
    assert rows["call.mov"]["kind"] == "video" and rows["astro"]["kind"] == "image"
    assert rows["call.mov"]["faces"] == str(entries["call.mov"]["tracks"]) and rows["call.mov"]["frames"] == "4"
    assert "videos: 1 video(s): 4 frames" in " ".join(result.output.split())  # folded at 80 columns


def test_anonymize_never_takes_its_own_clips_and_redoes_a_damaged_one(call: Path) -> None:
    folder = call.parent
    options = ["-o", str(folder), "--audit-detectors", "mediapipe"]
    first = runner.invoke(app, ["anonymize", str(call), *options])
    assert first.exit_code == 0, first.output
    # `p3m anonymize D/* -o D`: its own call.mp4 (and the rest it wrote) are left out quietly.
    everything = sorted(str(path) for path in folder.iterdir())
    assert str(folder / "call.mp4") in everything
    again = runner.invoke(app, ["anonymize", *everything, *options])
    assert again.exit_code == 0, again.output
    assert "error" not in again.output and "done 0, kept 1, failed 0" in again.output
    # A run of videos alone writes the manifest (.json) and privacy report too.
    assert json.loads((folder / "manifest.json").read_text())["images"][0]["name"] == "call.mov"
    # A kept clip cut short is redone, as a damaged image is.
    video = folder / "call.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    redone = runner.invoke(app, ["anonymize", str(call), *options])
    assert redone.exit_code == 0, redone.output
    assert f"{video}: damaged" in redone.output and probe_video(video).frame_count == 4


def test_clips_kept_in_another_container_keep_the_settings_that_made_them(clip: Path, tmp_path: Path) -> None:
    """`p3m matte vids -o ov`, then `--format webm-vp9` (a record about the .webm files replaced
    the one about the .mov files), then `--temporal off` kept the .mov files made with smoothing
    on. The record carries the .mov files' settings over while they exist."""
    out = tmp_path / "out"
    assert _matte(str(clip), "-o", str(out), "--save", "alpha").exit_code == 0
    assert _matte(str(clip), "-o", str(out), "--save", "alpha", "--format", "webm-vp9").exit_code == 0
    from p3m.runs.provenance import settings_of_outputs

    provenance = settings_of_outputs(read_journal(out / "manifest.jsonl")["clip.mp4"], out)
    assert provenance["clip_alpha.mov"]["format"] == "mov-prores4444" and provenance["clip_alpha.mov"]["temporal"] == "on"
    from p3m.inference.batch import OwnOutputs

    assert OwnOutputs().listed(out / "clip_alpha.mov")  # still p3m's own: never an input
    result = _matte(str(clip), "-o", str(out), "--save", "alpha", "--temporal", "off")
    assert isinstance(result.exception, ConfigError), result.output
    assert "clip.mp4: --temporal on -> off" in str(result.exception)


def test_kept_anonymised_clips_of_another_method_stop_the_run(tmp_path: Path) -> None:
    """`p3m anonymize` kept clips whatever --method was given, and the manifest then said the new
    method. Each clip's record keeps the settings; another method stops before any clip."""
    pytest.importorskip("mediapipe")
    source = SyntheticClip(height=96, width=128, seconds=0.08, fps=25).write(tmp_path / "call.mp4")
    out = tmp_path / "out"
    light = ["--detectors", "mediapipe", "--no-audit", "--verify", "none"]
    first = runner.invoke(app, ["anonymize", str(source), "-o", str(out), *light])
    assert first.exit_code == 0, first.output
    assert read_journal(out / "manifest.jsonl")["call.mp4"].details["settings"]["method"] == "blur"
    made = (out / "call.mp4").read_bytes()
    again = runner.invoke(app, ["anonymize", str(source), "-o", str(out), *light, "--method", "mosaic"])
    assert isinstance(again.exception, ConfigError), again.output
    assert "holds the outputs of 1 video(s) made with other settings (call.mp4: --method blur -> mosaic)" in str(again.exception)
    assert (out / "call.mp4").read_bytes() == made
    redo = runner.invoke(app, ["anonymize", str(source), "-o", str(out), *light, "--method", "mosaic", "--overwrite"])
    assert redo.exit_code == 0, redo.output
    assert json.loads((out / "manifest.json").read_text())["images"][0]["method"] == "mosaic"


def test_a_shell_glob_into_the_same_folder_leaves_out_its_own_video_outputs(clip: Path, tmp_path: Path) -> None:
    from p3m.io import write_png

    for name, options in (("mov", []), ("sequence", ["--format", "png-sequence", "--save", "alpha"])):
        same = tmp_path / name
        same.mkdir()
        (same / "clip.mp4").write_bytes(clip.read_bytes())
        write_png(same / "photo.png", np.full((24, 32, 3), 120, np.uint8))
        first = _matte(str(same), "-o", str(same), *options)
        assert first.exit_code == 0, first.output
        # `p3m matte same/* -o same`: the shell names clip_alpha.mov (or the clip_alpha/ PNG sequence).
        everything = sorted(str(path) for path in same.iterdir())
        again = _matte(*everything, "-o", str(same), *options)
        assert again.exit_code == 0, again.output
        assert "error" not in again.output and "_alpha_alpha" not in again.output
        assert "done 0, kept 2, failed 0" in again.output
        assert read_journal(same / "manifest.jsonl")["clip.mp4"].status == "done"


def test_recursive_runs_mirror_the_tree_for_videos_so_same_named_clips_do_not_collide(clip: Path, tmp_path: Path) -> None:
    from p3m.io import write_png

    photos, out = tmp_path / "photos", tmp_path / "out"
    (photos / "sub").mkdir(parents=True)
    for folder in (photos, photos / "sub"):
        (folder / "clip.mp4").write_bytes(clip.read_bytes())
    write_png(photos / "sub" / "face.png", np.full((24, 32, 3), 120, np.uint8))
    result = _matte(str(photos), "-r", "-o", str(out), "--save", "alpha")
    assert result.exit_code == 0, result.output
    assert "same name" not in result.output and "done 3, kept 0, failed 0" in result.output
    assert (out / "clip_alpha.mov").is_file() and (out / "sub" / "clip_alpha.mov").is_file()
    assert (out / "sub" / "face_alpha.png").is_file()
    journal = read_journal(out / "manifest.jsonl")
    assert set(journal) == {"clip.mp4", "sub/clip.mp4", "sub/face.png"}
    assert journal["sub/clip.mp4"].outputs == {"alpha": str(out / "sub" / "clip_alpha.mov")}
    again = _matte(str(photos), "-r", "-o", str(out), "--save", "alpha")
    assert again.exit_code == 0 and "done 0, kept 3, failed 0" in again.output


def test_an_interrupted_folder_run_counts_its_videos_and_its_images(clip: Path, tmp_path: Path, monkeypatch) -> None:
    from p3m.inference.batch import MatteTask
    from p3m.io import write_png
    from p3m.video.runs import VideoMatteTask

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "clip.mp4").write_bytes(clip.read_bytes())
    for name in ("a", "b", "c"):
        write_png(photos / f"{name}.png", np.full((24, 32, 3), 120, np.uint8))
    compute = MatteTask.compute

    def stop_at_b(self, item, loaded):
        if item.key == "b.png":
            raise KeyboardInterrupt
        return compute(self, item, loaded)

    monkeypatch.setattr(MatteTask, "compute", stop_at_b)
    after_a = _matte(str(photos), "-o", str(tmp_path / "out"), "--save", "alpha")
    assert after_a.exit_code == 130
    assert "interrupted: 2/4 done; run again to resume" in after_a.output  # the clip and a.png

    def stop(self, item, loaded):
        raise KeyboardInterrupt

    monkeypatch.setattr(VideoMatteTask, "compute", stop)
    mid_clip = _matte(str(photos), "-o", str(tmp_path / "other"), "--save", "alpha")
    assert mid_clip.exit_code == 130 and "interrupted: 0/4 done; run again to resume" in mid_clip.output


def test_an_interrupted_anonymize_run_counts_its_videos_and_its_images(tmp_path: Path, monkeypatch) -> None:
    from p3m.io import write_png
    from p3m.video.runs import VideoAnonymizeTask

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "clip.mp4").write_bytes(b"x")  # never read: the clip is interrupted first
    write_png(photos / "a.png", np.full((24, 32, 3), 120, np.uint8))

    def stop(self, item, loaded):
        raise KeyboardInterrupt

    monkeypatch.setattr(VideoAnonymizeTask, "compute", stop)
    result = runner.invoke(app, ["anonymize", str(photos), "-o", str(tmp_path / "out"), "--no-audit"])
    assert result.exit_code == 130 and "interrupted: 0/2 done; run again to resume" in result.output


def test_a_replaced_clip_is_matted_again_not_kept(clip: Path, tmp_path: Path) -> None:
    """A clip saved over with another one (here: another seed, the same size) kept the old
    clip's mattes; the engine compares the record's source fingerprint and redoes it."""
    import shutil

    folder, out = tmp_path / "vids", tmp_path / "out"
    folder.mkdir()
    shutil.copy(clip, folder / "clip.mp4")
    assert _matte(str(folder), "-o", str(out), "--save", "alpha").exit_code == 0
    first = (out / "clip_alpha.mov").read_bytes()
    SyntheticClip(height=48, width=64, seconds=0.12, fps=25, seed=7, motion=3.0).write(folder / "clip.mp4")
    again = _matte(str(folder), "-o", str(out), "--save", "alpha")
    assert again.exit_code == 0, again.output
    assert "changed since its outputs were made; redoing" in " ".join(again.output.split())
    assert (out / "clip_alpha.mov").read_bytes() != first
    assert "kept" in _matte(str(folder), "-o", str(out), "--save", "alpha").output
