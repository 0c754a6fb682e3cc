"""The web page in a real headless browser: Debian's Chromium driven by Playwright's Python client.

Against a real uvicorn server with the selfie-cf model: upload a photo, see the results,
download each file (checked to be a PNG of the photo's size), see an error and see it cleared
by the next good upload, and the anonymise mode with its per-face report.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium (CI installs it)"
)
pytest.importorskip("fastapi")
pytest.importorskip("mediapipe")
pytest.importorskip("playwright")
from p3m.serve import ServeConfig, create_app  # noqa: E402
from serve_helpers import png_bytes, uvicorn_server  # noqa: E402

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STEP_LIMIT_MS = 60_000
RECORD_FORMS = """() => {
  const send = window.fetch;
  window.sentForms = [];
  window.fetch = (url, options) => {
    if (options && options.body instanceof FormData) {
      const texts = [...options.body.entries()].filter(([, value]) => typeof value === "string");
      window.sentForms.push([url, Object.fromEntries(texts)]);
    }
    return send(url, options);
  };
}"""
UPLOAD_LIMIT = 2 << 20  # the page learns it from /api/health and refuses larger files itself


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from skimage.data import astronaut

    folder = tmp_path_factory.mktemp("page")
    portrait = folder / "astronaut.jpg"
    Image.fromarray(astronaut()[::2, ::2]).save(portrait, quality=92)  # 256 x 256
    face = folder / "face.png"
    face.write_bytes(png_bytes(astronaut()))  # 512 x 512
    wall = np.zeros((64, 256, 3), np.uint8)
    wall[:, :, 2] = 255
    background = folder / "wall.png"
    background.write_bytes(png_bytes(wall))
    broken = folder / "broken.png"
    broken.write_bytes(b"this is not an image")
    huge = folder / "huge.png"
    huge.write_bytes(bytes(UPLOAD_LIMIT + 1))
    return {"portrait": portrait, "face": face, "background": background, "broken": broken, "huge": huge}


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data-dir
    app = create_app(ServeConfig(model="selfie-cf", max_upload_bytes=UPLOAD_LIMIT), preload=True)
    with uvicorn_server(app) as url, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=BROWSER_ARGS,
            accept_downloads=True,
        )
        try:
            browser_page = context.new_page()
            browser_page.set_default_timeout(STEP_LIMIT_MS)
            browser_page.goto(url + "/")
            yield browser_page
        finally:
            context.close()


def _download(page, link: str) -> tuple[str, np.ndarray, str]:  # type: ignore[no-untyped-def]
    """Click a download link; (suggested file name, pixels, PIL mode) of what was saved."""
    with page.expect_download() as event:
        page.click(link)
    download = event.value
    data = Path(download.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{link} did not download a PNG"
    image = Image.open(io.BytesIO(data))
    return download.suggested_filename, np.asarray(image), image.mode


def _wait_for_status(page, text: str) -> str:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "text => document.getElementById('status').textContent.includes(text)", arg=text
    )
    return page.inner_text("#status")


def _natural_width(page, selector: str) -> int:  # type: ignore[no-untyped-def]
    return int(page.eval_on_selector(selector, "img => img.complete ? img.naturalWidth : 0"))


def test_matte_mode_results_downloads_and_an_error_cleared(page, photos: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    page.set_input_files("#file", str(photos["portrait"]))
    page.set_input_files("#bg-image", str(photos["background"]))
    assert page.is_checked("#bg-kind-image")  # choosing a file picks "image" as the background
    page.click("#go")
    status = _wait_for_status(page, "Done")
    assert "selfie-cf" in status and "256 x 256" in status
    assert page.is_visible("#matte-results")
    page.wait_for_function("document.getElementById('composite').naturalWidth > 0")
    for selector in ("#photo", "#alpha", "#rgba", "#composite"):
        assert _natural_width(page, selector) == 256, selector

    expected = {"#alpha-dl": ("astronaut_alpha.png", "L"), "#rgba-dl": ("astronaut_rgba.png", "RGBA"),
                "#composite-dl": ("astronaut_composite.png", "RGB")}  # fmt: skip
    saved = {}
    for link, (name, mode) in expected.items():
        file_name, pixels, pixel_mode = _download(page, link)
        assert (file_name, pixel_mode) == (name, mode)
        assert pixels.shape[:2] == (256, 256)
        saved[link] = pixels
    # The composite shows the uploaded (blue) wall behind the astronaut, not the colour.
    assert tuple(saved["#composite-dl"][30, 10]) == (0, 0, 255)
    assert saved["#alpha-dl"][128, 128] > 200 and saved["#alpha-dl"][30, 10] < 30

    # A broken upload: an error, and nothing of the previous image left on screen.
    page.set_input_files("#file", str(photos["broken"]))
    page.click("#go")
    error = _wait_for_status(page, "Error")
    assert "not an image" in error
    assert page.get_attribute("#status", "class") == "error"
    assert not page.is_visible("#matte-results")
    for selector in ("#alpha", "#rgba", "#composite"):
        assert page.get_attribute(selector, "src") is None, selector
    for link in expected:
        assert page.get_attribute(link, "href") is None and page.is_hidden(link)

    # A file over the service's limit is refused by the page before it is sent.
    page.set_input_files("#file", str(photos["huge"]))
    page.click("#go")
    assert "larger than the service accepts (2.0 MiB)" in _wait_for_status(page, "Error")

    # The next good upload clears the error.
    page.check("#bg-kind-color")
    page.set_input_files("#file", str(photos["portrait"]))
    page.click("#go")
    _wait_for_status(page, "Done")
    assert page.get_attribute("#status", "class") == ""
    assert page.is_visible("#matte-results") and page.is_visible("#composite-dl")


def test_anonymize_mode_report_and_download(page, photos: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    page.click("#mode-anonymize")
    assert page.is_hidden("#matte-form") and page.is_visible("#anonymize-form")
    assert not page.is_visible("#matte-results")  # switching modes clears the other mode's results
    page.set_input_files("#anon-file", str(photos["face"]))
    page.select_option("#anon-method", "mask")
    page.uncheck("#anon-audit")
    # The text fields of each form the page posts (Chromium does not hand multipart bodies with
    # files to Playwright), recorded by wrapping fetch.
    page.evaluate(RECORD_FORMS)
    page.click("#anon-go")
    # By default the page asks for the detectors the CLI and p3m.anonymize use (with CenterFace,
    # which finds the small faces MediaPipe misses), and offers every choice the CLI takes.
    (url, sent), = page.evaluate("window.sentForms")
    assert url == "/api/anonymize" and sent["detectors"] == "default" and sent["audit"] == "false"
    offered = page.eval_on_selector_all("#anon-detectors option", "options => options.map(o => o.value)")
    names = {name for value in offered for name in value.split(",")}
    assert names >= {"default", "centerface", "mediapipe", "mediapipe-short", "mediapipe-full", "dlib-hog", "dlib-cnn", "dlib"}
    status = _wait_for_status(page, "Done")
    assert "1 face(s)" in status and "mask" in status
    rows = page.query_selector_all("#faces tbody tr")
    assert len(rows) == 1 and "mediapipe" in rows[0].inner_text()
    name, pixels, mode = _download(page, "#anon-image-dl")
    assert (name, mode, pixels.shape) == ("face_anonymized.png", "RGB", (512, 512, 3))
    name, facemask, mode = _download(page, "#anon-facemask-dl")
    assert (name, mode, facemask.shape) == ("face_facemask.png", "L", (512, 512))
    assert (pixels[facemask > 127] == 0).all()  # "mask" fills the face with zeros
    page.set_input_files("#anon-file", str(photos["broken"]))
    page.click("#anon-go")
    _wait_for_status(page, "Error")
    assert not page.is_visible("#anonymize-results")
    assert page.query_selector_all("#faces tbody tr") == []
