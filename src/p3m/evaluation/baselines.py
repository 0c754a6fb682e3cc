"""Trimap-based traditional matting baselines (pymatting), run on a test set's own trimaps.

The paper compares P3M-Net with classical methods that need a trimap. pymatting implements six
of them; each is registered here under a short name:

=======  ==============================================================================
cf       closed-form matting (Levin, Lischinski, Weiss, TPAMI 2008)
knn      KNN matting (Chen, Li, Tang, TPAMI 2013)
lkm      large-kernel matting Laplacian (He, Sun, Tang, CVPR 2010)
rw       random-walk matting (Grady, Schiwietz, Aharon, Westermann, VIIP 2005)
sm       shared sampling matting (Gastal, Oliveira, Eurographics 2010)
lbdm     learning-based digital matting (Zheng, Kambhamettu, ICCV 2009)
=======  ==============================================================================

**Pixel budget.** These solvers build a sparse system over the unknown pixels and are slow and
memory-hungry on 1080p photos (KNN takes ~25 s on one 512x512 image on one CPU core). With
`max_pixels` set (default 1,000,000), an image larger than the budget is solved at a reduced
size with the same aspect ratio: the photo is shrunk with area averaging, the trimap with
nearest neighbour (it stays in {0, 128, 255}); the solved alpha is upsampled bilinearly and the
known regions of the *full-resolution* trimap are re-imposed (alpha = 1 where the trimap is 255,
0 where it is 0). Every run records the budget and which images were resized. `max_pixels=None`
(or 0) solves at full resolution. (The guided upsampling of `p3m.inference.upsample` was tried
too: on synthetic portraits it raised SAD by 15-25 % over bilinear, so bilinear it is.)

Whatever the size, the returned alpha equals the trimap exactly in its known regions (large-
kernel matting only enforces them softly, shared matting may leave them at 0/1 within rounding).
A trimap with only one known class gives the constant solution of the Laplacian methods (every
unknown pixel takes that class's value) without calling the solver; a trimap without any known
pixel is an error.

Example::

    result = estimate_alpha_baseline(image, trimap, "cf")        # image RGB uint8, trimap uint8
    run = run_baseline("cf", find_samples(root, "P3M-500-P"), "out/cf")
    run.evaluation.summary.means["sad"]
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from p3m.errors import BaselineError, P3MError, ShapeMismatchError
from p3m.runs import KEPT, Event, Item, ItemFinished, Outcome, RunOptions, RunStarted, run_items

if TYPE_CHECKING:
    from p3m.data.layout import Sample
    from p3m.evaluation.folder import FolderEvaluation
    from p3m.evaluation.record import MetricsRecord

logger = logging.getLogger(__name__)

__all__ = [
    "BASELINES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TRIMAP_KERNEL",
    "Baseline",
    "BaselineAlpha",
    "BaselineRun",
    "BaselineTask",
    "budget_shape",
    "estimate_alpha_baseline",
    "get_baseline",
    "run_baseline",
]

DEFAULT_MAX_PIXELS = 1_000_000
"""Default solve budget (pixels); a 1080x1620 P3M-500 photo is solved at about 816x1224."""

DEFAULT_TRIMAP_KERNEL = 15
"""Kernel of `gen_trimap_with_dilate` when a set has no trimaps (RWP-636)."""

BUDGET_NOTE = (
    "images above max_pixels solved at a reduced size (photo: area averaging, trimap: nearest "
    "neighbour), alpha upsampled bilinearly, then the known trimap regions re-imposed"
)


@dataclass(frozen=True)
class Baseline:
    """A registered baseline: its short name, table label, pymatting solver and the paper it implements."""

    name: str
    label: str
    title: str
    citation: str
    solver: str
    solver_kwargs: Mapping[str, Any] = field(default_factory=dict)


BASELINES: Mapping[str, Baseline] = {
    baseline.name: baseline
    for baseline in (
        Baseline(
            "cf",
            "CF",
            "Closed-form matting",
            "Levin, Lischinski, Weiss. A Closed-Form Solution to Natural Image Matting. TPAMI 2008",
            "estimate_alpha_cf",
        ),
        Baseline(
            "knn",
            "KNN",
            "KNN matting",
            "Chen, Li, Tang. KNN Matting. TPAMI 2013",
            "estimate_alpha_knn",
        ),
        Baseline(
            "lkm",
            "LKM",
            "Large-kernel matting",
            "He, Sun, Tang. Fast Matting Using Large Kernel Matting Laplacian Matrices. CVPR 2010",
            "estimate_alpha_lkm",
            # pymatting's own example caps the solver at 2000 iterations; without a cap the
            # unpreconditioned system can take tens of thousands on a large unknown band.
            {"cg_kwargs": {"maxiter": 2000}},
        ),
        Baseline(
            "rw",
            "RW",
            "Random-walk matting",
            "Grady, Schiwietz, Aharon, Westermann. Random Walks for Interactive Alpha-Matting. "
            "VIIP 2005",
            "estimate_alpha_rw",
        ),
        Baseline(
            "sm",
            "SM",
            "Shared matting",
            "Gastal, Oliveira. Shared Sampling for Real-Time Alpha Matting. Eurographics 2010",
            "estimate_alpha_sm",
        ),
        Baseline(
            "lbdm",
            "LBDM",
            "Learning-based digital matting",
            "Zheng, Kambhamettu. Learning Based Digital Matting. ICCV 2009",
            "estimate_alpha_lbdm",
        ),
    )
}


def get_baseline(name: str) -> Baseline:
    """The registered baseline `name` (cf, knn, lkm, rw, sm, lbdm); BaselineError otherwise."""
    baseline = BASELINES.get(name.lower())
    if baseline is None:
        raise BaselineError(f"unknown baseline {name!r} (choose from {', '.join(BASELINES)})")
    return baseline


# --------------------------------------------------------------------------- one image


@dataclass(frozen=True)
class BaselineAlpha:
    """A baseline's alpha (float32 H x W in [0, 1]) and the size it was solved at."""

    alpha: np.ndarray
    shape: tuple[int, int]
    solved_shape: tuple[int, int]

    @property
    def resized(self) -> bool:
        return self.shape != self.solved_shape


def budget_shape(height: int, width: int, max_pixels: int | None) -> tuple[int, int]:
    """(h, w) close to the aspect ratio of (height, width) with h * w <= max_pixels (unchanged if it fits)."""
    if not max_pixels or height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    small_h = max(1, math.floor(height * scale))
    small_w = max(1, math.floor(width * scale))
    while small_h * small_w > max_pixels:  # guard against rounding up past the budget
        if small_h >= small_w:
            small_h -= 1
        else:
            small_w -= 1
    return small_h, small_w


def _solve(baseline: Baseline, image_u8: np.ndarray, trimap_u8: np.ndarray) -> np.ndarray:
    """Run the pymatting solver on canonical inputs; float64 alpha at the same size."""
    foreground = trimap_u8 == 255
    background = trimap_u8 == 0
    unknown = ~(foreground | background)
    if not unknown.any():
        return foreground.astype(np.float64)
    if not foreground.any() or not background.any():
        # One known class only: the Laplacian systems' solution is that class's value
        # everywhere (pymatting refuses such trimaps).
        return np.full(trimap_u8.shape, 1.0 if foreground.any() else 0.0)
    import pymatting

    solver = getattr(pymatting, baseline.solver)
    image = image_u8.astype(np.float64) / 255.0
    trimap = np.where(foreground, 1.0, np.where(background, 0.0, 0.5))
    kwargs = {key: dict(value) for key, value in baseline.solver_kwargs.items()}
    # pymatting print()s solver notices (e.g. an incomplete-Cholesky retry with a shift); keep
    # them out of the user's terminal and progress bar, in the debug log instead.
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        alpha = solver(image, trimap, **kwargs)
    if printed.getvalue().strip():
        logger.debug("%s: %s", baseline.solver, " ".join(printed.getvalue().split()))
    return np.asarray(alpha, dtype=np.float64)


def estimate_alpha_baseline(
    image: np.ndarray,
    trimap: np.ndarray,
    method: str | Baseline,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> BaselineAlpha:
    """Alpha of a traditional baseline from an RGB uint8 image and a uint8 trimap {0, 128, 255}.

    Trimap values other than 0 and 255 count as unknown. Images above `max_pixels` are solved at
    a reduced size (see the module docstring); the known regions are always exact.
    """
    import cv2

    baseline = method if isinstance(method, Baseline) else get_baseline(method)
    image = np.asarray(image)
    trimap = np.asarray(trimap)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BaselineError(f"image must be RGB uint8 H x W x 3, got {image.dtype} {image.shape}")
    if trimap.ndim == 3 and trimap.shape[2] == 1:
        trimap = trimap[:, :, 0]
    if trimap.dtype != np.uint8 or trimap.ndim != 2:
        raise BaselineError(f"trimap must be uint8 H x W, got {trimap.dtype} {trimap.shape}")
    if trimap.shape != image.shape[:2]:
        raise ShapeMismatchError(
            f"trimap {trimap.shape[1]}x{trimap.shape[0]} and image "
            f"{image.shape[1]}x{image.shape[0]} differ in size"
        )
    if max_pixels is not None and max_pixels < 0:
        raise ValueError(f"max_pixels must be >= 0 (0 = no limit), got {max_pixels}")
    foreground = trimap == 255
    background = trimap == 0
    if not (foreground.any() or background.any()):
        raise BaselineError("trimap has no known pixel (all unknown); a baseline needs some")
    height, width = trimap.shape
    small_h, small_w = budget_shape(height, width, max_pixels)
    if (small_h, small_w) == (height, width):
        alpha = _solve(baseline, image, trimap)
    else:
        small_image = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
        small_trimap = cv2.resize(trimap, (small_w, small_h), interpolation=cv2.INTER_NEAREST)
        if not ((small_trimap == 255).any() or (small_trimap == 0).any()):
            raise BaselineError(
                f"trimap has no known pixel at the budget size {small_w}x{small_h}; raise max_pixels"
            )
        small_alpha = _solve(baseline, small_image, small_trimap).astype(np.float32)
        alpha = cv2.resize(small_alpha, (width, height), interpolation=cv2.INTER_LINEAR)
    if not np.isfinite(alpha).all():
        raise BaselineError(f"{baseline.name} produced non-finite alpha values")
    alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    alpha[foreground] = 1.0
    alpha[background] = 0.0
    return BaselineAlpha(alpha, (height, width), (small_h, small_w))


# --------------------------------------------------------------------------- a test set


@dataclass
class BaselineRun:
    """What `run_baseline` did: predictions, per-image solve records, failures and the scores."""

    baseline: Baseline
    set_name: str | None
    out_dir: Path
    max_pixels: int | None
    trimap_source: str
    trimap_kernel: int | None
    trimap_dir: Path | None
    gt_dir: Path | None
    solved: dict[str, dict[str, object]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    evaluation: FolderEvaluation | None = None  # set when the run was scored

    @property
    def resized(self) -> list[str]:
        """Names of the images solved below full resolution."""
        return sorted(name for name, info in self.solved.items() if info.get("resized"))

    def record(self) -> MetricsRecord:
        """The metrics.json record: the scores (when scored) plus the baseline's own fields."""
        import pymatting

        from p3m.evaluation.record import MetricsRecord, SkippedFile

        identity = {"method": self.baseline.name, "method_label": self.baseline.label, "set_name": self.set_name}
        extra = {
            "method_title": self.baseline.title,
            "citation": self.baseline.citation,
            "implementation": f"pymatting {getattr(pymatting, '__version__', '?')} "
            f"{self.baseline.solver}",
            "solver_kwargs": {k: dict(v) for k, v in self.baseline.solver_kwargs.items()},
            "trimaps": {
                "source": self.trimap_source,
                "kernel_size": self.trimap_kernel,
                "dir": None if self.trimap_dir is None else str(self.trimap_dir),
                "note": _TRIMAP_NOTES[self.trimap_source].format(k=self.trimap_kernel),
            },
            "budget": {
                "max_pixels": self.max_pixels or None,
                "num_resized": len(self.resized),
                "resized": self.resized,
                "note": BUDGET_NOTE if self.max_pixels else "solved at full resolution",
            },
            "failed": [{"name": name, "reason": reason} for name, reason in sorted(self.failed.items())],
            "per_image_solve": {name: self.solved[name] for name in sorted(self.solved)},
        }
        if self.evaluation is not None:
            return self.evaluation.record(**identity, extra=extra)
        skipped = [SkippedFile(name, reason) for name, reason in sorted(self.failed.items())]
        return MetricsRecord(means={}, skipped=skipped, pred_dir=str(self.out_dir), **identity, extra=extra)

    def to_json_dict(self) -> dict[str, object]:
        """The summary written to metrics.json (`record().to_json()`)."""
        return self.record().to_json()


_TRIMAP_NOTES = {
    "dataset": "the test set's own trimaps",
    "folder": "trimaps from a user-given folder",
    "generated": "generated from the ground-truth alpha with the official gen_trimap_with_dilate "
    "(kernel {k}): the set has no trimaps",
}


class BaselineTask:
    """The `p3m.runs.Task` of a baseline run: one sample (an `Item`'s payload) per item.

    `load` finds (or generates, from the ground truth) the trimap and reads image and trimap on
    an I/O thread; `compute` solves in the calling thread; `write` writes `<name>.png` (8-bit,
    truncated like the official saver) and, with `evaluate`, scores it exactly as `p3m eval`
    does. The outcome's details hold the solve record ("solve"), the metrics ("metrics") and the
    trimap used ("trimap").
    """

    def __init__(
        self,
        baseline: Baseline,
        out_dir: Path,
        max_pixels: int | None,
        trimap_source: str,
        user_trimaps: Path | None,
        trimap_kernel: int | None,
        reuse_trimaps: bool = False,
        evaluate: bool = True,
    ) -> None:
        self.baseline = baseline
        self.out_dir = out_dir
        self.max_pixels = max_pixels
        self.trimap_source = trimap_source
        self.user_trimaps = user_trimaps
        self.generated_dir = out_dir / "trimap"
        self.trimap_kernel = trimap_kernel
        self.reuse_trimaps = reuse_trimaps
        self.evaluate = evaluate

    def item(self, sample: Sample) -> Item:
        return Item(sample.name, Path(sample.image), {"alpha": self.out_dir / f"{sample.name}.png"}, sample)

    def trimap_path(self, sample: Sample) -> Path:
        """The sample's trimap: from the user's folder, the data set, or generated from its alpha."""
        from p3m.data.trimap import trimap_from_alpha
        from p3m.io import read_alpha_u8, write_png

        if self.user_trimaps is not None:
            candidate = self.user_trimaps / f"{sample.name}.png"
            if not candidate.is_file():
                raise BaselineError(f"no trimap {sample.name}.png in the trimap folder", self.user_trimaps)
            return candidate
        if sample.trimap is not None:
            return Path(sample.trimap)
        generated = self.generated_dir / f"{sample.name}.png"
        if not (self.reuse_trimaps and generated.is_file()):
            write_png(generated, trimap_from_alpha(read_alpha_u8(sample.alpha), self.trimap_kernel))
        return generated

    def load(self, item: Item) -> tuple[np.ndarray, np.ndarray, Path]:
        from p3m.io import read_image, read_trimap

        sample: Sample = item.payload
        trimap_path = self.trimap_path(sample)
        image = read_image(sample.image)
        trimap = read_trimap(trimap_path)
        if trimap.shape != image.shape[:2]:
            raise ShapeMismatchError(
                f"trimap is {trimap.shape[1]}x{trimap.shape[0]} but the image "
                f"{Path(sample.image).name} is {image.shape[1]}x{image.shape[0]}",
                trimap_path,
            )
        return image, trimap, trimap_path

    def compute(self, item: Item, loaded: tuple[np.ndarray, np.ndarray, Path]) -> tuple[BaselineAlpha, Path, float]:
        image, trimap, trimap_path = loaded
        started = time.perf_counter()
        result = _estimate_reporting(image, trimap, self.baseline, self.max_pixels, Path(item.payload.image))
        return result, trimap_path, time.perf_counter() - started

    def score(self, sample: Sample, trimap_path: Path) -> dict[str, float]:
        """The prediction's metrics, read and computed as `p3m eval` does."""
        from p3m.evaluation.folder import ImageTask, evaluate_image

        task = ImageTask(sample.name, self.out_dir / f"{sample.name}.png", Path(sample.alpha), trimap_path)
        return evaluate_image(task)

    def write(self, item: Item, result: tuple[BaselineAlpha, Path, float]) -> Outcome:
        from p3m.io import write_alpha

        solved, trimap_path, seconds = result
        write_alpha(item.outputs["alpha"], solved.alpha, truncate=True)
        details: dict[str, Any] = {
            "solve": {
                "size": list(solved.shape),
                "solved_size": list(solved.solved_shape),
                "resized": solved.resized,
                "seconds": round(seconds, 3),
            },
            "trimap": str(trimap_path),
        }
        if self.evaluate:
            details["metrics"] = self.score(item.payload, trimap_path)
        return Outcome(details=details)


def run_baseline(
    method: str | Baseline,
    samples: Sequence[Sample],
    out_dir: str | os.PathLike[str],
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    trimap_dir: str | os.PathLike[str] | None = None,
    trimap_kernel: int | None = None,
    set_name: str | None = None,
    skip_existing: bool = False,
    evaluate: bool = True,
    on_progress: Callable[[int, int, str], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> BaselineRun:
    """Run a baseline on `samples` (`p3m.data.layout.Sample`), write `<name>.png`, score them.

    Trimaps come from `trimap_dir` (PNG by stem) if given, else from each sample's own trimap;
    when a sample has none and `trimap_kernel` is set, one is generated from its ground truth
    with the official `gen_trimap_with_dilate` and written to `out_dir/trimap/` (recorded in the
    run). Predictions are 8-bit PNG, truncated like the official saver, written atomically.
    The samples go through the folder-run engine (`p3m.runs`): a bad image is recorded in
    `failed` with its reason and skipped, `on_event` receives the progress events
    (`on_progress(done, total, name)`, the older callback, is still called per image). With
    `evaluate`, every prediction is scored exactly as `p3m eval` scores a folder
    (`p3m.evaluation.folder.evaluate_image`). `skip_existing` reuses predictions already in
    `out_dir` (a resumed run).
    """
    from p3m.evaluation.folder import FolderEvaluation
    from p3m.evaluation.metrics import summarize
    from p3m.evaluation.record import SkippedFile

    baseline = method if isinstance(method, Baseline) else get_baseline(method)
    if trimap_kernel is not None and trimap_kernel < 1:
        raise ValueError(f"trimap_kernel must be >= 1, got {trimap_kernel}")
    out = Path(out_dir)
    user_trimaps = None if trimap_dir is None else Path(trimap_dir)
    if user_trimaps is not None and not user_trimaps.is_dir():
        raise BaselineError("trimap folder not found", user_trimaps)
    missing = [s.name for s in samples if s.trimap is None]
    if user_trimaps is not None:
        source = "folder"
    elif missing and trimap_kernel is None:
        raise BaselineError(
            f"{len(missing)} of {len(samples)} images have no trimap (e.g. {missing[0]}); trimap-based "
            "baselines need one: pass a trimap folder or a kernel size to generate them from the alpha"
        )
    else:
        source = "generated" if missing else "dataset"
    task = BaselineTask(
        baseline, out, max_pixels, source, user_trimaps, trimap_kernel, reuse_trimaps=skip_existing, evaluate=evaluate
    )
    out.mkdir(parents=True, exist_ok=True)
    if source == "generated":
        task.generated_dir.mkdir(exist_ok=True)
    run = BaselineRun(
        baseline=baseline,
        set_name=set_name,
        out_dir=out,
        max_pixels=max_pixels or None,
        trimap_source=source,
        trimap_kernel=trimap_kernel if source == "generated" else None,
        trimap_dir=user_trimaps if source == "folder" else task.generated_dir if source == "generated" else None,
        gt_dir=None,
    )
    kept = 0

    def forward(event: Event) -> None:
        nonlocal kept
        if on_event is not None:
            on_event(event)
        if isinstance(event, RunStarted):
            kept = event.kept
        elif on_progress is not None and isinstance(event, ItemFinished):
            on_progress(kept + event.finished, len(samples), event.record.key)

    report = run_items(
        [task.item(sample) for sample in samples], task, options=RunOptions(resume=skip_existing), on_event=forward
    )
    rows: list[tuple[str, dict[str, float]]] = []
    trimap_dirs: set[Path] = set()
    gt_dirs: set[Path] = set()
    for sample, record in zip(samples, report.records, strict=True):
        if record.failed:
            run.failed[sample.name] = record.error or "could not be solved"
            continue
        if record.status == KEPT:  # a prediction of an earlier run, reused
            run.solved[sample.name] = {"reused": True}
            trimap_path = None
            if evaluate:
                try:
                    trimap_path = task.trimap_path(sample)
                    metrics = task.score(sample, trimap_path)
                except P3MError as error:
                    logger.info("skipped %s: %s", sample.name, error)
                    run.failed[sample.name] = str(error)
                    run.solved.pop(sample.name)
                    continue
        else:
            run.solved[sample.name] = record.details["solve"]
            trimap_path = Path(record.details["trimap"])
            metrics = record.details.get("metrics")
        if evaluate and trimap_path is not None:
            rows.append((sample.name, metrics))
            trimap_dirs.add(trimap_path.parent)
            gt_dirs.add(Path(sample.alpha).parent)
    if evaluate:
        rows.sort(key=lambda item: item[0])
        names = [name for name, _ in rows]
        summary = summarize([values for _, values in rows], names, accumulate="eval_py")
        run.gt_dir = next(iter(gt_dirs)) if len(gt_dirs) == 1 else None
        run.evaluation = FolderEvaluation(
            rows=rows,
            skipped=[SkippedFile(name, reason) for name, reason in sorted(run.failed.items())],
            summary=summary,
            pred_dir=out,
            gt_dir=run.gt_dir or out,
            trimap_dir=next(iter(trimap_dirs)) if len(trimap_dirs) == 1 else None,
        )
    return run


def _estimate_reporting(
    image: np.ndarray,
    trimap: np.ndarray,
    baseline: Baseline,
    max_pixels: int | None,
    path: Path,
) -> BaselineAlpha:
    """`estimate_alpha_baseline`, with solver failures turned into a BaselineError naming the file."""
    try:
        return estimate_alpha_baseline(image, trimap, baseline, max_pixels)
    except P3MError as error:
        raise BaselineError(error.problem, path) from error
    except (ValueError, ArithmeticError, MemoryError, np.linalg.LinAlgError) as error:
        raise BaselineError(
            f"{baseline.name} failed ({type(error).__name__}: {error}); a smaller max_pixels may help",
            path,
        ) from error
