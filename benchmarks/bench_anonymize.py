"""Recall by face size and seconds per image of `p3m.anonymize`: the old pipeline against the new,
and the new against the verified pipeline as it was before it was made faster (any git revision).

* old: the first release's search (both MediaPipe models on the whole image, MediaPipe tiles on
  images over 1024 px), landmarks, mask, blur; no identity check;
* new: the default search (CenterFace with gated upscaled windows and four orientations, both
  MediaPipe models, dlib HOG where installed), landmarks, coverage hull, blur, identity loop;
* std: the new pipeline with the "standard" search preset (no upscaled windows in the turned
  views: fewer small turned faces, a third less CenterFace work);
* ref (with `--reference REV`, e.g. the commit before the speed-up): `anonymize(image)` of that
  revision's `src/` (extracted with `git archive` into a temporary folder), run in a worker
  process that gets each image in turn, so both versions are timed in the same rounds;
* dlib: the classic P3M-10k-style script (dlib HOG, upsample 1, 68 landmarks, fixed blur), for
  the record.

Images: synthetic group photos of `p3m.privacy.testdata` (>= 200 faces of 16-200 px on
640 x 480 coffee/rocket backgrounds; package-shipped faces only) and two 4000 x 3000 photos
with small faces (20-60 px). Each image is run by every pipeline in turn (interleaved, the order
reversed every other image), and the table gives medians of wall seconds and of CPU seconds
(`time.process_time`: every thread of the process; less disturbed than wall time on a shared
machine); the ratio lines are medians of per-image ratios timed in the same run. Run on an idle
machine for final figures (2 CPU cores; onnxruntime and MediaPipe use both).

    python benchmarks/bench_anonymize.py [--faces 200] [--large 2] [--no-dlib] [--reference REV]
"""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_minloglevel", "2")

import argparse  # noqa: E402
import functools  # noqa: E402
import pickle  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from p3m.detection import DetectionConfig  # noqa: E402
from p3m.detection.faces import LEGACY_DETECTORS, dlib_model_path  # noqa: E402
from p3m.privacy import anonymize  # noqa: E402
from p3m.privacy.testdata import SIZE_BINS, group_photo, group_photos, recall_by_size  # noqa: E402

OLD_SEARCH = DetectionConfig(
    detectors=LEGACY_DETECTORS, rotations=(0,), upscale=1.0, confirm_weak=False
)
# A run: image -> (boxes found, wall seconds, CPU seconds).
Run = Callable[[np.ndarray], tuple[list, float, float]]

# The worker of `--reference`: reads pickled images on stdin, answers (boxes, wall s, CPU s).
# Its own prints go to stderr: stdout carries the answers only.
_WORKER = """
import os, pickle, sys, time
os.environ.setdefault("GLOG_minloglevel", "2")
answers = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
from p3m.privacy import anonymize
requests = sys.stdin.buffer
while True:
    try:
        image = pickle.load(requests)
    except EOFError:
        break
    wall, cpu = time.perf_counter(), time.process_time()
    faces = anonymize(image).faces
    answer = ([f.box for f in faces], time.perf_counter() - wall, time.process_time() - cpu)
    pickle.dump(answer, answers)
    answers.flush()
"""


class ReferenceRun:
    """`anonymize(image)` of git revision `revision`, in a worker process (see the module doc)."""

    def __init__(self, revision: str) -> None:
        root = Path(__file__).resolve().parents[1]
        self.folder = Path(tempfile.mkdtemp(prefix="p3m-bench-ref-"))
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", revision, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(self.folder)], input=archive, check=True)
        env = dict(os.environ, PYTHONPATH=str(self.folder / "src"))
        self.worker = subprocess.Popen(
            [sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )

    def __call__(self, image: np.ndarray) -> tuple[list, float, float]:
        pickle.dump(np.ascontiguousarray(image), self.worker.stdin)
        self.worker.stdin.flush()
        return pickle.load(self.worker.stdout)

    def close(self) -> None:
        self.worker.stdin.close()
        self.worker.wait(timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


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


def _timed(call: Callable[[np.ndarray], list]) -> Run:
    def run(image: np.ndarray) -> tuple[list, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        found = call(image)
        return found, time.perf_counter() - wall, time.process_time() - cpu

    return run


def pipelines(with_dlib: bool, reference: ReferenceRun | None = None) -> dict[str, Run]:
    runs: dict[str, Run] = {
        "old": _timed(lambda image: anonymize(image, detection=OLD_SEARCH, verify="none").faces),
        "new": _timed(lambda image: anonymize(image).faces),
        "std": _timed(lambda image: anonymize(image, detection="standard").faces),
    }
    if reference is not None:
        runs["ref"] = reference
    if with_dlib:
        runs["dlib"] = _timed(dlib_recipe)
    return runs


def measure(photos, runs: dict[str, Run]):
    found: dict[str, list] = {name: [] for name in runs}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up: models load outside the timing
        run(photos[0].image)
    for index, photo in enumerate(photos):
        order = list(runs) if index % 2 == 0 else list(reversed(runs))  # interleaved rounds
        for name in order:
            faces, seconds, cpu_seconds = runs[name](photo.image)
            found[name].append(faces)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    return found, wall, cpu


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / max(y, 1e-9) for x, y in zip(a, b, strict=True))


def report(title: str, photos, found, wall, cpu) -> None:
    bins = [f"{lo:g}-{hi:g}" for lo, hi in SIZE_BINS]
    megapixels = statistics.mean(p.image.shape[0] * p.image.shape[1] / 1e6 for p in photos)
    print(f"\n{title}: {len(photos)} images, {megapixels:.2f} MP each, "
          f"{sum(len(p.faces) for p in photos)} faces")  # fmt: skip
    header = f"{'pipeline':<8}" + "".join(f"{b:>9}" for b in bins)
    print(header + f"{'>=24':>9}{'s/image':>10}{'s/MP':>8}{'cpu s':>8}")
    tables = {name: recall_by_size(photos, faces) for name, faces in found.items()}
    for name, table in tables.items():
        cells = "".join(
            f"{100 * table[b]['recall']:8.1f}%" if table[b]["faces"] else f"{'-':>9}" for b in bins
        )
        median = statistics.median(wall[name])
        print(f"{name:<8}{cells}{100 * table['>=24']['recall']:8.1f}%{median:10.3f}"
              f"{median / megapixels:8.3f}{statistics.median(cpu[name]):8.3f}")  # fmt: skip
    counts = "".join(f"{tables['new'][b]['faces']:>9}" for b in bins)
    print(f"{'faces':<8}{counts}{tables['new']['>=24']['faces']:>9}")
    print(f"time new / old (median of per-image ratios): {_ratio(wall['new'], wall['old']):.2f}x")
    print(f"time std / new (median of per-image ratios): wall {_ratio(wall['std'], wall['new']):.2f}x, "
          f"CPU {_ratio(cpu['std'], cpu['new']):.2f}x")  # fmt: skip
    for name in ("new", "std") if "ref" in wall else ():
        print(f"speed-up ref / {name} (median of per-image ratios): wall "
              f"{_ratio(wall['ref'], wall[name]):.2f}x, CPU {_ratio(cpu['ref'], cpu[name]):.2f}x")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200, help="faces in the group-photo set")
    parser.add_argument("--large", type=int, default=2, help="4000 x 3000 photos (0: none)")
    parser.add_argument("--no-dlib", action="store_true", help="leave out the dlib script")
    parser.add_argument(
        "--reference", metavar="REV",
        help="also time anonymize() of this git revision (e.g. main), in the same rounds",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    import importlib.util

    reference = ReferenceRun(args.reference) if args.reference else None
    try:
        with_dlib = not args.no_dlib and importlib.util.find_spec("dlib") is not None
        runs = pipelines(with_dlib, reference)
        photos = group_photos(faces=args.faces, seed=args.seed)
        report("synthetic group photos, 640 x 480", photos, *measure(photos, runs))
        if args.large:
            rng = np.random.default_rng(args.seed)
            large = [
                group_photo(rng, (3000, 4000), faces=10, size_range=(20, 60))
                for _ in range(args.large)
            ]
            report("large photos, 4000 x 3000, faces of 20-60 px", large, *measure(large, runs))
    finally:
        if reference is not None:
            reference.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
