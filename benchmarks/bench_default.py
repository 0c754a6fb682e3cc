"""The offline default (`selfie-cf`) on compositions: old pipeline against the new, in one run.

Compositions are made from package-shipped photos only: scikit-image's astronaut, cut out with
its own single-portrait matte (the old pipeline's matte of the 512 x 512 photo, the reference
`A`), scaled to 10-100 % of the frame height, mirrored every other time, placed 1-5 times side
by side without overlap (standing on the bottom edge of the frame), over a scikit-image
background (brick, grass, gravel, rocket, coffee), then darkened to an exposure of 10-100 %.
By construction the true alpha of a composition is `A` placed the same way, so the matte of a
composition should equal the composition of the mattes. For every composition the table gives,
for the old and the new pipeline:

* `worst`: the largest mean absolute difference (MAD) to the placed reference inside one
  person's box (the placed square, padded by 10 %), over the people of the composition;
* `out`: the mean alpha outside every box (the reference is 0 there);
* `s`: seconds per image (interleaved, old then new, in the same process).

Pass (issue 13): worst <= 0.02 for every composition, out < 0.02. A second table times one
1080 x 1620 portrait (the astronaut portrait resized; the alpha only, no foreground estimation)
for the old pipeline, the new one at the default pixel budget and at larger budgets, as medians
of interleaved rounds, with the ratio to the old pipeline.

    python benchmarks/bench_default.py --quick        # 10 compositions, 3 timing rounds
    python benchmarks/bench_default.py                # 80 compositions, 5 timing rounds
    python benchmarks/bench_default.py --only compositions --case 4,25,10 --case 1,10,100
    python benchmarks/bench_default.py --only compositions --explain   # where the failures' error sits
    python benchmarks/bench_default.py --only compositions --case 4,50,25 --relight 100   # the light's part
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass

import numpy as np

BACKGROUNDS = ("brick", "grass", "gravel", "rocket", "coffee")
SCALES = (1.0, 0.5, 0.25, 0.1)
EXPOSURES = (1.0, 0.5, 0.25, 0.1)
COUNTS = (1, 2, 3, 4, 5)
QUICK = (  # (people, scale, exposure)
    (1, 1.0, 1.0),
    (2, 0.5, 1.0),
    (3, 1.0, 1.0),
    (3, 0.25, 0.25),
    (5, 0.1, 1.0),
    (4, 0.5, 0.1),
    (1, 0.1, 0.1),
    (5, 1.0, 0.5),
    (2, 0.25, 0.5),
    (4, 0.1, 0.25),
)


# --------------------------------------------------------------------------- the old pipeline


def old_selfie_cf(image: np.ndarray) -> np.ndarray:
    """The selfie-cf pipeline as it was before issue 13 (main at b8e6414), written out."""
    from pymatting import estimate_alpha_cf
    from scipy import ndimage

    from p3m.inference.selfie_cf import SelfieCFConfig, person_mask
    from p3m.inference.upsample import shrink_image, upsample_alpha

    height, width = image.shape[:2]
    scale = min(1.0, 448 / max(height, width))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = image if scale == 1.0 else shrink_image(image, size)
    mask = person_mask(small, SelfieCFConfig(people=False))
    band = max(2, round(0.02 * max(size)))
    offsets = np.arange(-band, band + 1)
    disk = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= band * band
    person = mask > 0.5
    trimap = np.zeros(mask.shape, dtype=np.float64)
    trimap[ndimage.binary_dilation(person, disk)] = 0.5
    trimap[ndimage.binary_erosion(person, disk, border_value=1)] = 1.0
    if (trimap == 0.5).any():
        alpha_small = estimate_alpha_cf(small.astype(np.float64) / 255.0, trimap)
    else:
        alpha_small = trimap == 1.0
    alpha_small = np.clip(alpha_small, 0.0, 1.0).astype(np.float32)
    return upsample_alpha(alpha_small, image, method="guided")


# --------------------------------------------------------------------------- compositions


@dataclass(frozen=True)
class Composition:
    people: int
    scale: float
    exposure: float
    background: str
    image: np.ndarray
    reference: np.ndarray
    boxes: tuple[tuple[int, int, int, int], ...]  # padded person boxes (x0, y0, x1, y1)

    @property
    def label(self) -> str:
        height, width = self.reference.shape
        return f"{self.people}  {self.scale:>4.0%} {self.exposure:>5.0%}  {self.background:<7}{width:>5}x{height:<5}"


def _background(name: str, size: tuple[int, int]) -> np.ndarray:
    from skimage import data

    from p3m.inference.upsample import shrink_image

    picture = getattr(data, name)()
    if picture.ndim == 2:
        picture = np.repeat(picture[:, :, None], 3, axis=2)
    picture = np.ascontiguousarray(picture[:, :, :3])
    # Cover the frame: scale so that both sides are filled, then cut the middle.
    factor = max(size[0] / picture.shape[0], size[1] / picture.shape[1])
    scaled = shrink_image(picture, (math.ceil(picture.shape[0] * factor), math.ceil(picture.shape[1] * factor)))
    top = (scaled.shape[0] - size[0]) // 2
    left = (scaled.shape[1] - size[1]) // 2
    return scaled[top : top + size[0], left : left + size[1]]


def compose(
    astronaut: np.ndarray,
    reference_alpha: np.ndarray,
    people: int,
    scale: float,
    exposure: float,
    background: str,
    frame_height: int,
    seed: int,
) -> Composition:
    from p3m.inference.upsample import resize_alpha, shrink_image

    rng = np.random.default_rng(seed)
    side = max(8, round(scale * frame_height))
    width = max(round(frame_height * 4 / 3), math.ceil(people * side * 1.25))
    frame = _background(background, (frame_height, width)).astype(np.float32)
    reference = np.zeros((frame_height, width), dtype=np.float32)
    person = shrink_image(astronaut, (side, side)).astype(np.float32)
    alpha = np.clip(resize_alpha(reference_alpha, (side, side)), 0.0, 1.0)
    slot = width / people
    boxes = []
    for index in range(people):
        free = slot - side
        x = int(index * slot + rng.uniform(0.1, 0.9) * free) if free > 0 else int(index * slot)
        y = frame_height - side
        colour, weight = (person, alpha) if index % 2 == 0 else (person[:, ::-1], alpha[:, ::-1])
        window = (slice(y, y + side), slice(x, x + side))
        frame[window] = colour * weight[:, :, None] + frame[window] * (1.0 - weight[:, :, None])
        reference[window] = weight
        pad = 0.1 * side
        boxes.append((max(0, int(x - pad)), max(0, int(y - pad)), min(width, int(x + side + pad)), frame_height))
    image = np.clip(np.round(frame * exposure), 0, 255).astype(np.uint8)
    return Composition(people, scale, exposure, background, image, reference, tuple(boxes))


def score(alpha: np.ndarray, composition: Composition) -> tuple[float, float]:
    """(worst per-person MAD inside the padded boxes, mean alpha outside every box)."""
    error = np.abs(alpha.astype(np.float64) - composition.reference)
    outside = np.ones(alpha.shape, dtype=bool)
    worst = 0.0
    for x0, y0, x1, y1 in composition.boxes:
        worst = max(worst, float(error[y0:y1, x0:x1].mean()))
        outside[y0:y1, x0:x1] = False
    return worst, float(alpha[outside].mean()) if outside.any() else 0.0


def reference_parts(astronaut: np.ndarray, reference_alpha: np.ndarray) -> dict[str, np.ndarray]:
    """Parts of the astronaut photo (float32 512 x 512 masks) that `--explain` reports apart:
    the helmet she holds (a held object: the reference calls it foreground), and the piece of
    the flag behind her left arm that the reference matte includes (the photo's background:
    the reference is wrong there, and every composition inherits it)."""
    from scipy import ndimage

    rows, cols = np.mgrid[: astronaut.shape[0], : astronaut.shape[1]]
    helmet = ((cols - 392) ** 2 + (rows - 462) ** 2 <= 123**2) & (cols > 268)
    red, green, blue = (astronaut[..., k].astype(int) for k in range(3))
    suit = (red > 140) & (green > 55) & (green < 160) & (blue < 120) & (red - green > 60)
    flag = (cols < 40) & (rows > 360) & ~ndimage.binary_opening(suit) & (reference_alpha > 0.02)
    labels, _ = ndimage.label(flag)
    flag = np.isin(labels, [label for label in np.unique(labels[:, 0]) if label])  # touching the left edge
    return {"helmet": helmet.astype(np.float32), "flag": flag.astype(np.float32)}


def explain(alpha: np.ndarray, composition: Composition, parts: dict[str, np.ndarray]) -> str:
    """Per person: the MAD split into the parts of `reference_parts` and the rest, and into
    too much alpha (over) and too little (under)."""
    error = alpha.astype(np.float64) - composition.reference
    lines = []
    for k, (x0, y0, x1, y1) in enumerate(composition.boxes):
        window = (slice(y0, y1), slice(x0, x1))
        box_error = error[window]
        rest = np.ones(box_error.shape, dtype=bool)
        cells = []
        for name, placed in parts.items():
            inside = placed[window] > 0.5
            cells.append(f"{name} {np.abs(box_error[inside]).sum() / box_error.size:.4f}")
            rest &= ~inside
        cells.append(f"rest {np.abs(box_error[rest]).sum() / box_error.size:.4f}")
        over, under = np.clip(box_error, 0, None).mean(), np.clip(-box_error, 0, None).mean()
        lines.append(f"    person {k}: MAD {np.abs(box_error).mean():.4f} = {' + '.join(cells)}; over {over:.4f}, under {under:.4f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- runs


def _timed(function, image):
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the old pipeline's pymatting prints
            alpha = function(image)
        failure = ""
    except Exception as error:  # the old pipeline raises on small people: count it, go on
        alpha = np.zeros(image.shape[:2], dtype=np.float32)
        failure = type(error).__name__
    return alpha, time.perf_counter() - start, failure


def run_compositions(args, old, new, astronaut, reference_alpha) -> None:
    if args.quick:
        grid = [(n, s, e, BACKGROUNDS[i % len(BACKGROUNDS)]) for i, (n, s, e) in enumerate(QUICK)]
    else:
        grid = [
            (n, s, e, BACKGROUNDS[i % len(BACKGROUNDS)])
            for i, (n, s, e) in enumerate(itertools.product(COUNTS, SCALES, EXPOSURES))
        ]
    seeds = list(range(len(grid)))  # a composition's seed is its place in the whole grid
    if args.case:
        wanted = {(int(n), float(s) / 100, float(e) / 100) for n, s, e in (case.split(",") for case in args.case)}
        seeds = [seed for seed in seeds if grid[seed][:3] in wanted]
        if not seeds:
            raise SystemExit(f"no composition of the {'quick' if args.quick else 'full'} grid matches {args.case}")
    if args.relight is not None:  # the same layouts, backgrounds and seeds at another exposure
        grid = [(n, s, args.relight / 100, background) for n, s, _, background in grid]
    print(f"compositions: frame height {args.frame_height}; pass = worst <= 0.02 and out < 0.02")
    print(f"{'n scale  expo  backgr.  frame':<38}{'old worst':>10}{'out':>7}{'s':>6}   {'new worst':>10}{'out':>7}{'s':>6}  pass")
    totals = {"old": [], "new": []}
    passed = {"old": 0, "new": 0}
    worst_of = {"old": 0.0, "new": 0.0}
    for index in seeds:
        people, scale, exposure, background = grid[index]
        composition = compose(astronaut, reference_alpha, people, scale, exposure, background, args.frame_height, index)
        cells = []
        new_ok = False
        for name, function in (("old", old), ("new", new)):
            alpha, seconds, failure = _timed(function, composition.image)
            worst, outside = score(alpha, composition)
            ok = worst <= 0.02 and outside < 0.02
            passed[name] += ok
            new_ok = ok
            worst_of[name] = max(worst_of[name], worst)
            totals[name].append(seconds)
            flag = f"!{failure[:5]}" if failure else ""
            cells.append(f"{worst:>10.4f}{outside:>7.4f}{seconds:>6.2f}{flag:<3}")
        print(f"{composition.label:<38}{cells[0]}{cells[1]}  {'ok' if new_ok else 'FAIL'}", flush=True)
        if args.explain and not new_ok:
            placed = {
                name: compose(astronaut, part, people, scale, exposure, background, args.frame_height, index).reference
                for name, part in reference_parts(astronaut, reference_alpha).items()
            }
            print(explain(alpha, composition, placed), flush=True)
    count = len(seeds)
    print(
        f"passing: old {passed['old']}/{count}, new {passed['new']}/{count}; worst person MAD: "
        f"old {worst_of['old']:.4f}, new {worst_of['new']:.4f}; seconds per image (median): "
        f"old {statistics.median(totals['old']):.2f}, new {statistics.median(totals['new']):.2f}"
    )


def run_timing(args, old, astronaut_portrait) -> None:
    from p3m.inference.backends import MATTE_MAX_PIXELS, SelfieCFBackend
    from p3m.inference.upsample import shrink_image

    image = shrink_image(astronaut_portrait, (1620, 1080))
    budgets = [("default", MATTE_MAX_PIXELS)] + [(f"{factor}x budget", MATTE_MAX_PIXELS * factor) for factor in (4, 16)]
    runners = {"old pipeline": old}
    for label, budget in budgets:
        backend = SelfieCFBackend(max_pixels=budget)
        runners[f"new, {label}"] = lambda picture, backend=backend: backend.matte(picture).alpha
    for function in runners.values():  # warm-up (numba caches, MediaPipe graphs)
        function(image)
    samples: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, function in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            function(image)
            samples[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    base = statistics.median(samples["old pipeline"])
    base_cpu = statistics.median(cpu["old pipeline"])
    print(f"\none 1080 x 1620 portrait, alpha only, median of {args.rounds} interleaved rounds "
          f"({os.cpu_count()} cores; CPU s = process time, steadier on a shared machine):")
    print(f"{'pipeline':<24}{'s/img':>8}{'vs old':>9}{'CPU s':>8}{'vs old':>9}")
    for name, values in samples.items():
        seconds, seconds_cpu = statistics.median(values), statistics.median(cpu[name])
        print(f"{name:<24}{seconds:>8.3f}{seconds / base:>8.2f}x{seconds_cpu:>8.3f}{seconds_cpu / base_cpu:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 compositions and 3 timing rounds")
    parser.add_argument("--frame-height", type=int, default=1080)
    parser.add_argument("--rounds", type=int, default=0, help="timing rounds (default 3 quick, 5 full)")
    parser.add_argument("--only", choices=("compositions", "timing"))
    parser.add_argument(
        "--case", action="append", default=[], metavar="N,SCALE%,EXPOSURE%",
        help="only this composition of the grid (same background and seed), e.g. --case 4,25,10; repeatable",
    )
    parser.add_argument(
        "--relight", type=float, metavar="EXPOSURE%",
        help="matte the chosen compositions at this exposure instead (same people, layout, background "
        "and seed): does a failure depend on the light? e.g. --case 4,50,25 --relight 100",
    )
    parser.add_argument(
        "--explain", action="store_true",
        help="for each composition the new pipeline fails, split every person's error into the held "
        "helmet, the flag piece the reference wrongly includes, and the rest",
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 5)
    logging.basicConfig(level=logging.WARNING)

    from skimage import data

    from p3m.inference.backends import SelfieCFBackend

    astronaut = data.astronaut()
    reference_alpha = old_selfie_cf(astronaut)
    backend = SelfieCFBackend()

    def new(image: np.ndarray) -> np.ndarray:
        return backend.matte(image).alpha

    if args.only != "timing":
        run_compositions(args, old_selfie_cf, new, astronaut, reference_alpha)
    if args.only != "compositions":
        run_timing(args, old_selfie_cf, np.ascontiguousarray(astronaut[:, 64:448]))


if __name__ == "__main__":
    main()
