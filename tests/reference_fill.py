"""The deterministic weight-fill rule of the reference vectors (../shared/reference/models/README.md).

Test helper only: the library never fills weights this way.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch


def fill_value(name: str, shape: tuple[int, ...], gain: float) -> np.ndarray:
    """The value the rule gives the tensor called `name` (the canonical, non-alias name)."""
    seed = zlib.crc32(name.encode("utf-8"))
    z = np.random.default_rng(seed).standard_normal(shape)
    if name.endswith("running_mean"):
        value = 0.1 * z
    elif name.endswith("running_var"):
        value = 1.0 + 0.1 * np.abs(z)
    elif len(shape) >= 2:
        value = gain * z / np.sqrt(np.prod(shape[1:]))
    elif len(shape) == 1 and name.endswith(".weight"):
        value = 1.0 + 0.1 * z
    else:
        value = 0.1 * z
    return value.astype(np.float32)


def load_manifest(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def filled_state_dict(manifest: dict, gain: float | None = None) -> dict[str, torch.Tensor]:
    """A full state_dict for the manifest: filled entries by the rule, the rest left out.

    Entries with filled = false (num_batches_tracked, attention masks, position
    indices) are omitted; callers merge this over the model's own state_dict.
    """
    gain = manifest.get("gain", 1.0) if gain is None else gain
    aliases = manifest.get("aliases", {})
    result: dict[str, torch.Tensor] = {}
    for key, shape, _dtype, _kind, filled in manifest["entries"]:
        if not filled:
            continue
        canonical = aliases.get(key, key)
        result[key] = torch.from_numpy(fill_value(canonical, tuple(shape), gain))
    return result


def fill_model(model: torch.nn.Module, manifest: dict, gain: float | None = None) -> None:
    """Load the rule's values into `model` with strict key checking."""
    state = model.state_dict()
    state.update(filled_state_dict(manifest, gain))
    model.load_state_dict(state, strict=True)
