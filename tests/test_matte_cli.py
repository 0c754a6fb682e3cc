"""`p3m matte`, `p3m demo` and `p3m weights` end to end, on the astronaut and synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from p3m.cli import app
from p3m.models import create_model, save_checkpoint

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("P3M_HOME", str(tmp_path / "p3m-home"))


def _synthetic_portrait(height: int = 120, width: int = 90) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), np.uint8)
    image[...] = np.stack([xx * 2 % 256, yy * 2 % 256, np.full_like(xx, 90)], axis=2)
    head = (yy - height * 0.35) ** 2 + (xx - width / 2) ** 2 < (width * 0.22) ** 2
    body = (yy > height * 0.55) & (np.abs(xx - width / 2) < width * 0.35)
    image[head | body] = (200, 150, 120)
    return image


@pytest.fixture()
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    Image.fromarray(_synthetic_portrait()).save(folder / "synthetic.jpg", quality=95)
    good = (folder / "astronaut.png").read_bytes()
    (folder / "broken.png").write_bytes(good[: len(good) // 3])  # truncated
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.slow
def test_folder_run_writes_outputs_skips_bad_images_and_exits_nonzero(photo_folder, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["matte", str(photo_folder), "-o", str(out), "--save", "alpha,rgba,composite,foreground",
         "--background", "#00ff00"],
    )
    assert result.exit_code == 1, result.output
    assert "broken.png" in result.output and "selfie-cf" in result.output
    for stem, size in (("astronaut", (512, 512)), ("synthetic", (90, 120))):
        alpha = Image.open(out / f"{stem}_alpha.png")
        rgba = Image.open(out / f"{stem}_rgba.png")
        assert alpha.mode == "L" and alpha.size == size
        assert rgba.mode == "RGBA" and rgba.size == size
        assert Image.open(out / f"{stem}_composite.png").mode == "RGB"
        assert Image.open(out / f"{stem}_foreground.png").mode == "RGB"
        assert not {"exif", "icc_profile", "dpi"} & set(alpha.info)
    # The astronaut's cut-out carries her alpha; its composite is green where she is not.
    alpha = np.asarray(Image.open(out / "astronaut_alpha.png"))
    composite = np.asarray(Image.open(out / "astronaut_composite.png"))
    assert alpha[140, 225] == 255 and alpha[40, 440] == 0
    assert tuple(composite[40, 440]) == (0, 255, 0)
    assert np.array_equal(np.asarray(Image.open(out / "astronaut_rgba.png"))[:, :, 3], alpha)
    assert not list(out.glob("broken*")) and not list(out.glob(".*tmp"))
    # The run's journal is the folder's manifest: one record per image, the failure's reason.
    from p3m.runs import read_journal

    manifest = read_journal(out / "manifest.jsonl")
    assert {key: record.status for key, record in manifest.items()} == {
        "astronaut.png": "done", "broken.png": "failed", "synthetic.jpg": "done"}
    assert "broken.png" in manifest["broken.png"].error
    assert manifest["astronaut.png"].outputs["alpha"] == str(out / "astronaut_alpha.png")

    # A second run keeps what exists, and only redoes it with --overwrite.
    stamp = (out / "astronaut_alpha.png").stat().st_mtime_ns
    again = runner.invoke(app, ["matte", str(photo_folder / "astronaut.png"), "-o", str(out)])
    assert again.exit_code == 0 and "kept 1" in again.output
    assert "done 0, kept 1, failed 0" in again.output  # the summary line of every folder run
    assert (out / "astronaut_alpha.png").stat().st_mtime_ns == stamp
    forced = runner.invoke(
        app, ["matte", str(photo_folder / "astronaut.png"), "-o", str(out), "--overwrite"]
    )
    assert forced.exit_code == 0
    assert (out / "astronaut_alpha.png").stat().st_mtime_ns != stamp


def test_globs_and_recursive_folders_keep_the_layout(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_synthetic_portrait()).save(root / "a.png")
    Image.fromarray(_synthetic_portrait(100, 80)).save(root / "sub" / "b.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["matte", str(root), "-r", "-o", str(out), "--save", "alpha"])
    assert result.exit_code == 0, result.output
    assert (out / "a_alpha.png").exists() and (out / "sub" / "b_alpha.png").exists()
    globbed = runner.invoke(app, ["matte", str(root / "*.png"), "-o", str(tmp_path / "g"), "--save", "alpha"])
    assert globbed.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["a_alpha.png", "manifest.jsonl"]
    missing = runner.invoke(app, ["matte", str(tmp_path / "nope.png"), "-o", str(out)])
    assert missing.exit_code != 0


def test_missing_inputs_are_reported_and_skipped_and_the_rest_matted(tmp_path):
    Image.fromarray(_synthetic_portrait()).save(tmp_path / "a.png")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["matte", str(tmp_path / "a.png"), str(tmp_path / "missing.jpg"), str(tmp_path / "none-*.png"),
         "-o", str(out), "--save", "alpha"],
    )
    assert result.exit_code == 1, result.output
    assert (out / "a_alpha.png").exists()
    assert "skipped 2 input(s)" in result.output
    assert "missing.jpg: no such file or folder" in result.output
    assert "none-*.png: no image matches this pattern" in result.output
    # Outputs already there: nothing to matte, yet the missing input still fails the run.
    again = runner.invoke(
        app, ["matte", str(tmp_path / "a.png"), str(tmp_path / "missing.jpg"), "-o", str(out), "--save", "alpha"]
    )
    assert again.exit_code == 1 and "kept 1" in again.output and "missing.jpg" in again.output


def test_no_existing_input_at_all_is_one_clear_error(tmp_path):
    from p3m.errors import ImageReadError

    result = runner.invoke(app, ["matte", str(tmp_path / "x.jpg"), str(tmp_path / "y.jpg")])
    assert isinstance(result.exception, ImageReadError)
    message = str(result.exception)
    assert "x.jpg" in message and "y.jpg" in message and "\n" not in message


@pytest.mark.slow
def test_p3mnet_model_from_a_checkpoint_on_the_command_line(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "r34.pth"
    save_checkpoint(create_model("p3mnet-r34", device="cpu"), checkpoint)
    source = tmp_path / "portrait.png"
    Image.fromarray(_synthetic_portrait(96, 128)).save(source)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["matte", str(source), "-o", str(out), "--model", "p3mnet-r34", "--weights", str(checkpoint),
         "--strategy", "resize", "--save", "alpha,trimap", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert "p3mnet-r34" in result.output
    assert Image.open(out / "portrait_alpha.png").size == (128, 96)
    assert set(np.unique(np.asarray(Image.open(out / "portrait_trimap.png")))) <= {0, 128, 255}

    # The same checkpoint through the cache: import, then --model alone finds it.
    imported = runner.invoke(app, ["weights", "import", str(checkpoint), "--as", "p3mnet-r34"])
    assert imported.exit_code == 0, imported.output
    path = runner.invoke(app, ["weights", "path", "p3mnet-r34"])
    assert path.exit_code == 0 and path.output.strip().endswith(".pth")
    listed = runner.invoke(app, ["weights", "list"])
    assert listed.exit_code == 0 and "p3mnet-vitae-s" in listed.output
    cached = runner.invoke(
        app, ["matte", str(source), "-o", str(tmp_path / "o2"), "-m", "p3mnet-r34", "--save", "alpha",
              "--strategy", "resize"]
    )
    assert cached.exit_code == 0, cached.output
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "o2" / "portrait_alpha.png")),
        np.asarray(Image.open(out / "portrait_alpha.png")),
    )


def test_demo_writes_the_astronaut_outputs(tmp_path):
    out = tmp_path / "demo-output"
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "selfie-cf" in result.output
    names = sorted(path.name for path in out.iterdir())
    assert names == ["astronaut.png", "astronaut_alpha.png", "astronaut_composite.png", "astronaut_rgba.png"]
    assert Image.open(out / "astronaut_rgba.png").mode == "RGBA"


def test_errors_are_one_red_line_with_exit_code_2(tmp_path):
    from p3m.errors import P3MError

    result = runner.invoke(app, ["matte", str(tmp_path / "none.png"), "--model", "p3mnet-r34"])
    assert isinstance(result.exception, P3MError)
    assert "none.png" in str(result.exception) and "\n" not in str(result.exception)
    # Not installed is an answer of `weights path`, exit code 1 as its help says (not a usage error).
    unknown = runner.invoke(app, ["weights", "path", "p3mnet-r34"])
    assert unknown.exit_code == 1 and not isinstance(unknown.exception, P3MError)
    assert "p3m weights download p3mnet-r34" in unknown.output
