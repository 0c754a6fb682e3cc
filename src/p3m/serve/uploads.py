"""Reading a multipart upload into memory, within a size limit, without touching the disk.

Starlette's own form parser spools every file over 1 MiB to a temporary file in the system's
temporary folder. The service never writes an upload anywhere: the body is parsed as it streams
in (python-multipart's push parser) into bytes held by the request, and dropped with it. The
size limit is checked twice: from `Content-Length` before a single byte is read, and while
reading (uploads without a length, `Transfer-Encoding: chunked`), where reading stops at the
first byte past the limit.

    >>> form = await read_form(request, limit=40 << 20)
    >>> form.file("image").data, form.text("output", "rgba")
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = [
    "BadUpload",
    "Form",
    "Upload",
    "UploadTooLarge",
    "check_declared_length",
    "parse_multipart",
    "read_form",
]

MAX_PARTS = 32
MAX_TEXT_BYTES = 64 << 10  # a text field (an option) longer than this is not an option


class BadUpload(Exception):
    """The request body is not a multipart form p3m can read (answered 400)."""


class UploadTooLarge(Exception):
    """The body is larger than the service accepts (answered 413)."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        self.limit = limit
        self.declared = declared
        size = f" ({declared} bytes declared)" if declared is not None else ""
        super().__init__(f"upload larger than the limit of {limit} bytes{size}")


@dataclass
class Upload:
    """One uploaded file: its name as the client sent it, its content type and bytes."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class Form:
    """The fields of a multipart form: text fields and files, by field name (last one wins)."""

    texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)

    def text(self, name: str, default: str | None = None) -> str | None:
        return self.texts.get(name, default)

    def file(self, name: str) -> Upload | None:
        """The file of field `name`; an empty file input of a browser form counts as absent."""
        upload = self.files.get(name)
        if upload is None or (not upload.data and not upload.filename):
            return None
        return upload


def check_declared_length(headers: dict[str, str] | object, limit: int) -> None:
    """Raise `UploadTooLarge` when the request declares a `Content-Length` above `limit`."""
    value = headers.get("content-length")  # type: ignore[attr-defined]
    if value is None:
        return
    try:
        declared = int(value)
    except ValueError:
        raise BadUpload(f"Content-Length is not a number: {value[:40]!r}") from None
    if declared > limit:
        raise UploadTooLarge(limit, declared)


def _boundary(content_type: str | None) -> bytes:
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise BadUpload(
            "send the image as multipart/form-data (a form with a file field named 'image'), "
            f"not {kind.decode('latin-1') or 'an empty content type'}"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadUpload("the multipart form has no boundary in its Content-Type")
    return boundary


class _Collector:
    """python-multipart callbacks gathering parts into a `Form`."""

    def __init__(self) -> None:
        self.form = Form()
        self.parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()
        self.finished = False

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise BadUpload(f"the form has more than {MAX_PARTS} parts")
        self._headers = {}
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]

    def on_part_end(self) -> None:
        from python_multipart.multipart import parse_options_header

        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            raise BadUpload("a part of the form has no 'Content-Disposition: form-data; name=...'")
        field_name = name.decode("utf-8", "replace")
        if b"filename" in options:
            self.form.files[field_name] = Upload(
                filename=options[b"filename"].decode("utf-8", "replace"),
                content_type=self._headers.get(b"content-type", b"").decode("latin-1"),
                data=bytes(self._data),
            )
        else:
            if len(self._data) > MAX_TEXT_BYTES:
                raise BadUpload(f"form field {field_name!r} is longer than {MAX_TEXT_BYTES} bytes")
            self.form.texts[field_name] = self._data.decode("utf-8", "replace")
        self._data = bytearray()

    def on_end(self) -> None:
        self.finished = True


async def parse_multipart(
    chunks: AsyncIterator[bytes], content_type: str | None, limit: int
) -> Form:
    """Parse a multipart/form-data body arriving as `chunks`, in memory, at most `limit` bytes.

    Raises `BadUpload` for a body that is not a complete multipart form, and `UploadTooLarge`
    as soon as more than `limit` bytes have arrived (the rest is never read).
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser

    collector = _Collector()
    parser = MultipartParser(
        _boundary(content_type),
        {
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_end": collector.on_end,
        },
    )
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise UploadTooLarge(limit)
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except FormParserError as error:
        raise BadUpload(f"the multipart form is malformed: {error}") from None
    if not collector.finished:
        raise BadUpload("the multipart form ended early (truncated upload?)")
    return collector.form


async def read_form(request: object, limit: int) -> Form:
    """The multipart form of a Starlette `request`, read into memory within `limit` bytes."""
    headers = request.headers  # type: ignore[attr-defined]
    check_declared_length(headers, limit)
    return await parse_multipart(
        request.stream(),  # type: ignore[attr-defined]
        headers.get("content-type"),
        limit,
    )
