"""Time one P3M-Net forward pass in PyTorch and in onnxruntime (p3m's ONNX export), same run.

Exports each model (random weights; speed does not depend on them) with dynamic axes, prints
seconds per forward, the torch / onnxruntime ratio (> 1: onnxruntime is faster) and the largest
difference of logits / local alpha relative to their magnitude. Same thread count for both.

    python benchmarks/bench_onnx.py [--models p3mnet-r34,p3mnet-vitae-s] [--size 512x512]
                                    [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def best_time(function: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Minimum wall time over `repeat` calls (after one warm-up call) and the last result."""
    result = function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="p3mnet-r34,p3mnet-swin-t,p3mnet-vitae-s")
    parser.add_argument("--size", default="512x512", help="HxW of the timed input")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import onnxruntime

    from p3m.inference.onnx_runtime import OnnxP3MNet
    from p3m.models import create_model
    from p3m.models.export import export_onnx

    height, width = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{args.threads} thread(s), input {height}x{width}, best of {args.repeat}")
    print(f"{'model':16} {'torch s':>9} {'onnxrt s':>9} {'ratio':>7} {'rel. diff':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            model = create_model(name, device="cpu")
            path = Path(folder) / f"{name}.onnx"
            # Traced at a small size: the graph is dynamic, and tracing is faster there.
            export_onnx(model, path, height=64, width=64, verify=False)
            network = OnnxP3MNet(path, threads=args.threads)

            def run_torch(model: torch.nn.Module = model) -> object:
                with torch.inference_mode():
                    return model(x)

            torch_seconds, expected = best_time(run_torch, args.repeat)
            onnx_seconds, got = best_time(lambda network=network: network(x), args.repeat)
            # Logits and local alpha (fusion may flip at argmax near-ties), relative to the
            # largest value of each output (random-weight logits can be large).
            diff = max(
                float(np.abs(getattr(got, field).numpy() - getattr(expected, field).numpy()).max())
                / max(1.0, float(getattr(expected, field).abs().max()))
                for field in ("global_logits", "local")
            )
            print(f"{name:16} {torch_seconds:9.3f} {onnx_seconds:9.3f} "
                  f"{torch_seconds / onnx_seconds:7.2f} {diff:10.2e}")
            del model, network


if __name__ == "__main__":
    main()
