"""The HTTP service: page, health, models, and matting through the API on a real portrait."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("mediapipe")
from fastapi.testclient import TestClient  # noqa: E402

from p3m.serve import ServeConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(ServeConfig(model="selfie-cf")))


@pytest.fixture(scope="module")
def astronaut_jpeg() -> bytes:
    from skimage.data import astronaut

    buffer = io.BytesIO()
    Image.fromarray(astronaut()[::2, ::2]).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def test_page_and_health(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "/api/matte" in page.text
    health = client.get("/api/health").json()
    assert health["status"] == "ok"
    names = [entry["name"] for entry in client.get("/api/models").json()["models"]]
    assert "p3mnet-vitae-s" in names


def test_matte_rgba_png(client: TestClient, astronaut_jpeg: bytes) -> None:
    response = client.post(
        "/api/matte", files={"image": ("astronaut.jpg", astronaut_jpeg, "image/jpeg")}, data={"output": "rgba"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-p3m-model"] == "selfie-cf"
    rgba = np.asarray(Image.open(io.BytesIO(response.content)))
    assert rgba.shape == (256, 256, 4)
    alpha = rgba[..., 3]
    # The astronaut fills the centre of the frame; the top-left corner is background.
    assert alpha[128, 128] > 200 and alpha[20:40, 5:15].max() < 30


def test_matte_json_bundle_matches_png(client: TestClient, astronaut_jpeg: bytes) -> None:
    files = {"image": ("astronaut.jpg", astronaut_jpeg, "image/jpeg")}
    bundle = client.post("/api/matte", files=files, data={"output": "json", "background": "#00ff00"}).json()
    alpha_png = client.post("/api/matte", files=files, data={"output": "alpha"}).content
    decoded = base64.b64decode(bundle["alpha"].split(",", 1)[1])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(decoded))), np.asarray(Image.open(io.BytesIO(alpha_png))))
    composite = np.asarray(Image.open(io.BytesIO(base64.b64decode(bundle["composite"].split(",", 1)[1]))))
    assert composite.shape == (256, 256, 3)
    assert tuple(composite[30, 10]) == (0, 255, 0)  # background pixel shows the chosen colour


def test_bad_upload_is_one_line_400(client: TestClient) -> None:
    response = client.post("/api/matte", files={"image": ("notes.png", b"not an image at all", "image/png")})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "\n" not in detail and detail
    bad_output = client.post(
        "/api/matte", files={"image": ("x.png", b"x", "image/png")}, data={"output": "gif"}
    )
    assert bad_output.status_code == 400


def test_preload_fails_at_start_for_an_unknown_model() -> None:
    from p3m.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        create_app(ServeConfig(model="no-such-model"), preload=True)
    create_app(ServeConfig(model="no-such-model"))  # lazy: only the first request would fail


def test_empty_and_oddly_named_uploads_get_a_400(client: TestClient) -> None:
    empty = client.post("/api/matte", files={"image": ("x.png", b"")})
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    odd = client.post("/api/matte", files={"image": ("..", b"not an image")})
    assert odd.status_code == 400 and "not an image" in odd.json()["detail"]
