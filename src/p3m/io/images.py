"""Reading photos, alpha mattes and trimaps into p3m's array conventions, and writing PNGs.

Conventions at the edges of the library:

* images are RGB uint8 H x W x 3;
* alpha mattes are float32 H x W in [0, 1];
* trimaps are uint8 H x W in {0, 128, 255}.

Any photo a user is likely to have is accepted: JPEG, PNG, WebP, TIFF, BMP (and whatever else
Pillow decodes), 8- or 16-bit, grayscale, palette, LA/RGBA, CMYK, I;16, I and F modes. The EXIF
orientation is applied (so the array looks like the photo does in a viewer). Every failure raises
an `ImageReadError` subclass whose message names the file and the problem.

Decompression-bomb guard: every read checks the pixel count from the file header against
`max_pixels` (default: the environment variable P3M_MAX_IMAGE_PIXELS if set, else
`DEFAULT_MAX_PIXELS`, 160 megapixels; 0 = no cap) before decoding anything, and raises
`ImageTooLargeError` above it, naming the size, the cap and how to raise it.
`image_pixel_cap(n)` sets the default for a block of code (the command line's
`--max-image-pixels`). p3m's cap takes the place of Pillow's own guard
(`PIL.Image.MAX_IMAGE_PIXELS`) only while `Image.open` parses the header (so the error can say
the size whatever it is): the limit is lifted under a lock and restored right after, before
any pixel is decoded. Nothing else in Pillow's global state is touched (in particular `ImageFile.LOAD_TRUNCATED_IMAGES` stays off, so truncated files fail).

Example::

    image = read_image("portrait.jpg")          # uint8 (H, W, 3)
    write_alpha("portrait_alpha.png", alpha)    # atomic, 8-bit, no metadata
"""

from __future__ import annotations

import functools
import io
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from p3m.errors import (
    ConfigError,
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    P3MError,
    UnsupportedImageError,
)
from p3m.io.atomic import atomic_open
from p3m.vocabulary import MAX_IMAGE_PIXELS

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = MAX_IMAGE_PIXELS
"""Default cap on width x height for every read (decompression-bomb guard; `p3m.vocabulary`
holds the value the command line and the service share)."""

MAX_PIXELS_ENV = "P3M_MAX_IMAGE_PIXELS"
"""Environment variable that sets the default cap (pixels; 0 = no cap) for reads without
`max_pixels` (the command line's `--max-image-pixels`; not the pixel budget `--max-pixels`)."""

OLD_MAX_PIXELS_ENV = "P3M_MAX_PIXELS"
"""The variable's earlier name, still read (with a deprecation note in the log) when the new
one is not set: it was easily taken for the pixel budget `--max-pixels`."""

_BLOCK_CAP_ENV = "P3M_MAX_IMAGE_PIXELS_FROM_BLOCK"
"""Set by `image_pixel_cap` beside P3M_MAX_IMAGE_PIXELS (same value), so that an error can tell
a cap the user's environment set from one a block (the command line's option) set."""

PathLike = str | os.PathLike[str]

_PILLOW_LIMIT_LOCK = threading.Lock()

_GRAY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


# --------------------------------------------------------------------------- opening files


@contextmanager
def _pillow_header_only() -> Iterator[None]:
    """Let Pillow parse the header of an image of any size: `Image.open` reads the header only,
    and p3m checks its own cap on that size before anything is decoded, so the error can name
    the size; Pillow's limit is restored right after."""
    with _PILLOW_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        raise_limit = previous is not None
        if raise_limit:
            Image.MAX_IMAGE_PIXELS = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                yield
        finally:
            if raise_limit:
                Image.MAX_IMAGE_PIXELS = previous


def _resolve_max_pixels(max_pixels: int | None) -> int | None:
    """The cap (None: no cap): the argument (0 = none), else the P3M_MAX_IMAGE_PIXELS
    environment variable (0 = none; its old name P3M_MAX_PIXELS when it is not set), else the
    default."""
    if max_pixels is None:
        name = MAX_PIXELS_ENV
        configured = os.environ.get(name, "").strip()
        if not configured and os.environ.get(OLD_MAX_PIXELS_ENV, "").strip():
            name = OLD_MAX_PIXELS_ENV
            configured = os.environ[name].strip()
            _note_old_name()
        if not configured:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(float(configured))
        except ValueError:
            raise ConfigError(f"{name} must be a number of pixels (0 = no cap), got {configured!r}") from None
        if max_pixels < 0:
            raise ConfigError(f"{name} must be 0 (no cap) or positive, got {configured!r}")
        return max_pixels or None
    if max_pixels < 0:
        raise ValueError(f"max_pixels must be 0 (no cap) or positive, got {max_pixels}")
    return int(max_pixels) or None


@functools.cache
def _note_old_name() -> None:
    logger.warning("%s is read under its new name %s; please rename it", OLD_MAX_PIXELS_ENV, MAX_PIXELS_ENV)


@contextmanager
def image_pixel_cap(max_pixels: int | None) -> Iterator[None]:
    """Within the block, reads that pass no `max_pixels` use this cap (pixels; 0 = no cap;
    None = leave the default alone).

    The cap travels in the P3M_MAX_IMAGE_PIXELS environment variable, so it holds in every thread and
    in the processes started inside the block (a local Ray, data-loader workers); the previous
    value is restored on exit. This is how the command line's `--max-image-pixels` reaches every
    image its command reads. Raises `ValueError` for a negative cap.
    """
    if max_pixels is None:
        yield
        return
    if max_pixels < 0:
        raise ValueError(f"max_pixels must be 0 (no cap) or positive, got {max_pixels}")
    previous = {name: os.environ.get(name) for name in (MAX_PIXELS_ENV, _BLOCK_CAP_ENV)}
    os.environ[MAX_PIXELS_ENV] = os.environ[_BLOCK_CAP_ENV] = str(int(max_pixels))
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def pixel_count_text(pixels: int) -> str:
    """A pixel count for messages: "2.10 MP", "48.0 MP", "182 MP", or "4,096 px" below 0.1 MP
    (a budget too small to read in megapixels)."""
    if pixels < 100_000:
        return f"{pixels:,} px"
    megapixels = pixels / 1e6
    digits = 2 if megapixels < 10 else 1 if megapixels < 100 else 0
    return f"{megapixels:,.{digits}f} MP"


def _cap_from_environment() -> str | None:
    """"P3M_MAX_IMAGE_PIXELS=5000" when the user's environment (not an `image_pixel_cap` block)
    sets the cap of reads without `max_pixels`; the old name is said to be one."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if value:
        return None if os.environ.get(_BLOCK_CAP_ENV) == value else f"{MAX_PIXELS_ENV}={value}"
    old = os.environ.get(OLD_MAX_PIXELS_ENV, "").strip()
    if old:
        return (
            f"{OLD_MAX_PIXELS_ENV}={old} (the old name of {MAX_PIXELS_ENV}, the decoding cap; "
            "not the pixel budget of matting)"
        )
    return None


def _check_pixels(
    image: Image.Image, max_pixels: int | None, path: PathLike | None, requested: int | None = None
) -> None:
    """Refuse an image over the cap `max_pixels`; `requested` is the `max_pixels` argument the
    reader was given (None: the cap came from the environment or the default)."""
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        variable = _cap_from_environment() if requested is None else None
        where = f", set in the environment by {variable}" if variable else ""
        raise ImageTooLargeError(
            f"image is {width}x{height} = {pixel_count_text(width * height)}, more than the cap of "
            f"{pixel_count_text(max_pixels)} (decompression-bomb guard){where}; if the file is "
            f"trusted, raise the cap: {{max_image_pixels}} (0 = no cap)"
            + (f" or change {variable.split('=')[0]}" if variable else ""),
            path,
            options={"max_image_pixels": "N"},
            python_wording={"max_image_pixels": "`with p3m.io.image_pixel_cap({value}):` around the reads"},
        )
    if width == 0 or height == 0:
        raise ImageReadError(f"image has no pixels ({width}x{height})", path)


def _open_loaded(
    source: PathLike | bytes, max_pixels: int | None, apply_exif_orientation: bool = True
) -> Image.Image:
    """Open, size-check and fully decode an image (first frame), with the EXIF orientation applied."""
    cap = _resolve_max_pixels(max_pixels)
    name: PathLike | None = None
    file_path: Path | None = None
    if isinstance(source, bytes | bytearray):
        if not source:
            raise ImageReadError("empty data (0 bytes), not an image")
        stream: PathLike | io.BytesIO = io.BytesIO(source)
    else:
        name = source
        file_path = Path(source)
        if not file_path.exists():
            raise ImageReadError("file not found", name)
        if file_path.is_dir():
            raise ImageReadError("is a directory, not an image file", name)
        if file_path.stat().st_size == 0:
            raise ImageReadError("empty file (0 bytes), not an image", name)
        stream = file_path
    try:
        with _pillow_header_only():
            image = Image.open(stream)
    except UnidentifiedImageError as error:
        kind = _sniff_format(stream)
        if kind is not None:
            raise UnsupportedImageError(
                f"{kind} file that Pillow cannot decode (damaged header, or an unsupported "
                "variant such as float colour samples)",
                name,
            ) from error
        video = _sniff_video(stream)
        if video is not None:
            from p3m.io.files import VIDEO_SUFFIXES

            named_as_video = file_path is not None and file_path.suffix.lower() in VIDEO_SUFFIXES
            if file_path is None:
                fix = ""
            elif named_as_video:  # reached through a list of images (--input-list, dataset mode)
                fix = (
                    f"; videos run as inputs of their own (`p3m matte {file_path.name} -o DIR`, "
                    f"`p3m anonymize {file_path.name} -o DIR`), not in a list of images"
                )
            else:
                fix = "; give it a video suffix (.mp4, .mov, .mkv, .webm)"
            raise ImageReadError(f"is a video ({video}), not an image{fix}", name) from error
        raise ImageReadError("not an image, or an image format Pillow cannot read", name) from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        problem = str(error) or type(error).__name__
        if "truncat" in problem.lower() or isinstance(error, EOFError):
            raise ImageReadError(f"truncated file ({problem})", name) from error
        raise ImageReadError(f"cannot open image: {problem}", name) from error
    try:
        _check_pixels(image, cap, name, max_pixels)
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, EOFError, IndexError) as error:
            problem = str(error) or type(error).__name__
            if "truncated" in problem or isinstance(error, EOFError):
                problem = f"truncated file ({problem})"
            else:
                problem = f"corrupt or unreadable image data ({problem})"
            raise ImageReadError(problem, name) from error
        if apply_exif_orientation:
            image = _apply_exif_orientation(image, name)
        return image
    except BaseException:
        image.close()
        raise


def image_size(path: PathLike, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of an image file as `read_image` would return it (EXIF rotations by 90
    degrees swap the stored size), from the header alone: no pixel is decoded.

    Raises `ImageReadError` (missing, empty, not an image, damaged header) and
    `ImageTooLargeError` above the pixel cap (`max_pixels`, as `read_image`).
    """
    cap = _resolve_max_pixels(max_pixels)
    file_path = Path(path)
    if not file_path.is_file():
        raise ImageReadError("file not found" if not file_path.exists() else "not a file", path)
    try:
        with _pillow_header_only():
            image = Image.open(file_path)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageReadError(f"cannot open image: {str(error) or type(error).__name__}", path) from error
    with image:
        _check_pixels(image, cap, path, max_pixels)
        width, height = image.size
        orientation = 1
        # PNG's getexif() decodes the whole image to look for an eXIf chunk after the pixels;
        # one before them is in `info` already.
        if image.format != "PNG" or "exif" in image.info:
            try:
                orientation = image.getexif().get(0x0112, 1)
            except Exception:  # noqa: BLE001 - malformed EXIF: read_image ignores it too
                orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def input_size(path: PathLike) -> tuple[int, int] | None:
    """(width, height) of an input image as `read_image` returns it (`image_size`: header only,
    EXIF rotation applied, no pixel cap), or None when it cannot be told (the file is missing
    or unreadable: reading it reports that)."""
    try:
        return image_size(path, max_pixels=0)
    except P3MError:
        return None


def first_frame_note(path: PathLike) -> str | None:
    """A one-line note when the file holds more than one frame (an animated GIF, WebP or PNG, a
    multi-page TIFF), of which p3m's image readers take the first only; None otherwise (also
    when the file cannot be opened: reading it reports that). Reads headers, decodes no pixel.
    """
    try:
        with _pillow_header_only(), Image.open(Path(path)) as image:
            frames = int(getattr(image, "n_frames", 1) or 1)
            kind = "pages" if image.format == "TIFF" else "frames"
    except Exception:  # noqa: BLE001 - unreadable: the reader says why
        return None
    if frames <= 1:
        return None
    return f"the file has {frames} {kind}: only the first was used (for an animation, convert it to a video)"


_IMAGE_OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def output_file_problem(path: PathLike, size: tuple[int, int] | None = None) -> str | None:
    """Why an existing output file is not a complete one, cheaply (no pixel decoded), or None.

    Only image files (by suffix) are looked at: such a file must have a header that parses with
    a positive size (`image_size`, no pixel cap), that size (width, height) when `size` is given
    (an output that must match its input, e.g. `input_size`); a PNG must end with its IEND chunk
    and a JPEG with its end-of-image marker (a write cut short). Used when a run resumes, to redo
    an output that is there but damaged instead of keeping it.
    """
    file_path = Path(path)
    suffix = file_path.suffix.lower()
    if suffix not in _IMAGE_OUTPUT_SUFFIXES:
        return None  # a task's own kind of file (text, video): its task knows what complete is
    try:
        length = file_path.stat().st_size
    except OSError as error:
        return f"cannot read it ({error.strerror or error})"
    if length == 0:
        return "it is empty"
    try:
        width, height = image_size(file_path, max_pixels=0)
    except P3MError as error:
        return getattr(error, "problem", None) or str(error)
    if width < 1 or height < 1:
        return "it has no pixels"
    if size is not None and (width, height) != tuple(size):
        return f"it is {width}x{height} pixels, its input {size[0]}x{size[1]}"
    tail_wanted = {".png": _PNG_END, ".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9"}.get(suffix)
    if tail_wanted is not None:
        try:
            with open(file_path, "rb") as handle:
                handle.seek(max(0, length - 64))
                tail = handle.read()
        except OSError as error:
            return f"cannot read it ({error.strerror or error})"
        if tail_wanted not in tail[-len(tail_wanted) - 16 :]:
            return "it is cut short (its end is missing)"
    return None


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def _head(stream: PathLike | io.BytesIO, size: int = 12) -> bytes:
    """The first `size` bytes of a file or buffer (b"" when unreadable)."""
    try:
        if isinstance(stream, io.BytesIO):
            return stream.getvalue()[:size]
        with open(stream, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def _sniff_format(stream: PathLike | io.BytesIO) -> str | None:
    """The format named by the file's first bytes, to tell "not an image" from "unsupported"."""
    head = _head(stream)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return _by_signature(head, _SIGNATURES)


def _by_signature(head: bytes, signatures: tuple[tuple[bytes, str], ...]) -> str | None:
    """The kind of the first signature `head` starts with, or None."""
    return next((kind for signature, kind in signatures if head.startswith(signature)), None)


_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")
_VIDEO_SIGNATURES = ((b"\x1a\x45\xdf\xa3", "Matroska/WebM"), (b"FLV\x01", "FLV"), (b"\x00\x00\x01\xba", "MPEG-PS"))


def _sniff_video(stream: PathLike | io.BytesIO) -> str | None:
    """The video container named by the file's first bytes (an image path holding a video), or None.
    HEIF/AVIF images share MP4's `ftyp` box; their brands are not videos."""
    head = _head(stream)
    if head[4:8] == b"ftyp" and head[8:12] not in _IMAGE_BRANDS:
        return "MP4/QuickTime"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    return _by_signature(head, _VIDEO_SIGNATURES)


def _apply_exif_orientation(
    image: Image.Image, name: PathLike | None, close_original: bool = True
) -> Image.Image:
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception as error:  # malformed EXIF must not make the pixels unreadable
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", name or "image", error)
        return image
    if transposed is None or transposed is image:
        return image
    if close_original:
        image.close()  # the transposed copy is independent of the file
    return transposed


# --------------------------------------------------------------------------- mode conversion


def _gray16_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale 0..65535 to 0..255 with rounding (v * 255 / 65535, i.e. v / 257)."""
    values = np.clip(values.astype(np.int64), 0, 65535)
    return ((values * 255 + 32767) // 65535).astype(np.uint8)


def _pil_to_rgb_array(image: Image.Image, name: PathLike | None) -> np.ndarray:
    """Convert any supported Pillow mode to RGB uint8 H x W x 3 (alpha dropped, not composited)."""
    mode = image.mode
    if mode == "RGB":
        array = np.asarray(image)
    elif mode in _GRAY16_MODES or mode == "I":
        # 16-bit grayscale (Pillow gives PNG/TIFF 16-bit gray as I;16 or I): full scale is 65535.
        gray = _gray16_to_uint8(np.asarray(image))
        array = np.repeat(gray[:, :, None], 3, axis=2)
    elif mode == "F":
        gray = _float_to_uint8(np.asarray(image, dtype=np.float32))
        array = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        try:
            array = np.asarray(image.convert("RGB"))
        except (ValueError, OSError) as error:
            raise UnsupportedImageError(
                f"unsupported image mode {mode!r} (cannot convert to RGB: {error})", name
            ) from error
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise UnsupportedImageError(f"unsupported image mode {mode!r}", name)
    return np.ascontiguousarray(array)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float images (mode F) are taken as [0, 1]: clip, NaN to 0, round to 8 bits."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.floor(np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _pil_alpha(image: Image.Image) -> np.ndarray | None:
    """The image's own transparency as float32 H x W in [0, 1], or None when it has none.

    Covers LA / RGBA / PA (premultiplied La / RGBa too), palette images with a transparent index
    and grey or RGB images with a transparent colour (PNG tRNS). A fully opaque alpha channel
    counts as none.
    """
    mode = image.mode
    if mode in _ALPHA_MODES or mode == "PA":
        alpha = np.asarray(image.getchannel("A"))
    elif "transparency" in image.info and mode in ("P", "L", "RGB", "1"):
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    else:
        return None
    if alpha.min() >= 255:
        return None
    return alpha.astype(np.float32) / np.float32(255)


def _matte_channel(image: Image.Image, name: PathLike | None) -> tuple[np.ndarray, float]:
    """The one channel that holds a matte, and its full-scale value (255, 65535 or 1.0).

    Channel rule: single-channel images use that channel. Images with an alpha channel
    (LA, RGBA, PA, or a palette with transparency) use the alpha channel unless it is fully
    opaque, in which case the colour part is used (a grey matte saved as RGBA). Colour images use
    the first channel when all channels are equal (a grey matte saved as RGB), and otherwise the
    ITU-R 601-2 luma (Pillow's "L" conversion), with a warning.
    """
    mode = image.mode
    if mode in _GRAY16_MODES or mode == "I":
        return np.clip(np.asarray(image).astype(np.int64), 0, 65535).astype(np.uint16), 65535.0
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(values, 0.0, 1.0), 1.0
    if mode == "L":
        return np.asarray(image), 255.0
    if mode == "1":
        return np.asarray(image.convert("L")), 255.0
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        bands = np.asarray(image.convert("LA" if mode in ("LA", "La") else "RGBA"))
        alpha = bands[:, :, -1]
        if alpha.min() < 255:
            return np.ascontiguousarray(alpha), 255.0
        colour = bands[:, :, :-1]
    elif mode == "RGB":
        colour = np.asarray(image)
    elif mode == "CMYK":
        raise UnsupportedImageError("a CMYK image is not an alpha matte or trimap", name)
    else:
        try:
            colour = np.asarray(image.convert("RGB"))
        except (ValueError, OSError) as error:
            raise UnsupportedImageError(
                f"unsupported image mode {mode!r} for a matte", name
            ) from error
    if colour.ndim == 2:
        return colour, 255.0
    first = colour[:, :, 0]
    if colour.shape[2] == 1 or all(
        np.array_equal(first, colour[:, :, c]) for c in range(1, colour.shape[2])
    ):
        return np.ascontiguousarray(first), 255.0
    logger.warning("%s: colour image read as a matte; using its luma", name or "image")
    return np.asarray(Image.fromarray(np.ascontiguousarray(colour[:, :, :3])).convert("L")), 255.0


# --------------------------------------------------------------------------- public readers


def read_image(
    path: PathLike, max_pixels: int | None = None, apply_exif_orientation: bool = True
) -> np.ndarray:
    """Read a photo as RGB uint8 H x W x 3, EXIF orientation applied.

    16-bit grayscale is scaled by 255/65535 with rounding (Pillow reduces 16-bit colour to its
    high byte). An alpha channel (LA, RGBA, PA) is dropped, not composited: the stored colour is
    returned. CMYK is converted by Pillow (embedded ICC profiles are ignored). Mode F is taken
    as [0, 1]. `max_pixels` caps width x height (default `DEFAULT_MAX_PIXELS`).
    """
    with _open_loaded(path, max_pixels, apply_exif_orientation) as image:
        return _pil_to_rgb_array(image, path)


def read_image_and_alpha(
    path: PathLike, max_pixels: int | None = None, apply_exif_orientation: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a photo as `read_image` does, plus its own alpha (float32 H x W in [0, 1], or None).

    The alpha is the input's transparency (RGBA, LA, PA, palette or tRNS transparency), EXIF
    orientation applied like the colour; None when the file has none or it is fully opaque.
    Matting never gives a pixel more opacity than this alpha.
    """
    with _open_loaded(path, max_pixels, apply_exif_orientation) as image:
        return _pil_to_rgb_array(image, path), _pil_alpha(image)


def read_alpha(path: PathLike | bytes, max_pixels: int | None = None) -> np.ndarray:
    """Read an alpha matte as float32 H x W in [0, 1] (value / 255, or / 65535 for 16-bit files).

    For an 8-bit file this is `u8.astype(float32) / 255`, exactly the official eval.py
    convention. Which channel is used is described in `_matte_channel`: single channel as is;
    alpha channel if not fully opaque; first channel of a grey RGB image; otherwise luma.
    `path` may also be the encoded file as bytes (an upload).
    """
    with _open_loaded(path, max_pixels) as image:
        values, full_scale = _matte_channel(image, _source_name(path))
    if full_scale == 1.0:
        return np.ascontiguousarray(values, dtype=np.float32)
    return values.astype(np.float32) / np.float32(full_scale)


def read_alpha_u8(path: PathLike | bytes, max_pixels: int | None = None) -> np.ndarray:
    """Read an alpha matte as uint8 H x W (16-bit and float files are rounded to 8 bits)."""
    with _open_loaded(path, max_pixels) as image:
        values, full_scale = _matte_channel(image, _source_name(path))
    return _channel_to_uint8(values, full_scale)


def _source_name(source: PathLike | bytes) -> PathLike | None:
    """The name to put in messages: the path, or None for encoded bytes."""
    return None if isinstance(source, bytes | bytearray) else source


def _channel_to_uint8(values: np.ndarray, full_scale: float) -> np.ndarray:
    if full_scale == 255.0:
        return np.ascontiguousarray(values, dtype=np.uint8)
    if full_scale == 65535.0:
        return _gray16_to_uint8(values)
    return _float_to_uint8(values)


TRIMAP_VALUES = (0, 128, 255)


def read_trimap(
    path: PathLike,
    noncanonical: Literal["snap", "keep", "error"] = "snap",
    max_pixels: int | None = None,
) -> np.ndarray:
    """Read a trimap as uint8 H x W: 0 background, 128 unknown, 255 foreground.

    The matte channel rule of `read_alpha` picks the channel (16-bit files are rounded to 8 bits).
    Values other than 0/128/255 (a resized or 127-coded trimap) are handled by `noncanonical`:

    * "snap" (default): each value goes to the nearest class, ties to 128 (0..64 -> 0 except
      64 -> 128, 65..191 -> 128, 192..255 -> 255); a warning gives the number of pixels changed.
    * "keep": return the raw values. The official evaluation does this, and its metrics then treat
      such pixels specially (see `p3m.evaluation.metrics`).
    * "error": raise `UnsupportedImageError`.
    """
    if noncanonical not in ("snap", "keep", "error"):
        raise ValueError(f"noncanonical must be 'snap', 'keep' or 'error', got {noncanonical!r}")
    with _open_loaded(path, max_pixels) as image:
        values, full_scale = _matte_channel(image, path)
    trimap = _channel_to_uint8(values, full_scale)
    if noncanonical == "keep":
        return trimap
    odd = (trimap != 0) & (trimap != 128) & (trimap != 255)
    count = int(np.count_nonzero(odd))
    if count == 0:
        return trimap
    if noncanonical == "error":
        raise UnsupportedImageError(
            f"trimap has {count} pixels outside {{0, 128, 255}} (e.g. {int(trimap[odd][0])})", path
        )
    logger.warning(
        "%s: %d trimap pixels outside {0, 128, 255} snapped to the nearest class", path, count
    )
    return snap_trimap(trimap)


def snap_trimap(trimap: np.ndarray) -> np.ndarray:
    """Map every 0..255 value to the nearest of 0, 128, 255 (ties go to 128, the unknown class)."""
    values = np.asarray(trimap)
    snapped = np.full(values.shape, 128, dtype=np.uint8)
    snapped[values < 64] = 0
    snapped[values >= 192] = 255
    return snapped


def load_image_input(
    image: PathLike | Image.Image | np.ndarray | bytes, max_pixels: int | None = None
) -> np.ndarray:
    """Turn what an API user passes (path, PIL image, array, encoded bytes) into RGB uint8 H x W x 3.

    Arrays: uint8 H x W (grey), H x W x 1, H x W x 3 (RGB, returned as is, not copied when
    contiguous) or H x W x 4 (alpha dropped: `load_image_and_alpha` keeps it); uint16 is scaled
    to 8 bits. Float arrays are
    rejected rather than guessed at. PIL images get the same mode handling as `read_image`.
    """
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    if isinstance(image, Image.Image):
        cap = _resolve_max_pixels(max_pixels)
        _check_pixels(image, cap, None, max_pixels)
        # The caller's image is neither modified nor closed.
        return _pil_to_rgb_array(_apply_exif_orientation(image, None, close_original=False), None)
    if isinstance(image, bytes | bytearray):
        with _open_loaded(bytes(image), max_pixels) as opened:
            return _pil_to_rgb_array(opened, None)
    if isinstance(image, str | os.PathLike):
        return read_image(image, max_pixels=max_pixels)
    raise TypeError(f"expected a path, PIL.Image, numpy array or bytes, got {type(image).__name__}")


def load_image_and_alpha(
    image: PathLike | Image.Image | np.ndarray | bytes, max_pixels: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """`load_image_input`, plus the input's own alpha (float32 H x W in [0, 1], or None).

    Files, bytes and PIL images give their transparency (see `read_image_and_alpha`); an
    H x W x 4 array (RGBA) or H x W x 2 array (grey + alpha, as PIL's "LA") gives its last
    channel (uint8 / 255, uint16 / 65535); anything without an alpha channel, or with a fully
    opaque one, gives None.
    """
    if isinstance(image, np.ndarray):
        alpha = None
        if image.ndim == 3 and image.shape[2] in (2, 4) and image.dtype in (np.uint8, np.uint16):
            full_scale = 255.0 if image.dtype == np.uint8 else 65535.0
            channel = image[:, :, -1]
            if channel.min() < full_scale:
                alpha = channel.astype(np.float32) / np.float32(full_scale)
        return _array_to_rgb(image), alpha
    if isinstance(image, Image.Image):
        cap = _resolve_max_pixels(max_pixels)
        _check_pixels(image, cap, None, max_pixels)
        oriented = _apply_exif_orientation(image, None, close_original=False)
        return _pil_to_rgb_array(oriented, None), _pil_alpha(oriented)
    if isinstance(image, bytes | bytearray):
        with _open_loaded(bytes(image), max_pixels) as opened:
            return _pil_to_rgb_array(opened, None), _pil_alpha(opened)
    if isinstance(image, str | os.PathLike):
        return read_image_and_alpha(image, max_pixels=max_pixels)
    raise TypeError(f"expected a path, PIL.Image, numpy array or bytes, got {type(image).__name__}")


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint16:
        array = _gray16_to_uint8(array)
    elif array.dtype != np.uint8:
        raise UnsupportedImageError(
            f"image array must be uint8 (RGB, 0..255), got {array.dtype}; "
            "convert floats in [0, 1] with (x * 255).round().astype(np.uint8)"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise UnsupportedImageError(
            f"image array must be H x W, H x W x 1, H x W x 2 (grey + alpha), H x W x 3 or H x W x 4, got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise UnsupportedImageError(f"image array has no pixels (shape {array.shape})")
    if array.shape[2] in (1, 2):  # grey, or grey + alpha (the alpha is returned apart)
        array = np.repeat(array[:, :, :1], 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


# --------------------------------------------------------------------------- writers

_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}


def _array_to_pil(array: np.ndarray, path: PathLike | None) -> Image.Image:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.uint16 and array.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(array.astype("<u2")), mode="I;16")
    if array.dtype != np.uint8:
        raise ImageWriteError(
            f"expected a uint8 array (or uint16 H x W), got {array.dtype}; "
            "use write_alpha for float mattes",
            path,
        )
    if array.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(array), mode="L")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return Image.fromarray(
            np.ascontiguousarray(array), mode="RGB" if array.shape[2] == 3 else "RGBA"
        )
    raise ImageWriteError(
        f"expected an H x W, H x W x 3 or H x W x 4 array, got shape {array.shape}", path
    )


def write_image(path: PathLike, array: np.ndarray, quality: int = 95) -> None:
    """Write a uint8 image atomically in the format given by the suffix, with no metadata.

    Supported suffixes: .png, .jpg/.jpeg, .webp, .tif/.tiff, .bmp. `quality` applies to JPEG/WebP.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        raise ImageWriteError(
            f"unknown image suffix {suffix!r} (use one of {', '.join(sorted(_FORMATS))})", path
        )
    _write(path, _array_to_pil(array, path), _FORMATS[suffix], quality)


def write_png(path: PathLike, array: np.ndarray) -> None:
    """Write uint8 H x W, H x W x 3 or H x W x 4 (or uint16 H x W) as a PNG, atomically, no metadata.

    Lossless at every size; above 4 megapixels zlib runs at level 1 instead of Pillow's 6:
    a 24 MP RGBA cut-out then takes about 3 s instead of 18 s for an 18% larger file
    (a 24 MP alpha: 0.2 s either way).
    """
    _write(path, _array_to_pil(array, path), "PNG", 95)


def encode_png(array: np.ndarray) -> bytes:
    """The PNG file `write_png` would write, as bytes (for HTTP answers and data URLs)."""
    image = _array_to_pil(array, None)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **_png_options(image))
    return buffer.getvalue()


_FAST_PNG_PIXELS = 4_000_000
"""Above this many pixels PNGs are deflated at zlib level 1 (speed over ~20% size)."""


def _png_options(image: Image.Image) -> dict[str, object]:
    # Measured on a 6000 x 4000 photo cut-out (RGBA, sensor-like noise), Pillow 13, one core:
    # level 6 (default) 18.2 s / 40.2 MB, level 3 4.6 s / 45.2 MB, level 1 3.3 s / 47.6 MB.
    # Small images keep the default: there it costs milliseconds and saves bytes.
    if image.width * image.height > _FAST_PNG_PIXELS:
        return {"compress_level": 1}
    return {}


def _write(path: PathLike, image: Image.Image, format_name: str, quality: int) -> None:
    if format_name == "JPEG" and image.mode == "RGBA":
        raise ImageWriteError("JPEG cannot store an alpha channel; write a PNG", path)
    options: dict[str, object] = {}
    if format_name in ("JPEG", "WEBP"):
        options["quality"] = int(quality)
    if format_name == "PNG":
        options.update(_png_options(image))
    try:
        with atomic_open(path, "wb") as handle:
            # No exif/icc/pnginfo is passed, so nothing but pixels is written.
            image.save(handle, format=format_name, **options)
    except (ValueError, KeyError) as error:
        raise ImageWriteError(f"cannot encode {format_name}: {error}", path) from error


def alpha_to_uint8(alpha: np.ndarray, truncate: bool = False) -> np.ndarray:
    """float alpha in [0, 1] -> uint8 (rounded; `truncate=True` floors like the official saver).

    Values are clipped to [0, 1] first; NaN raises ValueError. uint8 input is returned as is.
    """
    alpha = np.asarray(alpha)
    if alpha.dtype == np.uint8:
        return alpha
    if not np.issubdtype(alpha.dtype, np.floating):
        raise ValueError(f"alpha must be float in [0, 1] or uint8, got {alpha.dtype}")
    if np.isnan(alpha).any():
        raise ValueError("alpha contains NaN")
    scaled = np.clip(alpha.astype(np.float64), 0.0, 1.0) * 255.0
    return (scaled if truncate else scaled + 0.5).astype(np.uint8)


def write_alpha(path: PathLike, alpha: np.ndarray, truncate: bool = False) -> None:
    """Write a float [0, 1] (or uint8) H x W alpha matte as an 8-bit grey PNG, atomically."""
    alpha = np.asarray(alpha)
    if alpha.ndim == 3 and alpha.shape[2] == 1:
        alpha = alpha[:, :, 0]
    if alpha.ndim != 2:
        raise ImageWriteError(f"alpha must be H x W, got shape {alpha.shape}", path)
    try:
        values = alpha_to_uint8(alpha, truncate=truncate)
    except ValueError as error:
        raise ImageWriteError(str(error), path) from error
    write_png(path, values)


def write_rgba(path: PathLike, image: np.ndarray, alpha: np.ndarray) -> None:
    """Write RGB uint8 H x W x 3 plus alpha (float [0, 1] or uint8) as a straight RGBA PNG."""
    image = np.asarray(image)
    alpha = np.asarray(alpha)
    if alpha.ndim == 3 and alpha.shape[2] == 1:
        alpha = alpha[:, :, 0]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageWriteError(
            f"image must be RGB uint8 H x W x 3, got {image.dtype} {image.shape}", path
        )
    if alpha.shape != image.shape[:2]:
        raise ImageWriteError(
            f"alpha shape {alpha.shape} does not match image shape {image.shape[:2]}", path
        )
    try:
        alpha_u8 = alpha_to_uint8(alpha)
    except ValueError as error:
        raise ImageWriteError(str(error), path) from error
    write_png(path, np.dstack([image, alpha_u8]))
