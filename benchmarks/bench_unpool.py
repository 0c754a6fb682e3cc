"""Time the deterministic last-wins unpool against torch's max_unpool2d, in the same run.

torch's kernel is the baseline (fast, but its result on colliding indices depends on the thread
count); ours must give the single-thread torch result at any thread count. Also times a whole
P3M-Net (ResNet-34) forward with each unpool, so the share of the model time is visible.

    python benchmarks/bench_unpool.py [--size 512] [--repeat 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import p3m.models.p3mnet as p3mnet
from p3m.models.ops import max_pool3x3s2_with_indices, max_unpool2d_last_wins
from p3m.models.p3mnet_r34 import P3MNetR34


def best_of(repeat: int, function) -> float:
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def torch_unpool(values, indices, output_size):
    return F.max_unpool2d(values, indices, kernel_size=2, stride=2, output_size=output_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    x = torch.randn(1, 64, args.size, args.size).relu()
    pooled, indices = max_pool3x3s2_with_indices(x)
    values = torch.randn_like(pooled)
    with torch.inference_mode():
        torch.set_num_threads(1)
        expected = torch_unpool(values, indices, x.shape[-2:])
        torch.set_num_threads(args.threads)
        assert torch.equal(max_unpool2d_last_wins(values, indices, x.shape[-2:]), expected)
        baseline = best_of(args.repeat, lambda: torch_unpool(values, indices, x.shape[-2:]))
        ours = best_of(args.repeat, lambda: max_unpool2d_last_wins(values, indices, x.shape[-2:]))
    print(
        f"unpool 64 x {args.size}^2: torch {baseline * 1e3:.1f} ms, last-wins {ours * 1e3:.1f} ms, "
        f"ratio {ours / baseline:.2f}"
    )

    model = P3MNetR34().eval()
    image = torch.randn(1, 3, args.size, args.size)
    with torch.inference_mode():
        ours = best_of(args.repeat, lambda: model(image))
        original = p3mnet.max_unpool2d_last_wins
        p3mnet.max_unpool2d_last_wins = torch_unpool
        try:
            baseline = best_of(args.repeat, lambda: model(image))
        finally:
            p3mnet.max_unpool2d_last_wins = original
    print(
        f"p3mnet-r34 forward {args.size}^2: torch unpool {baseline:.2f} s, last-wins {ours:.2f} s, "
        f"ratio {ours / baseline:.2f}"
    )


if __name__ == "__main__":
    main()
