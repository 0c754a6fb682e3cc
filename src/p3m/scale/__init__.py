"""Scale-out: run any `p3m.runs` task on Ray Data, on this machine or on a cluster.

    >>> from p3m.runs import run_items
    >>> from p3m.scale import RayExecutor
    >>> report = run_items(items, task_factory, "out/manifest.jsonl",
    ...                    executor=RayExecutor(workers=8, batch_size=4))

The engine's behaviour does not change with the executor: the driver (this process) plans the
items, keeps those already done, journals every record as it arrives and emits the same
events; Ray runs `p3m.runs.execute_item` in actors that build the task once each (a picklable
task factory: models are loaded where they run). Ray is an extra (`pip install "p3m[scale]"`);
importing this package does not import Ray. Modules: `ray_engine` (the executor and the Ray
session it starts or joins).
"""

from __future__ import annotations

from p3m.scale.ray_engine import (
    RAY_INSTALL_HINT,
    RayExecutor,
    ray_session,
    require_ray,
    start_local_ray,
)

__all__ = ["RAY_INSTALL_HINT", "RayExecutor", "ray_session", "require_ray", "start_local_ray"]
