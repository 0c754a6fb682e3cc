"""The p3m exception hierarchy: every failure a user can cause is a `P3MError`.

Messages name the file (when there is one) and the problem in one line, so the
command line can print them as a single red line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from os import PathLike


def keyword_argument(keyword: str, value: object) -> str:
    """An option named as the Python API takes it: `overwrite=True`."""
    return f"{keyword}={value!r}"


class P3MError(Exception):
    """Base class of every error p3m raises on purpose.

    `options`: the options the message suggests, by Python keyword and value, each written
    `{keyword}` in `message`; `str(error)` names them as keyword arguments (`overwrite=True`)
    and `worded(name)` as another surface does (the command line: `--overwrite`), so one text
    serves both. `python_wording`: options that Python spells otherwise than `keyword=value`,
    by keyword, as a template of `{value}` (`"with p3m.io.image_pixel_cap({value}):"`).
    """

    def __init__(
        self,
        message: str,
        path: str | PathLike[str] | None = None,
        *,
        options: Mapping[str, object] | None = None,
        python_wording: Mapping[str, str] | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.options = dict(options or {})
        self.python_wording = dict(python_wording or {})
        self._message = message
        self.problem = self._fill(self._python_option)
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)

    def _python_option(self, keyword: str, value: object) -> str:
        template = self.python_wording.get(keyword)
        return template.format(value=value) if template else keyword_argument(keyword, value)

    def _fill(self, name: Callable[[str, object], str]) -> str:
        text = self._message
        for keyword, value in self.options.items():
            text = text.replace("{" + keyword + "}", name(keyword, value))
        return text

    def worded(self, name: Callable[[str, object], str]) -> str:
        """The message with each suggested option named by `name(keyword, value)`."""
        if not getattr(self, "options", None):
            return str(self)
        problem = self._fill(name)
        return f"{self.path}: {problem}" if self.path else problem


class ImageReadError(P3MError):
    """An image, alpha matte or trimap could not be read (missing, truncated, not an image, ...)."""


class UnsupportedImageError(ImageReadError):
    """The file is an image, but of a mode, depth or shape p3m does not handle."""


class ImageTooLargeError(ImageReadError):
    """The image has more pixels than the configured cap (decompression-bomb guard)."""


class ImageWriteError(P3MError):
    """An output file could not be written."""


class ShapeMismatchError(P3MError):
    """Two arrays that must have the same size (prediction and ground truth, image and alpha) do not."""


class CheckpointError(P3MError):
    """A checkpoint file is unreadable, truncated, or belongs to another model variant."""


class InputSizeError(P3MError, ValueError):
    """A tensor given to a model has the wrong shape, dtype or size (e.g. not a multiple of 32)."""


class ModelNotFoundError(P3MError):
    """No model or weights of that name are registered or installed."""


class DownloadError(P3MError):
    """A download failed or its checksum did not match."""


class DatasetError(P3MError):
    """A data set folder does not have the expected layout or has unmatched files."""


class ConfigError(P3MError):
    """A configuration file or option is invalid."""


class DeviceError(ConfigError):
    """A device that does not exist (`--device gpu`) or that this machine lacks (`cuda` without CUDA)."""


class MissingDependencyError(P3MError):
    """An optional dependency is needed for this feature; the message says what to install."""


class ExportError(P3MError):
    """A model could not be exported (e.g. to ONNX), or the export does not reproduce the model."""


class BaselineError(P3MError):
    """A traditional (trimap-based) matting baseline could not solve an image."""


class ExperimentError(P3MError):
    """An experiment (`p3m experiment ...`) cannot run as asked: bad settings, a device that is
    not there, or earlier results that cannot be resumed."""


class VideoReadError(P3MError):
    """A video could not be read (missing, not a video, truncated, no video stream, ...)."""


class VideoWriteError(P3MError):
    """A video (or frame sequence) could not be encoded or written."""
