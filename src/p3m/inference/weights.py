"""The weights cache: published P3M-Net checkpoints, downloaded only when asked, verified, reusable.

Layout: `$P3M_HOME/weights/<model>/<file name>` plus `$P3M_HOME/weights/index.json`, which
records for each model the installed file, its sha256, where it came from and whether that hash
was checked against a registered one. `P3M_HOME` defaults to `~/.cache/p3m` and is read at call
time. Nothing here touches the network except `download_weights` / `download_file`.

Downloads are plain HTTP(S) with urllib: the transfer goes to `<file>.part`, is resumed with a
Range request after an interruption, verified by sha256 and only then renamed into place.
Google Drive links (the authors' hosting) go through Drive's "can't scan for viruses"
confirmation page. When no checksum is registered, the computed one is logged, recorded in the
index, and later downloads of the same file must match it (trust on first use).

    >>> download_weights("p3mnet-vitae-s")             # explicit: the only network access
    >>> import_weights("P3M-Net_ViTAE-S_trained_on_P3M-10k.pth", "p3mnet-vitae-s")
    >>> resolve_weights("p3mnet-vitae-s")              # Path in the cache (or an existing path)
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from p3m.errors import CheckpointError, DownloadError, ModelNotFoundError, P3MError

__all__ = [
    "WeightsStatus",
    "download_file",
    "download_weights",
    "import_weights",
    "installed_weights",
    "list_weights",
    "p3m_home",
    "resolve_weights",
    "sha256_of",
    "weights_dir",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""Called as progress(bytes_done, bytes_total_or_None) while a file is transferred."""

DRIVE_DOWNLOAD_URL = "https://drive.google.com/uc"
_CHUNK = 1 << 20
_USER_AGENT = "p3m-weights/0.1 (+https://github.com/; urllib)"


# --------------------------------------------------------------------------- cache layout


def p3m_home() -> Path:
    """The p3m data folder: $P3M_HOME, else ~/.cache/p3m (read on every call)."""
    configured = os.environ.get("P3M_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "p3m"


def weights_dir() -> Path:
    return p3m_home() / "weights"


def _index_path() -> Path:
    return weights_dir() / "index.json"


def _read_index() -> dict[str, Any]:
    path = _index_path()
    if not path.exists():
        return {"version": 1, "weights": {}}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"weights index is unreadable ({error}); delete it to rebuild", path) from error
    index.setdefault("weights", {})
    return index


def _write_index(index: dict[str, Any]) -> None:
    from p3m.io import atomic_write_text

    atomic_write_text(_index_path(), json.dumps(index, indent=2, sort_keys=True) + "\n")


def _record(name: str, path: Path, sha256: str, source: str, verified: bool) -> None:
    index = _read_index()
    index["weights"][name] = {
        "file": path.relative_to(weights_dir()).as_posix(),
        "sha256": sha256,
        "source": source,
        "verified_against_registry": verified,
        "added": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_index(index)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- registry view


def _model_spec(name: str) -> Any:
    from p3m.models import get_spec

    return get_spec(name)


def _default_checkpoint(name: str) -> Any:
    spec = _model_spec(name)
    if not spec.checkpoints:
        raise ModelNotFoundError(f"no published checkpoint is registered for {name!r}")
    return spec.checkpoints[0]


@dataclass(frozen=True)
class WeightsStatus:
    """One line of `p3m weights list`."""

    name: str
    file_name: str | None
    url: str | None
    registered_sha256: str | None
    path: Path | None
    sha256: str | None
    source: str | None


def installed_weights(name: str) -> Path | None:
    """Path of the cached checkpoint of model `name`, or None when none is installed."""
    entry = _read_index()["weights"].get(name)
    if entry:
        path = weights_dir() / entry["file"]
        if path.is_file():
            return path
    # A file placed by hand at the registered location counts as well.
    with contextlib.suppress(P3MError):
        for checkpoint in _model_spec(name).checkpoints:
            path = weights_dir() / name / checkpoint.file_name
            if path.is_file():
                return path
    return None


def list_weights() -> list[WeightsStatus]:
    """Every registered model with its published checkpoint and what the cache holds for it."""
    from p3m.models import list_models

    index = _read_index()["weights"]
    rows = []
    for name in list_models():
        checkpoints = _model_spec(name).checkpoints
        checkpoint = checkpoints[0] if checkpoints else None
        entry = index.get(name, {})
        rows.append(
            WeightsStatus(
                name=name,
                file_name=checkpoint.file_name if checkpoint else None,
                url=checkpoint.url if checkpoint else None,
                registered_sha256=checkpoint.sha256 if checkpoint else None,
                path=installed_weights(name),
                sha256=entry.get("sha256"),
                source=entry.get("source"),
            )
        )
    return rows


def install_hint(name: str) -> str:
    """How to put weights for `name` into the cache (one line)."""
    return (
        f"run `p3m weights download {name}` (needs internet) or, with the file at hand, "
        f"`p3m weights import FILE --as {name}`"
    )


def resolve_weights(name_or_path: str | os.PathLike[str], model: str | None = None) -> Path:
    """An existing checkpoint path as given, or the cached checkpoint of a registered model name.

    `model` names the model a bare cache name should default to (for `--weights` next to
    `--model`). Raises ModelNotFoundError with install instructions when nothing is there.
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    name = str(name_or_path)
    from p3m.models import list_models

    if name in list_models():
        path = installed_weights(name)
        if path is None:
            raise ModelNotFoundError(
                f"no weights for {name} in the cache {weights_dir()}; {install_hint(name)}"
            )
        return path
    if candidate.suffix or os.sep in name:
        raise CheckpointError("no such checkpoint file", candidate)
    hint = f" for {model}" if model else ""
    raise ModelNotFoundError(
        f"{name!r} is neither a checkpoint file nor a model with cached weights{hint} "
        f"(models: {', '.join(list_models())})"
    )


# --------------------------------------------------------------------------- HTTP


def _opener() -> urllib.request.OpenerDirector:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", _USER_AGENT)]
    opener.cookie_jar = jar  # type: ignore[attr-defined]  # read by _resolve_drive
    return opener


def google_drive_id(url: str) -> str | None:
    """The file id of a Google Drive link (…/file/d/<id>/…, …?id=<id>), else None."""
    parsed = urllib.parse.urlparse(url)
    if parsed.hostname not in ("drive.google.com", "docs.google.com", "drive.usercontent.google.com"):
        return None
    match = re.search(r"/file/d/([\w-]+)", parsed.path)
    if match:
        return match.group(1)
    ids = urllib.parse.parse_qs(parsed.query).get("id")
    return ids[0] if ids else None


def _drive_confirmation_url(page: str, page_url: str) -> str | None:
    """The real download URL behind Drive's virus-scan warning page (form or confirm link)."""
    form = re.search(r'<form[^>]*id="download-form"[^>]*>(.*?)</form>', page, re.S | re.I)
    if form:
        action = re.search(r'action="([^"]+)"', form.group(0))
        fields = dict(
            (html.unescape(n), html.unescape(v))
            for n, v in re.findall(
                r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form.group(1)
            )
        )
        if action:
            target = urllib.parse.urljoin(page_url, html.unescape(action.group(1)))
            return f"{target}?{urllib.parse.urlencode(fields)}"
    link = re.search(r'href="(/uc\?export=download[^"]*confirm=[^"]+)"', page)
    if link:
        return urllib.parse.urljoin(page_url, html.unescape(link.group(1)))
    token = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    if token:
        separator = "&" if "?" in page_url else "?"
        return f"{page_url}{separator}confirm={token.group(1)}"
    return None


def _resolve_drive(file_id: str, opener: urllib.request.OpenerDirector, timeout: float) -> str:
    """Follow Drive's confirmation page (large files) to the URL that serves the bytes."""
    url = f"{DRIVE_DOWNLOAD_URL}?{urllib.parse.urlencode({'export': 'download', 'id': file_id})}"
    with opener.open(url, timeout=timeout) as response:
        content_type = response.headers.get("Content-Type", "")
        if "text/html" not in content_type:
            return response.geturl()
        page = response.read(2_000_000).decode("utf-8", "replace")
        page_url = response.geturl()
    for cookie in getattr(opener, "cookie_jar", []):
        if cookie.name.startswith("download_warning"):
            return f"{url}&confirm={cookie.value}"
    confirmed = _drive_confirmation_url(page, page_url)
    if confirmed is None:
        if "quota" in page.lower() or "too many users" in page.lower():
            raise DownloadError(
                "Google Drive refuses the download for now (quota exceeded); try later or "
                "download it in a browser and use `p3m weights import`",
                url,
            )
        raise DownloadError("Google Drive returned a page p3m cannot follow (no download link)", url)
    return confirmed


def _transfer(
    url: str,
    part: Path,
    opener: urllib.request.OpenerDirector,
    progress: ProgressCallback | None,
    timeout: float,
) -> None:
    """Append the rest of `url` to `part`; raises on a transfer cut short."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url)
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing left to fetch: the part file is complete
            return
        raise
    with response:
        if response.status == 200 and start:
            logger.info("server ignored the resume request; starting %s again", part.name)
            start = 0
        if response.headers.get("Content-Type", "").startswith("text/html"):
            raise DownloadError("the server sent a web page instead of the checkpoint", url)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        done = start
        with open(part, "ab" if start else "wb") as handle:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                handle.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    if total is not None and done < total:
        raise http.client.IncompleteRead(b"", total - done)


def download_file(
    url: str,
    destination: str | os.PathLike[str],
    sha256: str | None = None,
    progress: ProgressCallback | None = None,
    retries: int = 3,
    timeout: float = 60.0,
) -> str:
    """Download `url` to `destination` (resumable, verified, atomic); returns the file's sha256.

    The bytes go to `destination + ".part"`; an interrupted transfer is resumed with a Range
    request up to `retries` times (and on the next call). A sha256 mismatch deletes the partial
    file and raises DownloadError; so does a transfer that cannot be completed (the partial file
    is kept then, so running the command again resumes).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    opener = _opener()
    drive_id = google_drive_id(url)
    last_error: BaseException | None = None
    for attempt in range(retries + 1):
        try:
            source = _resolve_drive(drive_id, opener, timeout) if drive_id else url
            _transfer(source, part, opener, progress, timeout)
            last_error = None
            break
        except urllib.error.HTTPError as error:
            raise DownloadError(f"HTTP {error.code} {error.reason}", url) from error
        except (TimeoutError, http.client.IncompleteRead, ConnectionError, urllib.error.URLError) as error:
            last_error = error
            have = part.stat().st_size if part.exists() else 0
            logger.warning("download interrupted at %d bytes (%s); attempt %d", have, error, attempt + 1)
            if isinstance(error, urllib.error.URLError) and not isinstance(
                error.reason, ConnectionError | TimeoutError
            ):
                raise DownloadError(f"cannot reach the server ({error.reason})", url) from error
            time.sleep(min(2.0**attempt * 0.2, 5.0))
    if last_error is not None:
        have = part.stat().st_size if part.exists() else 0
        if have == 0:
            raise DownloadError(f"cannot download ({last_error})", url)
        raise DownloadError(
            f"download interrupted after {have} bytes ({last_error}); run the command again to "
            f"resume from {part}",
            url,
        )
    digest = sha256_of(part)
    if sha256 is not None and digest.lower() != sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch: expected sha256 {sha256}, got {digest}; the file was deleted", url
        )
    os.replace(part, destination)
    return digest


def download_weights(
    name: str,
    checkpoint: Any = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> Path:
    """Download the published checkpoint of model `name` into the cache; returns its path.

    `checkpoint` (a `CheckpointSpec`) defaults to the model's first registered one. An installed
    file is kept unless `force`.
    """
    checkpoint = checkpoint or _default_checkpoint(name)
    if not checkpoint.url:
        raise DownloadError(
            f"no download URL is registered for {name}; get {checkpoint.file_name} from "
            f"{checkpoint.source_page} and run `p3m weights import FILE --as {name}`"
        )
    destination = weights_dir() / name / checkpoint.file_name
    if destination.is_file() and not force:
        logger.info("%s is already in the cache: %s", name, destination)
        return destination
    expected = checkpoint.sha256
    recorded = _read_index()["weights"].get(name, {})
    trust_on_first_use = (
        expected is None
        and recorded.get("source") == checkpoint.url
        and recorded.get("sha256") is not None
    )
    if trust_on_first_use:
        expected = recorded["sha256"]
    digest = download_file(checkpoint.url, destination, sha256=expected, progress=progress)
    if checkpoint.sha256 is None and not trust_on_first_use:
        logger.warning(
            "no sha256 is registered for %s; computed %s and recorded it in %s",
            checkpoint.file_name, digest, _index_path(),
        )
    _record(name, destination, digest, checkpoint.url, verified=checkpoint.sha256 is not None)
    return destination


def import_weights(file: str | os.PathLike[str], name: str) -> Path:
    """Check that `file` loads strictly into model `name`, then copy it into the cache.

    Raises CheckpointError (naming the file and the mismatch) when it belongs to another variant.
    """
    source = Path(file).expanduser()
    if not source.is_file():
        raise CheckpointError("no such checkpoint file", source)
    from p3m.models import create_model, load_checkpoint

    model = create_model(name, device="cpu")
    load_checkpoint(model, source, strict=True)
    del model
    checkpoints = _model_spec(name).checkpoints
    file_name = checkpoints[0].file_name if checkpoints else source.name
    destination = weights_dir() / name / file_name
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(destination.name + ".part")
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise CheckpointError(f"cannot copy into the cache: {error}", destination) from error
    digest = sha256_of(destination)
    registered = checkpoints[0].sha256 if checkpoints else None
    if registered and registered.lower() != digest.lower():
        logger.warning(
            "%s differs from the published %s (sha256 %s); imported as a custom checkpoint",
            source, file_name, digest,
        )
    _record(
        name, destination, digest, f"import:{source.resolve()}",
        verified=bool(registered and registered.lower() == digest.lower()),
    )
    return destination
