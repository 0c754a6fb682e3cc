"""p3m.io: every supported way in, every failure named, atomic writes."""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from p3m.errors import (
    ConfigError,
    DatasetError,
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    UnsupportedImageError,
)
from p3m.io import (
    encode_png,
    files_by_stem,
    load_image_input,
    read_alpha,
    read_alpha_u8,
    read_image,
    read_trimap,
    snap_trimap,
    write_alpha,
    write_image,
    write_png,
    write_rgba,
)


def _noise_rgb(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _left_red_right_blue(height: int = 20, width: int = 40) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (255, 0, 0)
    image[:, width // 2 :] = (0, 0, 255)
    return image


# --------------------------------------------------------------------------- formats and modes


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    image = _noise_rgb()
    path = tmp_path / f"photo{suffix}"
    options = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(image).save(path, **options)
    result = read_image(path)
    assert result.dtype == np.uint8 and result.shape == (24, 32, 3)
    np.testing.assert_array_equal(result, image)


def test_jpeg_reads_as_rgb(tmp_path: Path) -> None:
    image = _left_red_right_blue()
    path = tmp_path / "photo.jpg"
    Image.fromarray(image).save(path, quality=95)
    result = read_image(path)
    assert result.shape == (20, 40, 3) and result.dtype == np.uint8
    assert np.abs(result.astype(int) - image).mean() < 8


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored 20 x 40 with red on the left; orientation 6 means "rotate 90 degrees clockwise to
    # display", which puts the red half on top of a 40 x 20 picture.
    stored = Image.fromarray(_left_red_right_blue())
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    result = read_image(path)
    assert result.shape == (40, 20, 3)
    top, bottom = result[:15].reshape(-1, 3).mean(0), result[-15:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60
    raw = read_image(path, apply_exif_orientation=False)
    assert raw.shape == (20, 40, 3)
    from p3m.io import image_size

    assert image_size(path) == (20, 40)  # (width, height) as read_image returns it
    png = tmp_path / "plain.png"
    stored.save(png)
    assert image_size(png) == (40, 20)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_grayscale(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 1000, 257 * 128, 65535]], dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    image = read_image(path)
    np.testing.assert_array_equal(image[0, :, 0], [0, 4, 128, 255])
    assert (image == image[:, :, :1]).all()
    alpha = read_alpha(path)
    assert alpha.dtype == np.float32
    np.testing.assert_allclose(alpha[0], values[0] / 65535.0, rtol=1e-6)
    np.testing.assert_array_equal(read_alpha_u8(path)[0], [0, 4, 128, 255])


def test_16bit_rgb_png(tmp_path: Path) -> None:
    rgb16 = np.zeros((4, 5, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 65535, 257 * 100, 0
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), rgb16[:, :, ::-1])  # OpenCV writes BGR
    image = read_image(path)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, 0], [255, 100, 0])


def test_int32_and_float_modes(tmp_path: Path) -> None:
    int_path = tmp_path / "int.tif"
    Image.fromarray(np.array([[0, 65535, 70000]], np.int32), mode="I").save(int_path)
    np.testing.assert_array_equal(read_image(int_path)[0, :, 0], [0, 255, 255])
    float_path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0]], np.float32), mode="F").save(float_path)
    np.testing.assert_array_equal(read_image(float_path)[0, :, 1], [0, 128, 255, 255])
    np.testing.assert_allclose(read_alpha(float_path)[0], [0.0, 0.5, 1.0, 1.0])


def test_palette_image(tmp_path: Path) -> None:
    palette_image = Image.new("P", (6, 4))
    palette_image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    indices = np.zeros((4, 6), np.uint8)
    indices[:, 2:4], indices[:, 4:] = 1, 2
    palette_image.putdata(indices.ravel().tolist())
    path = tmp_path / "palette.png"
    palette_image.save(path)
    image = read_image(path)
    np.testing.assert_array_equal(image[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(image[0, 2], [255, 0, 0])
    np.testing.assert_array_equal(image[0, 5], [0, 255, 0])


def test_palette_with_transparency_as_matte(tmp_path: Path) -> None:
    palette_image = Image.new("P", (4, 2))
    palette_image.putpalette([255, 255, 255] * 256)
    palette_image.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    path = tmp_path / "palette_alpha.png"
    palette_image.save(path, transparency=0)
    np.testing.assert_array_equal(read_alpha(path), [[0, 1, 0, 1], [1, 1, 0, 0]])


def test_la_image_drops_alpha_and_matte_uses_it(tmp_path: Path) -> None:
    gray = np.full((3, 4), 200, np.uint8)
    alpha = np.array([[0, 64, 128, 255]] * 3, np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(np.dstack([gray, alpha]), mode="LA").save(path)
    image = read_image(path)
    assert image.shape == (3, 4, 3) and (image == 200).all()  # colour kept, alpha dropped
    np.testing.assert_allclose(read_alpha(path), alpha.astype(np.float32) / 255)


def test_rgba_matte_channel_rule(tmp_path: Path) -> None:
    rgb = _noise_rgb(3, 4)
    alpha = np.array([[0, 10, 250, 255]] * 3, np.uint8)
    with_alpha = tmp_path / "cutout.png"
    write_png(with_alpha, np.dstack([rgb, alpha]))
    np.testing.assert_array_equal(read_image(with_alpha), rgb)
    np.testing.assert_array_equal(read_alpha_u8(with_alpha), alpha)
    # Opaque RGBA holding a grey matte: the colour part is the matte.
    grey = np.array([[5, 100, 200, 255]] * 3, np.uint8)
    opaque = tmp_path / "opaque.png"
    write_png(opaque, np.dstack([grey, grey, grey, np.full_like(grey, 255)]))
    np.testing.assert_array_equal(read_alpha_u8(opaque), grey)


def test_rgb_grey_matte_uses_first_channel_and_colour_uses_luma(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    grey_path = tmp_path / "grey_rgb.png"
    write_png(grey_path, np.dstack([grey] * 3))
    np.testing.assert_array_equal(read_alpha_u8(grey_path), grey)
    colour_path = tmp_path / "colour.png"
    write_png(colour_path, _noise_rgb(3, 4))
    with caplog.at_level(logging.WARNING, logger="p3m.io.images"):
        matte = read_alpha(colour_path)
    assert matte.shape == (3, 4) and "luma" in caplog.text


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # pure red
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    image = read_image(path)
    assert image.shape == (8, 16, 3)
    assert np.abs(image.astype(int) - [255, 0, 0]).max() <= 8
    with pytest.raises(UnsupportedImageError, match="CMYK"):
        read_alpha(path)


def test_bilevel_image(tmp_path: Path) -> None:
    path = tmp_path / "bilevel.png"
    Image.fromarray(np.array([[0, 1], [1, 0]], bool)).save(path)
    np.testing.assert_array_equal(read_image(path)[:, :, 0], [[0, 255], [255, 0]])
    np.testing.assert_array_equal(read_alpha(path), [[0, 1], [1, 0]])


def test_read_alpha_matches_official_eval_convention(tmp_path: Path) -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "alpha.png"
    write_png(path, values)
    alpha = read_alpha(path)
    assert alpha.dtype == np.float32
    np.testing.assert_array_equal(alpha, values.astype(np.float32) / 255.0)


# --------------------------------------------------------------------------- trimaps


def test_trimap_snapping_keep_and_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = np.array([[0, 10, 63, 64, 100, 127, 128, 191, 192, 255]], np.uint8)
    path = tmp_path / "trimap.png"
    write_png(path, raw)
    with caplog.at_level(logging.WARNING, logger="p3m.io.images"):
        snapped = read_trimap(path)
    np.testing.assert_array_equal(snapped[0], [0, 0, 0, 128, 128, 128, 128, 128, 255, 255])
    assert "7 trimap pixels" in caplog.text and "trimap.png" in caplog.text
    np.testing.assert_array_equal(read_trimap(path, noncanonical="keep"), raw)
    with pytest.raises(UnsupportedImageError, match="outside"):
        read_trimap(path, noncanonical="error")
    np.testing.assert_array_equal(snap_trimap(raw), snapped)


def test_canonical_trimap_is_unchanged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = np.array([[0, 128, 255]], np.uint8)
    path = tmp_path / "trimap.png"
    write_png(path, raw)
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(read_trimap(path, noncanonical="error"), raw)
    assert caplog.text == ""


# --------------------------------------------------------------------------- failures


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.png"
    with pytest.raises(ImageReadError, match="file not found") as info:
        read_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(ImageReadError, match="directory"):
        read_alpha(tmp_path)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    for reader in (read_image, read_alpha, read_trimap):
        with pytest.raises(ImageReadError, match="not an image") as info:
            reader(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_image_format_pillow_cannot_decode(tmp_path: Path) -> None:
    path = tmp_path / "float_rgb.tif"
    assert cv2.imwrite(str(path), np.random.default_rng(0).random((4, 5, 3)).astype(np.float32))
    with pytest.raises(UnsupportedImageError, match="TIFF file") as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(_noise_rgb(64, 64)).save(whole)
    data = whole.read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated") as info:
        read_image(path)
    assert str(path) in str(info.value)
    path.write_bytes(data[:20])  # cut inside the header
    with pytest.raises(ImageReadError, match="truncated|cannot decode"):
        read_image(path)
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(path)


def test_pixel_cap(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    write_png(path, _noise_rgb(20, 30))
    with pytest.raises(ImageTooLargeError, match="20x30|30x20") as info:
        read_image(path, max_pixels=599)
    assert str(path) in str(info.value)
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)
    with pytest.raises(ImageTooLargeError):
        read_alpha(path, max_pixels=100)


def test_pixel_cap_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "small.png"
    write_png(path, _noise_rgb(20, 30))
    monkeypatch.setenv("P3M_MAX_PIXELS", "500")
    with pytest.raises(ImageTooLargeError, match="cap of 500 px"):
        read_image(path)
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)  # the argument wins
    monkeypatch.setenv("P3M_MAX_PIXELS", "0")  # no cap
    assert read_image(path).shape == (20, 30, 3)
    monkeypatch.setenv("P3M_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="P3M_MAX_PIXELS"):
        read_image(path)


def _png_with_claimed_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_header_is_refused_without_touching_pillow(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_claimed_size(30000, 30000))  # 900 megapixels claimed
    with pytest.raises(ImageTooLargeError, match="30000x30000 = 900 MP") as info:
        read_image(path)
    assert str(path) in str(info.value)
    # 150 megapixels: over Pillow's own warning limit but under p3m's default cap of 160,
    # so the cap decides; a lower cap refuses it from the header alone, before decoding.
    medium = tmp_path / "medium.png"
    medium.write_bytes(_png_with_claimed_size(15000, 10000))
    with pytest.raises(ImageTooLargeError, match="15000x10000"):
        read_image(medium, max_pixels=10_000_000)
    assert before == Image.MAX_IMAGE_PIXELS


# --------------------------------------------------------------------------- load_image_input


def test_load_image_input_accepts_paths_pil_arrays_and_bytes(tmp_path: Path) -> None:
    image = _noise_rgb()
    path = tmp_path / "photo.png"
    write_png(path, image)
    np.testing.assert_array_equal(load_image_input(path), image)
    np.testing.assert_array_equal(load_image_input(str(path)), image)
    np.testing.assert_array_equal(load_image_input(Image.fromarray(image)), image)
    np.testing.assert_array_equal(load_image_input(path.read_bytes()), image)
    assert load_image_input(image) is image  # contiguous RGB uint8 is passed through
    np.testing.assert_array_equal(load_image_input(np.dstack([image, image[..., :1]])), image)
    grey = image[..., 0]
    np.testing.assert_array_equal(load_image_input(grey), np.dstack([grey] * 3))
    np.testing.assert_array_equal(load_image_input(Image.fromarray(grey)), np.dstack([grey] * 3))
    with pytest.raises(UnsupportedImageError, match="uint8"):
        load_image_input(image.astype(np.float32) / 255)
    with pytest.raises(UnsupportedImageError, match="shape"):
        load_image_input(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageReadError, match="not an image"):
        load_image_input(b"garbage bytes")
    with pytest.raises(TypeError):
        load_image_input(42)  # type: ignore[arg-type]


def test_load_image_input_rotates_a_pil_image_without_closing_it(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(_left_red_right_blue()).save(path, exif=exif.tobytes())
    with Image.open(path) as opened:
        assert load_image_input(opened).shape == (40, 20, 3)
        assert np.asarray(opened).shape == (20, 40, 3)  # still open and unchanged


# --------------------------------------------------------------------------- writing


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_png_round_trip_without_metadata(tmp_path: Path) -> None:
    for array in (
        _noise_rgb(),
        _noise_rgb()[..., 0],
        np.dstack([_noise_rgb(), _noise_rgb()[..., :1]]),
    ):
        path = tmp_path / "out" / "image.png"  # parent folder is created
        write_png(path, array)
        with Image.open(path) as written:
            assert written.info == {}
            assert written.getexif() == {}
            np.testing.assert_array_equal(np.asarray(written), array)
    assert _leftovers(tmp_path / "out") == []


def test_write_png_respects_umask(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "image.png"
    write_png(path, _noise_rgb())
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_failure_keeps_previous_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "result.png"
    write_png(path, _noise_rgb())
    before = path.read_bytes()

    def failing_save(
        self: Image.Image, fp: io.BufferedWriter, *args: object, **kwargs: object
    ) -> None:
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(ImageWriteError, match="No space left") as info:
        write_png(path, _noise_rgb(seed=1))
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_write_rejects_bad_arrays(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match="uint8"):
        write_png(tmp_path / "a.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ImageWriteError, match="shape"):
        write_png(tmp_path / "b.png", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageWriteError, match="NaN"):
        write_alpha(tmp_path / "c.png", np.full((2, 2), np.nan, np.float32))
    with pytest.raises(ImageWriteError, match="suffix"):
        write_image(tmp_path / "d.gif", _noise_rgb())
    assert list(tmp_path.iterdir()) == []


def test_write_alpha_rounds_or_truncates(tmp_path: Path) -> None:
    alpha = np.array([[0.0, 0.5, 0.999, 1.0, -0.2, 1.3]], np.float32)
    path = tmp_path / "alpha.png"
    write_alpha(path, alpha)
    np.testing.assert_array_equal(read_alpha_u8(path), [[0, 128, 255, 255, 0, 255]])
    write_alpha(path, alpha, truncate=True)
    np.testing.assert_array_equal(read_alpha_u8(path), [[0, 127, 254, 255, 0, 255]])


def test_write_rgba_is_straight_alpha(tmp_path: Path) -> None:
    image = _noise_rgb(4, 5)
    alpha = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    path = tmp_path / "cutout.png"
    write_rgba(path, image, alpha)
    with Image.open(path) as written:
        assert written.mode == "RGBA"
        stored = np.asarray(written)
    np.testing.assert_array_equal(stored[..., :3], image)  # colour not premultiplied
    np.testing.assert_array_equal(stored[..., 3], np.floor(alpha * 255 + 0.5).astype(np.uint8))
    with pytest.raises(ImageWriteError, match="does not match"):
        write_rgba(path, image, alpha[:3])


def test_write_image_formats(tmp_path: Path) -> None:
    image = _noise_rgb()
    for suffix in (".jpg", ".webp", ".tif", ".bmp"):
        path = tmp_path / f"out{suffix}"
        write_image(path, image)
        assert read_image(path).shape == image.shape
    np.testing.assert_array_equal(read_image(tmp_path / "out.bmp"), image)


def test_files_by_stem_pairs_images_and_skips_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("b.png", "a.JPG", "a.png", "c.txt", "._b.png", "d.tiff"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "e.png").mkdir()
    with caplog.at_level(logging.WARNING, logger="p3m.io.files"):
        files = files_by_stem(tmp_path)
    # First name in sort order wins a stem (upper case sorts first); the clash is logged.
    assert files == {"a": tmp_path / "a.JPG", "b": tmp_path / "b.png", "d": tmp_path / "d.tiff"}
    assert "'a'" in caplog.text
    assert files_by_stem(tmp_path, suffixes=(".PNG",)) == {
        "a": tmp_path / "a.png",
        "b": tmp_path / "b.png",
    }


def test_files_by_stem_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="folder not found") as missing:
        files_by_stem(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(missing.value)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a folder"):
        files_by_stem(tmp_path / "file.png")


def test_encode_png_matches_write_png(tmp_path: Path) -> None:
    image = _noise_rgb()
    write_png(tmp_path / "x.png", image)
    assert encode_png(image) == (tmp_path / "x.png").read_bytes()
    np.testing.assert_array_equal(load_image_input(encode_png(image)), image)
    with pytest.raises(ImageWriteError, match="uint8"):
        encode_png(image.astype(np.float32))


def _zlib_level_flag(png: bytes) -> int:
    """FLEVEL of the first IDAT's zlib header: 0 = fastest (level 1), 2 = default (level 6)."""
    position = 8
    while True:
        (length,) = struct.unpack(">I", png[position : position + 4])
        if png[position + 4 : position + 8] == b"IDAT":
            return png[position + 9] >> 6
        position += 12 + length


def test_large_pngs_are_deflated_fast_and_stay_lossless(tmp_path: Path) -> None:
    small = _noise_rgb()[..., 0]
    write_png(tmp_path / "small.png", small)
    assert _zlib_level_flag((tmp_path / "small.png").read_bytes()) == 2
    yy, xx = np.mgrid[0:2000, 0:2100]  # 4.2 megapixels, over the fast-deflate threshold
    large = ((yy * 7 + xx * 3) % 251).astype(np.uint8)
    write_png(tmp_path / "large.png", large)
    data = (tmp_path / "large.png").read_bytes()
    assert _zlib_level_flag(data) == 0 and encode_png(large) == data
    np.testing.assert_array_equal(read_alpha_u8(tmp_path / "large.png"), large)


def test_empty_bytes_are_refused_by_name() -> None:
    with pytest.raises(ImageReadError, match="empty data"):
        load_image_input(b"")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "MP4/QuickTime"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81", "Matroska/WebM"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "AVI"),
    ],
)
def test_a_video_named_as_an_image_is_called_a_video(tmp_path, head: bytes, kind: str) -> None:
    """A clip renamed to .png was "not an image, or an image format Pillow cannot read"."""
    path = tmp_path / "clip.png"
    path.write_bytes(head + bytes(64))
    with pytest.raises(ImageReadError, match=rf"clip.png: is a video \({re.escape(kind)}\), not an image; give it a video suffix"):
        read_image(path)
    with pytest.raises(ImageReadError, match="is a video"):
        read_image(path.read_bytes())
    named_right = path.rename(tmp_path / "clip.mp4")  # named as a video (in a list): the way to run it
    with pytest.raises(ImageReadError, match=r"is a video \(.*\), not an image; videos run as inputs of their own") as info:
        read_image(named_right)
    assert "`p3m matte clip.mp4 -o DIR`" in str(info.value) and "suffix" not in str(info.value)


def test_an_undecodable_heif_image_is_not_called_a_video(tmp_path) -> None:
    path = tmp_path / "photo.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00" + bytes(64))
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert "video" not in str(info.value)


def test_a_grey_and_alpha_array_is_read_as_the_same_la_image() -> None:
    """`p3m.matte` took an LA PIL image but refused the same pixels as an H x W x 2 array."""
    from p3m.io import load_image_and_alpha

    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    alpha = np.full((6, 8), 255, np.uint8)
    alpha[:, :3] = 0
    array = np.dstack([grey, alpha])
    from_array = load_image_and_alpha(array)
    from_pil = load_image_and_alpha(Image.fromarray(array, mode="LA"))
    assert np.array_equal(from_array[0], from_pil[0]) and from_array[0].shape == (6, 8, 3)
    assert np.array_equal(from_array[1], from_pil[1]) and from_array[1][0, 0] == 0.0


def test_an_output_under_a_file_names_that_file_not_a_folder(tmp_path):
    """`p3m demo --out afile` said "afile/astronaut.png: cannot create output file: File exists"."""
    from p3m.errors import ImageWriteError
    from p3m.io.atomic import atomic_write_bytes

    (tmp_path / "afile").write_text("mine")
    with pytest.raises(ImageWriteError) as raised:
        atomic_write_bytes(tmp_path / "afile" / "astronaut.png", b"x")
    assert raised.value.path == str(tmp_path / "afile") and "is a file, not a folder" in str(raised.value)
    assert (tmp_path / "afile").read_text() == "mine"
