"""Winograd against direct (oneDNN) 3 x 3 convolutions, per layer shape, on this CPU.

For each C -> K convolution at H x W (stride 1, padding 1, bias, ReLU, channels-last input, as
in the fast path), times oneDNN's fused convolution, Winograd F(2x2, 3x3) and F(4x4, 3x3)
(`p3m.models.winograd`) in interleaved rounds, and prints the medians, the ratios direct /
Winograd (> 1: Winograd faster) and the largest error relative to the output's range, against
a float64 convolution. The default shapes are those of the ResNet-34 P3M-Net at 512 x 512
(encoder and decoders); `--scale 2` doubles H and W (a 1024 x 1024 input).

    python benchmarks/bench_winograd.py
    python benchmarks/bench_winograd.py --shapes 256,256,32 512,512,16 --rounds 9 --threads 1
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
import torch.nn.functional as F

# (C, K, H) of the 3 x 3 stride-1 convolutions of P3M-Net ResNet-34 at 512 x 512, with counts.
R34_SHAPES = (
    (64, 64, 256, 7), (96, 64, 256, 1), (64, 64, 128, 14), (96, 64, 128, 1),
    (128, 128, 64, 13), (192, 128, 64, 1), (64, 128, 64, 2), (128, 64, 64, 2),
    (256, 256, 32, 15), (384, 256, 32, 1), (128, 256, 32, 2), (256, 128, 32, 1),
    (512, 512, 16, 9), (256, 512, 16, 2), (512, 256, 16, 1),
)


def direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, [1, 1], [1, 1], [1, 1], 1, "relu", [], ""
    )


def main() -> None:
    from p3m.models.winograd import WinogradConv3x3

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="*", help="C,K,H triples (default: ResNet-34 P3M-Net)")
    parser.add_argument("--scale", type=int, default=1, help="multiply H and W of the default shapes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.shapes:
        shapes = [(*(int(v) for v in s.split(",")), 1) for s in args.shapes]
    else:
        shapes = [(c, k, h * args.scale, n) for c, k, h, n in R34_SHAPES]
    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} interleaved rounds (median)")
    print(f"{'C':>5}{'K':>5}{'HxW':>9}{'n':>4}{'direct ms':>11}{'GFLOP/s':>9}{'F2 x':>7}{'F4 x':>7}"
          f"{'err direct':>12}{'err F2':>9}{'err F4':>9}")
    total = {"direct": 0.0, "best": 0.0}
    with torch.inference_mode():
        for channels, out_channels, size, count in shapes:
            x = torch.randn(1, channels, size, size, generator=generator)
            x = x.contiguous(memory_format=torch.channels_last)
            weight = torch.randn(out_channels, channels, 3, 3, generator=generator) / (3 * channels**0.5)
            weight = weight.contiguous(memory_format=torch.channels_last)
            bias = 0.1 * torch.randn(out_channels, generator=generator)
            exact = F.relu(F.conv2d(x.double(), weight.double(), bias.double(), padding=1))
            scale = float(exact.abs().max())
            f2, f4 = WinogradConv3x3(weight, bias, 2), WinogradConv3x3(weight, bias, 4)
            runs = {
                "direct": functools.partial(direct, x, weight, bias),
                "F2": functools.partial(f2, x, "relu"),
                "F4": functools.partial(f4, x, "relu"),
            }
            errors = {name: float((run().double() - exact).abs().max()) / scale for name, run in runs.items()}
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.rounds):
                for name, run in runs.items():
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
            med = {name: statistics.median(values) for name, values in times.items()}
            gflop = 2 * channels * out_channels * 9 * size * size / 1e9
            total["direct"] += count * med["direct"]
            total["best"] += count * min(med.values())
            print(
                f"{channels:5d}{out_channels:5d}{f'{size}x{size}':>9}{count:4d}{1e3 * med['direct']:11.2f}"
                f"{gflop / med['direct']:9.0f}{med['direct'] / med['F2']:6.2f}x{med['direct'] / med['F4']:6.2f}x"
                f"{errors['direct']:12.1e}{errors['F2']:9.1e}{errors['F4']:9.1e}",
                flush=True,
            )
    if not args.shapes:
        print(f"sum over the model's layers: direct {total['direct']:.3f} s, best per layer {total['best']:.3f} s")


if __name__ == "__main__":
    main()
