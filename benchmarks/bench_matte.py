"""Speed and peak memory of `p3m.matte` against the plain official procedure, on CPU.

For the default pipeline (selfie-cf) and each registered P3M-Net variant (random weights), it
measures in one run:

* seconds per image at 1080 x 1620 (`--quick`: 540 x 810), every mode timed in interleaved
  rounds inside one process (median), with how far the p3m alpha is from the plain one;
* peak resident memory for a 24-megapixel photo (`--quick`: 6 MP), one subprocess per case.

Modes: `p3m` is `p3m.matte` as a user gets it (the fast inference path, the HYBRID local pass
decoded at full resolution only where the combine reads it, pixel budget, guided upsampling,
no foreground estimation); `p3m-full` the same with the local pass decoded over the whole
image; `plain` the official HYBRID written out with no p3m machinery (PyTorch's
`max_unpool2d` as in the official code, scikit-image resizes, passes up to 1600 x 1600, no
budget); for selfie-cf, plain is the same segmentation + trimap with closed-form matting at
full resolution.

The band-only local pass saves more the narrower the transition band; with random weights the
band is not a portrait's, so its share is printed (`band`) and `p3m-full` gives the figure that
does not depend on it. On a shared machine absolute times swing; the interleaved ratios hold up
better.

    python benchmarks/bench_matte.py --quick
    python benchmarks/bench_matte.py --models p3mnet-r34 --only time --repeats 3
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


class _WholeLocalPass:
    """The fast model without the band-only local pass (HYBRID's full-size pass decodes the
    whole image), to show what the band restriction adds."""

    supports_output_selection = True
    supports_region = False

    def __init__(self, model) -> None:
        self.model = model
        self.variant, self.min_size = model.variant, model.min_size

    def __call__(self, x, outputs=None):
        return self.model(x, outputs=outputs)


def _use_torch_unpool() -> None:
    """The plain baseline unpools with PyTorch's max_unpool2d, as the official code does (p3m's
    exact model resolves index collisions deterministically, which costs time at 2 threads)."""
    import torch.nn.functional as F

    import p3m.models.p3mnet as p3mnet

    def torch_unpool(values, indices, output_size):
        return F.max_unpool2d(values, indices, kernel_size=2, stride=2, output_size=output_size)

    p3mnet.max_unpool2d_last_wins = torch_unpool


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
        if mode == "p3m-full":
            return {"skipped": "not a P3M-Net"}
        if mode == "p3m":
            from p3m.inference.api import Matter

            matter = Matter("selfie-cf")
            run = lambda picture: matter(picture, foreground=False)  # noqa: E731
        else:
            if height * width > PLAIN_CF_MAX_PIXELS:
                return {"skipped": f"closed-form at {height * width / 1e6:.0f} MP is out of reach"}
            run = _plain_selfie_cf
    else:
        from p3m.models import create_model, optimize_for_inference

        model = create_model(model_name, device="cpu")
        if mode in ("p3m", "p3m-full"):
            from p3m.inference.api import Matter

            # What Matter builds for a model name: the fast inference path.
            fast = optimize_for_inference(model, inplace=True)
            matter = Matter(fast if mode == "p3m" else _WholeLocalPass(fast))
            run = lambda picture: matter(picture, foreground=False)  # noqa: E731
        else:
            _use_torch_unpool()
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


def _runner(model_name: str, mode: str):
    """A function image -> alpha for one mode (p3m, p3m-full, plain)."""
    if model_name == "selfie-cf":
        if mode == "p3m":
            from p3m.inference.api import Matter

            matter = Matter("selfie-cf")
            return lambda picture: matter(picture, foreground=False).alpha
        return _plain_selfie_cf
    from p3m.models import create_model, optimize_for_inference

    torch_model = create_model(model_name, device="cpu")
    if mode == "plain":
        return lambda picture: _plain_hybrid(torch_model, picture)
    from p3m.inference.api import Matter

    fast = optimize_for_inference(torch_model, inplace=True)
    matter = Matter(fast if mode == "p3m" else _WholeLocalPass(fast))
    return lambda picture: matter(picture, foreground=False).alpha


def run_time_case(model_name: str, modes: list[str], height: int, width: int, rounds: int) -> dict:
    """Child process body: every mode timed in interleaved rounds (median), and how far the
    p3m alphas are from the plain one (mean |diff| overall and inside the transition band)."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    threads = int(os.environ.get("BENCH_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    _use_torch_unpool()
    image = _photo(height, width)
    runners = {}
    for mode in modes:
        torch.manual_seed(0)  # the same random weights for every mode
        runners[mode] = _runner(model_name, mode)
    alphas = {mode: np.asarray(run(image), dtype=np.float64) for mode, run in runners.items()}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode, run in runners.items():
            start = time.perf_counter()
            run(image)
            times[mode].append(time.perf_counter() - start)
    result: dict = {mode: {"seconds": sorted(values)[len(values) // 2]} for mode, values in times.items()}
    if "plain" in alphas and model_name != "selfie-cf":
        plain = alphas["plain"]
        band = (plain > 0) & (plain < 1)
        result["band"] = float(band.mean())
        for mode in modes:
            if mode != "plain":
                difference = np.abs(alphas[mode] - plain)
                result[mode]["mad"] = float(difference.mean())
                result[mode]["band_mad"] = float(difference[band].mean()) if band.any() else 0.0
    return result


def _spawn_time(model_name: str, modes: list[str], height: int, width: int, rounds: int, timeout: float) -> dict:
    command = [sys.executable, __file__, "--time-case", model_name, ",".join(modes), str(height), str(width), str(rounds)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {mode: {"skipped": f"over {timeout:.0f} s"} for mode in modes}
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["?"])[-1]
        return {mode: {"skipped": f"failed: {last[:80]}"} for mode in modes}
    return json.loads(completed.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--modes", default="p3m,p3m-full,plain", help="which of p3m, p3m-full, plain to run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds (median)")
    parser.add_argument("--only", choices=("time", "memory"), help="run one of the two measurements")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per case")
    parser.add_argument("--case", nargs=5, metavar=("MODEL", "MODE", "H", "W", "REPEATS"), help=argparse.SUPPRESS)
    parser.add_argument("--time-case", nargs=5, metavar=("MODEL", "MODES", "H", "W", "ROUNDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, mode, height, width, repeats = args.case
        print(json.dumps(run_case(name, mode, int(height), int(width), int(repeats))))
        return
    if args.time_case:
        name, modes, height, width, rounds = args.time_case
        print(json.dumps(run_time_case(name, modes.split(","), int(height), int(width), int(rounds))))
        return

    from p3m.models import list_models

    names = [n for n in args.models.split(",") if n] or ["selfie-cf", *list_models()]
    time_size = (540, 810) if args.quick else (1080, 1620)
    memory_size = (2000, 3000) if args.quick else (4000, 6000)
    requested = [mode for mode in ("p3m", "p3m-full", "plain") if mode in args.modes.split(",")]
    print(f"CPU, {os.cpu_count()} cores; timing at {time_size[1]}x{time_size[0]} ({args.repeats} interleaved "
          f"rounds, median), memory at {memory_size[1]}x{memory_size[0]} ({memory_size[0] * memory_size[1] / 1e6:.0f} MP)")
    print("p3m = p3m.matte (fast path, band-only local pass, budget, guided upsampling, no foreground); "
          "p3m-full = the same with the local pass over the whole image; plain = official procedure "
          "(PyTorch's max_unpool2d, skimage resizes, no budget). MAD: mean |alpha - plain alpha|, "
          "overall / inside the band 0 < alpha < 1 (band: its share of the image)")
    header = (f"{'model':<16}{'p3m s/img':>10}{'full s/img':>11}{'plain s/img':>12}{'speed-up':>9}{'full':>7}"
              f"{'band':>6}{'MAD':>9}{'band MAD':>9}{'p3m peak':>11}{'plain peak':>11}{'memory':>8}")
    print(header)
    for name in names:
        modes = [m for m in requested if not (name == "selfie-cf" and m == "p3m-full")]
        do_time, do_memory = args.only != "memory", args.only != "time"
        timed = _spawn_time(name, modes, *time_size, args.repeats, args.timeout) if do_time and modes else {}
        skipped = {"skipped": "not requested (--modes / --only)"}
        peak = {mode: _spawn(name, mode, *memory_size, 1, args.timeout)
                if mode in modes and do_memory else skipped for mode in ("p3m", "plain")}
        t = {mode: timed.get(mode, skipped) for mode in ("p3m", "p3m-full", "plain")}
        mad = t["p3m"].get("mad")
        band_mad = t["p3m"].get("band_mad")
        print(
            f"{name:<16}{_cell(t['p3m'], 'seconds', 's'):>10}{_cell(t['p3m-full'], 'seconds', 's'):>11}"
            f"{_cell(t['plain'], 'seconds', 's'):>12}{_ratio(t['plain'], t['p3m'], 'seconds'):>9}"
            f"{_ratio(t['plain'], t['p3m-full'], 'seconds'):>7}"
            f"{(format(timed['band'], '.0%') if 'band' in timed else 'n/a'):>6}"
            f"{(format(mad, '.1e') if mad is not None else 'n/a'):>9}"
            f"{(format(band_mad, '.1e') if band_mad is not None else 'n/a'):>9}"
            f"{_cell(peak['p3m'], 'peak_mib', 'MiB'):>11}{_cell(peak['plain'], 'peak_mib', 'MiB'):>11}"
            f"{_ratio(peak['plain'], peak['p3m'], 'peak_mib'):>8}",
            flush=True,
        )
        for kind, results in (("time", t), ("memory", peak)):
            for mode, result in results.items():
                if "skipped" in result and not result["skipped"].startswith("not requested"):
                    print(f"    {mode} {kind}: {result['skipped']}")


if __name__ == "__main__":
    main()
