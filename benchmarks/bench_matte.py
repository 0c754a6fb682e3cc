"""Speed and peak memory of `p3m.matte` against the plain official procedure, on CPU.

For the default pipeline (selfie-cf) and each registered P3M-Net variant (random weights: the
timing does not depend on them), it measures in one run:

* seconds per image at 1080 x 1620 (`--quick`: 540 x 810),
* peak resident memory for a 24-megapixel photo (`--quick`: 6 MP),

once through `p3m.matte` (pixel budget, guided upsampling, no foreground estimation) and once
through the plain procedure: for P3M-Net the official HYBRID written out with no budget
(scikit-image resizes of the whole photo, passes at up to 1600 x 1600), for selfie-cf the same
segmentation + trimap with closed-form matting at full resolution (no bound, no upsampling).
Every case runs in its own subprocess, so the peak RSS (getrusage) is that case's alone; timing
cases warm up on the image itself first. At 1080 x 1620 (within the default budget) p3m runs the
official procedure unchanged, so a P3M-Net time ratio near 1 is expected there; the budget pays
off at 24 MP (memory column) and selfie-cf's bounded matting resolution in the time column.
On a shared machine, time ratios between separate runs are noisy (+-30 % seen here).

    python benchmarks/bench_matte.py --quick
    python benchmarks/bench_matte.py --models selfie-cf,p3mnet-r34
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

# A plain baseline that would need more than this many pixels of closed-form matting is not run.
PLAIN_CF_MAX_PIXELS = 2_000_000
TIMING_WARMUP_MAX_PIXELS = 2_000_000


def _photo(height: int, width: int):
    """The astronaut portrait stretched to height x width (real content for the segmenter)."""
    from skimage import data

    from p3m.inference.upsample import shrink_image

    return shrink_image(data.astronaut(), (height, width))


def _plain_hybrid(model, image):
    """SPEC-r34 section 11 HYBRID, written out without any p3m machinery."""
    import numpy as np
    import torch
    from skimage.transform import resize

    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    def size(n, ratio):
        t = int(n * ratio)
        return min(1600, t - t % 32)

    def once(scaled):
        x = torch.from_numpy(scaled.astype(np.float32)).permute(2, 0, 1) / 255.0
        with torch.no_grad():
            out = model(((x - mean) / std)[None])
        trimap = np.choose(np.argmax(out[0][0].numpy(), axis=0), [0, 128, 255]).astype(np.uint8)
        return trimap, out[1][0, 0].numpy()

    h, w = image.shape[:2]
    trimap, _ = once(resize(image, (size(h, 0.5), size(w, 0.5))) * 255.0)
    global_result = resize(trimap, (h, w)) * 255.0
    _, local = once(resize(image, (size(h, 1.0), size(w, 1.0))) * 255.0)
    local_result = resize(local, (h, w))
    weight = np.ones_like(global_result)
    weight[global_result == 255] = 0
    weight[global_result == 0] = 0
    return global_result * (1 - weight) / 255.0 + local_result * weight


def _plain_selfie_cf(image):
    """selfie-cf without p3m's bounds: closed-form matting on the full-resolution image."""
    from p3m.inference import selfie_cf

    config = selfie_cf.SelfieCFConfig()
    mask = selfie_cf.person_mask(image, config)
    band = max(2, round(config.band_fraction * max(image.shape[:2])))
    trimap = selfie_cf.trimap_from_mask(mask, band, config.threshold)
    return selfie_cf._closed_form(image, trimap)


def run_case(model_name: str, mode: str, height: int, width: int, repeats: int) -> dict:
    """Child process body: build, warm up, run; report seconds per image and peak RSS."""
    import torch

    torch.manual_seed(0)
    threads = int(os.environ.get("BENCH_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    image = _photo(height, width)
    warm = _photo(256, 256)
    if model_name == "selfie-cf":
        if mode == "p3m":
            from p3m.inference.api import Matter

            matter = Matter("selfie-cf")
            run = lambda picture: matter(picture, foreground=False)  # noqa: E731
        else:
            if height * width > PLAIN_CF_MAX_PIXELS:
                return {"skipped": f"closed-form at {height * width / 1e6:.0f} MP is out of reach"}
            run = _plain_selfie_cf
    else:
        from p3m.models import create_model

        model = create_model(model_name, device="cpu")
        if mode == "p3m":
            from p3m.inference.api import Matter

            matter = Matter(model)
            run = lambda picture: matter(picture, foreground=False)  # noqa: E731
        else:
            run = lambda picture: _plain_hybrid(model, picture)  # noqa: E731
    # Timing runs warm up on the image itself (per-shape one-off costs of the CPU kernels would
    # otherwise land on whichever pipeline runs first); memory runs warm up on a small image.
    run(image if repeats > 0 and height * width <= TIMING_WARMUP_MAX_PIXELS else warm)
    start = time.perf_counter()
    for _ in range(repeats):
        run(image)
    seconds = (time.perf_counter() - start) / repeats
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": peak_mib}


def _spawn(model_name: str, mode: str, height: int, width: int, repeats: int, timeout: float) -> dict:
    command = [sys.executable, __file__, "--case", model_name, mode, str(height), str(width), str(repeats)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"over {timeout:.0f} s"}
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["?"])[-1]
        return {"skipped": f"failed: {last[:80]}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _cell(result: dict, key: str, unit: str) -> str:
    if "skipped" in result:
        return "n/a"
    value = result[key]
    return f"{value:.2f} {unit}" if unit == "s" else f"{value:.0f} {unit}"


def _ratio(plain: dict, ours: dict, key: str) -> str:
    if "skipped" in plain or "skipped" in ours:
        return "n/a"
    return f"{plain[key] / ours[key]:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="540 x 810 timing and a 6 MP memory case")
    parser.add_argument("--models", default="", help="comma list (default: selfie-cf and every P3M-Net)")
    parser.add_argument("--modes", default="p3m,plain", help="which of p3m, plain to run")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=("time", "memory"), help="run one of the two measurements")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    parser.add_argument("--case", nargs=5, metavar=("MODEL", "MODE", "H", "W", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, mode, height, width, repeats = args.case
        print(json.dumps(run_case(name, mode, int(height), int(width), int(repeats))))
        return

    from p3m.models import list_models

    names = [n for n in args.models.split(",") if n] or ["selfie-cf", *list_models()]
    time_size = (540, 810) if args.quick else (1080, 1620)
    memory_size = (2000, 3000) if args.quick else (4000, 6000)
    print(f"CPU, {os.cpu_count()} cores; timing at {time_size[1]}x{time_size[0]}, "
          f"memory at {memory_size[1]}x{memory_size[0]} ({memory_size[0] * memory_size[1] / 1e6:.0f} MP)")
    print("p3m = p3m.matte (budget, guided upsampling, no foreground); plain = official procedure, no budget")
    header = f"{'model':<16}{'p3m s/img':>12}{'plain s/img':>13}{'speed-up':>10}" \
             f"{'p3m peak':>12}{'plain peak':>12}{'memory':>9}"
    print(header)
    for name in names:
        modes = [mode for mode in ("p3m", "plain") if mode in args.modes.split(",")]
        skipped = {"skipped": "not requested (--modes / --only)"}
        do_time, do_memory = args.only != "memory", args.only != "time"
        timed = {mode: _spawn(name, mode, *time_size, args.repeats, args.timeout)
                 if mode in modes and do_time else skipped for mode in ("p3m", "plain")}
        peak = {mode: _spawn(name, mode, *memory_size, 1, args.timeout)
                if mode in modes and do_memory else skipped for mode in ("p3m", "plain")}
        print(
            f"{name:<16}{_cell(timed['p3m'], 'seconds', 's'):>12}{_cell(timed['plain'], 'seconds', 's'):>13}"
            f"{_ratio(timed['plain'], timed['p3m'], 'seconds'):>10}"
            f"{_cell(peak['p3m'], 'peak_mib', 'MiB'):>12}{_cell(peak['plain'], 'peak_mib', 'MiB'):>12}"
            f"{_ratio(peak['plain'], peak['p3m'], 'peak_mib'):>9}",
            flush=True,
        )
        for kind, results in (("time", timed), ("memory", peak)):
            for mode, result in results.items():
                if "skipped" in result and not result["skipped"].startswith("not requested"):
                    print(f"    {mode} {kind}: {result['skipped']}")


if __name__ == "__main__":
    main()
