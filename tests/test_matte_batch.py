"""`p3m matte` on odd folders and sizes (../shared/cases/odd-inputs c10, c15) and name clashes:
every size gives a same-size result or one clear line, a folder run always goes on, p3m never
takes its own outputs as inputs, and two inputs that would write the same files fail alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from p3m.cli import app, main
from p3m.inference.batch import plan_matte
from p3m.runs import read_journal

runner = CliRunner()

PORTRAIT = data.astronaut()[:, 64:448]  # 512 high x 384 wide, as make_cases.py cuts it


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("P3M_HOME", str(tmp_path / "p3m-home"))


def _photo(height: int = 96, width: int = 72) -> Image.Image:
    return Image.fromarray(PORTRAIT).resize((width, height), Image.Resampling.LANCZOS)


def _mode_size(path) -> tuple[str, tuple[int, int]]:
    with Image.open(path) as image:
        return image.mode, image.size


def _tree(folder) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


# --------------------------------------------------------------------------- c15: sizes


@pytest.fixture(scope="module")
def c15_sizes(tmp_path_factory):
    """The c15 case: 1x1, 24x32, 1x5000, 5000x1, 333x501, 640x427 and a 1x1 between two photos."""
    folder = tmp_path_factory.mktemp("c15_sizes")
    small = Image.fromarray(PORTRAIT)
    small.resize((24, 32), Image.Resampling.LANCZOS).save(folder / "tiny_24x32.png")
    small.resize((1, 1), Image.Resampling.LANCZOS).save(folder / "dot_1x1.png")
    strip = np.asarray(small.resize((5000, 1), Image.Resampling.BILINEAR))
    Image.fromarray(strip).save(folder / "strip_5000x1.png")
    Image.fromarray(np.ascontiguousarray(strip.transpose(1, 0, 2))).save(folder / "strip_1x5000.png")
    astro = Image.fromarray(data.astronaut())
    astro.resize((640, 427), Image.Resampling.LANCZOS).save(folder / "odd_640x427.png")
    astro.resize((333, 501), Image.Resampling.LANCZOS).save(folder / "odd_333x501.png")
    batch = folder / "batch_with_1x1"
    batch.mkdir()
    _photo().save(batch / "a_photo.png")
    small.resize((1, 1), Image.Resampling.LANCZOS).save(batch / "b_pixel.png")
    _photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(batch / "c_photo.png")
    return folder


@pytest.mark.slow
def test_c15_every_size_gives_a_same_size_result(c15_sizes, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["matte", str(c15_sizes), "-o", str(out)])  # default: alpha + rgba
    assert result.exit_code == 0, result.output
    for source in c15_sizes.glob("*.png"):
        size = _mode_size(source)[1]
        assert _mode_size(out / f"{source.stem}_alpha.png") == ("L", size), source.name
        assert _mode_size(out / f"{source.stem}_rgba.png") == ("RGBA", size), source.name
    # The 1x1 cut-out keeps the photo's colour (the only foreground estimate there is).
    dot = np.asarray(Image.open(c15_sizes / "dot_1x1.png").convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(out / "dot_1x1_rgba.png"))[..., :3], dot)


def test_c15_a_1x1_between_two_photos_does_not_stop_the_folder(c15_sizes, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["matte", str(c15_sizes / "batch_with_1x1"), "-o", str(out), "--save", "alpha,rgba,composite"]
    )
    assert result.exit_code == 0, result.output
    assert "ZeroDivisionError" not in result.output
    assert _tree(out) == sorted(
        [f"{stem}_{kind}.png" for stem in ("a_photo", "b_pixel", "c_photo") for kind in ("alpha", "rgba", "composite")]
        + ["manifest.jsonl"]
    )
    assert _mode_size(out / "b_pixel_composite.png") == ("RGB", (1, 1))


def test_degenerate_arrays_through_the_api():
    import p3m
    from p3m.inference.foreground import estimate_foreground

    pixel = np.array([[[200, 40, 10]]], np.uint8)
    assert np.array_equal(estimate_foreground(pixel, np.full((1, 1), 0.5, np.float32)), pixel)
    result = p3m.matte(pixel, model="selfie-cf")
    assert result.alpha.shape == (1, 1) and result.rgba().shape == (1, 1, 4)
    assert result.composite("black").shape == (1, 1, 3)
    with pytest.raises(p3m.P3MError, match="no pixels"):
        p3m.matte(np.zeros((0, 5, 3), np.uint8), model="selfie-cf")


# --------------------------------------------------------------------------- c10: own outputs


@pytest.fixture()
def c10(tmp_path):
    """The c10 case: a photo folder, a tree, and a folder to run from (small photos)."""
    for name in ("photos", "tree", "cwd"):
        (tmp_path / name).mkdir()
        _photo().save(tmp_path / name / "portrait.jpg", quality=95)
    return tmp_path


def _matte(*args: str) -> str:
    result = runner.invoke(app, ["matte", *args, "--save", "alpha,rgba"])
    assert result.exit_code == 0, result.output
    return result.output


def test_c10_same_folder_twice_never_mattes_its_own_outputs(c10):
    photos = c10 / "photos"
    _matte(str(photos), "-o", str(photos))
    second = _matte(str(photos), "-o", str(photos))
    assert "kept 1" in second and "passed over" not in second  # the journal says whose they are
    assert _tree(photos) == ["manifest.jsonl", "portrait.jpg", "portrait_alpha.png", "portrait_rgba.png"]
    # Without the journal the names still tell: p3m's outputs are passed over, and said so.
    (photos / "manifest.jsonl").unlink()
    third = _matte(str(photos), "-o", str(photos), "--overwrite")
    assert "passed over 2 file(s) that look like p3m's outputs" in third
    assert _tree(photos) == ["manifest.jsonl", "portrait.jpg", "portrait_alpha.png", "portrait_rgba.png"]
    # A glob is expanded the same way, and so are the names a shell expands `photos/*` into.
    _matte(str(photos / "*.png"), str(photos / "*.jpg"), "-o", str(photos))
    _matte(*sorted(str(path) for path in photos.iterdir()), "-o", str(photos))
    assert _tree(photos) == ["manifest.jsonl", "portrait.jpg", "portrait_alpha.png", "portrait_rgba.png"]


def test_c10_output_folder_inside_the_tree(c10, monkeypatch):
    tree = c10 / "tree"
    for _ in range(2):
        _matte(str(tree), "-r", "-o", str(tree / "sub"))
    assert _tree(tree) == ["portrait.jpg", "sub/manifest.jsonl", "sub/portrait_alpha.png", "sub/portrait_rgba.png"]
    # Run from inside the folder with the default output folder, twice.
    monkeypatch.chdir(c10 / "cwd")
    for _ in range(2):
        _matte(".", "-r")
    assert _tree(c10 / "cwd") == [
        "p3m-output/manifest.jsonl", "p3m-output/portrait_alpha.png", "p3m-output/portrait_rgba.png", "portrait.jpg"
    ]


def test_journal_lists_outputs_whatever_their_name_and_the_cwd(c10, monkeypatch):
    """The run journal is read from the output folder and from every folder above an input, and
    its relative paths are placed by the journal's own folder, not by the current directory."""
    photos = c10 / "photos"
    monkeypatch.chdir(c10)
    _matte("photos", "-o", "photos/out")
    renamed = photos / "out" / "portrait_alpha.png"
    journal = read_journal(photos / "out" / "manifest.jsonl")
    assert journal["portrait.jpg"].outputs["alpha"] == "photos/out/portrait_alpha.png"
    # A user's own file that merely looks like an output is matted when named explicitly ...
    _photo().save(photos / "holiday_alpha.png")
    plan = plan_matte([str(photos / "holiday_alpha.png")], c10 / "x")
    assert [job.source.name for job in plan.jobs] == ["holiday_alpha.png"]
    # ... but a file a journal lists is never an input, named or found, from any directory.
    monkeypatch.chdir(photos / "out")
    plan = plan_matte([str(renamed), str(photos)], c10 / "y", recursive=True)
    assert sorted(job.source.name for job in plan.jobs) == ["portrait.jpg"]
    # Only what is recognised by its name alone is worth a note (it may be the user's own file).
    assert [path.name for path in plan.passed_over] == ["holiday_alpha.png"]


# --------------------------------------------------------------------------- name clashes


def test_inputs_that_would_write_the_same_outputs_fail_alone(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo().save(folder / "a.png")
    _photo().save(folder / "a.jpg", quality=95)
    _photo(80, 60).save(folder / "b.png")
    plan = plan_matte([str(folder)], tmp_path / "out")  # no longer raises for the whole batch
    assert len(plan.jobs) == 3
    out = tmp_path / "out"
    result = runner.invoke(app, ["matte", str(folder), "-o", str(out), "--save", "alpha"])
    assert result.exit_code == 1, result.output
    assert _tree(out) == ["a_alpha.png", "b_alpha.png", "manifest.jsonl"]
    # One line naming both files; a.jpg (first in order) was matted, a.png was not.
    flat = " ".join(result.output.split())
    assert f"{folder / 'a.png'}: another input ({folder / 'a.jpg'}) writes the same output" in flat
    journal = read_journal(out / "manifest.jsonl")
    assert journal["a.jpg"].status == "done" and journal["a.png"].status == "failed"
    # The next run says the same and keeps the rest.
    again = runner.invoke(app, ["matte", str(folder), "-o", str(out), "--save", "alpha"])
    assert again.exit_code == 1 and "kept 2" in again.output and "a.png" in again.output


def test_a_folder_run_says_what_it_leaves_out(tmp_path):
    """Files that are not images by their suffix and (without -r) sub-folders are listed, so
    the CLI can say so; a GIF is an image (its first frame)."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    pixel = Image.new("RGB", (4, 4))
    pixel.save(folder / "a.png")
    pixel.save(folder / "anim.gif")
    pixel.save(folder / "sub" / "b.png")
    (folder / "notes.txt").write_text("x")
    (folder / ".hidden").write_text("x")
    flat = plan_matte([str(folder)], tmp_path / "out", ("alpha",))
    assert sorted(job.source.name for job in flat.jobs) == ["a.png", "anim.gif"]
    assert sorted(path.name for path in flat.left_out) == ["notes.txt", "sub"]
    deep = plan_matte([str(folder)], tmp_path / "out", ("alpha",), recursive=True)
    assert sorted(job.source.name for job in deep.jobs) == ["a.png", "anim.gif", "b.png"]
    assert [path.name for path in deep.left_out] == ["notes.txt"]


def test_outputs_of_other_settings_are_not_silently_kept(tmp_path, capsys):
    """The README's "refine selfie-cf" line after a first run printed "kept 1 image(s)" and
    refined nothing; `--model p3mnet-vitae-s` without its weights said the same, exit 0. Kept
    outputs must be this command's: the manifest records each image's settings, a changed
    command is refused with the difference and the way out, and a missing model fails as on a
    fresh folder."""
    from p3m.errors import ConfigError, ModelNotFoundError
    from p3m.inference import Matter
    from p3m.inference.batch import check_kept_outputs, matte_settings, run_matte
    from p3m.inference.selfie_cf import SelfieCFConfig

    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    _photo().save(folder / "portrait.jpg", quality=95)
    _matte(str(folder), "-o", str(out), "-m", "selfie-cf")
    record = read_journal(out / "manifest.jsonl")["portrait.jpg"]
    assert record.details["settings"]["model"] == "selfie-cf"
    assert "kept 1" in _matte(str(folder), "-o", str(out), "-m", "selfie-cf")  # the same command
    refined = runner.invoke(app, ["matte", str(folder), "-o", str(out), "-m", "selfie-cf", "--trimap-band", "0.04"])
    assert isinstance(refined.exception, ConfigError), refined.output
    assert "made with other settings (portrait.jpg: --trimap-band 0.02 -> 0.04)" in str(refined.exception)
    assert "pass overwrite=True to redo them" in str(refined.exception)  # the library's words
    with pytest.raises(SystemExit):  # the command's: its own option
        main(["matte", str(folder), "-o", str(out), "-m", "selfie-cf", "--trimap-band", "0.04", "--save", "alpha,rgba"])
    assert "pass --overwrite to redo them" in " ".join(capsys.readouterr().err.split())
    missing = runner.invoke(app, ["matte", str(folder), "-o", str(out), "-m", "p3mnet-vitae-s"])
    assert isinstance(missing.exception, ModelNotFoundError), missing.output
    assert "done 1" in _matte(str(folder), "-o", str(out), "-m", "selfie-cf", "--trimap-band", "0.04", "--overwrite")
    # The library call refuses the same way.
    matter = Matter("selfie-cf", selfie_config=SelfieCFConfig(threshold=0.6))
    plan = plan_matte([str(folder)], out)
    with pytest.raises(ConfigError, match="--threshold 0.5 -> 0.6"):
        check_kept_outputs(plan, matte_settings(matter))
    with pytest.raises(ConfigError, match="other settings"):
        run_matte(plan, matter)


def test_a_run_that_adds_outputs_or_changes_weights_or_background_is_refused_too(tmp_path):
    """A second run adding a kind (`--save alpha,trimap` with another model) wrote its trimaps
    beside the first model's alphas and recorded itself as their maker; another checkpoint
    (`--weights`) and another composite background were kept silently."""
    from p3m.errors import ConfigError
    from p3m.inference.batch import run_settings, settings_difference

    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    _photo().save(folder / "portrait.jpg", quality=95)
    runner.invoke(app, ["matte", str(folder), "-o", str(out), "-m", "selfie-cf", "--save", "alpha", "--max-pixels", "200000"])
    added = runner.invoke(app, ["matte", str(folder), "-o", str(out), "-m", "selfie-cf", "--save", "alpha,trimap"])
    assert isinstance(added.exception, ConfigError), added.output
    assert "--max-pixels" in str(added.exception) and not (out / "portrait_trimap.png").exists()
    # The composite's background is part of what made it.
    composite = tmp_path / "composite"
    first = runner.invoke(app, ["matte", str(folder), "-o", str(composite), "-m", "selfie-cf", "-b", "red"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["matte", str(folder), "-o", str(composite), "-m", "selfie-cf", "-b", "#00ff00"])
    assert isinstance(again.exception, ConfigError) and "--background red -> #00ff00" in str(again.exception)
    # Another model is named alone, in the options a user types; a checkpoint file is recorded.
    made = {"model": "selfie-cf", "band_fraction": 0.02, "threshold": 0.5, "solve_pixels": 120000}
    now = {"model": "p3mnet-r34", "strategy": "hybrid", "max_pixels": 200000, "weights": "/w/r34b.pth"}
    assert settings_difference(made, now) == "--model selfie-cf -> p3mnet-r34, --weights default -> /w/r34b.pth"

    class Stub:
        name, settings, weights = "p3mnet-r34", {"model": "p3mnet-r34"}, None

    assert run_settings(Stub(), ("alpha",)) == {"model": "p3mnet-r34"}
    assert run_settings(Stub(), ("composite",), "white")["background"] == "white"


def test_written_outputs_are_named_from_the_output_folder(tmp_path):
    """With a tree (or shards) the run's lines and manifest said `portrait_alpha.png` for a file
    written to `sub/portrait_alpha.png`."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    _photo().save(tree / "sub" / "portrait.jpg", quality=95)
    _photo().save(tree / "top.jpg", quality=95)
    out = tmp_path / "out"
    _matte(str(tree), "-r", "-o", str(out), "-m", "selfie-cf")
    records = read_journal(out / "manifest.jsonl")
    assert records["sub/portrait.jpg"].details["written"] == ["sub/portrait_alpha.png", "sub/portrait_rgba.png"]
    assert records["top.jpg"].details["written"] == ["top_alpha.png", "top_rgba.png"]
    assert (out / "sub" / "portrait_alpha.png").is_file()


def test_png_sequence_outputs_are_never_inputs(tmp_path):
    """A second `p3m matte D -r -o D` must not matte the frames of the PNG sequences the first
    one wrote (`D/clip_alpha/000000.png`), nor name their timestamps.txt as left out."""
    from fractions import Fraction

    from p3m.io import OUTPUT_FOLDER_MARKER
    from p3m.video.writer import VideoWriter

    folder = tmp_path / "D"
    folder.mkdir()
    _photo().save(folder / "portrait.png")
    frame = np.zeros((8, 8, 4), np.uint8)
    with VideoWriter(folder / "clip_alpha", "png-sequence", "rgba", width=8, height=8, time_base=Fraction(1, 25)) as writer:
        for pts in range(2):
            writer.write(frame, pts)
    assert (folder / "clip_alpha" / OUTPUT_FOLDER_MARKER).is_file()  # the writer marks its folder
    plan = plan_matte([str(folder)], folder, recursive=True)
    assert [job.source.name for job in plan.jobs] == ["portrait.png"]
    assert plan.passed_over == [] and plan.left_out == []  # certainly p3m's: quietly
    assert plan_matte([str(folder)], folder).left_out == []  # not "a sub-folder -r would search"
    # A sequence written before the marker (a v2 timestamps.txt beside PNGs) is passed over, said.
    (folder / "clip_alpha" / OUTPUT_FOLDER_MARKER).unlink()
    plan = plan_matte([str(folder)], folder, recursive=True)
    assert [job.source.name for job in plan.jobs] == ["portrait.png"]
    assert sorted(path.name for path in plan.passed_over) == ["000000.png", "000001.png"]
    assert plan.left_out == []


def test_an_animated_gif_or_multipage_tiff_says_only_its_first_frame_is_used(tmp_path):
    from p3m.io import first_frame_note

    folder = tmp_path / "anim"
    folder.mkdir()
    frames = [_photo().convert("P"), _photo(96, 72).rotate(90).convert("P"), _photo().convert("P")]
    frames[0].save(folder / "wave.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    pages = [_photo(), _photo()]
    pages[0].save(tmp_path / "scan.tif", save_all=True, append_images=pages[1:])
    _photo().save(tmp_path / "one.png")
    assert "3 frames: only the first was used" in first_frame_note(folder / "wave.gif")
    assert "2 pages: only the first was used" in first_frame_note(tmp_path / "scan.tif")
    assert first_frame_note(tmp_path / "one.png") is None
    output = _matte(str(folder), "-o", str(tmp_path / "out"), "--save", "alpha")
    assert "wave.gif: the file has 3 frames: only the first was used" in " ".join(output.split())
    record = read_journal(tmp_path / "out" / "manifest.jsonl")["wave.gif"]
    assert "only the first was used" in record.details["note"]


def test_resume_redoes_a_damaged_output_and_says_so(c10):
    photos, out = c10 / "photos", c10 / "out"
    _matte(str(photos), "-o", str(out))
    good = (out / "portrait_alpha.png").read_bytes()
    (out / "portrait_alpha.png").write_bytes(b"junk!")
    second = " ".join(_matte(str(photos), "-o", str(out)).split())
    assert "kept 1" not in second and "portrait_alpha.png: damaged" in second and "redoing" in second
    assert (out / "portrait_alpha.png").read_bytes() == good


def test_resume_redoes_an_output_of_another_size_than_its_input(tmp_path):
    """A kept output must have its input's size as read would return it (EXIF rotation
    applied): one of another size (a file from another run, or the stored size of a rotated
    photo) is damaged and redone with a note; the outputs of the right size are kept."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 72 wide x 96 high, shown 96 x 72
    _photo().save(photos / "turned.jpg", quality=95, exif=exif)

    def matte() -> str:
        result = runner.invoke(app, ["matte", str(photos), "-o", str(out), "--save", "alpha,foreground,composite"])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    matte()
    assert _mode_size(out / "turned_alpha.png")[1] == (96, 72)
    foreground = (out / "turned_foreground.png").stat().st_mtime_ns
    Image.new("L", (72, 96)).save(out / "turned_alpha.png")  # the stored size, EXIF ignored
    Image.new("RGB", (10, 12)).save(out / "turned_composite.png")
    second = matte()
    assert "kept 1" not in second and "redoing" in second
    assert "turned_alpha.png: damaged (it is 72x96 pixels, its input 96x72)" in second
    assert _mode_size(out / "turned_alpha.png")[1] == _mode_size(out / "turned_composite.png")[1] == (96, 72)
    assert (out / "turned_foreground.png").stat().st_mtime_ns == foreground  # right size: not rewritten
    assert "kept 1" in matte()  # all of the right size now


def _run_ok(*args: str) -> str:
    result = runner.invoke(app, ["matte", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_kept_output_is_credited_only_to_the_settings_that_made_it(tmp_path):
    """alpha+rgba at band 0.02, then `--save alpha --trimap-band 0.1 --overwrite` (the record
    listed the alpha only), then `--save rgba --trimap-band 0.1` kept the band-0.02 rgba and
    recorded it as band 0.1. The journal keeps the settings of each output file (carried over
    for the files a run leaves as they were), and a file no record lists counts as other
    settings, also in a journal written before per-file settings existed."""
    from p3m.errors import ConfigError

    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    _photo().save(folder / "portrait.jpg", quality=95)
    base = [str(folder), "-o", str(out), "-m", "selfie-cf"]
    _run_ok(*base)
    assert "done 1" in _run_ok(*base, "--save", "alpha", "--trimap-band", "0.1", "--overwrite")
    from p3m.runs.provenance import settings_of_outputs

    record = read_journal(out / "manifest.jsonl")["portrait.jpg"]
    assert record.details["output_settings"]["portrait_alpha.png"] == "settings"  # its own, once
    provenance = settings_of_outputs(record, out)
    assert provenance["portrait_alpha.png"]["band_fraction"] == 0.1
    assert provenance["portrait_rgba.png"]["band_fraction"] == 0.02  # carried over: still there
    rgba = (out / "portrait_rgba.png").read_bytes()
    kept = runner.invoke(app, ["matte", *base, "--save", "rgba", "--trimap-band", "0.1"])
    assert isinstance(kept.exception, ConfigError), kept.output
    assert "(portrait.jpg: --trimap-band 0.02 -> 0.1)" in str(kept.exception)
    assert (out / "portrait_rgba.png").read_bytes() == rgba
    # A journal from before: the record's settings are those of the files it lists, and an
    # existing file it does not list was made by a run p3m has no record of.
    journal = out / "manifest.jsonl"
    line = json.loads(journal.read_text())
    line["details"].pop("output_settings")
    journal.write_text(json.dumps(line) + "\n")
    old = runner.invoke(app, ["matte", *base, "--save", "rgba", "--trimap-band", "0.1"])
    assert isinstance(old.exception, ConfigError), old.output
    assert "portrait_rgba.png was made by a run with no record of its settings" in str(old.exception)
    journal.unlink()  # no record at all: the same
    unknown = runner.invoke(app, ["matte", *base, "--save", "alpha", "--trimap-band", "0.1"])
    assert isinstance(unknown.exception, ConfigError) and "no record of its settings" in str(unknown.exception)
    assert "done 1" in _run_ok(*base, "--save", "alpha,rgba", "--trimap-band", "0.1", "--overwrite")
    assert "kept 1" in _run_ok(*base, "--save", "rgba", "--trimap-band", "0.1")


def test_the_difference_shows_options_as_the_user_gave_them(tmp_path):
    """`--max-pixels 50000` after a default run said `--max-pixels 120000 -> 3429` (selfie-cf's
    internal solve size), `-1` said `120000 -> default`; backgrounds showed as tuples."""
    from p3m.errors import ConfigError
    from p3m.inference.batch import settings_difference

    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    _photo().save(folder / "portrait.jpg", quality=95)
    base = [str(folder), "-o", str(out), "-m", "selfie-cf", "--save", "composite"]
    _run_ok(*base)
    for option, shown in (
        (["--max-pixels", "50000"], "--max-pixels default -> 50000"),
        (["--max-pixels", "-1"], "--max-pixels default -> none"),
        (["-b", "red"], "--background white (the default) -> red"),
        (["-b", "#12ab34"], "--background white (the default) -> #12ab34"),
    ):
        result = runner.invoke(app, ["matte", *base, *option])
        assert isinstance(result.exception, ConfigError), result.output
        assert f"(portrait.jpg: {shown})" in str(result.exception)
    # A record from before selfie-cf recorded the budget: read back from its solve size.
    made = {"model": "selfie-cf", "band_fraction": 0.02, "threshold": 0.5, "solve_pixels": 120000}
    now = {**made, "solve_pixels": None, "max_pixels": None}
    assert settings_difference(made, now) == "--max-pixels default -> none"
    # p3m anonymize's: a None that is no default is named for what it means.
    made = {"method": "blur", "alpha_from": None, "audit_detectors": []}
    now = {**made, "alpha_from": "selfie-cf", "audit_detectors": ["centerface"]}
    assert settings_difference(made, now) == (
        "--alpha-from none (--no-alpha) -> selfie-cf, --audit-detectors every available detector -> centerface"
    )


def test_an_empty_folder_is_the_same_usage_error_for_matte_and_anonymize(tmp_path):
    """`p3m matte EMPTY` said "no images found" (exit 1), `p3m anonymize EMPTY` "error: no images
    found in EMPTY" (exit 2): both now the latter."""
    from p3m.errors import ConfigError

    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("matte", "anonymize"):
        result = runner.invoke(app, [command, str(empty), "-o", str(tmp_path / command)])
        assert isinstance(result.exception, ConfigError), (command, result.output)
        assert str(result.exception) == f"no images found in {empty}"


def _resave(path, image: Image.Image) -> None:
    """Save `image` over `path` as a later save would (a newer modification time)."""
    import os

    before = path.stat().st_mtime_ns
    image.save(path)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_a_replaced_input_is_matted_again_not_kept(tmp_path):
    """`p3m matte imgs -o o`, then a flipped copy saved over imgs/portrait.png (same size),
    said "kept 1 image(s) whose outputs exist" and kept the old picture's matte; so did
    `p3m matte other/portrait.png -o o` (another file, the same name). Each record keeps its
    source's fingerprint: a changed source is matted again, with a note."""
    photos, other, out = tmp_path / "imgs", tmp_path / "other", tmp_path / "o"
    photos.mkdir(), other.mkdir()
    photo = _photo()
    photo.save(photos / "portrait.png")
    flipped = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    _matte(str(photos), "-o", str(out))
    first = np.asarray(Image.open(out / "portrait_alpha.png"))
    _resave(photos / "portrait.png", flipped)
    second = " ".join(_matte(str(photos), "-o", str(out)).split())
    assert "kept 1" not in second and "done 1" in second
    assert f"{photos / 'portrait.png'}: changed since its outputs were made; redoing" in second
    redone = np.asarray(Image.open(out / "portrait_alpha.png"))
    flipped_first = first[:, ::-1].astype(int)  # the flipped picture's matte, every kind rewritten
    assert np.abs(redone.astype(int) - flipped_first).mean() < np.abs(redone.astype(int) - first).mean()
    assert np.array_equal(np.asarray(Image.open(out / "portrait_rgba.png"))[..., 3], redone)
    assert "kept 1" in _matte(str(photos), "-o", str(out))
    photo.save(other / "portrait.png")
    third = " ".join(_matte(str(other / "portrait.png"), "-o", str(out)).split())
    assert "kept 1" not in third and "changed since its outputs were made" in third
    assert np.array_equal(np.asarray(Image.open(out / "portrait_alpha.png")), first)


def test_an_output_of_another_input_with_the_same_stem_names_that_input(tmp_path):
    """`p3m matte dup/a.png -o ox`, then `p3m matte dup/a.jpg -o ox` said a_alpha.png "was
    made by a run with no record of its settings": it was made from dup/a.png."""
    from p3m.errors import ConfigError

    folder, out = tmp_path / "dup", tmp_path / "ox"
    folder.mkdir()
    _photo().save(folder / "a.png")
    _photo().save(folder / "a.jpg", quality=95)
    _matte(str(folder / "a.png"), "-o", str(out))
    result = runner.invoke(app, ["matte", str(folder / "a.jpg"), "-o", str(out), "--save", "alpha,rgba"])
    assert isinstance(result.exception, ConfigError), result.output
    message = " ".join(str(result.exception).split())
    assert f"(a.jpg: a_alpha.png was made from {folder / 'a.png'}, another input with the same name stem)" in message
