"""A folder run against the model alone: is `p3m matte DIR` slower per image than its matting?

Issue 15, point 4: a folder run overlaps reading, matting and writing (the run engine's I/O
threads), so its seconds per image should be those of the matting itself. In one run, on the
same images (real content: scikit-image's astronaut and coffee, flipped and shifted, written
as JPEG and PNG into a temporary folder), this times:

* `matter`  - `Matter(image)` on images already in memory, alpha + foreground (what `--save
              alpha,rgba` computes), nothing read or written: the floor;
* `folder`  - `p3m.inference.batch.run_matte` over the folder as `p3m matte DIR -o OUT` runs it
              (default RunOptions: 2 I/O threads reading ahead and writing behind);
* `inline`  - the same folder run with `io_threads=0` (read, matte, write one after another),
              which shows what the overlap saves.

Each mode runs once per round, rounds interleaved; the table gives the median seconds per image
and the ratio to `matter` (1.00: the folder run costs no more than the matting).

    python benchmarks/bench_batch.py                       # selfie-cf, 12 images, 3 rounds
    python benchmarks/bench_batch.py --model p3mnet-r34 --images 6 --size 512x768
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _images(count: int, height: int, width: int) -> list[np.ndarray]:
    from skimage import data

    from p3m.inference.upsample import shrink_image

    sources = [data.astronaut(), data.coffee()]
    pictures = []
    for index in range(count):
        picture = shrink_image(sources[index % 2], (height, width))
        if index % 4 >= 2:
            picture = picture[:, ::-1]
        pictures.append(np.ascontiguousarray(np.roll(picture, 7 * index, axis=1)))
    return pictures


def _matter(model: str):
    from p3m.inference.api import Matter

    if model == "selfie-cf":
        return Matter("selfie-cf")
    import torch

    from p3m.models import create_model, optimize_for_inference
    from p3m.models.fast_ops import retain_freed_memory

    torch.manual_seed(0)
    retain_freed_memory()  # as Matter does when it loads a P3M-Net by name
    return Matter(optimize_for_inference(create_model(model, device="cpu"), inplace=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="selfie-cf", help="selfie-cf or a registered P3M-Net (random weights)")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", default="1080x720", help="HxW of the images")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from p3m.inference.batch import plan_matte, run_matte
    from p3m.io import write_image
    from p3m.runs import RunOptions

    height, width = (int(part) for part in args.size.lower().split("x"))
    pictures = _images(args.images, height, width)
    matter = _matter(args.model)
    matter(pictures[0], foreground=True)  # warm-up: model load, numba compilation

    with tempfile.TemporaryDirectory(prefix="p3m-bench-batch-") as folder:
        source = Path(folder) / "in"
        source.mkdir()
        for index, picture in enumerate(pictures):
            write_image(source / f"img{index:03d}.{'jpg' if index % 2 else 'png'}", picture)

        def in_memory() -> None:
            for picture in pictures:
                matter(picture, foreground=True)

        def folder_run(io_threads: int, tag: str):
            def run() -> None:
                out = Path(folder) / f"out-{tag}"
                plan = plan_matte([str(source)], out, ("alpha", "rgba"), overwrite=True)
                report = run_matte(plan, matter, options=RunOptions(io_threads=io_threads, overwrite=True))
                failed = report.failed
                if failed:
                    raise SystemExit(f"folder run failed: {failed[0]}")

            return run

        modes = {"matter": in_memory, "folder": folder_run(2, "folder"), "inline": folder_run(0, "inline")}
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.rounds):
            for mode, run in modes.items():
                start = time.perf_counter()
                run()
                times[mode].append((time.perf_counter() - start) / len(pictures))

    import torch

    print(
        f"{args.model}, {len(pictures)} images of {height} x {width}, alpha + rgba, "
        f"{torch.get_num_threads()} torch threads, median of {args.rounds} interleaved rounds"
    )
    base = statistics.median(times["matter"])
    print(f"{'mode':<8} {'s / image':>10} {'ratio to matter':>16}")
    for mode, values in times.items():
        seconds = statistics.median(values)
        print(f"{mode:<8} {seconds:>10.3f} {seconds / base:>16.2f}")


if __name__ == "__main__":
    main()
