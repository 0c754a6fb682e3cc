"""Time the trimap-based baselines on a synthetic portrait: plain pymatting vs p3m, in one run.

For each method: pymatting called directly at full resolution (the plain baseline), p3m's
`estimate_alpha_baseline` at full resolution (same solver plus exact known regions), and p3m
with a pixel budget (solve smaller, upsample, re-impose the known regions). Prints seconds,
the speed-up of the budget path and the whole-image SAD of each against the ground truth.

    python benchmarks/bench_baselines.py [--size 512] [--budget 65536] [--methods cf,knn,...]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from p3m.data.synthetic import make_portrait
from p3m.data.trimap import trimap_from_alpha
from p3m.evaluation.baselines import BASELINES, estimate_alpha_baseline
from p3m.evaluation.metrics import sad_mse_mad


def timed(function: Callable[..., np.ndarray], *args: object, **kwargs: object) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    alpha = function(*args, **kwargs)
    return time.perf_counter() - started, np.asarray(alpha)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square image side (pixels)")
    parser.add_argument("--budget", type=int, default=256 * 256, help="max_pixels of the budget path")
    parser.add_argument("--kernel", type=int, default=15, help="trimap kernel (gen_trimap_with_dilate)")
    parser.add_argument("--methods", default=",".join(BASELINES))
    args = parser.parse_args()

    import pymatting

    sample = make_portrait(np.random.default_rng(1), args.size, args.size)
    trimap = trimap_from_alpha(sample.alpha, args.kernel)
    gt = sample.alpha.astype(np.float32) / 255
    image64 = sample.image.astype(np.float64) / 255
    trimap64 = np.where(trimap == 255, 1.0, np.where(trimap == 0, 0.0, 0.5))
    print(
        f"{args.size}x{args.size} synthetic portrait, {np.mean(trimap == 128):.1%} unknown; "
        f"budget {args.budget:,} pixels; pymatting {pymatting.__version__}"
    )
    print(f"{'method':7} {'pymatting s':>11} {'p3m full s':>10} {'p3m budget s':>12} {'speed-up':>8}"
          f"   SAD pymatting / full / budget")
    for name in args.methods.split(","):
        baseline = BASELINES[name]
        warm = slice(0, 64)
        estimate_alpha_baseline(sample.image[warm, warm].copy(), trimap[warm, warm].copy(), name)
        solver = getattr(pymatting, baseline.solver)
        kwargs = {key: dict(value) for key, value in baseline.solver_kwargs.items()}
        plain_s, plain = timed(solver, image64, trimap64, **kwargs)
        full_s, full = timed(lambda *a: estimate_alpha_baseline(*a).alpha, sample.image, trimap, name, None)
        small_s, small = timed(
            lambda *a: estimate_alpha_baseline(*a).alpha, sample.image, trimap, name, args.budget
        )
        sads = [sad_mse_mad(np.clip(a, 0, 1).astype(np.float32), gt)[0] for a in (plain, full, small)]
        print(
            f"{name:7} {plain_s:11.2f} {full_s:10.2f} {small_s:12.2f} {plain_s / small_s:7.1f}x"
            f"   {sads[0]:.3f} / {sads[1]:.3f} / {sads[2]:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
