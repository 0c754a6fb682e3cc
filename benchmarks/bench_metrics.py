"""Time p3m's metrics against a plain implementation of the definitions, in the same run.

Uses the 1080 x 1620 reference case (float32 inputs, the eval.py convention) and one thread,
checks that every metric gives the identical number, and prints seconds and speed-ups.

    python benchmarks/bench_metrics.py [--repeat 3] [--case PATH]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _plain_metrics import (  # noqa: E402
    plain_conn,
    plain_grad,
    plain_sad_fg_bg,
    plain_sad_mse_mad,
    plain_sad_mse_mad_trimap,
)

from p3m.evaluation import metrics  # noqa: E402

DEFAULT_CASE = (
    Path(__file__).resolve().parent.parent
    / "tests/data/reference/metrics/cases/fullres_015cd10e.npz"
)


def best_time(function: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Minimum wall time over `repeat` calls (after one warm-up call) and the last result."""
    result = function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def same(a: object, b: object) -> bool:
    first, second = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return bool(np.array_equal(first, second, equal_nan=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE)
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed calls per function (min is kept)"
    )
    args = parser.parse_args()

    case = np.load(args.case)
    pred = case["pred_u8"].astype(np.float32) / 255.0
    gt = case["gt"].astype(np.float32) / 255.0
    trimap = case["trimap_k15"].astype(np.float32)
    height, width = gt.shape
    print(
        f"case {args.case.name}: {height} x {width}, float32 inputs, 1 thread, "
        f"best of {args.repeat} (after a warm-up)"
    )

    pairs = [
        ("SAD/MSE/MAD", lambda: plain_sad_mse_mad(pred, gt), lambda: metrics.sad_mse_mad(pred, gt)),
        (
            "SAD-T/MSE-T/MAD-T",
            lambda: plain_sad_mse_mad_trimap(pred, gt, trimap),
            lambda: metrics.sad_mse_mad_trimap(pred, gt, trimap),
        ),
        (
            "SAD-FG/SAD-BG",
            lambda: plain_sad_fg_bg(pred, gt, trimap),
            lambda: metrics.sad_fg_bg(pred, gt, trimap),
        ),
        ("Grad", lambda: plain_grad(pred, gt), lambda: metrics.grad_error(pred, gt)),
        ("Conn", lambda: plain_conn(pred, gt), lambda: metrics.conn_error(pred, gt)),
    ]
    print(f"{'metric':<20}{'plain s':>10}{'p3m s':>10}{'speed-up':>10}  identical  value")
    all_identical = True
    totals = [0.0, 0.0]
    conn_ratio = 0.0
    for name, plain, ours in pairs:
        plain_seconds, plain_value = best_time(plain, args.repeat)
        our_seconds, our_value = best_time(ours, args.repeat)
        identical = same(plain_value, our_value)
        all_identical &= identical
        totals[0] += plain_seconds
        totals[1] += our_seconds
        ratio = plain_seconds / our_seconds
        if name == "Conn":
            conn_ratio = ratio
        shown = ", ".join(f"{v:.9g}" for v in np.atleast_1d(np.asarray(our_value, float)))
        print(
            f"{name:<20}{plain_seconds:>10.4f}{our_seconds:>10.4f}{ratio:>9.1f}x  "
            f"{'yes' if identical else 'NO':<9}  {shown}"
        )
    print(
        f"{'all ten metrics':<20}{totals[0]:>10.4f}{totals[1]:>10.4f}{totals[0] / totals[1]:>9.1f}x"
    )
    print(
        f"Conn speed-up {conn_ratio:.1f}x (goal >= 10x); results identical: "
        f"{'yes' if all_identical else 'NO'}"
    )
    return 0 if all_identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
