"""Video on the command line, end to end: `p3m matte clip.mp4`, `p3m eval-video`,
`p3m anonymize clip.mp4`, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from p3m.cli import app
from p3m.errors import P3MError
from p3m.io import write_alpha
from p3m.video.reader import probe_video, read_alpha_frames
from p3m.video.synthetic import SyntheticClip

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("P3M_HOME", str(tmp_path / "p3m-home"))  # "auto" = the offline selfie-cf


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    synthetic = SyntheticClip(height=96, width=160, seconds=0.16, fps=25)  # 4 frames
    path = synthetic.write(tmp_path_factory.mktemp("cli") / "call.mp4")
    return path, list(synthetic.alphas())


@pytest.mark.slow
def test_matte_a_video_then_evaluate_it(clip, tmp_path: Path) -> None:
    path, truth = clip
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["matte", str(path), "-o", str(out), "--save", "alpha,rgba,composite",
         "--format", "png-sequence", "--background", "red"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "call_alpha" in result.output
        and "frames/s" in result.output
        and "selfie-cf" in result.output
    )
    assert len(list((out / "call_alpha").glob("*.png"))) == 4
    assert probe_video(out / "call_rgba").has_alpha
    assert probe_video(out / "call_composite.mp4").frame_count == 4

    again = runner.invoke(
        app, ["matte", str(path), "-o", str(out), "--save", "alpha", "--format", "png-sequence"]
    )
    assert again.exit_code == 0 and "kept" in again.output

    off = runner.invoke(
        app,
        [
            "matte",
            str(path),
            "-o",
            str(tmp_path / "off"),
            "--save",
            "alpha",
            "--format",
            "webm-vp9",
            "--temporal",
            "off",
        ],
    )
    assert off.exit_code == 0, off.output
    assert "temporal smoothing off" in off.output
    assert len(list(read_alpha_frames(tmp_path / "off" / "call_alpha.webm"))) == 4

    truth_dir = tmp_path / "truth"
    for index, alpha in enumerate(truth):
        write_alpha(truth_dir / f"{index:04d}.png", alpha)
    csv_path = tmp_path / "per_frame.csv"
    evaluated = runner.invoke(
        app,
        [
            "eval-video",
            str(out / "call_alpha"),
            str(truth_dir),
            "--csv",
            str(csv_path),
            "--json",
            str(tmp_path / "s.json"),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "dtSSD" in evaluated.output and "4 frames" in evaluated.output
    # `--json -`: the JSON alone on stdout (it wrote a file named "-"), the table on stderr.
    piped = runner.invoke(app, ["eval-video", str(out / "call_alpha"), str(truth_dir), "--json", "-"])
    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.stdout)["frames"] == 4 and "dtSSD" in piped.stderr and not Path("-").exists()
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "frame,sad,mse,mad,dtssd" and len(rows) == 5 and rows[1].endswith(",")
    composite = runner.invoke(app, ["eval-video", str(path), str(truth_dir)])  # the colour source clip
    assert isinstance(composite.exception, P3MError)
    assert "is a colour video without an alpha channel" in str(composite.exception)
    (truth_dir / "0003.png").unlink()  # one frame short: both files are named
    short = runner.invoke(app, ["eval-video", str(out / "call_alpha"), str(truth_dir)])
    assert isinstance(short.exception, P3MError)
    assert "prediction has more frames" in str(short.exception) and str(truth_dir) in str(short.exception)


def test_bad_video_inputs(clip, tmp_path: Path) -> None:
    path, _ = clip
    missing = runner.invoke(app, ["matte", str(tmp_path / "gone.mp4"), "-o", str(tmp_path)])
    assert isinstance(missing.exception, P3MError)  # exit code 2 and one red line in `p3m`
    assert str(missing.exception) == f"{tmp_path / 'gone.mp4'}: file not found"
    (tmp_path / "notes.mov").write_text("this is not a video\n" * 10)
    bad = runner.invoke(app, ["matte", str(tmp_path / "notes.mov"), "-o", str(tmp_path / "o")])
    assert bad.exit_code == 1 and "notes.mov: not a video" in bad.output
    # No output; the run journal records the failure with its reason, as for images.
    assert [path.name for path in (tmp_path / "o").iterdir()] == ["manifest.jsonl"]
    from p3m.runs import read_journal

    failed = read_journal(tmp_path / "o" / "manifest.jsonl")["notes.mov"]
    assert failed.status == "failed" and "not a video" in failed.error
    wrong_kind = runner.invoke(app, ["matte", str(path), "-o", str(tmp_path), "--save", "trimap"])
    assert isinstance(wrong_kind.exception, P3MError) and "video outputs are" in str(
        wrong_kind.exception
    )
    no_alpha = runner.invoke(
        app, ["matte", str(path), "-o", str(tmp_path), "--save", "rgba", "--format", "mp4"]
    )
    assert isinstance(no_alpha.exception, P3MError) and "no alpha channel" in str(
        no_alpha.exception
    )
    evaluated = runner.invoke(app, ["eval-video", str(path), str(tmp_path / "nothing")])
    assert isinstance(evaluated.exception, P3MError) and "nothing" in str(evaluated.exception)


@pytest.mark.slow
def test_anonymize_a_video(clip, tmp_path: Path) -> None:
    path, _ = clip
    result = runner.invoke(
        app, ["anonymize", str(path), "-o", str(tmp_path), "--audit-detectors", "mediapipe"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "call.mp4").exists() and (tmp_path / "call.faces.jsonl").exists()
    assert "tracking filled" in result.output
    assert probe_video(tmp_path / "call.mp4").frame_count == 4


def test_folders_give_their_videos_but_not_p3m_outputs(tmp_path: Path) -> None:
    from p3m.cli.video_cmd import split_video_inputs

    for name in ("a.mp4", "b.MOV", "a_alpha.mov", "a_composite.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    images, videos = split_video_inputs([str(tmp_path), str(tmp_path / "a_alpha.mov"), "photo.jpg"])
    assert [v.name for v, _ in videos] == ["a.mp4", "b.MOV", "a_alpha.mov"]  # named files are taken
    assert images == ["photo.jpg"]  # the folder has no image, so it is not passed on


def test_eval_video_of_one_frame_gives_dtssd_null_in_means_and_rows(tmp_path: Path) -> None:
    import json

    alpha = np.linspace(0, 1, 24 * 32, dtype=np.float32).reshape(24, 32)
    write_alpha(tmp_path / "pred" / "0000.png", alpha)
    write_alpha(tmp_path / "gt" / "0000.png", alpha)
    result = runner.invoke(
        app,
        ["eval-video", str(tmp_path / "pred"), str(tmp_path / "gt"), "--json", str(tmp_path / "s.json")],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["rows"][0]["dtssd"] is None
    assert "dtssd" in summary["means"] and summary["means"]["dtssd"] is None
    assert summary["means"]["sad"] == 0.0


def test_a_video_background_loops_under_a_video_and_is_refused_for_an_image(tmp_path: Path) -> None:
    from p3m.io import write_png
    from p3m.video.reader import read_frames
    from video_clips import write_source

    source = SyntheticClip(height=48, width=64, seconds=0.12, fps=25).write(tmp_path / "clip.mp4")  # 3 frames
    green = np.zeros((32, 48, 3), np.uint8)
    green[..., 1] = 200
    background = write_source(tmp_path / "bg.mp4", [green, green], [0, 40])  # shorter: it loops
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["matte", str(source), "-o", str(out), "--save", "alpha,composite", "--format", "png-sequence",
              "-b", str(background)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    alphas = list(read_alpha_frames(out / "clip_alpha"))
    composites = [frame.image for frame in read_frames(out / "clip_composite.mp4")]
    assert len(composites) == 3
    for alpha, composite in zip(alphas, composites, strict=True):
        clear = alpha[:, :, None] < 0.02  # the background shows through: green, not white
        assert clear.any()
        shown = composite[np.broadcast_to(clear, composite.shape)].reshape(-1, 3).mean(axis=0)
        assert shown[1] > 150 and shown[0] < 60 and shown[2] < 60, shown

    write_png(tmp_path / "photo.png", np.full((32, 32, 3), 128, np.uint8))
    image = runner.invoke(
        app, ["matte", str(tmp_path / "photo.png"), "-o", str(out), "--save", "composite", "-b", str(background)]
    )
    assert isinstance(image.exception, P3MError)  # exit code 2, one line, before any work
    assert "a video background is for video inputs only" in str(image.exception)
    assert str(background) in str(image.exception)
    # A video and an image in one run: the video is matted over it, the image left out, said so.
    both = runner.invoke(
        app, ["matte", str(source), str(tmp_path / "photo.png"), "-o", str(tmp_path / "both"),
              "--save", "alpha,composite", "--format", "png-sequence", "-b", str(background)],
    )  # fmt: skip
    assert both.exit_code == 1, both.output
    assert "images left out:" in both.output and (tmp_path / "both" / "clip_composite.mp4").is_file()
    assert not (out / "photo_composite.png").exists()


def test_anonymize_a_folder_runs_its_videos_as_matte_does(tmp_path, monkeypatch):
    """`p3m anonymize FOLDER` hands the folder's videos to the video path (it used to ignore
    them, and a folder of only videos said "no images found")."""
    import p3m.cli.video_cmd as video_cmd
    from p3m.io import expand_folders

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("p.jpg", "p.png", "p.MP4", "notes.txt", ".hidden.mp4"):
        (mixed / name).write_bytes(b"x")
    images, videos = expand_folders([mixed, tmp_path / "named.mov"])
    assert [path.name for path in images] == ["p.jpg", "p.png"]
    assert [path.name for path in videos] == ["p.MP4", "named.mov"]

    handed: list = []
    from p3m.runs import RunReport

    def handed_over(videos, out, config, images=0):
        handed.extend(videos)
        return [], RunReport([])

    monkeypatch.setattr(video_cmd, "anonymize_video_inputs", handed_over)
    only = tmp_path / "vonly"
    only.mkdir()
    (only / "ok.mp4").write_bytes(b"x")
    result = runner.invoke(app, ["anonymize", str(only), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert handed == [(only / "ok.mp4", Path("ok.mp4"))] and "no images found" not in result.output
