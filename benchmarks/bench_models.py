"""Seconds per P3M-Net forward on CPU: the official arithmetic against p3m's fast paths, one run.

For each variant (random weights: speed does not depend on them) at 512 x 512 and 2 threads:

* plain    - the exact model with PyTorch's own `max_unpool2d`, i.e. what the official code runs
             (p3m's deterministic last-wins unpool is left out so it does not inflate the ratios);
* fast     - `p3m.models.optimize_for_inference(model)`, all six outputs;
* fast-direct - the same with `winograd=False` (every convolution direct), to show what
             Winograd (`p3m.models.winograd`) gives; not in the default set;
* ort      - onnxruntime on `export_onnx(model)` (the fast graph, dynamic axes, as users get it);
* ort-int8 - onnxruntime on the int8 export (`p3m export-onnx --int8`; ResNet-34 by default).

Paths are timed in interleaved rounds (plain, fast, ort, ... then again) so that load from
other processes hits them alike; the table gives medians, the ratio plain / path (> 1: faster
than the official code), the largest difference from plain of the logits and of the local
alpha, and each path's rate in GFLOP/s: the model's FLOPs (PyTorch's FLOP counter on the exact
model) per second, against the machine's float32 peak measured here as the median rate of a
2048 x 2048 matrix product. On a shared machine the absolute figures swing; the ratios hold up
better, and more rounds make them firmer.

    python benchmarks/bench_models.py                                  # everything, 7 rounds
    python benchmarks/bench_models.py --rounds 3 --variants p3mnet-r34 --paths plain,fast
    python benchmarks/bench_models.py --int8 all --size 384x384
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

PATHS = ("plain", "fast", "fast-direct", "ort", "ort-int8")
DEFAULT_PATHS = ("plain", "fast", "ort", "ort-int8")
GOALS = {
    "p3mnet-r34": {"fast": 1.5, "ort": 1.6, "ort-int8": 2.5},
    "p3mnet-swin-t": {"fast": 1.3, "ort": 1.5},
    "p3mnet-vitae-s": {"fast": 1.3, "ort": 1.5},
}


def matmul_peak(rounds: int = 7) -> float:
    """Median GFLOP/s of a 2048 x 2048 float32 matrix product (the machine's practical peak)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(2048, 2048, generator=generator)
    b = torch.randn(2048, 2048, generator=generator)
    a @ b
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        a @ b
        rates.append(2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def model_input(kind: str, height: int, width: int) -> torch.Tensor:
    """1 x 3 x H x W input: a real portrait normalised as `p3m.matte` does, or N(0, 1) noise.

    The index max-pools cost depends on the data (branch prediction in PyTorch's and
    onnxruntime's scalar loops): noise is their worst case, a photo what users send.
    """
    if kind == "noise":
        return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    from skimage import data

    from p3m.inference.preprocess import image_to_tensor, resize_like_official

    image = resize_like_official(data.astronaut().astype("float32"), (height, width))
    return image_to_tensor(image)


def model_gflop(model: torch.nn.Module, x: torch.Tensor) -> float:
    """GFLOP of one forward of the exact model, by PyTorch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops() / 1e9


def plain_forward(model: torch.nn.Module) -> Callable[[torch.Tensor], object]:
    """The exact model with PyTorch's max_unpool2d (what the official code calls)."""
    import p3m.models.p3mnet as p3mnet

    def torch_unpool(values, indices, output_size):
        return F.max_unpool2d(values, indices, kernel_size=2, stride=2, output_size=output_size)

    def run(x: torch.Tensor) -> object:
        original = p3mnet.max_unpool2d_last_wins
        p3mnet.max_unpool2d_last_wins = torch_unpool
        try:
            with torch.inference_mode():
                return model(x)
        finally:
            p3mnet.max_unpool2d_last_wins = original

    return run


def build_paths(
    name: str, paths: list[str], folder: Path, threads: int, int8: bool
) -> tuple[torch.nn.Module, dict[str, Callable[[torch.Tensor], object]], dict[str, str]]:
    from p3m.models import create_model, optimize_for_inference

    model = create_model(name, device="cpu")
    runs: dict[str, Callable[[torch.Tensor], object]] = {}
    notes: dict[str, str] = {}
    if "plain" in paths:
        runs["plain"] = plain_forward(model)
    if "fast" in paths:
        fast = optimize_for_inference(model)
        runs["fast"] = fast
    if "fast-direct" in paths:
        runs["fast-direct"] = optimize_for_inference(model, winograd=False)
    if "ort" in paths or ("ort-int8" in paths and int8):
        from p3m.inference.onnx_runtime import OnnxP3MNet
        from p3m.models.export import export_onnx

        path = folder / f"{name}.onnx"
        started = time.perf_counter()
        export_onnx(model, path, height=64, width=64, verify=False)
        notes["ort"] = f"export {time.perf_counter() - started:.0f} s"
        if "ort" in paths:
            runs["ort"] = OnnxP3MNet(path, threads=threads)
        if "ort-int8" in paths and int8:
            from p3m.models.quantize import quantize_onnx

            int8_path = folder / f"{name}.int8.onnx"
            started = time.perf_counter()
            report = quantize_onnx(path, int8_path)
            notes["ort-int8"] = (
                f"{report.method} int8, quantised in {time.perf_counter() - started:.0f} s; "
                f"alpha vs float32 on {report.images} portraits: mean {report.mean_abs_diff:.4f}, "
                f"worst pixel {report.max_abs_diff:.3f}"
            )
            runs["ort-int8"] = OnnxP3MNet(int8_path, threads=threads)
    return model, runs, notes


def largest_differences(result: object, baseline: object) -> str:
    """max |path - plain| of the logits (global and sides) and of local, as 'logits / local'."""
    logits = max(
        float((getattr(result, field) - getattr(baseline, field)).abs().max())
        for field in ("global_logits", "side2", "side1", "side0")
    )
    local = float((result.local - baseline.local).abs().max())
    return f"{logits:.1e} / {local:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="p3mnet-r34,p3mnet-swin-t,p3mnet-vitae-s")
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS), help=f"comma list of {', '.join(PATHS)}")
    parser.add_argument("--size", default="512x512", help="H x W of the input")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds (median)")
    parser.add_argument(
        "--input",
        choices=("photo", "noise"),
        default="photo",
        help="photo: scikit-image's astronaut resized and normalised as p3m.matte does; noise: N(0, 1)",
    )
    parser.add_argument(
        "--int8", default="p3mnet-r34", help="variants that get an int8 path ('all', 'none' or a list)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown paths {', '.join(unknown)}; choose among {', '.join(PATHS)}")
    height, width = (int(v) for v in args.size.lower().split("x"))
    variants = [v for v in args.variants.split(",") if v]
    int8_for = set(variants) if args.int8 == "all" else set() if args.int8 == "none" else set(args.int8.split(","))
    x = model_input(args.input, height, width)

    peak = matmul_peak()
    import onnxruntime

    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} threads, "
        f"input {height}x{width}, {args.rounds} interleaved rounds (median); "
        f"2048x2048 float32 matmul peak {peak:.0f} GFLOP/s"
    )
    header = f"{'model':16}{'path':12}{'s/forward':>11}{'ratio':>8}{'goal':>7}{'GFLOP/s':>9}{'% peak':>8}  max|diff| logits / local"
    print(header)
    with tempfile.TemporaryDirectory() as folder:
        for name in variants:
            model, runs, notes = build_paths(name, paths, Path(folder), args.threads, name in int8_for)
            gflop = model_gflop(model, x)
            results = {label: run(x) for label, run in runs.items()}  # warm-up, and the outputs
            times: dict[str, list[float]] = {label: [] for label in runs}
            for _ in range(args.rounds):
                for label, run in runs.items():
                    start = time.perf_counter()
                    run(x)
                    times[label].append(time.perf_counter() - start)
            medians = {label: statistics.median(values) for label, values in times.items()}
            base = medians.get("plain")
            for label in runs:
                seconds = medians[label]
                ratio = f"{base / seconds:.2f}x" if base else "n/a"
                goal = GOALS.get(name, {}).get(label)
                goal_text = f">={goal:.1f}" if goal else ""
                rate = gflop / seconds
                diff = (
                    largest_differences(results[label], results["plain"])
                    if "plain" in results and label != "plain"
                    else ""
                )
                print(
                    f"{name:16}{label:12}{seconds:11.3f}{ratio:>8}{goal_text:>7}{rate:9.0f}"
                    f"{100 * rate / peak:7.0f}%  {diff}",
                    flush=True,
                )
            print(f"{'':16}{gflop:.0f} GFLOP per forward" + "".join(f"; {k}: {v}" for k, v in notes.items()))
            del model, runs, results


if __name__ == "__main__":
    main()
