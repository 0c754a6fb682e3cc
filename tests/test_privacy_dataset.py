"""`p3m anonymize` folder and single-image runs: P3M-10k layout, manifest, resume, bad inputs, metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mediapipe")

from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from p3m.cli import app  # noqa: E402
from p3m.io import write_png  # noqa: E402


def _save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Images and mattes: a portrait, a cat (no face), an unreadable file, a mis-sized matte, no matte."""
    from skimage import data

    root = tmp_path_factory.mktemp("anonymize")
    images, alphas = root / "images", root / "alphas"
    images.mkdir()
    alphas.mkdir()
    astronaut = data.astronaut()
    _save(images / "astronaut.png", astronaut)
    alpha = np.full(astronaut.shape[:2], 255, np.uint8)
    alpha[:, :40] = 0
    # A semi-transparent strand over the cheek. (Through the eye, its kept band lets both MediaPipe
    # models find the face again and the identity match: the audit reports such cases.)
    alpha[130:175, 250:253] = 128
    _save(alphas / "astronaut.png", alpha)
    cat = data.chelsea()[:160, :200]
    _save(images / "cat.jpg", cat)
    _save(alphas / "cat.png", np.full(cat.shape[:2], 255, np.uint8))
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    _save(images / "wrongsize.png", astronaut[:64, :64])
    _save(alphas / "wrongsize.png", np.zeros((10, 12), np.uint8))
    _save(images / "noalpha.png", astronaut[:64, :64])
    return root


def _run(*args: str):
    return CliRunner().invoke(app, ["anonymize", *args], catch_exceptions=False)


def test_dataset_mode_writes_the_p3m_layout_and_skips_bad_inputs(folder):
    out = folder / "P3M-10k" / "validation" / "P3M-500-P"
    args = ["--images", str(folder / "images"), "--alphas", str(folder / "alphas"), "--out", str(out),
            "--layout", "P3M-500-P", "--audit-detectors", "mediapipe", "--review"]  # fmt: skip
    result = _run(*args)
    assert result.exit_code == 1, result.output  # bad images make the exit code non-zero
    manifest = json.loads((out / "manifest.json").read_text())
    status = {r["name"]: r["status"] for r in manifest["images"]}
    assert status == {
        "astronaut": "done",
        "cat": "needs_annotation",
        "broken": "error",
        "wrongsize": "error",
        "noalpha": "error",
    }
    errors = {r["name"]: r["error"] for r in manifest["images"] if r["status"] == "error"}
    assert "10x12" not in errors["wrongsize"] and "12x10" in errors["wrongsize"]
    assert "no alpha matte" in errors["noalpha"]
    for sub in ("blurred_image", "mask", "facemask", "trimap"):
        assert sorted(p.name for p in (out / sub).iterdir()) == ["astronaut.png"], sub
    assert (out / "needs_annotation.txt").read_text() == "cat\tno face found\n"
    privacy = json.loads((out / "privacy_report.json").read_text())
    assert privacy["images"] == 5 and privacy["errors"] == 3 and privacy["faces"] >= 1
    assert privacy["faces_by_detector"]["centerface"] >= 1 and privacy["faces_masked"] >= 1
    assert privacy["needs_annotation"] == {"cat": ["no face found"]}
    assert privacy["spared_pixels"] > 0  # the strand over the cheek (an exact matte)
    assert "faces strengthened" in (out / "privacy_report.html").read_text()
    record = next(r for r in manifest["images"] if r["name"] == "astronaut")
    assert len(record["faces"]) == 1 and record["mask_area"] > 3000
    # The audit ran both MediaPipe models on the output. (The short-range one may fire on the blurred
    # face cut by the sharp strand: it responds to head shape; the identity check says no match.)
    audit = record["audit"]
    assert set(audit["by_detector"]) == {"mediapipe-short", "mediapipe-full"}
    assert audit["by_detector"]["mediapipe-full"] == 0
    assert manifest["summary"]["audit_faces_found"] == audit["faces_found"]
    if audit["identity_distances"] is not None:
        assert audit["identity_matches"] == 0
    assert "astronaut,done,1," in (out / "manifest.csv").read_text()
    assert "data:image/png;base64," in (out / "review.html").read_text()

    # Outputs follow the conventions: 8-bit PNGs, the matte copied, the strand left untouched.
    original = np.asarray(Image.open(folder / "images" / "astronaut.png"))
    blurred = np.asarray(Image.open(out / "blurred_image" / "astronaut.png"))
    facemask = np.asarray(Image.open(out / "facemask" / "astronaut.png"))
    assert set(np.unique(facemask)) == {0, 255}
    assert np.array_equal(
        np.asarray(Image.open(out / "mask" / "astronaut.png")),
        np.asarray(Image.open(folder / "alphas" / "astronaut.png")),
    )
    assert np.array_equal(blurred[facemask == 0], original[facemask == 0])
    assert np.array_equal(blurred[130:175, 250:253], original[130:175, 250:253])
    assert set(np.unique(np.asarray(Image.open(out / "trimap" / "astronaut.png")))) <= {0, 128, 255}

    layout = pytest.importorskip("p3m.data.layout")
    report = layout.check_layout(folder / "P3M-10k", sets=("P3M-500-P",))
    assert report.ok, report.problems
    assert report.counts["P3M-500-P"] == 1

    # Resume: existing outputs are kept, a hand-made mask resolves the cat.
    masks = folder / "masks"
    masks.mkdir()
    hand = np.zeros((160, 200), np.uint8)
    hand[40:90, 60:120] = 255
    write_png(masks / "cat.png", hand)
    stamp = (out / "blurred_image" / "astronaut.png").stat().st_mtime_ns
    result = _run(*args, "--facemask-dir", str(masks))
    manifest = json.loads((out / "manifest.json").read_text())
    status = {r["name"]: r["status"] for r in manifest["images"]}
    assert status["astronaut"] == "kept" and status["cat"] == "done"
    assert (out / "blurred_image" / "astronaut.png").stat().st_mtime_ns == stamp
    cat_record = next(r for r in manifest["images"] if r["name"] == "cat")
    assert cat_record["facemask_source"] == "manual" and cat_record["mask_area"] == 50 * 60
    assert next(r for r in manifest["images"] if r["name"] == "astronaut")["audit"] == audit
    assert (out / "needs_annotation.txt").read_text() == ""


def test_single_image_mode_strips_metadata_and_keeps_the_original(tmp_path):
    from skimage import data

    source = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 31.0, 12.0)
    portrait = np.ascontiguousarray(data.astronaut()[:320, 96:416])  # small: selfie-cf runs on it
    Image.fromarray(portrait).save(source, quality=92, exif=exif, comment=b"secret note")
    assert Image.open(source).getexif().get_ifd(0x8825), "test setup: GPS not written"
    before = source.read_bytes()

    result = _run(
        str(source), "-o", str(tmp_path / "out"), "--alpha-from", "selfie-cf", "--no-audit"
    )
    assert result.exit_code == 0, result.output
    assert source.read_bytes() == before
    output = tmp_path / "out" / "portrait.png"
    with Image.open(output) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert not image.getexif() and "exif" not in image.info and "comment" not in image.info
        assert not any(key.startswith(("XML", "xmp")) for key in image.info)
    raw = output.read_bytes()
    assert b"Exif" not in raw and b"CameraMaker" not in raw and b"secret" not in raw
    facemask = np.asarray(Image.open(tmp_path / "out" / "portrait.facemask.png"))
    assert facemask.sum() > 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["images"][0]["faces"][0]["detectors"]


def test_dlib68_prints_the_licence_caveat(tmp_path):
    pytest.importorskip("dlib")
    from skimage import data

    source = _save(tmp_path / "a.png", data.astronaut()[:300, 100:400])
    result = _run(
        str(source),
        "-o",
        str(tmp_path / "out"),
        "--landmarks",
        "dlib68",
        "--no-alpha",
        "--no-audit",
    )
    assert result.exit_code == 0, result.output
    assert "300-W" in result.output and "commercial" in result.output
    assert (tmp_path / "out" / "a.png").is_file()


def test_train_layout_is_accepted_by_the_training_loader(folder, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "astronaut.png").write_bytes((folder / "images" / "astronaut.png").read_bytes())
    (images / "clip.mp4").write_bytes(b"x")  # a dataset holds images: the clip is left out, said so
    out = tmp_path / "P3M-10k" / "train"
    result = _run("--images", str(images), "--alphas", str(folder / "alphas"), "--out", str(out),
                  "--method", "mosaic", "--no-audit")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: left out 1 video(s) in" in result.output and "(clip.mp4): videos are not part of" in result.output
    assert not (out / "trimap").exists()
    layout = pytest.importorskip("p3m.data.layout")
    (sample,) = layout.find_samples(tmp_path / "P3M-10k", "train")
    assert sample.image == out / "blurred_image" / "astronaut.png"
    assert sample.facemask == out / "facemask" / "astronaut.png"
    record = json.loads((out / "manifest.json").read_text())["images"][0]
    assert record["method"] == "mosaic" and record["parameters"]["mosaic_block"][0] >= 2
    # A kept output of another size than its image is damaged: redone, with a note (as p3m matte does).
    blurred = out / "blurred_image" / "astronaut.png"
    _save(blurred, np.zeros((20, 30, 3), np.uint8))
    again = _run("--images", str(images), "--alphas", str(folder / "alphas"), "--out", str(out),
                 "--method", "mosaic", "--no-audit")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "damaged (it is 30x20 pixels, its input 512x512)" in " ".join(again.output.split())
    assert Image.open(blurred).size == (512, 512)


def test_rgba_input_keeps_its_alpha_and_the_report_is_written(tmp_path):
    """c18: an RGBA face whose alpha hides a strip: the output keeps that alpha channel."""
    from skimage import data

    rgba = np.dstack([data.astronaut(), np.full((512, 512), 255, np.uint8)])
    rgba[:, 400:, 3] = 0
    source = _save(tmp_path / "face_rgba.png", rgba)
    result = _run(str(source), "-o", str(tmp_path / "out"), "--no-alpha", "--no-audit",
                  "--verify", "none")  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "face_rgba.png") as output:
        assert output.mode == "RGBA"
        written = np.asarray(output)
    assert np.array_equal(written[:, :, 3], rgba[:, :, 3])
    facemask = np.asarray(Image.open(tmp_path / "out" / "face_rgba.facemask.png")) > 0
    visible = ~facemask & (rgba[:, :, 3] > 0)
    assert np.array_equal(written[:, :, :3][visible], rgba[:, :, :3][visible])
    assert not written[:, :, :3][rgba[:, :, 3] == 0].any()  # no colour left under alpha 0
    report = json.loads((tmp_path / "out" / "privacy_report.json").read_text())
    assert report["faces"] >= 1 and report["verify"] == "none"
    assert "privacy:" in result.output


def test_mattes_written_by_p3m_matte_are_found_and_count_as_estimates(tmp_path):
    """`p3m matte raw -o alphas --save alpha` then `p3m anonymize --images raw --alphas alphas`:
    `<stem>_alpha.png` pairs with `<stem>`, as an estimate; a given `<stem>.png` wins."""
    from p3m.privacy.dataset import match_folder, samples_from_paths

    images, alphas = tmp_path / "raw", tmp_path / "alphas"
    images.mkdir()
    alphas.mkdir()
    pixel = np.zeros((4, 4, 3), np.uint8)
    for name in ("a.jpg", "b.png", "c.png"):
        _save(images / name, pixel)
    for name in ("a_alpha.png", "b.png", "b_alpha.png"):
        _save(alphas / name, pixel[..., 0])
    found = {sample.name: (sample.alpha and sample.alpha.name, sample.alpha_estimated)
             for sample in match_folder(images, alphas)}  # fmt: skip
    assert found == {"a": ("a_alpha.png", True), "b": ("b.png", False), "c": (None, False)}
    listed = samples_from_paths([images / "a.jpg"], alphas)
    assert (listed[0].alpha.name, listed[0].alpha_estimated) == ("a_alpha.png", True)


def test_an_output_path_that_is_a_file_gets_one_line(tmp_path):
    source = _save(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    blocker = tmp_path / "notadir"
    blocker.write_text("x")
    for args in (["anonymize", str(source), "-o", str(blocker)], ["matte", str(source), "-o", str(blocker / "sub")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code != 0
        message = str(result.exception) if result.exception and not isinstance(result.exception, SystemExit) else result.output
        assert "notadir: is a file, not a folder" in message and "Traceback" not in message
    assert blocker.read_text() == "x"


def test_single_image_mode_takes_a_folder_and_never_writes_over_an_input(tmp_path):
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    cat = np.ascontiguousarray(data.chelsea()[:120, :160])
    _save(photos / "cat.jpg", cat)
    (photos / "notes.txt").write_text("not an image")
    result = _run(str(photos), "-o", str(tmp_path / "out"), "--no-alpha", "--no-audit")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(r["name"], r["status"]) for r in manifest["images"]] == [("cat", "needs_annotation")], result.output
    # Writing into the photos' own folder: cat.png would replace the photo, so that image fails.
    source = _save(photos / "cat.png", cat)
    before = source.read_bytes()
    result = _run(str(source), "-o", str(photos), "--no-alpha", "--no-audit")
    assert result.exit_code == 1, result.output
    assert f"its output {source} would overwrite its own input" in result.output
    assert source.read_bytes() == before
    # The folder itself as the output, and stdin / stdout: one line each, nothing written.
    from p3m.errors import ConfigError

    listing = sorted(p.name for p in photos.iterdir())
    for args in ([str(photos), "-o", str(photos)], ["-", "-o", str(tmp_path / "x")], [str(source), "-o", "-"]):
        refused = CliRunner().invoke(app, ["anonymize", *args, "--no-audit"])
        assert isinstance(refused.exception, ConfigError), (args, refused.output)
        assert "\n" not in str(refused.exception)
    assert not (tmp_path / "x").exists() and not Path("-").exists()
    assert sorted(p.name for p in photos.iterdir()) == listing


def test_an_unusable_alpha_model_fails_once_before_any_image(folder, tmp_path):
    """--alpha-from with an unknown model (or one whose weights are not installed) is one line
    naming the option, before anything is written; it used to obfuscate every whole face with
    a warning per image."""
    from p3m.errors import ConfigError
    from p3m.privacy.dataset import AnonymizeConfig, anonymize_folder

    out = tmp_path / "out"
    source = _save(tmp_path / "a.png", np.zeros((32, 32, 3), np.uint8))
    result = CliRunner().invoke(app, ["anonymize", str(source), "-o", str(out), "--alpha-from", "nope"])
    assert result.exit_code != 0
    message = str(result.exception) if result.exception and not isinstance(result.exception, SystemExit) else result.output
    assert "--alpha-from 'nope' cannot estimate mattes: unknown model 'nope'" in message
    assert not out.exists()
    with pytest.raises(ConfigError, match="alpha_from 'p3mnet-r34' cannot estimate mattes: no weights"):
        anonymize_folder(folder / "images", folder / "alphas", out, AnonymizeConfig(alpha_from="p3mnet-r34"))
    assert not out.exists()


def test_the_alpha_model_is_loaded_once_per_process(monkeypatch):
    import p3m.inference
    from p3m.inference.api import MatteResult
    from p3m.privacy import pipeline

    built: list[str] = []

    class FakeMatter:
        def __init__(self, model):
            built.append(model)

        def __call__(self, image, foreground=True):
            return MatteResult(alpha=np.full(image.shape[:2], 0.5, np.float32), image=image, model="fake")

    monkeypatch.setattr(p3m.inference, "Matter", FakeMatter)
    monkeypatch.setattr(pipeline, "_ALPHA_MATTERS", {})
    image = np.zeros((16, 16, 3), np.uint8)
    for _ in range(3):
        alpha = pipeline.compute_alpha(image, "p3mnet-r34")
    pipeline.check_alpha_from("p3mnet-r34")
    assert built == ["p3mnet-r34"] and alpha.dtype == np.float32 and np.allclose(alpha, 128 / 255)
    for name in ("a", "b", "c"):
        pipeline.alpha_matter(name)
    assert list(pipeline._ALPHA_MATTERS) == ["b", "c"]  # the last two kept


def test_each_image_has_one_status_and_the_summaries_agree(tmp_path):
    """A kept image that a person must check is "needs_review" everywhere (table, manifest.json,
    .csv, needs_annotation.txt), never also "kept"; the counts add up to the images."""
    from p3m.privacy.dataset import (
        STATUSES,
        AnonymizeConfig,
        FolderReport,
        manifest_record,
        write_manifest,
    )
    from p3m.runs import ItemRecord

    unverified = {"needs_annotation": ["face 0 unverified: identity distance 0.485 < 0.65"], "faces": [{"detectors": ["centerface"]}]}
    records = [
        ItemRecord("astro", "done", "in/astro.png", details={"needs_annotation": [], "faces": [{"detectors": ["centerface"]}]}),
        ItemRecord("face01", "kept", "in/face01.png", details={"needs_annotation": []}),
        ItemRecord("coffee", "kept", "in/coffee.jpg", details=unverified),  # done earlier, flagged
        ItemRecord("cup", "needs_review", "in/cup.jpg", details=unverified),  # this run
        ItemRecord("1x1", "needs_annotation", "in/1x1.png", details={"needs_annotation": ["no face found"]}),
        ItemRecord("empty", "failed", "in/empty.png", error="in/empty.png: empty file"),
    ]
    report = FolderReport(tmp_path, [manifest_record(record) for record in records])
    statuses = {r["name"]: r["status"] for r in report.records}
    assert statuses == {"astro": "done", "face01": "kept", "coffee": "needs_review", "cup": "needs_review",
                        "1x1": "needs_annotation", "empty": "error"}  # fmt: skip
    assert set(statuses.values()) <= set(STATUSES) and sum(report.counts.values()) == len(records)
    write_manifest(report, AnonymizeConfig())
    summary = json.loads((tmp_path / "manifest.json").read_text())["summary"]
    assert summary["images"] == 6 == sum(summary[key] for key in ("done", "kept", "needs_review", "needs_annotation", "errors"))
    assert (summary["done"], summary["kept"], summary["needs_review"], summary["needs_annotation"]) == (1, 1, 2, 1)
    listed = [line.split("\t")[0] for line in (tmp_path / "needs_annotation.txt").read_text().splitlines()]
    assert listed == ["coffee", "cup", "1x1"]
    assert "coffee,needs_review," in (tmp_path / "manifest.csv").read_text()


def test_a_flagged_image_is_journalled_needs_review_and_kept_on_resume(tmp_path):
    from p3m.privacy.dataset import AnonymizeConfig, AnonymizeTask, SampleFiles
    from p3m.runs import Item, RunOptions, run_items

    class Flagging(AnonymizeTask):  # no models: what compute hands to write for a flagged image
        computed = 0

        def load(self, item):
            return None

        def compute(self, item, loaded):
            Flagging.computed += 1
            record = {"faces": [{}], "warnings": [], "needs_annotation": ["face 0 unverified"], "status": "needs_review"}
            image = np.zeros((6, 5, 3), np.uint8)
            return {"record": record, "review": None, "image": image, "facemask": np.zeros((6, 5), bool),
                    "alpha": None, "input_alpha": None}  # fmt: skip

    items = [Item("coffee", tmp_path / "coffee.jpg",
                  {"facemask": tmp_path / "coffee.facemask.png", "image": tmp_path / "coffee.png"},
                  SampleFiles("coffee", tmp_path / "coffee.jpg"))]  # fmt: skip
    options = RunOptions(kept_needs_record=True, io_threads=0)
    first = run_items(items, Flagging(AnonymizeConfig()), tmp_path / "manifest.jsonl", options)
    assert first.counts == {"needs_review": 1}
    assert json.loads((tmp_path / "manifest.jsonl").read_text())["status"] == "needs_review"
    second = run_items(items, Flagging(AnonymizeConfig()), tmp_path / "manifest.jsonl", options)
    assert second.counts == {"kept": 1} and Flagging.computed == 1


def test_single_image_mode_never_takes_its_own_outputs(tmp_path):
    """c10 for `p3m anonymize`: `p3m anonymize D/* -o D` run again took D/portrait.png,
    portrait.facemask.png, the manifests and the privacy report as inputs, failed all 9 (the
    photo too: its output "would overwrite the input") and replaced the first run's manifest."""
    from skimage import data

    folder = tmp_path / "D"
    folder.mkdir()
    Image.fromarray(data.astronaut()[::4, ::4]).save(folder / "portrait.jpg")
    options = ["-o", str(folder), "--no-audit", "--verify", "none", "--no-alpha"]
    first = _run(str(folder / "portrait.jpg"), *options)
    assert first.exit_code == 0, first.output
    written = sorted(path.name for path in folder.iterdir())
    assert "portrait.png" in written and "portrait.facemask.png" in written and "manifest.json" in written
    again = _run(*sorted(str(path) for path in folder.iterdir()), *options)  # what `D/*` expands to
    assert again.exit_code == 0, again.output
    assert "kept 1" in again.output and "failed 0" in again.output
    assert sorted(path.name for path in folder.iterdir()) == written
    summary = json.loads((folder / "manifest.json").read_text())["summary"]
    assert summary["images"] == 1


def test_a_run_with_other_anonymisation_settings_stops_instead_of_keeping_the_old_images(tmp_path):
    """`p3m anonymize an -o out`, then `--method mosaic` printed "done 0, kept 2" and wrote a
    manifest and privacy report saying "mosaic" over images still blurred. Each image's record
    keeps the settings that made it; a changed command stops with the difference (as
    `p3m matte` does), `--overwrite` redoes, and the summaries then say what the images are."""
    from skimage import data

    from p3m.errors import ConfigError
    from p3m.runs import read_journal

    photos, out = tmp_path / "an", tmp_path / "out"
    photos.mkdir()
    _save(photos / "face.png", data.astronaut()[:220, 120:340])
    light = ["--detectors", "mediapipe", "--no-audit", "--verify", "none", "--detect", "standard"]
    assert "done 1" in _run(str(photos), "-o", str(out), *light).output
    blurred = (out / "face.png").read_bytes()
    assert read_journal(out / "manifest.jsonl")["face"].details["settings"]["method"] == "blur"
    runner = CliRunner()
    for option, changed in (
        (["--method", "mosaic"], "face: --method blur -> mosaic"),
        (["--method", "mask", "--strength", "2"], "face: --method blur -> mask, --strength 1.0 -> 2.0"),
        (["--transition-margin", "9"], "--transition-margin"),
    ):
        result = runner.invoke(app, ["anonymize", str(photos), "-o", str(out), *light, *option])
        assert isinstance(result.exception, ConfigError), result.output
        assert "holds the outputs of 1 image(s) made with other settings" in str(result.exception)
        assert changed in str(result.exception)
    assert (out / "face.png").read_bytes() == blurred
    assert json.loads((out / "privacy_report.json").read_text())["config"]["method"] == "blur"
    # A journal from before settings were recorded is read by its "method" and "parameters".
    journal = out / "manifest.jsonl"
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    for line in lines:
        line["details"].pop("settings"), line["details"].pop("output_settings")
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines))
    old = runner.invoke(app, ["anonymize", str(photos), "-o", str(out), *light, "--method", "mosaic"])
    assert isinstance(old.exception, ConfigError) and "--method blur -> mosaic" in str(old.exception)
    # Dataset mode the same; --overwrite redoes, and every summary names the method used.
    alphas, dataset = tmp_path / "alphas", tmp_path / "dataset"
    alphas.mkdir()
    _save(alphas / "face.png", np.full((220, 220), 255, np.uint8))
    assert "done 1" in _run("--images", str(photos), "--alphas", str(alphas), "--out", str(dataset), *light).output
    refused = runner.invoke(app, ["anonymize", "--images", str(photos), "--alphas", str(alphas), "--out", str(dataset), *light, "--method", "mask"])
    assert isinstance(refused.exception, ConfigError) and "--method blur -> mask" in str(refused.exception)
    redo = _run(str(photos), "-o", str(out), *light, "--method", "mosaic", "--overwrite")
    assert "done 1" in redo.output and (out / "face.png").read_bytes() != blurred
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["method"] == "mosaic" and [image["method"] for image in manifest["images"]] == ["mosaic"]
    assert "kept 1" in _run(str(photos), "-o", str(out), *light, "--method", "mosaic").output


def test_recursive_single_image_mode_mirrors_the_tree_and_a_flat_run_names_what_it_left_out(tmp_path):
    from skimage import data

    from p3m.video.runs import plan_anonymize_videos

    photos, out = tmp_path / "photos", tmp_path / "out"
    (photos / "sub").mkdir(parents=True)
    face = np.ascontiguousarray(data.astronaut()[::4, ::4])
    for folder in (photos, photos / "sub"):
        _save(folder / "face.png", face)
    flat = _run(str(photos), "-o", str(out), "--no-alpha", "--no-audit", "--detect", "standard")
    assert flat.exit_code == 0, flat.output
    assert "note: left out 1 sub-folder(s) with images or videos (sub; -r searches them)" in flat.output
    tree = _run(str(photos), "-r", "-o", str(out), "--no-alpha", "--no-audit", "--detect", "standard")
    assert tree.exit_code == 0, tree.output
    names = {r["name"]: r["status"] for r in json.loads((out / "manifest.json").read_text())["images"]}
    assert names == {"face": "kept", "sub/face": "done"}
    assert Image.open(out / "sub" / "face.png").size == (128, 128) and (out / "sub" / "face.facemask.png").is_file()
    # Clips found under sub-folders are keyed and written the same way.
    (photos / "sub" / "clip.mov").write_bytes(b"x")
    (item,) = plan_anonymize_videos([(photos / "sub" / "clip.mov", Path("sub/clip.mov"))], out)
    assert item.key == "sub/clip.mov" and item.outputs["video"] == out / "sub" / "clip.mp4"


def test_a_photo_named_like_a_matte_output_is_anonymised_and_own_outputs_are_left_out(tmp_path):
    """c18: `face_rgba.png` (a user's photo) was passed over for its name with a note and exit 0,
    a face never anonymised. Only what p3m knows it wrote is left out (c10: `D -o D` twice)."""
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    _save(photos / "face_rgba.png", data.astronaut()[:220, 120:340])
    light = ["--detectors", "mediapipe", "--no-audit", "--verify", "none", "--detect", "standard"]
    out = photos / "out"
    first = _run(str(photos), "-r", "-o", str(out), *light)
    assert "done 1" in first.output and "passed over" not in first.output, first.output
    assert (out / "face_rgba.facemask.png").exists()
    again = _run(str(photos), "-r", "-o", str(out), *light)  # out/ is p3m's own, by the journal
    assert "kept 1" in again.output and "done 0" in again.output, again.output
    assert not (out / "out").exists()


def test_a_replaced_photo_is_anonymised_again_not_kept(tmp_path):
    """A photo saved over with another picture of the same size (or the same name from another
    folder) kept the first picture's anonymised output: the new photo was never anonymised.
    The engine compares each record's source fingerprint and redoes it, with a note."""
    import os

    from skimage import data

    photos, other, out = tmp_path / "an", tmp_path / "other", tmp_path / "out"
    photos.mkdir(), other.mkdir()
    face = data.astronaut()[:220, 120:340]
    _save(photos / "face.png", face)
    light = ["--detectors", "mediapipe", "--no-audit", "--verify", "none", "--detect", "standard", "--no-alpha"]
    assert "done 1" in _run(str(photos), "-o", str(out), *light).output
    first = (out / "face.png").read_bytes()
    before = (photos / "face.png").stat().st_mtime_ns
    _save(photos / "face.png", np.ascontiguousarray(face[:, ::-1]))
    os.utime(photos / "face.png", ns=(before + 10**9, before + 10**9))
    again = _run(str(photos), "-o", str(out), *light)
    output = " ".join(again.output.split())
    assert "done 1" in output and "changed since its outputs were made; redoing" in output
    assert (out / "face.png").read_bytes() != first
    assert "kept 1" in _run(str(photos), "-o", str(out), *light).output
    _save(other / "face.png", face)
    assert "done 1" in _run(str(other / "face.png"), "-o", str(out), *light).output
    assert (out / "face.png").read_bytes() == first
