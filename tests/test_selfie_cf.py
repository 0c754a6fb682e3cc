"""selfie-cf on the odd inputs of ../shared/cases/odd-inputs (c04, c08, c18, c20, c21, c22), and
its parts: the closed-form solver, exposure normalisation, the person finder, input alpha.

The case images are built here exactly as `make_cases.py` builds them (scikit-image's astronaut
and coffee, synthetic walls), once per session; each case's expected behaviour (README) is the
assertion.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image
from skimage import data

from p3m.inference.api import Matter
from p3m.io import load_image_and_alpha

pytest.importorskip("mediapipe")

ASTRO = data.astronaut()
PORTRAIT = np.ascontiguousarray(ASTRO[:, 64:448])  # 512 x 384, face near rows 80-175, cols 115-210


# --------------------------------------------------------------------------- the cases


@pytest.fixture(scope="session")
def cases(tmp_path_factory) -> dict[str, object]:
    """The case files (paths) and arrays of make_cases.py that this module needs."""
    folder = tmp_path_factory.mktemp("odd-input-cases")
    found: dict[str, object] = {}
    # c04: an editor erased the left 128 columns, keeping (or zeroing) the colour underneath.
    rgba = np.dstack([ASTRO, np.full(ASTRO.shape[:2], 255, np.uint8)])
    rgba[:, :128, 3] = 0
    Image.fromarray(rgba, "RGBA").save(folder / "erased_keep_rgb.png")
    clean = rgba.copy()
    clean[:, :128, :3] = 0
    Image.fromarray(clean, "RGBA").save(folder / "erased_black_rgb.png")
    Image.fromarray(rgba, "RGBA").convert("LA").save(folder / "erased_LA.png")
    palette = Image.fromarray(ASTRO).convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    index = np.asarray(palette).copy()
    index[:, :128] = 255
    transparent = Image.fromarray(index, "P")
    transparent.putpalette(palette.getpalette()[:765] + [0, 0, 0])
    transparent.save(folder / "erased_P_trns.png", transparency=255)
    found["rgba"] = rgba
    # c08: no person
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    Image.fromarray(np.full((480, 640, 3), 128, np.uint8)).save(folder / "blank_gray.png")
    # c18 (matting half): an RGBA face whose alpha hides a strip
    face = np.dstack([ASTRO, np.full(ASTRO.shape[:2], 255, np.uint8)])
    face[:, 400:, 3] = 0
    Image.fromarray(face, "RGBA").save(folder / "face_rgba.png")
    # c20: the portrait far away on a plain wall
    for scale in (0.2, 0.1):
        canvas = np.full((1024, 1024, 3), 200, np.uint8)
        small = np.asarray(
            Image.fromarray(PORTRAIT).resize((round(384 * scale), round(512 * scale)), Image.Resampling.LANCZOS)
        )
        canvas[500 : 500 + small.shape[0], 500 : 500 + small.shape[1]] = small
        Image.fromarray(canvas).save(folder / f"far_away_{int(scale * 100):02d}pct.png")
    # c21: low light
    for factor in (0.25, 0.1):
        dark = np.clip(PORTRAIT.astype(np.float64) * factor, 0, 255).round().astype(np.uint8)
        Image.fromarray(dark).save(folder / f"dark_{int(factor * 100):02d}pct.png")
    # c22: groups
    found["three_people"] = np.ascontiguousarray(np.concatenate([PORTRAIT, PORTRAIT[:, ::-1], PORTRAIT], axis=1))
    gap = np.full((512, 192, 3), 200, np.uint8)
    found["three_people_spaced"] = np.ascontiguousarray(
        np.concatenate([PORTRAIT, gap, PORTRAIT[:, ::-1], gap, PORTRAIT], axis=1)
    )
    found["two_people"] = np.ascontiguousarray(np.concatenate([PORTRAIT, PORTRAIT[:, ::-1]], axis=1))
    found["folder"] = folder
    return found


@pytest.fixture(scope="session")
def matter() -> Matter:
    return Matter("selfie-cf")


@pytest.fixture(scope="session")
def portrait_alpha(matter) -> np.ndarray:
    return matter(PORTRAIT, foreground=False).alpha


def _face(alpha: np.ndarray, left: int = 0, mirrored: bool = False) -> float:
    """Mean alpha over the portrait's face when the portrait starts at column `left`."""
    cols = slice(left + 384 - 200, left + 384 - 125) if mirrored else slice(left + 125, left + 200)
    return float(alpha[95:165, cols].mean())


# --------------------------------------------------------------------------- c04, c18: input alpha


@pytest.mark.parametrize("name", ["erased_keep_rgb.png", "erased_black_rgb.png", "erased_LA.png", "erased_P_trns.png"])
def test_c04_every_reader_returns_the_input_alpha(cases, name):
    image, alpha = load_image_and_alpha(cases["folder"] / name)
    assert image.shape == (512, 512, 3) and alpha is not None and alpha.dtype == np.float32
    assert alpha[:, :128].max() == 0 and alpha[:, 128:].min() == 1
    # The same through bytes and a PIL image.
    raw = (cases["folder"] / name).read_bytes()
    assert np.array_equal(load_image_and_alpha(raw)[1], alpha)
    assert np.array_equal(load_image_and_alpha(Image.open(io.BytesIO(raw)))[1], alpha)


def test_c04_opaque_inputs_have_no_alpha():
    assert load_image_and_alpha(ASTRO)[1] is None
    opaque = np.dstack([ASTRO, np.full(ASTRO.shape[:2], 255, np.uint8)])
    image, alpha = load_image_and_alpha(opaque)
    assert alpha is None and image.shape == ASTRO.shape


@pytest.mark.parametrize("name", ["erased_keep_rgb.png", "erased_P_trns.png"])
def test_c04_the_matte_stays_within_the_input_alpha_api(cases, matter, name):
    result = matter(cases["folder"] / name, foreground=True)
    assert result.alpha[:, :128].max() == 0  # the erased arm does not come back
    assert np.all(result.alpha <= result.input_alpha)
    assert result.rgba()[:, :128, 3].max() == 0
    assert _face(result.alpha, 64) > 0.95  # the person is still matted


def test_c04_an_rgba_array_and_an_explicit_input_alpha_bound_the_matte(cases, matter):
    result = matter(cases["rgba"], foreground=False)
    assert result.alpha[:, :128].max() == 0 and _face(result.alpha, 64) > 0.95
    limit = np.ones(ASTRO.shape[:2], np.float32)
    limit[:, 300:] = 0.25
    bounded = matter(ASTRO, foreground=False, input_alpha=limit)
    assert bounded.alpha[:, 300:].max() <= 0.25 and bounded.alpha[:, :128].max() > 0.5


def test_c04_the_matte_stays_within_the_input_alpha_cli(cases, tmp_path):
    from typer.testing import CliRunner

    from p3m.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["matte", str(cases["folder"] / "erased_black_rgb.png"), "-o", str(out), "--save", "alpha,rgba"]
    )
    assert result.exit_code == 0, result.output
    alpha = np.asarray(Image.open(out / "erased_black_rgb_alpha.png"))
    rgba = np.asarray(Image.open(out / "erased_black_rgb_rgba.png"))
    assert alpha[:, :128].max() == 0 and rgba[:, :128, 3].max() == 0
    assert alpha[95:165, 189:264].mean() > 240


def test_c04_c08_the_service_keeps_the_input_alpha_and_sends_the_note(cases):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from p3m.serve import ServeConfig, create_app

    client = TestClient(create_app(ServeConfig(model="selfie-cf")))
    upload = (cases["folder"] / "erased_LA.png").read_bytes()
    response = client.post("/api/matte", files={"image": ("a.png", upload, "image/png")}, data={"output": "alpha"})
    assert response.status_code == 200, response.text
    alpha = np.asarray(Image.open(io.BytesIO(response.content)))
    assert alpha[:, :128].max() == 0 and alpha[95:165, 189:264].mean() > 240
    assert "x-p3m-note" not in response.headers and "x-p3m-image-note" not in response.headers

    upload = (cases["folder"] / "coffee.png").read_bytes()
    response = client.post("/api/matte", files={"image": ("c.png", upload, "image/png")}, data={"output": "alpha"})
    assert response.status_code == 200
    assert "no person" in response.headers["x-p3m-note"]
    assert response.headers["x-p3m-image-note"].startswith("no person")
    assert np.asarray(Image.open(io.BytesIO(response.content))).max() == 0


def test_c18_a_hidden_strip_stays_hidden_in_the_matte(cases, matter):
    result = matter(cases["folder"] / "face_rgba.png", foreground=False)
    assert result.alpha[:, 400:].max() == 0
    assert result.alpha[130:160, 200:250].mean() > 0.95  # the face


# --------------------------------------------------------------------------- c08: no person


@pytest.mark.parametrize("name", ["coffee.png", "blank_gray.png"])
def test_c08_no_person_gives_an_empty_matte_and_a_note(cases, matter, name):
    result = matter(cases["folder"] / name, foreground=False)
    assert result.alpha.max() == 0
    assert result.image_note and "no person" in result.image_note and "\n" not in result.image_note
    assert result.note == result.image_note  # selfie-cf chosen by name: no model note
    assert result.details.people == []


def test_c08_the_cli_prints_the_note_on_one_line(cases, tmp_path):
    from typer.testing import CliRunner

    from p3m.cli import app

    result = CliRunner().invoke(
        app, ["matte", str(cases["folder"] / "coffee.png"), "-m", "selfie-cf", "-o", str(tmp_path), "--save", "alpha"]
    )
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "coffee.png" in notes[0] and "no person" in notes[0]
    assert np.asarray(Image.open(tmp_path / "coffee_alpha.png")).max() == 0


def test_c08_whole_frame_fallback_on_request(cases):
    from p3m.inference.selfie_cf import SelfieCFConfig, run_selfie_cf

    coffee = data.coffee()
    result = run_selfie_cf(coffee, SelfieCFConfig(require_person=False))
    assert result.alpha.max() > 0.5 and result.note and "whole-frame" in result.note


# --------------------------------------------------------------------------- c20: small person


@pytest.mark.parametrize(("name", "size", "face"), [("far_away_20pct.png", (102, 77), (14, 32, 23, 41)), ("far_away_10pct.png", (51, 38), (9, 17, 11, 20))])
def test_c20_a_small_person_is_matted_not_an_error(cases, matter, name, size, face):
    result = matter(cases["folder"] / name, foreground=False)
    alpha = result.alpha
    person = alpha[500 : 500 + size[0], 500 : 500 + size[1]]  # where the portrait was placed
    assert len(result.details.people) == 1 and result.note is None
    top, bottom, left, right = face
    assert person[top:bottom, left:right].mean() > 0.9  # the face
    assert 0.3 < (person > 0.5).mean() < 0.9  # a person's shape, not the whole box
    outside = alpha.copy()
    outside[490 : 510 + size[0], 490 : 510 + size[1]] = 0
    assert outside.max() == 0  # nothing matted away from the person


def test_c20_the_service_answers_200_on_small_people(cases):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from p3m.serve import ServeConfig, create_app

    client = TestClient(create_app(ServeConfig(model="selfie-cf")))
    upload = (cases["folder"] / "far_away_10pct.png").read_bytes()
    response = client.post("/api/matte", files={"image": ("f.png", upload, "image/png")}, data={"output": "rgba"})
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- c21: low light


@pytest.mark.parametrize("name", ["dark_25pct.png", "dark_10pct.png"])
def test_c21_low_light_keeps_the_body_and_prints_nothing(cases, matter, portrait_alpha, name, capfd):
    result = matter(cases["folder"] / name, foreground=True)
    captured = capfd.readouterr()
    assert "WARNING" not in captured.out + captured.err
    normal, dark = portrait_alpha > 0.5, result.alpha > 0.5
    assert (normal & dark).sum() / (normal | dark).sum() > 0.9  # the body is kept
    assert result.details.exposure.gain > 2  # detection saw it brightened ...
    assert np.array_equal(result.image, np.asarray(Image.open(cases["folder"] / name)))  # ... the output did not


# --------------------------------------------------------------------------- c22: groups


@pytest.mark.parametrize(
    ("name", "starts"),
    [("three_people", (0, 384, 768)), ("three_people_spaced", (0, 576, 1152)), ("two_people", (0, 384))],
)
def test_c22_every_person_in_a_group_is_matted(cases, matter, portrait_alpha, name, starts):
    alpha = matter(cases[name], foreground=False).alpha
    for index, left in enumerate(starts):
        mirrored = index % 2 == 1
        assert _face(alpha, left, mirrored) > 0.95, (name, left)
        chest = slice(left + 154, left + 304) if mirrored else slice(left + 80, left + 230)
        assert alpha[230:330, chest].mean() > 0.95, (name, left)  # the body
        # Head and shoulders equal the single portrait's matte (mirrored every other time); the
        # held helmet below is an object the segmenter may or may not count as the person's.
        single = portrait_alpha[:, ::-1] if mirrored else portrait_alpha
        assert np.abs(alpha[:300, left : left + 384] - single[:300]).mean() < 0.04, (name, left)
    if name == "three_people_spaced":  # the walls between them stay background
        assert alpha[:, 400:560].max() < 0.05 and alpha[:, 976:1136].max() < 0.05


# --------------------------------------------------------------------------- parts


def test_closed_form_answers_every_trimap():
    from p3m.inference.closed_form import solve_closed_form

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    unknown = np.full((24, 32), 128, np.uint8)
    no_foreground = unknown.copy()
    no_foreground[:, :8] = 0
    no_background = unknown.copy()
    no_background[:, :8] = 255
    thin = np.zeros((24, 32), np.uint8)
    thin[12, 4:28] = 128
    thin[:, 30:] = 255
    prior = np.full((24, 32), 0.25, np.float32)
    assert np.allclose(solve_closed_form(image, unknown, prior=prior), 0.25)  # nothing known: prior
    assert solve_closed_form(image, no_foreground).max() < 0.01
    assert solve_closed_form(image, no_background).min() > 0.99
    assert solve_closed_form(image, np.zeros((24, 32), np.uint8)).max() == 0
    thin_alpha = solve_closed_form(image, thin)
    assert thin_alpha.shape == (24, 32) and np.isfinite(thin_alpha).all()
    for shape in ((1, 1), (1, 7), (2, 2)):
        tiny = solve_closed_form(np.zeros(shape + (3,), np.uint8), np.full(shape, 128, np.uint8))
        assert tiny.shape == shape


def test_closed_form_equals_pymatting_and_tiles_do_not_show():
    from pymatting import estimate_alpha_cf

    from p3m.inference.closed_form import ClosedFormConfig, solve_closed_form
    from p3m.inference.selfie_cf import trimap_from_mask

    image = ASTRO[::4, ::4].copy()
    yy, xx = np.mgrid[0:128, 0:128]
    trimap = trimap_from_mask(((yy - 60) ** 2 / 40**2 + (xx - 64) ** 2 / 30**2 < 1).astype(np.float32), 4)
    reference = estimate_alpha_cf(image / 255.0, trimap / 255.0)
    ours = solve_closed_form(image, trimap)
    assert np.abs(ours - reference).mean() < 1e-4
    tiled = solve_closed_form(image, trimap, config=ClosedFormConfig(tile=48, tile_margin=12))
    assert np.abs(tiled - ours).mean() < 2e-3


def test_closed_form_sends_pymatting_notes_to_the_log(caplog, capfd):
    from scipy import sparse

    from p3m.inference import closed_form

    # Not positive definite: the incomplete Cholesky fails and pymatting prints its warning.
    matrix = sparse.csr_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with caplog.at_level(logging.DEBUG, logger="p3m.inference.closed_form"):
        operator = closed_form._preconditioner(matrix)
    assert operator.shape == (2, 2)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert any("PERFORMANCE WARNING" in record.getMessage() for record in caplog.records)


def test_exposure_normalisation_is_for_dark_images_only():
    from p3m.detection.exposure import normalize_exposure

    same, exposure = normalize_exposure(PORTRAIT)
    assert same is PORTRAIT and exposure.identity
    dark = (PORTRAIT // 10).astype(np.uint8)
    brighter, exposure = normalize_exposure(dark)
    assert exposure.gain > 5 and np.percentile(brighter, 99) > 200
    wall = np.full((64, 64, 3), 200, np.uint8)
    assert normalize_exposure(wall)[1].identity  # flat but bright: left alone


def test_people_are_found_from_faces_and_confirmed():
    from p3m.detection.people import find_people

    people = find_people(ASTRO)
    assert len(people) == 1 and people[0].face is not None
    x0, y0, x1, y1 = people[0].box
    assert x0 < 180 and x1 > 280 and y0 < 80 and y1 > 400
    assert people[0].to_dict()["cues"]
    assert find_people(data.coffee()) == []
    assert find_people(np.zeros((4, 4, 3), np.uint8)) == []


def test_the_solve_size_follows_the_pixel_budget_and_is_recorded():
    from p3m.inference.backends import MATTE_MAX_PIXELS

    small = Matter("selfie-cf", max_pixels=MATTE_MAX_PIXELS // 4)(PORTRAIT, foreground=False)
    default = Matter("selfie-cf")(PORTRAIT, foreground=False)
    unbounded = Matter("selfie-cf", max_pixels=None)(PORTRAIT, foreground=False)
    assert small.resized is not None and small.resized.kind == "solve"
    assert "closed-form solved at" in small.resized.describe()
    # The note names the budget that shrank the solve, per person, and the numbers agree: the
    # region is above it (a 0.26 MP image "above a pixel budget of 1.75 MP" contradicted itself).
    info = default.resized
    assert info is not None and info.solve_pixels == 120_000 and info.people == 1
    assert info.region_pixels > info.solve_pixels * info.people
    assert f"{info.region_pixels:,} px around 1 person(s) > solve budget 120,000 px/person" in info.describe()
    assert "above its solve budget (pixels per person" in info.explain()
    assert small.solved_size[0] < default.solved_size[0] <= unbounded.solved_size[0] == 512
    assert unbounded.resized is None and unbounded.solved_size == (512, 384)
    regions = unbounded.details.regions
    assert regions and all(region.solved_size == (region.box[3] - region.box[1], region.box[2] - region.box[0]) for region in regions)
    # The cheaper solve is a coarser version of the same matte.
    assert np.abs(small.alpha - unbounded.alpha).mean() < 0.03


def test_one_person_is_never_counted_twice():
    from p3m.detection.faces import Face
    from p3m.detection.people import Person, distinct_people

    def face_person(box, score):
        face = Face(box=box, score=score, detectors=("mediapipe-short",))
        return Person(box=(box[0] - 40, box[1] - 10, box[2] + 40, box[3] + 80), score=score, cues=face.detectors, face=face)

    small = face_person((190.0, 985.0, 210.0, 1009.0), 0.93)
    # The same face boxed three times too large (IoU 0.11 with the right box), as detectors
    # box a 20-px face in a wide view; it holds the small face's centre.
    oversized = face_person((150.0, 950.0, 215.0, 1015.0), 0.64)
    neighbour = face_person((300.0, 985.0, 320.0, 1009.0), 0.9)
    pose_on_chin = Person(box=(192.0, 1000.0, 206.0, 1012.0), score=0.7, cues=("pose",))
    kept = distinct_people([pose_on_chin, oversized, small, neighbour])
    assert kept == [small, neighbour]


def test_a_person_crop_grows_only_within_reach_of_the_face():
    from p3m.detection.faces import Face
    from p3m.detection.people import Person
    from p3m.inference.selfie_cf import _body_extent, _grown

    face = Face(box=(100.0, 100.0, 120.0, 124.0), score=0.9, detectors=("centerface",))
    person = Person(box=(60.0, 90.0, 160.0, 220.0), score=0.9, cues=face.detectors, face=face)
    limit = _body_extent(person, 1000, 1000)
    assert limit == (30, 76, 190, 304)
    everywhere = np.ones((130, 100), np.float32)  # a mask running into every side of the crop
    box = (60, 90, 160, 220)
    for _ in range(5):
        box = _grown(box, everywhere, 0.5, 1000, 1000, limit) or box
    assert box == limit
    assert _grown(limit, np.ones((228, 160), np.float32), 0.5, 1000, 1000, limit) is None


def test_a_grown_crop_that_sees_something_else_beside_the_person_is_not_kept(monkeypatch):
    """A wider view that calls person what the tight crop was sure is background (a red cup
    behind a shoulder in a dark photo) keeps the tight crop's mask."""
    from p3m.detection.faces import Face
    from p3m.detection.people import Person
    from p3m.inference import selfie_cf

    face = Face(box=(180.0, 100.0, 220.0, 148.0), score=0.9, detectors=("centerface",))
    person = Person(box=(100.0, 70.0, 300.0, 300.0), score=0.9, cues=face.detectors, face=face)
    tight = (80, 47, 320, 300)  # the person's box padded by 10 %, as _person_probability pads it

    def fake_crop(seen, box, config):
        if tuple(box) == tight:  # head and body; the body runs into the left side: the crop grows
            mask = np.zeros((box[3] - box[1], box[2] - box[0]), np.float32)
            mask[50:, 100:140] = 1.0
            mask[110:, 0:200] = 1.0
            return mask, 1.0
        return np.ones((box[3] - box[1], box[2] - box[0]), np.float32), 1.0  # all "person"

    monkeypatch.setattr(selfie_cf, "_segment_crop", fake_crop)
    config = selfie_cf.SelfieCFConfig(pose_rescue_below=0.0)
    probability, kept = selfie_cf._person_probability(np.zeros((300, 400, 3), np.uint8), [person], config)
    assert kept == [person]
    assert probability[47:150, 80:170].max() == 0.0  # beside the head: background, as the tight crop saw it
    assert probability[160:, 80:280].min() == 1.0


def test_a_face_like_pattern_in_gravel_is_no_person():
    """Two face detectors see a face in scikit-image's gravel (score 0.57); the segmenter calls
    the whole crop around it person. No head stands in a patch of person as wide as its
    shoulders: no person, an empty matte and the note."""
    from skimage.transform import resize

    from p3m.inference.selfie_cf import NO_PERSON_NOTE, run_selfie_cf

    # The patch of bench_default's gravel background (1440 x 1080) with the face-like pattern.
    gravel = data.gravel()  # 512 x 512 grey
    big = resize(gravel, (1440, 1440), order=1, preserve_range=True, anti_aliasing=True)[180:1260]
    patch = np.repeat(np.round(big[:300, 550:850])[:, :, None], 3, axis=2).astype(np.uint8)
    result = run_selfie_cf(patch)
    assert result.people == []
    assert float(result.alpha.max()) == 0.0
    assert result.note == NO_PERSON_NOTE


def test_a_second_selfie_model_decides_where_the_first_is_unsure(portrait_alpha):
    """The portrait cut out with its own matte, 256 px tall, over scikit-image's coffee (a red
    cup behind the orange suit), at 25 % exposure: where the general model is unsure, the
    landscape model's opinion brings the person crop's mask close to the true shape."""
    from p3m.detection.exposure import normalize_exposure
    from p3m.inference.selfie_cf import SelfieCFConfig, _segment_crop
    from p3m.inference.upsample import resize_alpha, shrink_image

    height, width = 256, 192
    person = shrink_image(PORTRAIT, (height, width)).astype(np.float32)
    alpha = np.clip(resize_alpha(portrait_alpha, (height, width)), 0.0, 1.0)[:, :, None]
    frame = shrink_image(data.coffee(), (2 * height, 2 * height)).astype(np.float32)
    window = (slice(height, None), slice(128, 128 + width))
    frame[window] = person * alpha + frame[window] * (1.0 - alpha)
    seen, _ = normalize_exposure(np.round(frame * 0.25).astype(np.uint8))
    box = (80, 224, 368, 512)
    truth = np.zeros(frame.shape[:2], bool)
    truth[window] = alpha[:, :, 0] > 0.5
    truth = truth[box[1] : box[3], box[0] : box[2]]
    errors = {}
    for name, config in (("general", SelfieCFConfig(crop_models=(0,))), ("default", SelfieCFConfig())):
        mask, _ = _segment_crop(seen, box, config)
        errors[name] = float(((mask > 0.4) ^ truth).mean())
    assert errors["default"] < 0.018, errors  # general model alone: 0.026
    assert errors["default"] < 0.7 * errors["general"], errors


def test_shoulder_width_tells_a_person_from_a_narrow_object():
    """`_shoulder_width`: the widest run of person below the chin, in face widths; not judged
    where the shoulders are beyond the crop or run into its side."""
    from p3m.detection.faces import Face
    from p3m.detection.people import Person
    from p3m.inference.selfie_cf import _shoulder_width

    face = Face(box=(80.0, 20.0, 120.0, 70.0), score=0.55, detectors=("mediapipe-short",))
    person = Person(box=(0.0, 0.0, 200.0, 300.0), score=0.55, cues=face.detectors, face=face)
    box = (0, 0, 200, 300)
    shoulders = np.zeros((300, 200), np.float32)
    shoulders[20:70, 80:120] = 1.0  # the head
    shoulders[70:, 40:160] = 1.0  # shoulders three face widths wide
    strip = np.zeros((300, 200), np.float32)
    strip[:, 78:122] = 1.0  # a rocket as wide as its "face"
    assert _shoulder_width(person, box, shoulders, 0.5) == pytest.approx(3.0)
    assert _shoulder_width(person, box, strip, 0.5) == pytest.approx(1.1)
    assert _shoulder_width(person, (0, 0, 200, 100), strip[:100], 0.5) == float("inf")  # cut by the crop
    assert _shoulder_width(person, box, np.ones((300, 200), np.float32), 0.5) == float("inf")  # runs out of the crop
    assert _shoulder_width(Person(box=box, score=0.9, cues=("pose",)), box, strip, 0.5) == float("inf")


def test_a_face_like_mark_on_a_rocket_is_no_person():
    """MediaPipe's short-range detector sees a face (score 0.57) in the logo of scikit-image's
    rocket (bench_default's rocket background, 50 % exposure); the segmenter marks the rocket
    below it, a strip as wide as the "face". No shoulders: no person, an empty matte and the note."""
    from p3m.inference.selfie_cf import NO_PERSON_NOTE, SelfieCFConfig, run_selfie_cf
    from p3m.inference.upsample import shrink_image

    rocket = shrink_image(data.rocket(), (1080, 1619))[:, 89:1529]  # bench_default's 1080 x 1440 frame
    patch = np.round(rocket[250:750, 500:950].astype(np.float32) * 0.5).astype(np.uint8)
    unchecked = run_selfie_cf(patch, SelfieCFConfig(min_shoulder_width=0.0))
    assert [person.cues for person in unchecked.people] == [("mediapipe-short",)]  # the false face
    result = run_selfie_cf(patch)
    assert result.people == []
    assert float(result.alpha.max()) == 0.0
    assert result.note == NO_PERSON_NOTE


def _pose_person(nose_y: float = 60.0, shoulder_y: float = 100.0, arm_y: float = 160.0):
    from p3m.detection.people import Person

    landmarks = np.zeros((33, 3), np.float32)
    landmarks[:, 2] = 0.99
    landmarks[0, :2] = (100, nose_y)
    landmarks[11, :2], landmarks[12, :2] = (120, shoulder_y), (80, shoulder_y)
    landmarks[13:17, 1] = arm_y
    return Person(box=(0.0, 0.0, 200.0, 300.0), score=0.99, cues=("pose",), landmarks=landmarks)


def test_pose_shoulder_ratio_tells_a_body_from_a_strip():
    """`_pose_shoulder_ratio`: a pose-only person's mask must widen from the head to the
    shoulders; not judged with raised arms or without landmarks."""
    from p3m.inference.selfie_cf import _pose_shoulder_ratio

    box = (0, 0, 200, 300)
    body = np.zeros((300, 200), np.float32)
    body[30:90, 80:120] = 1.0  # head, 40 px wide
    body[90:, 40:160] = 1.0  # shoulders and body, 120 px
    strip = np.zeros((300, 200), np.float32)
    strip[10:, 75:125] = 1.0  # a rocket: one width all the way down
    assert _pose_shoulder_ratio(_pose_person(), box, body, 0.5) == pytest.approx(3.0)
    assert _pose_shoulder_ratio(_pose_person(), box, strip, 0.5) == pytest.approx(1.0)
    assert _pose_shoulder_ratio(_pose_person(arm_y=40.0), box, strip, 0.5) == float("inf")  # arms raised
    no_landmarks = _pose_person().__class__(box=(0.0, 0.0, 200.0, 300.0), score=0.99, cues=("pose",))
    assert _pose_shoulder_ratio(no_landmarks, box, strip, 0.5) == float("inf")


def test_a_skeleton_on_a_rocket_is_no_person():
    """BlazePose fits a skeleton (visibility 0.99) onto scikit-image's rocket; its mask is a strip
    as wide at the "shoulders" as at the "nose": no person, an empty matte and the note."""
    from p3m.inference.selfie_cf import NO_PERSON_NOTE, SelfieCFConfig, run_selfie_cf
    from p3m.inference.upsample import shrink_image

    patch = np.ascontiguousarray(shrink_image(data.rocket(), (1080, 1619))[250:750, 589:1039])
    unchecked = run_selfie_cf(patch, SelfieCFConfig(min_pose_shoulder_ratio=0.0))
    assert [person.cues for person in unchecked.people] == [("pose",)]
    result = run_selfie_cf(patch)
    assert result.people == []
    assert float(result.alpha.max()) == 0.0
    assert result.note == NO_PERSON_NOTE


def test_people_found_but_not_segmented_get_a_note_not_a_silent_blank() -> None:
    """A 25 px LFW face blown up to 150 px: CenterFace and MediaPipe find the person, the
    selfie models keep nothing of it. The empty matte says so."""
    from PIL import Image
    from skimage import data

    import p3m
    from p3m.inference.selfie_cf import EMPTY_ALPHA

    face = (data.lfw_subset()[0] * 255).astype(np.uint8)
    image = np.asarray(Image.fromarray(face).resize((150, 150), Image.NEAREST).convert("RGB"))
    result = p3m.matte(image)
    assert result.details.people, "test setup: the person is found"
    if (result.alpha >= EMPTY_ALPHA).any():
        assert result.image_note is None or "segmentation kept none" not in result.image_note
    else:
        assert result.image_note is not None and "segmentation kept none of them" in result.image_note
