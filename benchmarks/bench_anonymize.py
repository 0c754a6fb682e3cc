"""Recall by face size and seconds per image of `p3m.anonymize`: the old pipeline against the new.

* old: the first release's search (both MediaPipe models on the whole image, MediaPipe tiles on
  images over 1024 px), landmarks, mask, blur; no identity check;
* new: the default search (CenterFace with gated upscaled windows and four orientations, both
  MediaPipe models, dlib HOG where installed), landmarks, coverage hull, blur, identity loop;
* dlib: the classic P3M-10k-style script (dlib HOG, upsample 1, 68 landmarks, fixed blur), for
  the record.

Images: synthetic group photos of `p3m.privacy.testdata` (>= 200 faces of 16-200 px on
640 x 480 coffee/rocket backgrounds; package-shipped faces only) and two 4000 x 3000 photos
with small faces (20-60 px). Each image is run by every pipeline in turn (interleaved), and
the table gives medians; the ratio column is new / old, timed in the same run. Run on an idle
machine for final figures (2 CPU cores; onnxruntime and MediaPipe use both).

    python benchmarks/bench_anonymize.py [--faces 200] [--large 2] [--no-dlib]
"""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_minloglevel", "2")

import argparse  # noqa: E402
import functools  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from p3m.detection import DetectionConfig  # noqa: E402
from p3m.detection.faces import LEGACY_DETECTORS, dlib_model_path  # noqa: E402
from p3m.privacy import anonymize  # noqa: E402
from p3m.privacy.testdata import SIZE_BINS, group_photo, group_photos, recall_by_size  # noqa: E402

OLD_SEARCH = DetectionConfig(
    detectors=LEGACY_DETECTORS, rotations=(0,), upscale=1.0, confirm_weak=False
)


@functools.cache
def _dlib_models():
    import dlib

    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    return dlib.get_frontal_face_detector(), predictor


def dlib_recipe(image: np.ndarray) -> list[tuple[float, float, float, float]]:
    """dlib HOG + 68 landmarks + a fixed Gaussian blur of the jaw/brow polygon; returns boxes."""
    detector, predictor = _dlib_models()
    out = image.copy()
    blurred = cv2.GaussianBlur(image, (51, 51), 0)
    boxes = []
    for rect in detector(image, 1):
        shape = predictor(image, rect)
        points = np.array(
            [[shape.part(i).x, shape.part(i).y] for i in [*range(17), *range(26, 16, -1)]]
        )
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [points.astype(np.int32)], 1)
        out[mask > 0] = blurred[mask > 0]
        boxes.append((rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1))
    return boxes


def pipelines(with_dlib: bool) -> dict[str, Callable[[np.ndarray], list]]:
    runs: dict[str, Callable[[np.ndarray], list]] = {
        "old": lambda image: anonymize(image, detection=OLD_SEARCH, verify="none").faces,
        "new": lambda image: anonymize(image).faces,
    }
    if with_dlib:
        runs["dlib"] = dlib_recipe
    return runs


def measure(photos, runs) -> tuple[dict[str, list], dict[str, list[float]]]:
    found: dict[str, list] = {name: [] for name in runs}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up: models load outside the timing
        run(photos[0].image)
    for index, photo in enumerate(photos):
        order = list(runs) if index % 2 == 0 else list(reversed(runs))  # interleaved rounds
        for name in order:
            start = time.perf_counter()
            faces = runs[name](photo.image)
            seconds[name].append(time.perf_counter() - start)
            found[name].append(faces)
    return found, seconds


def report(title: str, photos, found, seconds) -> None:
    bins = [f"{lo:g}-{hi:g}" for lo, hi in SIZE_BINS]
    megapixels = statistics.mean(p.image.shape[0] * p.image.shape[1] / 1e6 for p in photos)
    print(f"\n{title}: {len(photos)} images, {megapixels:.2f} MP each, "
          f"{sum(len(p.faces) for p in photos)} faces")  # fmt: skip
    header = f"{'pipeline':<8}" + "".join(f"{b:>9}" for b in bins) + f"{'>=24':>9}{'s/image':>10}{'s/MP':>8}"
    print(header)
    tables = {name: recall_by_size(photos, faces) for name, faces in found.items()}
    for name, table in tables.items():
        cells = "".join(
            f"{100 * table[b]['recall']:8.1f}%" if table[b]["faces"] else f"{'-':>9}" for b in bins
        )
        median = statistics.median(seconds[name])
        print(f"{name:<8}{cells}{100 * table['>=24']['recall']:8.1f}%{median:10.3f}{median / megapixels:8.3f}")
    counts = "".join(f"{tables['new'][b]['faces']:>9}" for b in bins)
    print(f"{'faces':<8}{counts}{tables['new']['>=24']['faces']:>9}")
    ratio = statistics.median(n / o for n, o in zip(seconds["new"], seconds["old"], strict=True))
    print(f"time new / old (median of per-image ratios): {ratio:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200, help="faces in the group-photo set")
    parser.add_argument("--large", type=int, default=2, help="4000 x 3000 photos (0: none)")
    parser.add_argument("--no-dlib", action="store_true", help="leave out the dlib script")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    import importlib.util

    runs = pipelines(with_dlib=not args.no_dlib and importlib.util.find_spec("dlib") is not None)
    photos = group_photos(faces=args.faces, seed=args.seed)
    report("synthetic group photos, 640 x 480", photos, *measure(photos, runs))
    if args.large:
        rng = np.random.default_rng(args.seed)
        large = [group_photo(rng, (3000, 4000), faces=10, size_range=(20, 60)) for _ in range(args.large)]
        report("large photos, 4000 x 3000, faces of 20-60 px", large, *measure(large, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
