"""What makes a stopped run resume bit for bit: RNG states and the resumable checkpoint.

Augmentation draws depend on (seed, epoch, index) only and the sampler skips the batches
already done; what remains is the optimiser, scheduler and scaler state and the torch / numpy /
python RNG states of every rank, which `resumable_state` gathers and `restore_state` puts back.
Everything is plain data and tensors, so a checkpoint loads with `torch.load(weights_only=True)`.

    >>> payload = resumable_state(context, optimizer, scheduler, scaler, step=100, ...)
    >>> step = restore_state(read_resumable(path, "p3mnet-r34", 250), context, model, ...)
"""

from __future__ import annotations

import logging
import random
import signal
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from p3m.errors import CheckpointError
from p3m.training.distributed import DistContext, all_gather

__all__ = [
    "capture_rng",
    "read_resumable",
    "restore_rng",
    "restore_state",
    "resumable_state",
    "seed_everything",
    "seed_worker",
]

logger = logging.getLogger(__name__)


def capture_rng() -> dict[str, Any]:
    """RNG states as plain data + tensors, so a checkpoint loads with weights_only=True."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the RNG states `capture_rng` took."""
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: numpy and python seeds derived from the worker's torch seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
    # Ctrl-C reaches the whole process group: the main process stops gracefully, workers wait for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def resumable_state(
    context: DistContext,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    *,
    step: int,
    steps_per_epoch: int,
    num_train_samples: int,
    variant: str,
    config: dict[str, Any],
) -> dict[str, Any]:
    """The extra entries of a resumable checkpoint (every rank takes part: RNG states are gathered)."""
    return {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
        "epoch": step // steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "num_train_samples": num_train_samples,
        "world_size": context.world_size,
        "rng": all_gather(context, capture_rng()),
        "variant": variant,
        "config": config,
    }


def read_resumable(path: str | PathLike[str], variant: str, steps_per_epoch: int) -> dict[str, Any]:
    """Load a resumable checkpoint written for `variant` with `steps_per_epoch`; CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such checkpoint file", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt or foreign files raise many types
        raise CheckpointError(f"cannot read as a p3m training checkpoint: {error}", path) from error
    if not isinstance(payload, dict) or "optimizer" not in payload or "step" not in payload:
        raise CheckpointError(
            "is a weights-only checkpoint, not a resumable one (use run.init_weights to fine-tune from it)", path
        )
    if payload.get("variant") != variant:
        raise CheckpointError(f"was written for {payload.get('variant')}, but the config trains {variant}", path)
    if payload.get("steps_per_epoch") != steps_per_epoch:
        raise CheckpointError(
            f"was written with {payload.get('steps_per_epoch')} steps per epoch, this run has "
            f"{steps_per_epoch} (different data, batch size or process count)",
            path,
        )
    return payload


def restore_state(
    payload: dict[str, Any],
    context: DistContext,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    source: str | PathLike[str] | None = None,
) -> int:
    """Load weights, optimiser, scheduler, scaler and this rank's RNG state; returns the step."""
    from p3m.models.checkpoints import load_state_dict_into

    load_state_dict_into(model, payload["state_dict"], strict=True, source=source)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    states = payload["rng"]
    restore_rng(states[context.rank] if len(states) == context.world_size else states[0])
    return int(payload["step"])
