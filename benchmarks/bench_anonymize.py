"""Time `p3m.anonymize` and its stages against the classic dlib recipe, in the same run.

Baseline: dlib HOG detection + dlib 68-point landmarks + a fixed Gaussian blur of the filled
jaw/brow polygon (what P3M-10k-style scripts do). Images: real faces shipped by installed
packages (scikit-image's astronaut and cameraman, matplotlib's Grace Hopper).

    python benchmarks/bench_anonymize.py [--repeat 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_minloglevel", "2")

import argparse  # noqa: E402
import functools  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from p3m.detection.faces import dlib_model_path, run_detector  # noqa: E402
from p3m.privacy import anonymize, detect_faces  # noqa: E402
from p3m.privacy.audit import audit_image  # noqa: E402
from p3m.privacy.landmarks import add_landmarks  # noqa: E402


def photos() -> dict[str, np.ndarray]:
    import matplotlib
    from PIL import Image
    from skimage import data

    grace = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return {
        "astronaut": data.astronaut(),
        "grace_hopper": np.asarray(Image.open(grace).convert("RGB")),
        "cameraman": np.repeat(data.camera()[:, :, None], 3, axis=2),
    }


def best_time(function: Callable[[], object], repeat: int) -> float:
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


@functools.cache
def dlib_models():
    import dlib

    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    return dlib.get_frontal_face_detector(), predictor


def dlib_recipe(image: np.ndarray) -> np.ndarray:
    detector, predictor = dlib_models()  # loaded once, outside the timing
    out = image.copy()
    blurred = cv2.GaussianBlur(image, (51, 51), 0)
    for rect in detector(image, 1):
        shape = predictor(image, rect)
        points = np.array(
            [[shape.part(i).x, shape.part(i).y] for i in [*range(17), *range(26, 16, -1)]]
        )
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [points.astype(np.int32)], 1)
        out[mask > 0] = blurred[mask > 0]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'image':<13} {'stage':<34} {'ms':>9}")
    for name, image in photos().items():
        faces = detect_faces(image)
        rows = [
            ("mediapipe-short", lambda image=image: run_detector(image, "mediapipe-short")),
            ("mediapipe-full", lambda image=image: run_detector(image, "mediapipe-full")),
            ("dlib-hog (upsample 1)", lambda image=image: run_detector(image, "dlib-hog")),
            ("detect_faces (both MediaPipe)", lambda image=image: detect_faces(image)),
            ("Face Mesh landmarks", lambda image=image, faces=faces: add_landmarks(image, faces)),
            ("anonymize blur (no alpha)", lambda image=image: anonymize(image)),
            (
                "audit mediapipe + identity",
                lambda image=image, faces=faces: audit_image(
                    image, ["mediapipe"], original=image, faces=faces
                ),
            ),  # fmt: skip
            ("baseline: dlib HOG + 68 + blur", lambda image=image: dlib_recipe(image)),
        ]
        times = {}
        for label, function in rows:
            times[label] = best_time(function, args.repeat)
            print(f"{name:<13} {label:<34} {1000 * times[label]:9.1f}")
        ratio = times["baseline: dlib HOG + 68 + blur"] / times["anonymize blur (no alpha)"]
        print(f"{name:<13} {'speed-up of anonymize vs baseline':<34} {ratio:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
