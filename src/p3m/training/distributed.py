"""One training process among many: device choice, the process group (torchrun, DDP), collectives.

A run started by `torchrun` (or `p3m train --nproc N`) has WORLD_SIZE, RANK and LOCAL_RANK in its
environment; each process joins the group (NCCL on CUDA, gloo on CPU) and trains on its share
of every batch. Without them the run is one process and every collective here is a no-op.

    >>> context = setup_distributed("auto")          # DistContext(rank=0, world_size=1, ...)
    >>> stop = any_rank(context, stop_requested)     # the same answer on every rank
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from p3m.models.device import resolve_device as check_device

__all__ = [
    "DistContext",
    "all_gather",
    "any_rank",
    "bare",
    "barrier",
    "resolve_device",
    "setup_distributed",
    "teardown_distributed",
]


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: its rank, the number of processes, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files, validates and reports progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' (this rank's CUDA device if there is one, else CPU), 'cpu', 'cuda', 'cuda:1', ...

    Checked by `p3m.models.device.resolve_device` (`DeviceError`, a ConfigError, for a device
    that does not exist or that this machine lacks); a bare "cuda" is this rank's GPU.
    """
    device = check_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup_distributed(device_name: str) -> DistContext:
    """Join the process group when the environment says this is one rank of many."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1:
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            # Rank 0 validates while the others wait at a barrier: allow long validations.
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=3))
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device)
    return DistContext(0, 1, 0, device)


def teardown_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def bare(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()


def any_rank(context: DistContext, flag: bool) -> bool:
    """True on every rank when `flag` is True on any of them (so all stop at the same step)."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_gather(context: DistContext, value: Any) -> list[Any]:
    """`value` of every rank, in rank order (a one-item list in a single process)."""
    if not context.enabled:
        return [value]
    values: list[Any] = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values
