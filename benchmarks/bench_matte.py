"""Speed and peak memory of `p3m.matte` against the plain official procedure, on CPU.

For the default pipeline (selfie-cf) and each registered P3M-Net variant (random weights), it
measures in one run:

* seconds per image at 1080 x 1620 (`--quick`: 540 x 810), every mode in its own process
  (own allocator and memory), timed in interleaved rounds (median), with how far the p3m
  alpha is from the plain one;
* peak resident memory for a 24-megapixel photo (`--quick`: 6 MP), one subprocess per case.

Modes: `p3m` is `p3m.matte` as a user gets it (the fast inference path, the HYBRID local pass
decoded at full resolution only where the combine reads it, pixel budget, guided upsampling,
no foreground estimation); `p3m-full` the same with the local pass decoded over the whole
image; `plain` the official HYBRID written out with no p3m machinery (PyTorch's
`max_unpool2d` as in the official code, scikit-image resizes, passes up to 1600 x 1600, no
budget); for selfie-cf, plain is the same segmentation + trimap with closed-form matting at
full resolution.

The band-only local pass saves more the narrower the transition band; with random weights the
band is noise, not a portrait's outline, so its share is printed (`band`), `p3m-full` gives the
figure that does not depend on it, and `--portrait-band` replaces the P3M-Net trimaps (in
every mode alike) by a head-and-shoulders outline. p3m processes keep freed memory for reuse
(`p3m.models.fast_ops.retain_freed_memory`, as `p3m.matte` does); the plain one does not. On
a shared machine absolute times swing; the interleaved ratios hold up better.

    python benchmarks/bench_matte.py --quick
    python benchmarks/bench_matte.py --models p3mnet-r34 --only time --repeats 3 [--portrait-band]
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


class _PortraitBand:
    """Wraps a model so that its global logits say "portrait": a head-and-shoulders figure whose
    outline is a transition band of 3 % of the image height (random weights give no such band,
    and the band-only local pass saves in proportion to it). The network still runs in full;
    plain and p3m read the same trimap, so their alphas stay comparable."""

    def __init__(self, model) -> None:
        self.model = model
        self.variant = getattr(model, "variant", "model")
        self.min_size = getattr(model, "min_size", 32)
        self.supports_output_selection = getattr(model, "supports_output_selection", False)
        self.supports_region = getattr(model, "supports_region", False)

    @staticmethod
    def _logits(height: int, width: int):
        import torch

        rows = torch.linspace(0, 1, height)[:, None]
        cols = torch.linspace(0, 1, width)[None, :]
        # implicit functions of a head and a shoulders ellipse (negative inside)
        head = ((rows - 0.35) / 0.22) ** 2 + ((cols - 0.5) / 0.16) ** 2 - 1
        body = ((rows - 1.25) / 0.65) ** 2 + ((cols - 0.5) / 0.42) ** 2 - 1
        inside = torch.minimum(head, torch.where(rows > 0.6, body, torch.full_like(body, 10.0)))
        edge = 0.13  # about 3 % of the height across the head's outline
        classes = torch.where(inside < -edge, 2, torch.where(inside <= edge, 1, 0))
        return torch.nn.functional.one_hot(classes, 3).permute(2, 0, 1)[None].float() * 10.0

    def __call__(self, x, outputs=None, region=None):
        if self.supports_output_selection:
            out = self.model(x, outputs=outputs) if region is None else self.model(x, outputs=outputs, region=region)
        else:
            out = self.model(x)
        if out[0] is None:
            return out
        logits = self._logits(x.shape[-2], x.shape[-1]).expand(x.shape[0], -1, -1, -1)
        return out._replace(global_logits=logits)

    def eval(self):
        return self


def _runner(model_name: str, mode: str, portrait: bool):
    """A function image -> alpha for one mode (p3m, p3m-full, plain)."""
    if model_name == "selfie-cf":
        if mode == "p3m":
            from p3m.inference.api import Matter

            matter = Matter("selfie-cf")
            return lambda picture: matter(picture, foreground=False).alpha
        return _plain_selfie_cf
    import torch

    from p3m.models import create_model, optimize_for_inference

    torch.manual_seed(0)  # the same random weights in every worker
    torch_model = create_model(model_name, device="cpu")
    if mode == "plain":
        _use_torch_unpool()
        model = _PortraitBand(torch_model) if portrait else torch_model
        return lambda picture: _plain_hybrid(model, picture)
    from p3m.inference.api import Matter
    from p3m.models.fast_ops import retain_freed_memory

    retain_freed_memory()  # as Matter does when it loads a P3M-Net by name
    fast = optimize_for_inference(torch_model, inplace=True)
    model = fast if mode == "p3m" else _WholeLocalPass(fast)
    matter = Matter(_PortraitBand(model) if portrait else model)
    return lambda picture: matter(picture, foreground=False).alpha


def worker(model_name: str, mode: str, height: int, width: int, portrait: bool) -> None:
    """Child process body: build one mode, then run it each time the parent writes a line."""
    import numpy as np
    import torch

    threads = int(os.environ.get("BENCH_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    image = _photo(height, width)
    run = _runner(model_name, mode, portrait)
    alpha = run(image)  # warm-up on the image itself; its alpha is compared at the end
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            start = time.perf_counter()
            run(image)
            print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
        elif command.startswith("save "):
            np.save(command[5:], np.asarray(alpha, dtype=np.float64))
            print("saved", flush=True)
        else:
            break


def _spawn_time(
    model_name: str, modes: list[str], height: int, width: int, rounds: int, timeout: float, portrait: bool
) -> dict:
    """Every mode in its own worker process (own allocator state, own memory), timed in
    interleaved rounds (median); how far the p3m alphas are from the plain one."""
    import tempfile

    import numpy as np

    workers = {}
    result: dict = {}
    try:
        for mode in modes:
            command = [sys.executable, __file__, "--worker", model_name, mode, str(height), str(width)]
            if portrait:
                command.append("--portrait-band")
            workers[mode] = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            # Build and warm up one at a time, so that they do not compete for the cores.
            ready = workers[mode].stdout.readline().strip()
            if ready != "ready":
                last = (workers[mode].stderr.read().strip().splitlines() or ["?"])[-1]
                result[mode] = {"skipped": f"failed: {last[:80]}"}
                workers.pop(mode).wait()
        times: dict[str, list[float]] = {mode: [] for mode in workers}
        for _ in range(rounds):
            for mode, process in workers.items():
                process.stdin.write("run\n")
                process.stdin.flush()
                times[mode].append(json.loads(process.stdout.readline())["seconds"])
        for mode, values in times.items():
            result[mode] = {"seconds": sorted(values)[len(values) // 2]}
        with tempfile.TemporaryDirectory() as folder:
            alphas = {}
            for mode, process in workers.items():
                path = os.path.join(folder, f"{mode}.npy")
                process.stdin.write(f"save {path}\n")
                process.stdin.flush()
                process.stdout.readline()
                alphas[mode] = np.load(path)
        if "plain" in alphas and model_name != "selfie-cf":
            plain = alphas["plain"]
            band = (plain > 0) & (plain < 1)
            result["band"] = float(band.mean())
            for mode in alphas:
                if mode != "plain":
                    difference = np.abs(alphas[mode] - plain)
                    result[mode]["mad"] = float(difference.mean())
                    result[mode]["band_mad"] = float(difference[band].mean()) if band.any() else 0.0
    finally:
        for process in workers.values():
            if process.poll() is None:
                try:
                    process.stdin.write("quit\n")
                    process.stdin.flush()
                except OSError:
                    pass
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
    return result


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
    parser.add_argument(
        "--portrait-band",
        action="store_true",
        help="P3M-Net global logits replaced by a portrait-shaped trimap (band = 3%% of the height)",
    )
    parser.add_argument("--worker", nargs=4, metavar=("MODEL", "MODE", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, mode, height, width, repeats = args.case
        print(json.dumps(run_case(name, mode, int(height), int(width), int(repeats))))
        return
    if args.worker:
        name, mode, height, width = args.worker
        worker(name, mode, int(height), int(width), args.portrait_band)
        return

    from p3m.models import list_models

    names = [n for n in args.models.split(",") if n] or ["selfie-cf", *list_models()]
    time_size = (540, 810) if args.quick else (1080, 1620)
    memory_size = (2000, 3000) if args.quick else (4000, 6000)
    requested = [mode for mode in ("p3m", "p3m-full", "plain") if mode in args.modes.split(",")]
    print(f"CPU, {os.cpu_count()} cores; timing at {time_size[1]}x{time_size[0]} ({args.repeats} interleaved "
          f"rounds, median, one process per mode), memory at {memory_size[1]}x{memory_size[0]} "
          f"({memory_size[0] * memory_size[1] / 1e6:.0f} MP)"
          + ("; P3M-Net trimaps: portrait-shaped band" if args.portrait_band else "; random-weight trimaps"))
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
        timed = (
            _spawn_time(name, modes, *time_size, args.repeats, args.timeout, args.portrait_band)
            if do_time and modes
            else {}
        )
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
