"""Moving a published checkpoint onto this machine: resumable, verified by sha256, atomic.

Two transports, both well-kept libraries:

* Google Drive links (the authors' hosting) go through `gdown`, which follows Drive's "can't
  scan for viruses" confirmation page (Drive changes it from time to time; gdown follows) and
  resumes an interrupted transfer from its partial file.
* Plain HTTP(S) goes through `requests`, streamed in 1 MiB chunks to `<file>.part` and resumed
  with a `Range` request (pooch, the usual choice, does not resume).

Either way the bytes are checked against the expected sha256 before they are renamed into
place, so the destination never holds a partial or unverified file. Nothing else in p3m touches
the network; `p3m.models.hub` calls this for `p3m weights download`.

    >>> digest = download_file("https://example.org/model.pth", "model.pth", sha256="ab12...")
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p3m.errors import DownloadError

__all__ = ["ProgressCallback", "download_file", "google_drive_id", "sha256_of"]

logger = logging.getLogger(__name__)

IMPORT_HINT = "`p3m weights import FILE --as NAME`"
"""How to install weights fetched some other way (named in download errors)."""

ProgressCallback = Callable[[int, int | None], None]
"""Called as progress(bytes_done, bytes_total_or_None) while a file is transferred."""

_CHUNK = 1 << 20
_USER_AGENT = "p3m-weights/0.1 (requests)"
DRIVE_STAGING_SUFFIX = ".drive"
"""gdown writes `<file>.drive` (via its own `<file>.drive????????.part`) before p3m verifies it."""


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def google_drive_id(url: str) -> str | None:
    """The file id of a Google Drive link (…/file/d/<id>/…, …/uc?id=<id>), else None (gdown's parser)."""
    from gdown.parse_url import parse_url

    file_id, _ = parse_url(url)
    return file_id


def _reason(error: BaseException) -> str:
    """The innermost cause of a network error, in a few words (no pool internals, one line)."""
    seen = set()
    current: BaseException | None = error
    innermost = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        innermost = current
        current = current.__cause__ or current.__context__
        if current is not None and len(current.args) == 1 and isinstance(current.args[0], BaseException):
            current = current.args[0]
    text = getattr(innermost, "strerror", None) or str(innermost) or type(innermost).__name__
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- plain HTTP


class _Incomplete(Exception):
    """The server closed the transfer before the announced length."""


def _session() -> Any:
    import requests

    session = requests.Session()
    # Byte offsets for Range must count the bytes on disk: no transparent decompression.
    session.headers.update({"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"})
    return session


def _content_range_start(header: str | None) -> int | None:
    """The first byte of `Content-Range: bytes a-b/n`, or None when absent or malformed."""
    if not header or not header.startswith("bytes "):
        return None
    try:
        return int(header[6:].split("-", 1)[0])
    except ValueError:
        return None


def _http_transfer(
    session: Any, url: str, part: Path, progress: ProgressCallback | None, timeout: float
) -> None:
    """Append the rest of `url` to `part`; raises `_Incomplete` or a requests error if cut short."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416 and start:  # nothing left to fetch: the part is complete
            return
        response.raise_for_status()
        if start and (response.status_code != 206 or _content_range_start(response.headers.get("Content-Range")) != start):
            logger.info("the server did not resume at byte %d; starting %s again", start, part.name)
            start = 0
        if response.headers.get("Content-Type", "").startswith("text/html"):
            raise DownloadError("the server sent a web page instead of the checkpoint", url)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None and length.isdigit() else None
        done = start
        with open(part, "ab" if start else "wb") as handle:
            for chunk in response.iter_content(_CHUNK):
                handle.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    if total is not None and done < total:
        raise _Incomplete(f"{total - done} of {total} bytes missing")


def _download_http(
    url: str, part: Path, progress: ProgressCallback | None, retries: int, timeout: float
) -> None:
    """`_http_transfer` with up to `retries` resumed attempts after a transient failure."""
    import requests

    transient = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, _Incomplete)
    last_error: BaseException | None = None
    with _session() as session:
        for attempt in range(retries + 1):
            try:
                _http_transfer(session, url, part, progress, timeout)
                return
            except requests.HTTPError as error:
                response = error.response
                raise DownloadError(f"HTTP {response.status_code} {response.reason}", url) from error
            except transient as error:
                last_error = error
                have = part.stat().st_size if part.exists() else 0
                logger.warning("download interrupted at %d bytes (%s); attempt %d", have, _reason(error), attempt + 1)
                if attempt < retries:
                    time.sleep(min(2.0**attempt * 0.2, 5.0))
            except requests.RequestException as error:  # invalid URL, too many redirects, ...
                raise DownloadError(f"cannot download ({_reason(error)})", url) from error
    have = part.stat().st_size if part.exists() else 0
    if have == 0:
        raise DownloadError(
            f"cannot reach the server ({_reason(last_error)}); check the connection, or download "
            f"the file in a browser and use {IMPORT_HINT}",
            url,
        ) from last_error
    raise DownloadError(
        f"download interrupted after {have} bytes ({_reason(last_error)}); run the command again "
        f"to resume from {part}",
        url,
    ) from last_error


# --------------------------------------------------------------------------- Google Drive


def _download_drive(
    url: str,
    file_id: str,
    staged: Path,
    progress: ProgressCallback | None,
    retries: int,
    timeout: float,
) -> None:
    """gdown to `staged`: confirmation page, retries, resume from its own partial file."""
    import gdown
    import requests

    if staged.is_file():  # a finished transfer that was not verified yet (interrupted after gdown)
        return
    try:
        gdown.download(
            id=file_id,
            output=str(staged),
            quiet=True,
            use_cookies=False,  # never read or write the user's ~/.cache/gdown cookies
            resume=True,
            progress=progress,
            retries=retries,
            timeout=timeout,
        )
    except gdown.exceptions.FileURLRetrievalError as error:
        text = " ".join(str(error).split())
        busy = any(word in text.lower() for word in ("quota", "too many users", "many accesses"))
        raise DownloadError(
            "Google Drive refuses the download for now (quota exceeded or the link is not public); "
            f"try later, or download it in a browser and use {IMPORT_HINT}"
            if busy or "public link" in text.lower()
            else f"Google Drive did not hand out the file ({text[:200]})",
            url,
        ) from error
    except gdown.exceptions.DownloadError as error:
        partial = sorted(staged.parent.glob(staged.name + "*.part"))
        have = partial[-1].stat().st_size if partial else 0
        if have == 0:  # nothing came: no connection, not an interrupted transfer
            raise DownloadError(
                f"cannot reach Google Drive ({' '.join(str(error).split())[:160] or 'no answer'}); "
                f"check the connection, or download the file in a browser and use {IMPORT_HINT}",
                url,
            ) from error
        raise DownloadError(
            f"download interrupted after {have} bytes; run the command again to resume", url
        ) from error
    except requests.HTTPError as error:
        response = error.response
        raise DownloadError(f"HTTP {response.status_code} {response.reason}", url) from error
    except requests.RequestException as error:
        raise DownloadError(
            f"cannot reach Google Drive ({_reason(error)}); check the connection, or download "
            f"the file in a browser and use {IMPORT_HINT}",
            url,
        ) from error


# --------------------------------------------------------------------------- both


def download_file(
    url: str,
    destination: str | os.PathLike[str],
    sha256: str | None = None,
    progress: ProgressCallback | None = None,
    retries: int = 3,
    timeout: float = 60.0,
) -> str:
    """Download `url` to `destination` (resumable, verified, atomic); returns the file's sha256.

    Plain HTTP: the bytes go to `destination + ".part"`; an interrupted transfer is resumed with
    a Range request up to `retries` times (and on the next call). Google Drive links go through
    gdown (confirmation page, retries, resume from its partial file beside `destination`). A
    sha256 mismatch deletes the download and raises DownloadError; so does a transfer that
    cannot be completed (its partial file is kept then, so running the command again resumes).
    `timeout` is in seconds, per connection attempt and between bytes.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    drive_id = google_drive_id(url)
    if drive_id is not None:
        downloaded = destination.with_name(destination.name + DRIVE_STAGING_SUFFIX)
        _download_drive(url, drive_id, downloaded, progress, retries, timeout)
    else:
        downloaded = destination.with_name(destination.name + ".part")
        _download_http(url, downloaded, progress, retries, timeout)
    digest = sha256_of(downloaded)
    if sha256 is not None and digest.lower() != sha256.lower():
        downloaded.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch: expected sha256 {sha256}, got {digest}; the file was deleted", url
        )
    os.replace(downloaded, destination)
    return digest
