"""The weights hub: published P3M-Net checkpoints, downloaded only when asked, verified, reusable.

Layout: `$P3M_HOME/weights/<model>/<file name>` plus `$P3M_HOME/weights/index.json`, which
records for each model the installed file, its sha256, where it came from and whether that hash
was checked against a registered one. `P3M_HOME` defaults to `~/.cache/p3m` and is read at call
time. Nothing here touches the network except `download_weights`, which hands the transfer to
`p3m.models.transfer` (gdown for Google Drive, requests with Range resume for plain HTTP).
When no checksum is registered, the computed one is logged, recorded in the index, and later
downloads of the same file must match it (trust on first use).

    >>> download_weights("p3mnet-vitae-s")             # explicit: the only network access
    >>> import_weights("P3M-Net_ViTAE-S_trained_on_P3M-10k.pth", "p3mnet-vitae-s")
    >>> resolve_weights("p3mnet-vitae-s")              # Path in the cache (or an existing path)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from p3m.errors import CheckpointError, ConfigError, DownloadError, ModelNotFoundError, P3MError
from p3m.io.atomic import atomic_write_text, temporary_path
from p3m.models.registry import CheckpointSpec, ModelSpec, get_spec, list_models
from p3m.models.transfer import ProgressCallback, download_file, sha256_of

__all__ = [
    "WeightsStatus",
    "download_weights",
    "import_weights",
    "install_hint",
    "installed_weights",
    "list_weights",
    "p3m_home",
    "resolve_weights",
    "weights_dir",
    "weights_status",
]

logger = logging.getLogger(__name__)


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
    atomic_write_text(_index_path(), json.dumps(index, indent=2, sort_keys=True) + "\n")


def _record(name: str, path: Path, sha256: str, source: str, verified: bool) -> None:
    index = _read_index()
    index["weights"][name] = {
        "file": path.relative_to(weights_dir()).as_posix(),
        "sha256": sha256,
        "size": path.stat().st_size,
        "source": source,
        "verified_against_registry": verified,
        "added": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_index(index)


# --------------------------------------------------------------------------- registry view


def _model_spec(name: str) -> ModelSpec:
    return get_spec(name)


def _default_checkpoint(name: str) -> CheckpointSpec:
    spec = _model_spec(name)
    if not spec.checkpoints:
        raise ModelNotFoundError(f"no published checkpoint is registered for {name!r}")
    return spec.checkpoints[0]


@dataclass(frozen=True)
class WeightsStatus:
    """What the cache holds for one registered model (one line of `p3m weights list`).

    `sha256` and `source` are what the cache index recorded for the installed file;
    `verified` is True when that hash matched the registered one.
    """

    name: str
    file_name: str | None
    url: str | None
    registered_sha256: str | None
    path: Path | None
    sha256: str | None
    source: str | None
    verified: bool = False
    problem: str | None = None
    """Why the installed file is not the one recorded (its size changed since it was cached:
    truncated or replaced), with what to do; None when it is, or when nothing is installed."""


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


def weights_status(name: str, index: dict[str, Any] | None = None) -> WeightsStatus:
    """The published checkpoint of model `name` and what the cache holds for it."""
    checkpoints = _model_spec(name).checkpoints
    checkpoint = checkpoints[0] if checkpoints else None
    entry = (index if index is not None else _read_index()["weights"]).get(name, {})
    path = installed_weights(name)
    return WeightsStatus(
        name=name,
        file_name=checkpoint.file_name if checkpoint else None,
        url=checkpoint.url if checkpoint else None,
        registered_sha256=checkpoint.sha256 if checkpoint else None,
        path=path,
        sha256=entry.get("sha256"),
        source=entry.get("source"),
        verified=bool(entry.get("verified_against_registry")),
        problem=_cached_file_problem(name, path, entry),
    )


def _cached_file_problem(name: str, path: Path | None, entry: dict[str, Any]) -> str | None:
    """A cheap check of an installed file against its index entry: the recorded size."""
    if path is None or not entry or weights_dir() / entry.get("file", "") != path or "size" not in entry:
        return None
    size = path.stat().st_size
    if size == entry["size"]:
        return None
    return (
        f"damaged: {size:,} bytes, {entry['size']:,} when cached; run `p3m weights download {name} --force` "
        f"or `p3m weights import FILE --as {name}`"
    )


def list_weights() -> list[WeightsStatus]:
    """Every registered model with its published checkpoint and what the cache holds for it."""
    index = _read_index()["weights"]
    return [weights_status(name, index) for name in list_models()]


def install_hint(name: str) -> str:
    """How to put weights for `name` into the cache (one line); a download is suggested only
    when one is registered."""
    imported = f"`p3m weights import FILE --as {name}`"
    checkpoints = _model_spec(name).checkpoints
    if not checkpoints:
        return (
            f"no checkpoint of {name} has been published: train one (`p3m train`) or, with a file "
            f"at hand, {imported}"
        )
    if not checkpoints[0].url:
        return f"get {checkpoints[0].file_name} from {checkpoints[0].source_page}, then {imported}"
    return f"run `p3m weights download {name}` (needs internet) or, with the file at hand, {imported}"


def resolve_weights(name_or_path: str | os.PathLike[str], model: str | None = None) -> Path:
    """An existing checkpoint path as given, or the cached checkpoint of a registered model name.

    `model` names the model a bare cache name should default to (for `--weights` next to
    `--model`). Raises ModelNotFoundError with install instructions when nothing is there.
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        raise CheckpointError("is a folder, not a checkpoint file", candidate)
    name = str(name_or_path)
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


def download_weights(
    name: str,
    checkpoint: CheckpointSpec | None = None,
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
    expected = checkpoint.sha256
    recorded = _read_index()["weights"].get(name, {})
    if destination.is_file() and not force:
        known = expected or (recorded.get("sha256") if weights_dir() / recorded.get("file", "") == destination else None)
        if known is None or sha256_of(destination).lower() == known.lower():
            logger.info("%s is already in the cache: %s", name, destination)
            return destination
        logger.warning(
            "%s: the cached file is damaged (its sha256 is not the %s one); downloading it again",
            destination, "registered" if expected else "recorded",
        )
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


def import_weights(file: str | os.PathLike[str], name: str, force: bool = False) -> Path:
    """Check that `file` loads strictly into model `name`, then copy it into the cache.

    Other weights already cached for `name` are replaced only with `force` (ConfigError
    otherwise, once `file` has been checked; nothing is written); the same file again is a
    no-op. Raises CheckpointError (naming the file and the problem) when it is damaged, not a
    checkpoint, or belongs to another variant, with or without `force`.
    """
    source = Path(file).expanduser()
    if source.is_dir():
        raise CheckpointError("is a folder, not a checkpoint file", source)
    if not source.is_file():
        raise CheckpointError("no such checkpoint file", source)
    existing = installed_weights(name)
    if existing is not None and _cached_file_problem(name, existing, _read_index()["weights"].get(name, {})):
        existing = None  # a damaged cached file is replaced without --force
    if existing is not None and sha256_of(existing) == sha256_of(source):
        logger.info("%s is already in the cache: %s", source, existing)
        return existing
    # The file is checked first: a damaged or wrong file is named as such, never met with
    # "pass force=True" (which would only lead to the same error).
    from p3m.models import create_model, load_checkpoint

    model = create_model(name, device="cpu")
    load_checkpoint(model, source, strict=True)
    del model
    if existing is not None and not force:
        raise ConfigError(
            f"other weights for {name} are already in the cache ({existing}); pass {{force}} "
            f"to replace them with {source}",
            options={"force": True},
        )
    checkpoints = _model_spec(name).checkpoints
    file_name = checkpoints[0].file_name if checkpoints else source.name
    destination = weights_dir() / name / file_name
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(destination)
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
