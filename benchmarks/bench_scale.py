"""Throughput of `p3m matte` and `p3m anonymize` on the local engine against Ray Data with 1 and
2 workers, and the per-image CPU cost of each stage (read, matte, write; anonymise, audit and the
writing of its P3M-10k files) that docs/scale-out.md projects to ten million images.

The image set: N synthetic portraits (default 200; `--quick`: 24) made from package-shipped
photos: scikit-image's astronaut, scaled, flipped and placed on scikit-image's backgrounds
(coffee, chelsea, rocket, brick, grass, gravel, ...), H x W given by `--size`; for anonymise,
each with a matte (the pasted portrait opaque, a 2-px semi-transparent edge).

In one run, per job (`--jobs matte,anonymize`), in interleaved rounds (the order rotates;
medians over `--rounds`), the set goes into a fresh folder through:

* the single-process path: `run_matte` / `anonymize_samples` with the local engine (threads:
  torch's default);
* `RayExecutor(workers=1)` and `RayExecutor(workers=2)`, each worker one CPU (Ray sets its
  threads to 1), on a local Ray started once before the rounds (its start is reported, not
  counted: a cluster is up before a job). Each Ray run starts its actors and loads the models
  in them, which is counted.

Anonymise runs with `p3m anonymize`'s defaults (every detector, Face Mesh, blur, the identity
check where dlib is installed, the audit with every available detector; `--audit-detectors`
narrows the audit, `--no-audit` drops it), P3M-10k train layout.

The table gives images/s and the ratio to the local engine timed in the same run. Then, for
`--stages` images, one process times each stage (CPU seconds from `time.process_time`, which
counts every thread of the process, and wall seconds). On a shared machine the figures are
noisy: take them as provisional and compare ratios, not absolute rates.

    python benchmarks/bench_scale.py --quick
    python benchmarks/bench_scale.py --images 200 --size 400x320 --rounds 2
    python benchmarks/bench_scale.py --jobs anonymize --audit-detectors centerface,mediapipe
    python benchmarks/bench_scale.py --model p3mnet-r34     # random weights: the same compute
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

BACKGROUNDS = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "camera", "hubble_deep_field")


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=2)
    return image[..., :3]


def make_portraits(
    folder: Path, count: int, height: int, width: int, seed: int = 0, mattes: Path | None = None
) -> list[Path]:
    """`count` PNG portraits: the astronaut scaled, maybe flipped, on a package background; with
    `mattes`, each one's matte there (same name): the pasted square opaque, its edge 2 px at 50 %."""
    from PIL import Image
    from skimage import data
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    astronaut = data.astronaut()
    backgrounds = [
        (resize(_rgb(getattr(data, name)()), (height, width), anti_aliasing=True) * 255).astype(np.uint8)
        for name in BACKGROUNDS
    ]
    folder.mkdir(parents=True, exist_ok=True)
    if mattes is not None:
        mattes.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        canvas = backgrounds[number % len(backgrounds)].copy()
        side = int(min(height, width) * rng.uniform(0.55, 0.95))
        person = (resize(astronaut, (side, side), anti_aliasing=True) * 255).astype(np.uint8)
        if rng.random() < 0.5:
            person = person[:, ::-1]
        top = height - side  # standing on the bottom edge, as portraits do
        left = int(rng.integers(0, width - side + 1))
        canvas[top : top + side, left : left + side] = person
        path = folder / f"portrait{number:04d}.png"
        Image.fromarray(canvas).save(path)
        paths.append(path)
        if mattes is not None:
            alpha = np.zeros((height, width), np.uint8)
            alpha[top:, left : left + side] = 128
            alpha[top + 2 :, left + 2 : left + side - 2] = 255
            Image.fromarray(alpha).save(mattes / path.name)
    return paths


def read_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.height, image.width


def _weights_for(model: str, folder: Path) -> str | None:
    """A random-weights checkpoint for a P3M-Net model (the compute does not depend on them)."""
    if model == "selfie-cf":
        return None
    from p3m.models import create_model, save_checkpoint

    path = folder / f"{model}-random.pth"
    save_checkpoint(create_model(model), path)
    return str(path)


def _run_matte(executor, images: Path, out: Path, spec) -> tuple[int, object]:
    from p3m.inference.batch import plan_matte, run_matte

    plan = plan_matte([str(images)], out, ("alpha", "rgba"))
    return len(plan.jobs), run_matte(plan, spec, executor=executor)


def _run_anonymize(executor, images: Path, out: Path, config) -> tuple[int, object]:
    from p3m.privacy.dataset import anonymize_samples, match_folder

    samples = match_folder(images, images.parent / "mattes")
    return len(samples), anonymize_samples(samples, out, config, executor=executor).run


def _run(job: str, engine: str, workers: int, images: Path, out: Path, spec, config) -> tuple[float, dict]:
    from p3m.scale import RayExecutor

    shutil.rmtree(out, ignore_errors=True)
    executor = RayExecutor(workers=workers, batch_size=1) if engine == "ray" else None
    started = time.perf_counter()
    if job == "matte":
        count, report = _run_matte(executor, images, out, spec)
    else:
        count, report = _run_anonymize(executor, images, out, config)
    seconds = time.perf_counter() - started
    finished = report.counts.get("done", 0) + report.counts.get("needs_annotation", 0)
    if finished != count:
        raise SystemExit(f"{job}, {engine} x {workers}: not every image was processed: {report.counts}")
    return seconds, {name: stats.items for name, stats in report.workers.items()}


def throughput(paths: list[Path], folder: Path, spec, config, rounds: int, jobs: tuple[str, ...]) -> None:
    from p3m.scale import start_local_ray

    configurations = [("local", 1), ("ray", 1), ("ray", 2)]
    started = time.perf_counter()
    start_local_ray(num_cpus=3)
    print(f"local Ray started in {time.perf_counter() - started:.1f} s (not counted)")
    seconds = {(job, *configuration): [] for job in jobs for configuration in configurations}
    try:
        for job in jobs:
            for number in range(rounds):
                order = configurations[number % 3 :] + configurations[: number % 3]
                for engine, workers in order:
                    out = folder / f"out-{job}-{engine}{workers}"
                    took, shares = _run(job, engine, workers, paths[0].parent, out, spec, config)
                    seconds[(job, engine, workers)].append(took)
                    print(f"  {job}, round {number + 1}: {engine} x {workers}: {took:.1f} s; "
                          f"images per worker {sorted(shares.values())}")  # fmt: skip
    finally:
        import ray

        ray.shutdown()
    height, width = read_size(paths[0])
    print(f"\n{len(paths)} images of {height} x {width}, median of {rounds} round(s)")
    print(f"{'job':<40}{'engine':<22}{'images/s':>10}{'ratio':>8}")
    for job in jobs:
        label_job = f"matte ({spec.model}, alpha+rgba)" if job == "matte" else _describe_anonymize(config)
        local = len(paths) / statistics.median(seconds[(job, "local", 1)])
        for engine, workers in configurations:
            rate = len(paths) / statistics.median(seconds[(job, engine, workers)])
            label = "local (one process)" if engine == "local" else f"ray, {workers} worker(s)"
            print(f"{label_job:<40}{label:<22}{rate:>10.3f}{rate / local:>8.2f}")
            label_job = ""


def _describe_anonymize(config) -> str:
    audit = "no audit" if not config.audit else f"audit {','.join(config.audit_detectors or ('all',))}"
    return f"anonymize (defaults, {audit})"


def stage_costs(paths: list[Path], spec, folder: Path, config) -> None:
    """CPU and wall seconds per image of each stage, in this process (anonymise: the given
    matte, `config`'s options: detection, landmarks, mask, blur, identity check; then its audit)."""
    from p3m.inference.batch import MatteJob, write_outputs
    from p3m.io import read_image

    matter = spec.build()
    from p3m.io import write_alpha, write_png

    stages = ("read", "matte", "write", "anonymise", "audit", "anon write")
    cpu: dict[str, list[float]] = {stage: [] for stage in stages}
    wall: dict[str, list[float]] = {stage: [] for stage in stages}

    def timed(stage: str, function, *args, **kwargs):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        value = function(*args, **kwargs)
        cpu[stage].append(time.process_time() - cpu_start)
        wall[stage].append(time.perf_counter() - wall_start)
        return value

    def anonymize(image, alpha, method):
        from p3m.privacy.pipeline import anonymize as run

        return run(image, alpha, method, detection=config.detection(), verify=config.verify, landmarks=config.landmarks)

    def audit(image, original, faces):
        from p3m.privacy.audit import audit_image

        return audit_image(image, config.audit_detectors, original=original, faces=faces)

    try:
        first = read_image(paths[0])
        warm = anonymize(first, matter(first).alpha, "blur")  # warm-up (models)
        audit(warm.image, first, warm.faces)
    except Exception as error:  # MediaPipe absent: the anonymise rows are left out
        print(f"anonymise not measured: {error}")
        anonymize = None
    matter(read_image(paths[0]))  # warm-up
    for index, path in enumerate(paths):
        image = timed("read", read_image, path)
        result = timed("matte", matter, image, foreground=True)
        job = MatteJob(path, {"alpha": folder / f"{index}_alpha.png", "rgba": folder / f"{index}_rgba.png"})
        timed("write", write_outputs, job, result, ("alpha", "rgba"))
        if anonymize is not None:
            anonymised = timed("anonymise", anonymize, image, result.alpha, "blur")
            if config.audit:
                timed("audit", audit, anonymised.image, image, anonymised.faces)

            def write_set(index: int = index, anonymised=anonymised, alpha=result.alpha) -> None:
                # The P3M-10k layout's files: blurred_image/, mask/, facemask/.
                write_png(folder / f"{index}_blurred.png", anonymised.image)
                write_alpha(folder / f"{index}_mask.png", alpha)
                write_png(folder / f"{index}_facemask.png", anonymised.facemask.astype(np.uint8) * 255)

            timed("anon write", write_set)
    height, width = read_size(paths[0])
    print(f"\nper-image cost of each stage ({len(paths)} images of {height} x {width}, one process, model {spec.model})")
    print(f"{'stage':<12}{'CPU s':>9}{'wall s':>9}")
    for stage in stages:
        if cpu[stage]:
            print(f"{stage:<12}{statistics.mean(cpu[stage]):>9.3f}{statistics.mean(wall[stage]):>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="24 images instead of 200")
    parser.add_argument("--images", type=int, default=None, help="number of images (default 200, --quick 24)")
    parser.add_argument("--size", default="400x320", help="H x W of the portraits (default 400x320)")
    parser.add_argument("--model", default="selfie-cf", help="selfie-cf or a P3M-Net name (random weights)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians; 0: stage costs only)")
    parser.add_argument("--stages", type=int, default=None, help="images for the stage costs (0: skip)")
    parser.add_argument("--jobs", default="matte,anonymize", help="comma list: matte, anonymize")
    parser.add_argument("--audit-detectors", default=None, help="anonymize: the audit's detectors (default: all)")
    parser.add_argument("--no-audit", action="store_true", help="anonymize: no audit")
    args = parser.parse_args()
    jobs = tuple(job.strip() for job in args.jobs.split(",") if job.strip())
    if not set(jobs) <= {"matte", "anonymize"}:
        raise SystemExit(f"--jobs takes matte and/or anonymize, got {args.jobs!r}")
    count = args.images or (24 if args.quick else 200)
    stages = args.stages if args.stages is not None else (6 if args.quick else 20)
    height, width = (int(part) for part in args.size.lower().split("x"))

    from p3m.inference.batch import MatterSpec
    from p3m.privacy.dataset import AnonymizeConfig

    audit_detectors = tuple(args.audit_detectors.split(",")) if args.audit_detectors else None
    config = AnonymizeConfig(audit=not args.no_audit, audit_detectors=audit_detectors)
    folder = Path(tempfile.mkdtemp(prefix="p3m-bench-scale-"))
    try:
        paths = make_portraits(folder / "images", count, height, width, mattes=folder / "mattes")
        spec = MatterSpec(args.model, _weights_for(args.model, folder))
        if args.rounds > 0:
            throughput(paths, folder, spec, config, args.rounds, jobs)
        if stages:
            stage_costs(paths[:stages], spec, folder / "stage-out", config)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
