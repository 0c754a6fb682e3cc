"""The HTTP service through its ASGI app: page, health, matting, anonymisation, odd inputs, privacy.

Matting runs the real selfie-cf pipeline on small images; concurrency and limits are tested on
a real uvicorn server in test_serve_load.py, the page in a real browser in test_serve_page.py.
"""

from __future__ import annotations

import base64
import builtins
import io
import os

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("mediapipe")
from fastapi.testclient import TestClient  # noqa: E402

from p3m.serve import ServeConfig, create_app  # noqa: E402
from p3m.serve.encoding import header_text, jsonable  # noqa: E402
from serve_helpers import StubMatting, png_bytes, png_chunks  # noqa: E402

CLEAN_PNG_CHUNKS = {"IHDR", "IDAT", "IEND"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    with TestClient(create_app(ServeConfig(model="selfie-cf"))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def astronaut_rgb() -> np.ndarray:
    from skimage.data import astronaut

    return astronaut()[::2, ::2].copy()  # 256 x 256


@pytest.fixture(scope="module")
def astronaut_jpeg(astronaut_rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(astronaut_rgb).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def astronaut_face_png() -> bytes:
    """The full 512 x 512 astronaut (face about 90 px wide), losslessly."""
    from skimage.data import astronaut

    return png_bytes(astronaut())


def decode_data_url(url: str) -> bytes:
    header, payload = url.split(",", 1)
    assert header == "data:image/png;base64"
    return base64.b64decode(payload)


def as_array(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_page_health_and_models(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    # Its own icon: browsers otherwise ask for /favicon.ico, a 404 in their console.
    assert '<link rel="icon" href="data:image/svg+xml,' in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert "/api/matte" in script.text and "/api/anonymize" in script.text
    assert client.get("/static/style.css").status_code == 200
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["model"] == "selfie-cf"
    # selfie-cf gets two workers by default, P3M-Net models one.
    assert health["workers"] == 2 and health["capacity"] == 34 and health["timeout_s"] == 120
    assert ServeConfig(model="p3mnet-r34").worker_count == ServeConfig(model=StubMatting()).worker_count == 1
    assert health["max_upload_bytes"] == 40 << 20
    names = [entry["name"] for entry in client.get("/api/models").json()["models"]]
    assert "p3mnet-vitae-s" in names
    schema = client.get("/openapi.json").json()
    fields = schema["paths"]["/api/anonymize"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert {"image", "alpha", "method", "strength"} <= set(fields["schema"]["properties"])


def test_matte_rgba_png(client: TestClient, astronaut_jpeg: bytes) -> None:
    response = client.post(
        "/api/matte", files={"image": ("astronaut.jpg", astronaut_jpeg, "image/jpeg")}, data={"output": "rgba"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-p3m-model"] == "selfie-cf"
    assert response.headers["cache-control"] == "no-store"
    rgba = as_array(response.content)
    assert rgba.shape == (256, 256, 4)
    alpha = rgba[..., 3]
    # The astronaut fills the centre of the frame; the top-left corner is background.
    assert alpha[128, 128] > 200 and alpha[20:40, 5:15].max() < 30


def test_matte_json_bundle_matches_png(client: TestClient, astronaut_jpeg: bytes) -> None:
    files = {"image": ("astronaut.jpg", astronaut_jpeg, "image/jpeg")}
    bundle = client.post("/api/matte", files=files, data={"output": "json", "background": "#00ff00"}).json()
    alpha_png = client.post("/api/matte", files=files, data={"output": "alpha"}).content
    assert np.array_equal(as_array(decode_data_url(bundle["alpha"])), as_array(alpha_png))
    composite = as_array(decode_data_url(bundle["composite"]))
    assert composite.shape == (256, 256, 3)
    assert tuple(composite[30, 10]) == (0, 255, 0)  # background pixel shows the chosen colour
    assert (bundle["model"], bundle["width"], bundle["height"]) == ("selfie-cf", 256, 256)
    assert bundle["notes"] == [] and bundle["resized"] is None


def test_composite_over_an_uploaded_background_is_cropped_not_stretched(
    client: TestClient, astronaut_jpeg: bytes
) -> None:
    # A 4:1 background: red sides, a green middle as wide as it is high.
    background = np.zeros((100, 400, 3), np.uint8)
    background[:, :150] = background[:, 250:] = (255, 0, 0)
    background[:, 150:250] = (0, 255, 0)
    response = client.post(
        "/api/matte",
        files={
            "image": ("astronaut.jpg", astronaut_jpeg, "image/jpeg"),
            "background_image": ("wall.png", png_bytes(background), "image/png"),
        },
        data={"output": "composite", "background": "white"},
    )
    assert response.status_code == 200, response.text
    composite = as_array(response.content)
    assert composite.shape == (256, 256, 3)
    # The square photo takes the middle square of the background: its corners are green.
    assert tuple(composite[5, 5]) == (0, 255, 0) and tuple(composite[30, 250]) == (0, 255, 0)
    bad = client.post(
        "/api/matte",
        files={"image": ("a.jpg", astronaut_jpeg), "background_image": ("wall.png", b"not an image")},
        data={"output": "composite"},
    )
    assert bad.status_code == 400 and bad.json()["detail"].startswith("wall.png (background image): not an image")


def test_bad_uploads_and_options_get_a_one_line_400(client: TestClient, astronaut_jpeg: bytes) -> None:
    response = client.post("/api/matte", files={"image": ("notes.png", b"not an image at all", "image/png")})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "\n" not in detail and detail.startswith("notes.png: not an image")  # the upload's name first
    image = {"image": ("a.jpg", astronaut_jpeg, "image/jpeg")}
    for endpoint, options, word in [
        ("/api/matte", {"output": "gif"}, "output must be one of"),
        ("/api/matte", {"background": "no-such-colour"}, "colour"),
        ("/api/anonymize", {"method": "smudge"}, "method must be one of"),
        ("/api/anonymize", {"detectors": "mediapipe,telepathy"}, "unknown face detector"),
        ("/api/anonymize", {"strength": "lots"}, "strength must be a number"),
        ("/api/anonymize", {"alpha_from": "p3mnet-r34"}, "alpha_from must be one of"),
    ]:
        answer = client.post(endpoint, files=image, data=options)
        assert answer.status_code == 400, (endpoint, options, answer.text)
        assert word in answer.json()["detail"]
    no_image = client.post("/api/matte", data={"output": "rgba"}, files={"other": ("a", b"x")})
    assert no_image.status_code == 400 and "'image'" in no_image.json()["detail"]
    not_multipart = client.post("/api/matte", content=b"{}", headers={"content-type": "application/json"})
    assert not_multipart.status_code == 400 and "multipart/form-data" in not_multipart.json()["detail"]
    truncated = client.post(
        "/api/matte",
        content=b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\nabc',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert truncated.status_code == 400 and "ended early" in truncated.json()["detail"]


def test_preload_fails_at_start_for_an_unknown_model() -> None:
    from p3m.errors import ConfigError, ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        create_app(ServeConfig(model="no-such-model"), preload=True)
    lazy = create_app(ServeConfig(model="no-such-model"))  # lazy: the first request fails, clearly
    with TestClient(lazy) as lazy_client:
        response = lazy_client.post("/api/matte", files={"image": ("a.png", png_bytes(np.zeros((8, 8, 3), np.uint8)))})
    assert response.status_code == 503 and "cannot load its model" in response.json()["detail"]
    with pytest.raises(ConfigError, match="max_pixels"):
        ServeConfig(max_pixels=10)


def test_empty_and_oddly_named_uploads_get_a_400(client: TestClient) -> None:
    empty = client.post("/api/matte", files={"image": ("x.png", b"")})
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    odd = client.post("/api/matte", files={"image": ("..", b"not an image")})
    assert odd.status_code == 400 and "not an image" in odd.json()["detail"]


def _small_person(fraction: float) -> np.ndarray:
    """Case c20 of ../shared/cases/odd-inputs: the portrait far away on a 1024 x 1024 wall."""
    from skimage.data import astronaut

    portrait = Image.fromarray(astronaut()[:, 64:448])
    small = np.asarray(portrait.resize((round(384 * fraction), round(512 * fraction)), Image.Resampling.LANCZOS))
    canvas = np.full((1024, 1024, 3), 200, np.uint8)
    canvas[500 : 500 + small.shape[0], 500 : 500 + small.shape[1]] = small
    return canvas


def _odd_sizes() -> list[tuple[str, np.ndarray]]:
    """Case c15 (sizes) and c20 (small person) of ../shared/cases/odd-inputs."""
    from skimage.data import astronaut

    portrait = Image.fromarray(astronaut()[:, 64:448])
    cases = [
        (f"{w}x{h}", np.asarray(portrait.resize((w, h), Image.Resampling.BILINEAR)))
        for w, h in [(1, 1), (24, 32), (5000, 1), (1, 5000), (333, 501)]
    ]
    return cases + [("far_away_10pct", _small_person(0.1)), ("far_away_20pct", _small_person(0.2))]


@pytest.mark.parametrize(("name", "image"), _odd_sizes(), ids=[name for name, _ in _odd_sizes()])
def test_odd_sizes_and_a_small_person_give_a_result_or_a_clear_4xx_never_a_500(
    client: TestClient, name: str, image: np.ndarray
) -> None:
    files = {"image": (f"{name}.png", png_bytes(image), "image/png")}
    for output in ("json", "alpha"):
        response = client.post("/api/matte", files=files, data={"output": output})
        assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
        if response.status_code != 200:
            detail = response.json()["detail"]
            assert detail.startswith(f"{name}.png: ") and "\n" not in detail
            continue
        png = decode_data_url(response.json()["rgba"]) if output == "json" else response.content
        assert as_array(png).shape[:2] == image.shape[:2]
    anonymized = client.post("/api/anonymize", files=files, data={"audit": "false", "output": "png"})
    assert anonymized.status_code == 200 or 400 <= anonymized.status_code < 500, anonymized.text


def test_a_library_note_travels_in_a_header_and_in_the_json(tmp_path, monkeypatch) -> None:
    from p3m.models.hub import installed_weights

    monkeypatch.setenv("P3M_HOME", str(tmp_path / "empty-home"))  # no weights: "auto" says why selfie-cf
    assert installed_weights("p3mnet-vitae-s") is None
    with TestClient(create_app(ServeConfig(model="auto"))) as auto_client:
        photo = {"image": ("a.png", png_bytes(np.full((64, 48, 3), 90, np.uint8)))}
        png = auto_client.post("/api/matte", files=photo, data={"output": "alpha"})
        bundle = auto_client.post("/api/matte", files=photo, data={"output": "json"}).json()
    assert png.status_code == 200
    (note,) = bundle["notes"]
    assert "selfie-cf" in note and bundle["note"] == note
    assert png.headers["x-p3m-note"] == header_text(note)


def test_header_text_is_one_ascii_line_and_results_serialise_generically() -> None:
    assert header_text("4000x6000 \u00d7 2 \u2014 matted\nat 1080\u00d71620 \u2026") == "4000x6000 x 2 - matted at 1080x1620 ..."
    from dataclasses import dataclass, field

    class Record:
        def to_dict(self) -> dict:
            return {"distance": np.float32(0.75), "verified": True}

    @dataclass
    class Result:
        image: np.ndarray
        faces: list = field(default_factory=list)
        score: float = float("nan")
        new_field: tuple = (1, 2)

    out = jsonable(Result(np.zeros((2, 2)), [Record()]))
    assert out == {"faces": [{"distance": pytest.approx(0.75), "verified": True}], "score": None, "new_field": [1, 2]}


def _obfuscated_elsewhere_identical(original: np.ndarray, report: dict) -> np.ndarray:
    anonymized = as_array(decode_data_url(report["image"]))
    facemask = as_array(decode_data_url(report["facemask"])) > 127
    assert anonymized.shape == original.shape and facemask.shape == original.shape[:2]
    assert facemask.sum() == report["mask_area"] > 0
    assert np.array_equal(anonymized[~facemask], original[~facemask])
    assert np.abs(anonymized[facemask].astype(int) - original[facemask]).mean() > 5
    return facemask


def test_anonymize_json_report_with_an_estimated_matte_and_an_audit(
    client: TestClient, astronaut_face_png: bytes
) -> None:
    from skimage.data import astronaut

    response = client.post(
        "/api/anonymize",
        files={"image": ("astronaut.png", astronaut_face_png, "image/png")},
        data={"method": "mosaic", "alpha_from": "selfie-cf", "audit": "true", "audit_detectors": "mediapipe"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["method"] == "mosaic" and report["alpha_source"] == "selfie-cf"
    (face,) = report["faces"]
    x0, y0, x1, y1 = face["box"]
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 220  # the astronaut's face (CenterFace boxes include the forehead)
    assert {"score", "detectors", "landmark_scheme"} <= set(face)
    assert report["regions"] and "parameter" in report["regions"][0]
    assert set(report["audit"]["by_detector"]) == {"mediapipe-short", "mediapipe-full"}
    assert response.headers["x-p3m-faces"] == "1"
    facemask = _obfuscated_elsewhere_identical(astronaut(), report)
    assert facemask[int((y0 + y1) / 2), int((x0 + x1) / 2)]


def test_anonymize_with_an_uploaded_matte_without_one_and_as_png(
    client: TestClient, astronaut_face_png: bytes
) -> None:
    from skimage.data import astronaut

    photo = ("astronaut.png", astronaut_face_png, "image/png")
    alpha_png = client.post("/api/matte", files={"image": photo}, data={"output": "alpha"}).content
    uploaded = client.post(
        "/api/anonymize", files={"image": photo, "alpha": ("a.png", alpha_png)}, data={"audit": "false"}
    ).json()
    assert uploaded["alpha_source"] == "upload"
    assert not any("no alpha matte" in w for w in uploaded["warnings"])
    _obfuscated_elsewhere_identical(astronaut(), uploaded)
    without = client.post("/api/anonymize", files={"image": photo}, data={"alpha_from": "none", "audit": "false"}).json()
    assert without["alpha_source"] == "none" and any("no alpha matte" in w for w in without["warnings"])
    png = client.post("/api/anonymize", files={"image": photo}, data={"output": "png", "method": "mask", "audit": "false"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert as_array(png.content).shape == (512, 512, 3) and png.headers["x-p3m-faces"] == "1"
    unmatted = client.post(
        "/api/anonymize", files={"image": photo}, data={"output": "png", "alpha_from": "none", "audit": "false"}
    )
    assert "no alpha matte" in unmatted.headers["x-p3m-warnings"]
    wrong_size = client.post(
        "/api/anonymize",
        files={"image": photo, "alpha": ("a.png", png_bytes(np.zeros((10, 10), np.uint8)))},
        data={"audit": "false"},
    )
    assert wrong_size.status_code == 422 and "10x10" in wrong_size.json()["detail"]
    unreadable = client.post(
        "/api/anonymize", files={"image": photo, "alpha": ("matte.png", b"not a matte")}, data={"audit": "false"}
    )
    assert unreadable.status_code == 400 and unreadable.json()["detail"].startswith("matte.png (alpha matte): ")


def test_anonymize_keeps_the_uploads_alpha(client: TestClient) -> None:
    """c18 through the service: an RGBA face whose alpha hides a strip comes back RGBA with the
    same alpha, so nothing it hid becomes visible (the answer was RGB with the strip shown)."""
    from skimage.data import astronaut

    rgba = np.dstack([astronaut(), np.full((512, 512), 255, np.uint8)])
    rgba[:, 400:, 3] = 0
    photo = ("face_rgba.png", png_bytes(rgba), "image/png")
    for output in ("png", "json"):
        reply = client.post(
            "/api/anonymize", files={"image": photo}, data={"output": output, "alpha_from": "none", "audit": "false"}
        )
        assert reply.status_code == 200, reply.text
        encoded = reply.content if output == "png" else base64.b64decode(reply.json()["image"].split(",", 1)[1])
        with Image.open(io.BytesIO(encoded)) as answer:
            assert answer.mode == "RGBA"
            returned = np.asarray(answer)
        assert np.array_equal(returned[:, :, 3], rgba[:, :, 3])
        assert int(returned[:, 400:, 3].max()) == 0


def _photo_with_metadata() -> list[tuple[str, bytes, str]]:
    """A JPEG with EXIF (camera, GPS, owner) and an ICC profile; a PNG with text and ICC chunks."""
    from PIL import ImageCms, PngImagePlugin
    from skimage.data import astronaut

    image = Image.fromarray(astronaut()[::4, ::4])
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x013B] = "Jane Doe"  # Artist
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", exif=exif, icc_profile=icc, comment=b"private")
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe")
    info.add_itxt("Location", "home", zip=True)
    png = io.BytesIO()
    image.save(png, "PNG", pnginfo=info, icc_profile=icc)
    return [("photo.jpg", jpeg.getvalue(), "image/jpeg"), ("photo.png", png.getvalue(), "image/png")]


def test_answers_carry_no_metadata_of_the_upload(client: TestClient) -> None:
    for upload in _photo_with_metadata():
        assert b"Jane Doe" in upload[1]  # the upload does carry it
        answers: list[bytes] = []
        for output in ("rgba", "alpha", "foreground", "composite"):
            response = client.post("/api/matte", files={"image": upload}, data={"output": output})
            assert response.status_code == 200
            answers.append(response.content)
        bundle = client.post("/api/matte", files={"image": upload}, data={"output": "json"}).json()
        answers += [decode_data_url(bundle[key]) for key in ("alpha", "rgba", "composite")]
        anonymized = client.post("/api/anonymize", files={"image": upload}, data={"audit": "false"}).json()
        answers += [decode_data_url(anonymized[key]) for key in ("image", "facemask")]
        png = client.post("/api/anonymize", files={"image": upload}, data={"audit": "false", "output": "png"})
        answers.append(png.content)
        for answer in answers:
            assert set(png_chunks(answer)) <= CLEAN_PNG_CHUNKS
            assert b"Jane Doe" not in answer and b"SecretCam" not in answer
        assert "Jane" not in str(bundle) and "Jane" not in str(anonymized)


def test_uploads_are_never_written_to_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette spools form files over 1 MiB to a temporary file; the service must not."""
    rng = np.random.default_rng(0)
    noisy = png_bytes(rng.integers(0, 256, (640, 800, 3), dtype=np.uint8))
    assert len(noisy) > 1 << 20
    with TestClient(create_app(ServeConfig(model=StubMatting()))) as stub_client:
        files = {"image": ("noise.png", noisy, "image/png")}
        for endpoint in ("/api/matte", "/api/anonymize"):  # warm-up: graphs are built once
            assert stub_client.post(endpoint, files=files, data={"audit": "false"}).status_code == 200
        writes: list[str] = []
        real_os_open, real_open = os.open, builtins.open

        def spy_os_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                writes.append(str(path))
            return real_os_open(path, flags, *args, **kwargs)

        def spy_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
            if any(flag in mode for flag in "wax+"):
                writes.append(str(file))
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(os, "open", spy_os_open)
        monkeypatch.setattr(builtins, "open", spy_open)
        for endpoint in ("/api/matte", "/api/anonymize"):
            answer = stub_client.post(endpoint, files=files, data={"audit": "false", "alpha_from": "none"})
            assert answer.status_code == 200, answer.text
        monkeypatch.undo()
    assert [path for path in writes if path != os.devnull] == []


def test_p3m_serve_options_reach_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from p3m.cli import app as cli
    from p3m.errors import ConfigError

    runner = CliRunner()
    help_text = " ".join(runner.invoke(cli, ["serve", "--help"], env={"COLUMNS": "200"}).output.split())
    for words in (".onnx file", "--strategy", "--max-pixels", "--workers", "--queue", "--timeout"):
        assert words in help_text, words
    served: list = []

    def serve(server, sockets=None):  # uvicorn.Server.run: record instead of serving
        (sock,) = sockets
        served.append((server.config.app, sock.getsockname()[1]))

    monkeypatch.setattr(uvicorn.Server, "run", serve)
    options = ["serve", "--model", "selfie-cf", "--strategy", "resize", "--max-pixels", "2000000",
               "--workers", "2", "--queue", "3", "--timeout", "5", "--port", "0"]  # fmt: skip
    result = runner.invoke(cli, options)
    assert result.exit_code == 0, result.output
    (app, port), = served
    assert port > 0 and f"p3m serving on http://127.0.0.1:{port}/" in result.output  # the port it got
    config = app.state.config
    assert (config.model, config.strategy, config.max_pixels) == ("selfie-cf", "resize", 2_000_000)
    assert (config.workers, config.max_queue, config.timeout) == (2, 3, 5.0)
    assert app.state.pool.loaded.name == "selfie-cf"  # loaded before serving
    assert runner.invoke(cli, ["serve", "--max-pixels", "-1", "--port", "0"]).exit_code == 0
    assert served[-1][0].state.config.max_pixels == -1
    assert isinstance(runner.invoke(cli, ["serve", "--max-pixels", "10"]).exception, ConfigError)


def test_an_image_over_the_cap_is_413_with_the_size_and_the_servers_cap() -> None:
    """The answer tells the client the size and this server's cap, not how an operator raises
    it (--max-image-pixels, P3M_MAX_IMAGE_PIXELS)."""
    with TestClient(create_app(ServeConfig(model="selfie-cf", max_image_pixels=1000))) as small:
        photo = ("big.png", png_bytes(np.zeros((64, 64, 3), np.uint8)), "image/png")
        for path in ("/api/matte", "/api/anonymize"):
            reply = small.post(path, files={"image": photo})
            assert reply.status_code == 413, reply.text
            detail = reply.json()["detail"]
            assert "image is 64x64 = 4,096 px, more than the cap of 1,000 px" in detail
            assert "--max-image-pixels" not in detail and "P3M_MAX_IMAGE_PIXELS" not in detail


def test_fields_an_endpoint_does_not_read_are_named_in_the_answer(client: TestClient, astronaut_jpeg: bytes) -> None:
    """`model=` or `strategy=` were ignored without a word (the server's model is fixed)."""
    photo = ("a.jpg", astronaut_jpeg, "image/jpeg")
    for path in ("/api/matte", "/api/anonymize"):
        reply = client.post(path, files={"image": photo}, data={"model": "p3mnet-r34", "strategy": "resize", "output": "png" if path == "/api/anonymize" else "alpha"})
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-p3m-ignored-fields"] == "model, strategy"
    plain = client.post("/api/matte", files={"image": photo}, data={"output": "alpha"})
    assert "x-p3m-ignored-fields" not in plain.headers
    # A background for an output without a composite is read by no one either.
    backdrop = client.post("/api/matte", files={"image": photo, "background_image": photo}, data={"output": "rgba"})
    assert backdrop.status_code == 200 and backdrop.headers["x-p3m-ignored-fields"] == "background_image"
    used = client.post("/api/matte", files={"image": photo}, data={"output": "composite", "background": "red"})
    assert "x-p3m-ignored-fields" not in used.headers


def test_a_face_the_audit_finds_left_visible_is_marked_and_the_default_detectors_find_it(
    client: TestClient,
) -> None:
    """A small face (the astronaut at 96 px in a 384 px frame): MediaPipe alone misses it, the
    audit finds it left visible and says so in headers of their own; the default detectors (with
    CenterFace, as the CLI) obfuscate it."""
    from skimage.data import astronaut

    canvas = np.full((384, 384, 3), 128, np.uint8)
    canvas[144:240, 144:240] = np.asarray(Image.fromarray(astronaut()).resize((96, 96), Image.Resampling.LANCZOS))
    photo = ("far.png", png_bytes(canvas), "image/png")
    options = {"alpha_from": "none", "audit": "true", "audit_detectors": "centerface"}
    missed = client.post("/api/anonymize", files={"image": photo}, data={**options, "detectors": "mediapipe"})
    assert missed.status_code == 200, missed.text
    assert missed.headers["x-p3m-faces"] == "0"
    assert missed.headers["x-p3m-audit"] == "failed" and int(missed.headers["x-p3m-faces-left-visible"]) >= 1
    report = missed.json()
    assert report["audit_passed"] is False and report["faces_left_visible"] >= 1
    png = client.post("/api/anonymize", files={"image": photo}, data={**options, "detectors": "mediapipe", "output": "png"})
    assert png.headers["x-p3m-audit"] == "failed" and int(png.headers["x-p3m-faces-left-visible"]) >= 1

    found = client.post("/api/anonymize", files={"image": photo}, data=options)  # default detectors
    assert found.status_code == 200, found.text
    assert int(found.headers["x-p3m-faces"]) >= 1 and found.headers["x-p3m-faces-left-visible"] == "0"
    assert found.json()["faces_left_visible"] == 0
    without_audit = client.post("/api/anonymize", files={"image": photo}, data={**options, "audit": "false"})
    assert "x-p3m-audit" not in without_audit.headers and without_audit.json()["audit_passed"] is None


def test_the_service_gives_the_status_p3m_anonymize_records_and_no_failed_audit_without_a_leak(
    client: TestClient, astronaut_face_png: bytes
) -> None:
    """The astronaut's mission patch is a weak dlib detection a second look does not confirm: the
    service answered `X-P3M-Audit: failed` with 0 faces left visible where the CLI's manifest said
    done. Now the library's status, the audit failed only on a leak, the patch named apart."""
    photo = ("astronaut.png", astronaut_face_png, "image/png")
    reply = client.post("/api/anonymize", files={"image": photo}, data={"method": "mask", "output": "png"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-p3m-faces-left-visible"] == "0"
    assert reply.headers["x-p3m-audit"] == "passed" and reply.headers["x-p3m-status"] == "done"
    assert "x-p3m-review-reasons" not in reply.headers
    assert "not confirmed by a second look" in reply.headers["x-p3m-to-check"]
    report = client.post("/api/anonymize", files={"image": photo}, data={"method": "mask"}).json()
    assert report["status"] == "done" and report["review_reasons"] == [] and report["audit_passed"] is True
    assert report["audit"]["unconfirmed"] and report["to_check"]


def test_anonymisation_runs_in_the_worker_processes_behind_the_pool(client: TestClient, astronaut_jpeg: bytes) -> None:
    """dlib's detectors hold the GIL for seconds: anonymisation goes through the same inference
    pool as matting (admission, queue, deadlines) and from its thread into a worker process,
    so the event loop keeps answering (measured by `bench_serve.py --anonymize`)."""
    from p3m.serve.jobs import AnonymizeJob, InProcess

    processes = client.app.state.processes
    before = (processes.calls, client.get("/api/health").json()["served"])
    answer = client.post("/api/anonymize", files={"image": ("a.jpg", astronaut_jpeg)}, data={"audit": "false"})
    assert answer.status_code == 200, answer.text
    assert (processes.calls, client.get("/api/health").json()["served"]) == (before[0] + 1, before[1] + 1)
    crashed = InProcess(AnonymizeJob(image=b""), _DeadRunner())(None)
    assert crashed.status == 503 and crashed.headers["Retry-After"] == "5"


class _DeadRunner:
    def call(self, *_args: object) -> None:
        from p3m.serve.pool import ProcessCrashed

        raise ProcessCrashed("a worker process died (killed)")


def test_anonymize_keeps_the_uploads_alpha_and_no_colour_under_it(client: TestClient, astronaut_rgb: np.ndarray) -> None:
    """c18 through the service: the answer keeps the upload's alpha, and what it hid has no colour."""
    rgba = np.dstack([astronaut_rgb, np.full(astronaut_rgb.shape[:2], 255, np.uint8)])
    rgba[:, 200:, 3] = 0
    upload = {"image": ("face.png", png_bytes(rgba), "image/png")}
    answer = client.post("/api/anonymize", files=upload, data={"audit": "false", "alpha_from": "none", "output": "png"})
    assert answer.status_code == 200, answer.text
    with Image.open(io.BytesIO(answer.content)) as image:
        assert image.mode == "RGBA"
        pixels = np.asarray(image)
    assert np.array_equal(pixels[:, :, 3], rgba[:, :, 3]) and not pixels[:, 200:, :3].any()
