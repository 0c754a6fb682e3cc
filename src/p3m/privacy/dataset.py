"""Folder runs of `anonymize` on the folder-run engine: the P3M-10k layout, a manifest, resumable.

Dataset mode (`layout="train"` or `"P3M-500-P"`) writes, under the output folder (the set folder,
e.g. `P3M-10k/train` or `P3M-10k/validation/P3M-500-P`), files named `<stem>.png`:

    blurred_image/   the anonymised image (PNG: lossless, no metadata)
    mask/            the alpha matte, 8-bit
    facemask/        the obfuscated area, 0 / 255
    trimap/          P3M-500-P only: `p3m.data.trimap.trimap_from_alpha` (the official dilate /
                     erode rule) with a fixed `TRIMAP_KERNEL` x `TRIMAP_KERNEL` ellipse

plus `manifest.json` and `manifest.csv` (per image: status, faces with the final obfuscation
method, strength and identity distance of each, mask area, parameters, warnings, audit, the
privacy report), `needs_annotation.txt` (one line per image, `name<TAB>reasons`: no face found
- nothing is written for those until a hand-made mask is given with `facemask_dir`, since an
unobfuscated portrait must not land in `blurred_image/` - or faces left "unverified" by the
identity check, written with a solid fill but to be looked at), `privacy_report.json` and
`privacy_report.html` (the run's totals, see `p3m.privacy.report`, with the flagged images),
and, on request, `review.html` (every image processed). Flat mode (`layout="flat"`, single
images) writes `<stem>.png` and `<stem>.facemask.png`. An input with its own alpha channel
(RGBA, LA, a palette with transparency) keeps it: its output is an RGBA PNG with the same alpha.

The run is a `p3m.runs` run of `AnonymizeTask` (one image per item, keyed by its name): the
engine's journal `manifest.jsonl` is the record of what is done (each image's manifest entry is
its record's details), an image whose outputs all exist and whose record is in the journal is
kept (resume; `blurred_image/` is written last; one with outputs but no record, cut off by a
stop, is redone, so that its manifest entry is not lost), outputs are written atomically, a bad image (unreadable, missing or mis-sized
alpha) is recorded with its reason and the rest go on, and progress comes as typed events. The
same run goes to other processes or machines with an executor (`p3m.scale.RayExecutor`): each
worker builds the task from an `AnonymizeTaskFactory` once (the detectors, landmarkers and the
identity model load once per worker process), and the driver writes the manifest, the review
sheet and the privacy report, aggregated over the run, from the records. With `shard_size` N,
each image's outputs go to `<out>/<shard>/...` (each shard a set folder of at most N images,
see `p3m.runs.shards`); the manifest and reports stay in `<out>`.

    >>> report = anonymize_folder("photos", "mattes", "P3M-10k/train", AnonymizeConfig())
    >>> report = anonymize_samples(samples, "out", config, executor=RayExecutor(workers=8))
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from p3m.detection.faces import DEFAULT_DETECTORS
from p3m.errors import ConfigError, DatasetError, ShapeMismatchError
from p3m.io import (
    VIDEO_SUFFIXES,
    atomic_write_text,
    files_by_stem,
    output_folder,
    read_alpha_u8,
    write_png,
    write_rgba,
)
from p3m.privacy.facemask import TRANSITION_MARGIN
from p3m.runs import (
    FAILED,
    Event,
    Executor,
    Item,
    ItemRecord,
    Outcome,
    RunOptions,
    RunReport,
    run_items,
)
from p3m.runs.journal import JOURNAL_NAME
from p3m.runs.provenance import OUTPUT_SETTINGS
from p3m.runs.shards import plan_shards, provisional_shard_map
from p3m.vocabulary import AnonymizeLayout, OutputKind, values

__all__ = [
    "LAYOUTS",
    "TRIMAP_KERNEL",
    "AnonymizeConfig",
    "AnonymizeTask",
    "AnonymizeTaskFactory",
    "FolderReport",
    "DONE",
    "ERROR",
    "KEPT",
    "NEEDS_ANNOTATION",
    "NEEDS_REVIEW",
    "STATUSES",
    "SampleFiles",
    "anonymize_folder",
    "anonymize_samples",
    "check_config",
    "files_by_stem",
    "match_folder",
    "plan_anonymize",
    "samples_from_paths",
]

logger = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = values(AnonymizeLayout)
TRIMAP_KERNEL = 25
MANIFEST_FIELDS = (
    "name", "status", "faces", "detectors", "mask_area", "mask_fraction", "facemask_source",
    "method", "parameters", "strengthened", "unverified", "min_identity_distance",
    "spared_pixels", "audit_faces_found", "audit_identity_matches", "needs_annotation",
    "warnings", "error", "kind", "frames", "frames_with_faces",
)  # fmt: skip
"""manifest.csv's columns. For a clip ("kind" video) "faces" is its face tracks (each face
followed through the frames), "frames" / "frames_with_faces" its frame counts; for an image
"kind" is image and the frame columns are empty."""


@dataclass
class AnonymizeConfig:
    """Options of a folder run (the CLI flags of `p3m anonymize`)."""

    method: str = "blur"
    layout: str = "train"
    detectors: tuple[str, ...] = DEFAULT_DETECTORS
    landmarks: str = "mediapipe"
    min_confidence: float = 0.5
    transition_margin: int = TRANSITION_MARGIN
    strength: float = 1.0
    alpha_from: str | None = None
    """Compute missing alpha mattes with this model (flat mode); None = skip the exclusion."""
    trimap_kernel: int = TRIMAP_KERNEL
    audit: bool = True
    audit_detectors: tuple[str, ...] | None = None
    """None = every available detector."""
    review: bool = False
    resume: bool = True
    verify: str = "auto"
    """"identity" (dlib attacks each output face; still recognised -> strengthened), "none", or
    "auto" (identity where dlib is installed)."""
    identity_margin: float = 0.65
    alpha_estimated: bool | None = None
    """The given mattes are estimates (never spare the inner face); None: only computed ones."""
    centerface_confidence: float = 0.1
    upscale: float = 2.0
    rotations: tuple[int, ...] = (0, 90, 180, 270)
    detection_preset: str = "thorough"
    """"thorough" or "standard" (`p3m.detection.DETECTION_PRESETS`); the fields above override it."""

    def settings(self, video: bool = False) -> dict[str, Any]:
        """What shapes the written outputs besides the inputs, JSON-able: recorded with each
        image (or clip, `video=True`: the options `anonymize_video` takes) in the run journal, so
        that a later run with other options does not keep them as its own (see
        `check_kept_outputs`). The obfuscation (method, strength), the face search (detectors,
        preset, confidences, upscale, rotations, landmarks), the transition margin, where alpha
        comes from, the identity verification (it strengthens the obfuscation) and the audit
        (its findings are the records' privacy report)."""
        settings: dict[str, Any] = {
            "method": self.method,
            "strength": self.strength,
            "detectors": list(self.detectors),
            "landmarks": self.landmarks,
            "min_confidence": self.min_confidence,
            "transition_margin": self.transition_margin,
            "alpha_from": self.alpha_from,
            "audit": self.audit,
            "audit_detectors": list(self.audit_detectors or ()),
        }
        if video:
            return settings
        from p3m.privacy.verification import resolve_verify

        settings.update(
            detection=self.detection_preset,
            centerface_confidence=self.centerface_confidence,
            upscale=self.upscale,
            rotations=list(self.rotations),
            verify=resolve_verify(self.verify),
            identity_margin=self.identity_margin,
            alpha_estimated=self.alpha_estimated,
        )
        if self.layout == "P3M-500-P":
            settings["trimap_kernel"] = self.trimap_kernel
        return settings

    def detection(self):
        """The face-search configuration (`p3m.detection.DetectionConfig`) of these options."""
        from p3m.detection.multipass import DetectionConfig

        return DetectionConfig.preset(
            self.detection_preset,
            detectors=tuple(self.detectors),
            min_confidence=self.min_confidence,
            centerface_confidence=self.centerface_confidence,
            upscale=self.upscale,
            rotations=tuple(self.rotations),
        )


@dataclass(frozen=True)
class SampleFiles:
    """One input: the image, its alpha matte and hand-made face mask if any."""

    name: str
    image: Path
    alpha: Path | None = None
    facemask: Path | None = None
    alpha_estimated: bool = False
    """The matte is `p3m matte`'s output (`<stem>_alpha.png`): a model's estimate, so the inner
    face is never spared (`p3m.privacy.anonymize(alpha_estimated=True)`)."""


MATTE_ALPHA_SUFFIX = f"_{OutputKind.alpha.value}"
"""The suffix of the mattes `p3m matte` writes (`<stem>_alpha.png`), accepted in --alphas."""


def _matte_for(stem: str, alphas: dict[str, Path]) -> tuple[Path | None, bool]:
    """The matte of `stem` in an alpha folder: `<stem>.*` (a hand-made or given matte), else
    `<stem>_alpha.*` (what `p3m matte` writes, an estimate). (path or None, estimated)."""
    if stem in alphas:
        return alphas[stem], False
    written = alphas.get(stem + MATTE_ALPHA_SUFFIX)
    return written, written is not None


def _sample(stem: str, image: Path, alphas: dict[str, Path], masks: dict[str, Path]) -> SampleFiles:
    alpha, estimated = _matte_for(stem, alphas)
    return SampleFiles(stem, image, alpha, masks.get(stem), estimated)


DONE, KEPT, NEEDS_REVIEW, NEEDS_ANNOTATION, ERROR = "done", "kept", "needs_review", "needs_annotation", "error"
STATUSES: tuple[str, ...] = (DONE, KEPT, NEEDS_REVIEW, NEEDS_ANNOTATION, ERROR)
"""The status of an image in an anonymise run's manifest (manifest.json, .csv, the CLI table), one each:

* "done": anonymised by this run, nothing for a person to check;
* "kept": anonymised by an earlier run (resume), nothing to check;
* "needs_review": anonymised (its files written, by this run or, with "resumed", an earlier
  one), but a person must check it: a face left unverified by the identity check, or a face the
  audit found outside every face mask; listed in needs_annotation.txt with the reasons;
* "needs_annotation": no face found, nothing written (an unobfuscated portrait must not land in
  the outputs) until a hand-made mask is given (`facemask_dir`); listed in needs_annotation.txt;
* "error": not processed (unreadable, mis-sized matte, ...); the reason in "error".

The run journal (manifest.jsonl) records "done", "needs_review" or "needs_annotation" for the
images it processed, and keeps those records when a later run keeps the image.
"""


@dataclass
class FolderReport:
    """What a run did: one manifest record per image (input order), and the totals.

    A record is a dict: "name", "image", "status" (one of `STATUSES`, exactly one per image, so
    the counts add up to the images), "seconds", and for a processed image its faces, mask
    area, parameters, warnings, audit, per-image privacy "report" and "outputs" ("resumed":
    true when an earlier run wrote them); "error" (one line) for a failed one. `run` is the
    engine's report (per-worker figures, wall seconds).
    """

    out_dir: Path
    records: list[dict] = field(default_factory=list)
    run: RunReport | None = None

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)

    @property
    def counts(self) -> dict[str, int]:
        """Images per status (every one of `STATUSES`, zeros included); they sum to the images."""
        return {status: self.count(status) for status in STATUSES}

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "error"]

    @property
    def needs_annotation(self) -> list[str]:
        """Images a person must look at, as needs_annotation.txt lists them: status
        "needs_annotation" (no face found) and "needs_review" (faces left unverified, or found
        by the audit outside every mask)."""
        return [name for name in self.needs_annotation_reasons]

    @property
    def needs_annotation_reasons(self) -> dict[str, list[str]]:
        reasons: dict[str, list[str]] = {}
        for record in self.records:
            if record["status"] not in (NEEDS_ANNOTATION, NEEDS_REVIEW):
                continue
            found = list(record.get("needs_annotation") or ())
            if not found:
                found = ["no face found"] if record["status"] == NEEDS_ANNOTATION else ["flagged"]
            reasons[record["name"]] = found
        return reasons

    def privacy_report(self):
        """The run's `PrivacyReport` (totals over every record)."""
        from p3m.privacy.report import PrivacyReport

        return PrivacyReport().extend(self.records)

    @property
    def audit_faces_found(self) -> int:
        return sum((r.get("audit") or {}).get("faces_found", 0) for r in self.records)

    @property
    def audit_by_detector(self) -> dict[str, int]:
        """Faces still found in all outputs, per detector."""
        totals: dict[str, int] = {}
        for record in self.records:
            for name, count in ((record.get("audit") or {}).get("by_detector") or {}).items():
                totals[name] = totals.get(name, 0) + count
        return totals

    @property
    def audit_identity_matches(self) -> int:
        return sum((r.get("audit") or {}).get("identity_matches", 0) for r in self.records)


def match_folder(
    images_dir: str | PathLike[str],
    alphas_dir: str | PathLike[str] | None,
    facemask_dir: str | PathLike[str] | None = None,
) -> list[SampleFiles]:
    """Images of a folder matched by stem with their alpha mattes and hand-made face masks.

    A matte is `<stem>.*` in `alphas_dir` or, failing that, `<stem>_alpha.png` (what `p3m matte`
    writes; such a matte counts as an estimate, see `SampleFiles.alpha_estimated`)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError("image folder does not exist", images_dir)
    alphas: dict[str, Path] = {}
    if alphas_dir is not None:
        if not Path(alphas_dir).is_dir():
            raise DatasetError("alpha folder does not exist", alphas_dir)
        alphas = files_by_stem(Path(alphas_dir))
    masks: dict[str, Path] = {}
    if facemask_dir is not None:
        if not Path(facemask_dir).is_dir():
            raise DatasetError("face-mask folder does not exist", facemask_dir)
        masks = files_by_stem(Path(facemask_dir))
    return [_sample(stem, path, alphas, masks) for stem, path in files_by_stem(images_dir).items()]


def _output_paths(out_dir: Path, name: str, layout: str) -> dict[str, Path]:
    if layout == "flat":
        return {"facemask": out_dir / f"{name}.facemask.png", "image": out_dir / f"{name}.png"}
    paths = {
        "mask": out_dir / "mask" / f"{name}.png",
        "facemask": out_dir / "facemask" / f"{name}.png",
    }
    if layout == "P3M-500-P":
        paths["trimap"] = out_dir / "trimap" / f"{name}.png"
    paths["image"] = out_dir / "blurred_image" / f"{name}.png"  # last: marks the sample complete
    return paths


def _parameters(config: AnonymizeConfig, regions: Sequence) -> dict:
    parameters: dict = {
        "strength": config.strength,
        "landmarks": config.landmarks,
        "transition_margin": config.transition_margin,
    }
    if config.method == "blur":
        parameters["blur_sigma"] = [r.parameter for r in regions]
    elif config.method == "mosaic":
        parameters["mosaic_block"] = [int(r.parameter) for r in regions]
    if config.layout == "P3M-500-P":
        parameters["trimap_kernel"] = config.trimap_kernel
    return parameters


def _shard_outputs(name: str, layout: str) -> list[PurePath]:
    """An image's output files relative to its shard folder (to find them if shards.jsonl is lost)."""
    return [path.relative_to("/") for path in _output_paths(Path("/"), name, layout).values()]


def samples_from_paths(
    paths: Iterable[str | PathLike[str]],
    alphas_dir: str | PathLike[str] | None = None,
    facemask_dir: str | PathLike[str] | None = None,
) -> list[SampleFiles]:
    """Samples for listed image files (e.g. from `p3m.io.read_path_list`), named by stem and
    matched by stem with the mattes of `alphas_dir` and the hand-made masks of `facemask_dir`.

    The files are not checked here (a missing one fails alone when its item runs); two files
    with one stem are both kept and the run fails the second, naming both.
    """
    alphas = files_by_stem(Path(alphas_dir)) if alphas_dir is not None else {}
    masks = files_by_stem(Path(facemask_dir)) if facemask_dir is not None else {}
    samples = []
    for path in paths:
        path = Path(path)
        samples.append(_sample(path.stem, path, alphas, masks))
    return samples


def plan_anonymize(
    samples: Iterable[SampleFiles], out_dir: str | PathLike[str], layout: str, shard_size: int = 0
) -> list[Item]:
    """One run item per sample: key = its name, outputs = its files in `layout` under `out_dir`
    (with `shard_size` > 0, under the sample's shard folder `<out_dir>/<shard>`, recorded in
    `<out_dir>/shards.jsonl` before anything is written). Every output is an image of the
    source's size (`Item.sized_like_source`): a kept one of another size is redone."""
    samples = list(samples)
    out_dir = Path(out_dir)
    folders: dict[str, Path] = {}
    if shard_size:
        names = [sample.name for sample in samples]
        shards = plan_shards(out_dir, names, shard_size, lambda name: _shard_outputs(name, layout))
        folders = {name: out_dir / shard for name, shard in shards.items()}
    items = []
    for sample in samples:
        outputs = _output_paths(folders.get(sample.name, out_dir), sample.name, layout)
        items.append(Item(sample.name, sample.image, outputs, sample, sized_like_source=tuple(outputs)))
    return items


class AnonymizeTask:
    """The `p3m.runs.Task` of an anonymise run: one `SampleFiles` per item (`item.payload`).

    `load` reads the image (RGB uint8, EXIF-rotated), its own alpha channel, the matte (uint8,
    checked against the image size; required outside flat mode) and the hand-made face mask;
    `compute` runs `p3m.privacy.anonymize` with the config's options, the audit and, for a
    flagged image or with `config.review`, the review thumbnail; `write` writes the layout's
    files atomically, the anonymised image last, and reports the image's manifest entry as
    the record's details (status "done"; "needs_review" when written but a person must check it;
    or "needs_annotation" with nothing written when no face was found: see `STATUSES`) and the review entry as an attachment. The models (detectors, landmarks,
    identity descriptor, audit detectors) are loaded on first use, once per process.
    """

    def __init__(self, config: AnonymizeConfig) -> None:
        self.config = config
        self.settings = config.settings()

    def load(
        self, item: Item
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None, str | None]:
        from p3m.privacy.pipeline import read_with_alpha

        sample: SampleFiles = item.payload
        image, input_alpha = read_with_alpha(sample.image)
        alpha_u8 = None
        if sample.alpha is not None:
            alpha_u8 = read_alpha_u8(sample.alpha)
            if alpha_u8.shape != image.shape[:2]:
                raise ShapeMismatchError(
                    f"alpha matte is {alpha_u8.shape[1]}x{alpha_u8.shape[0]}, image "
                    f"{sample.image.name} is {image.shape[1]}x{image.shape[0]}",
                    sample.alpha,
                )
        elif self.config.layout != "flat":
            raise DatasetError(
                f"no alpha matte named {sample.name}.* or {sample.name}{MATTE_ALPHA_SUFFIX}.png in the alpha folder",
                sample.image,
            )
        manual = None
        if sample.facemask is not None:
            manual = read_alpha_u8(sample.facemask) > 127
            if manual.shape != image.shape[:2]:
                raise ShapeMismatchError(
                    f"face mask is {manual.shape[1]}x{manual.shape[0]}, image is {image.shape[1]}x{image.shape[0]}",
                    sample.facemask,
                )
        from p3m.io import first_frame_note

        return image, input_alpha, alpha_u8, manual, first_frame_note(sample.image)

    def compute(self, item: Item, loaded: tuple) -> dict[str, Any]:
        from p3m.privacy.audit import audit_anonymized, image_status
        from p3m.privacy.pipeline import anonymize, blank_hidden

        config = self.config
        sample: SampleFiles = item.payload
        image, input_alpha, alpha_u8, manual, frames_note = loaded
        result = anonymize(
            image,
            alpha_u8,
            config.method,
            alpha_from=config.alpha_from if alpha_u8 is None else None,
            facemask=manual,
            detectors=config.detectors,
            landmarks=config.landmarks,
            min_confidence=config.min_confidence,
            transition_margin=config.transition_margin,
            strength=config.strength,
            alpha_estimated=(
                config.alpha_estimated if config.alpha_estimated is not None else (sample.alpha_estimated or None)
            ),
            verify=config.verify,
            identity_margin=config.identity_margin,
            detection=config.detection(),
        )
        mask_area = int(result.facemask.sum())
        record: dict[str, Any] = {
            "method": config.method,
            "faces": [f.to_dict() for f in result.faces],
            "facemask_source": "manual" if manual is not None else "detected",
            "mask_area": mask_area,
            "mask_fraction": round(mask_area / result.facemask.size, 5),
            "parameters": _parameters(config, result.regions),
            "warnings": ([frames_note] if frames_note else []) + list(result.warnings),
            "report": result.report(),
            "needs_annotation": list(result.needs_annotation),
            "settings": self.settings,
        }
        if input_alpha is not None:
            record["input_alpha"] = "kept"
        computed: dict[str, Any] = {"record": record, "review": None}
        if manual is None and not result.faces:
            record["status"] = "needs_annotation"
            computed["review"] = self._review(sample.name, image, result.facemask, (), ["no face found"], True)
            return computed
        audit = None
        if config.audit:
            audit = audit_anonymized(result, image, config.audit_detectors)
            record["audit"] = audit.to_dict()
            if not audit.passed:
                record["warnings"].append(audit.warning())
        record["status"], record["needs_annotation"] = image_status(result, audit, manual is not None)
        flagged = bool(record["warnings"]) or bool(record["needs_annotation"])
        if config.review or flagged:
            notes = [f"{len(result.faces)} face(s), {config.method}"] + record["warnings"]
            boxes = audit.boxes if audit is not None else ()
            computed["review"] = self._review(sample.name, result.image, result.facemask, boxes, notes, flagged)
        # The file keeps the input's alpha, and no colour under alpha 0 (what the input hid).
        image_out = blank_hidden(result.image, input_alpha)
        computed.update(image=image_out, facemask=result.facemask, alpha=alpha_u8, input_alpha=input_alpha)
        return computed

    @staticmethod
    def _review(name: str, image: np.ndarray, facemask: np.ndarray, boxes: Any, notes: list[str], flagged: bool) -> Any:
        from p3m.privacy.review import review_entry

        return review_entry(name, image, facemask, boxes, notes, flagged=flagged)

    def write(self, item: Item, computed: dict[str, Any]) -> Outcome:
        record = dict(computed["record"])
        status = record.pop("status")
        attachments = {} if computed["review"] is None else {"review": computed["review"]}
        if status not in (DONE, NEEDS_REVIEW):
            return Outcome(status=status, outputs={}, details=record, attachments=attachments)
        alpha_u8, input_alpha = computed["alpha"], computed["input_alpha"]
        for kind, path in item.outputs.items():  # the anonymised image last: it marks the image done
            if kind == "mask":
                write_png(path, alpha_u8)
            elif kind == "facemask":
                write_png(path, computed["facemask"].astype(np.uint8) * 255)
            elif kind == "trimap":
                from p3m.data.trimap import trimap_from_alpha

                write_png(path, trimap_from_alpha(alpha_u8, self.config.trimap_kernel))
            elif input_alpha is not None:
                write_rgba(path, computed["image"], input_alpha)  # nothing hidden becomes visible
            else:
                write_png(path, computed["image"])
        return Outcome(status=status, outputs=dict(item.outputs), details=record, attachments=attachments)


@dataclass(frozen=True)
class AnonymizeTaskFactory:
    """A `p3m.runs.TaskFactory` for `AnonymizeTask` (picklable: the config only); a Ray worker
    builds the task once and its models load once in that worker's process."""

    config: AnonymizeConfig

    def __call__(self) -> AnonymizeTask:
        return AnonymizeTask(self.config)


def manifest_record(record: ItemRecord) -> dict:
    """An image's manifest entry from its run record: engine "failed" -> "error"; a kept image
    that a person must check stays "needs_review" (with "resumed": true), see `STATUSES`."""
    entry: dict[str, Any] = {"name": record.key, "image": record.source}
    entry.update(record.details)
    entry.pop(OUTPUT_SETTINGS, None)  # the journal's provenance of each file: not a manifest field
    if record.outputs:
        entry["outputs"] = dict(record.outputs)
    status = ERROR if record.status == FAILED else record.status
    if status == KEPT:
        entry["resumed"] = True
        if record.details.get("needs_annotation"):
            status = NEEDS_REVIEW
    elif status == DONE and record.details.get("needs_annotation"):
        status = NEEDS_REVIEW  # a record journalled before needs_review existed
    entry["status"] = status
    if record.error is not None:
        entry["error"] = record.error
    entry["seconds"] = round(record.seconds, 3)
    return entry


def _csv_row(record: dict) -> dict:
    audit = record.get("audit") or {}
    report = record.get("report") or {}
    video = record.get("kind") == "video"
    return {
        "name": record["name"],
        "status": record["status"],
        "faces": record.get("tracks", "") if video else len(record.get("faces", [])),
        "kind": "video" if video else "image",
        "frames": record.get("frames", "") if video else "",
        "frames_with_faces": record.get("frames_with_faces", "") if video else "",
        "detectors": ";".join(sorted({d for f in record.get("faces", []) for d in f["detectors"]})),
        "mask_area": record.get("mask_area", ""),
        "mask_fraction": record.get("mask_fraction", ""),
        "facemask_source": record.get("facemask_source", ""),
        "method": record.get("method", ""),
        "parameters": json.dumps(record.get("parameters", {}), sort_keys=True),
        "strengthened": report.get("strengthened", ""),
        "unverified": report.get("unverified", ""),
        "min_identity_distance": report.get("min_identity_distance", ""),
        "spared_pixels": report.get("spared_pixels", ""),
        "needs_annotation": " | ".join(record.get("needs_annotation") or ()),
        "audit_faces_found": audit.get("faces_found", ""),
        "audit_identity_matches": audit.get("identity_matches", ""),
        "warnings": " | ".join(record.get("warnings", [])),
        "error": record.get("error", ""),
    }


def write_manifest(report: FolderReport, config: AnonymizeConfig) -> None:
    """manifest.json (everything), manifest.csv (one row per image), needs_annotation.txt."""

    out_dir = report.out_dir
    videos = sum(record.get("kind") == "video" for record in report.records)
    summary = {
        "images": len(report.records) - videos,
        "videos": videos,
        "done": report.count(DONE),
        "kept": report.count(KEPT),
        "needs_review": report.count(NEEDS_REVIEW),
        "needs_annotation": report.count(NEEDS_ANNOTATION),
        "errors": report.count(ERROR),
        "audit_faces_found": report.audit_faces_found,
        "audit_by_detector": report.audit_by_detector,
        "audit_identity_matches": report.audit_identity_matches,
    }
    privacy = report.privacy_report()
    summary.update(
        strengthened=privacy.strengthened,
        unverified=privacy.unverified,
        min_identity_distance=privacy.min_identity_distance,
    )
    document = {"config": asdict(config), "summary": summary, "images": report.records}
    atomic_write_text(out_dir / "manifest.json", json.dumps(document, indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    for record in report.records:
        writer.writerow(_csv_row(record))
    atomic_write_text(out_dir / "manifest.csv", buffer.getvalue())
    atomic_write_text(
        out_dir / "needs_annotation.txt",
        "".join(
            f"{name}\t{'; '.join(reasons)}\n"
            for name, reasons in report.needs_annotation_reasons.items()
        ),
    )
    atomic_write_text(
        out_dir / "privacy_report.json",
        json.dumps({"config": asdict(config), **privacy.to_dict()}, indent=1) + "\n",
    )


def check_kept_outputs(out_dir: Path, items: Sequence[Item], settings: dict[str, Any], noun: str) -> None:
    """Raise ConfigError, before any work, when an item's outputs in `out_dir` were made with
    other settings than `settings` (`AnonymizeConfig.settings`), as its run journal records
    them per output file: a run with another method or strength must not keep the earlier
    images and report them as its own. The message is `p3m matte`'s
    (`p3m.inference.batch.raise_other_settings`: the difference in CLI options, `--overwrite`).

    Outputs with no record are not counted: an anonymise run redoes them anyway (it keeps an
    item only when the journal records it). A record journalled before settings were is read
    by its "method" and "parameters" (the options it recorded), the rest taken as equal."""
    from p3m.inference.batch import raise_other_settings, recorded_other_settings

    other = recorded_other_settings(
        out_dir / JOURNAL_NAME, ((item.key, item.outputs.values()) for item in items), settings,
        unrecorded=False, legacy=lambda record: _legacy_settings(record, settings),
    )  # fmt: skip
    raise_other_settings(out_dir, other, settings, noun)


def _legacy_settings(record: ItemRecord, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The settings of a record journalled before anonymise runs recorded them: its "method"
    and the options among its "parameters"; what it does not say is taken as `settings`'."""
    details = record.details or {}
    if record.status == FAILED or not isinstance(details.get("method"), str):
        return None
    parameters = details.get("parameters") if isinstance(details.get("parameters"), dict) else {}
    known = {key: value for key, value in parameters.items() if key in settings}
    return {**settings, **known, "method": details["method"]}


def check_config(config: AnonymizeConfig) -> None:
    """Raise ConfigError (or MissingDependencyError) for options that are wrong for every image,
    once, before a run: layout, method, landmark scheme, detector names, verification, and the
    model of `alpha_from` (loaded here, then kept for the run)."""
    from p3m.detection.faces import expand_detector_names
    from p3m.privacy.landmarks import LANDMARK_SCHEMES
    from p3m.privacy.obfuscation import METHODS
    from p3m.privacy.pipeline import check_alpha_from
    from p3m.privacy.verification import resolve_verify

    resolve_verify(config.verify)
    config.detection()
    if config.layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {config.layout!r}; choose from {', '.join(LAYOUTS)}")
    if config.method not in METHODS:
        raise ConfigError(
            f"unknown obfuscation method {config.method!r}; choose from {', '.join(METHODS)}"
        )
    if config.landmarks not in LANDMARK_SCHEMES:
        raise ConfigError(
            f"unknown landmark scheme {config.landmarks!r}; choose from {', '.join(LANDMARK_SCHEMES)}"
        )
    expand_detector_names(config.detectors)
    if config.audit_detectors:
        expand_detector_names(config.audit_detectors)
    check_alpha_from(config.alpha_from)


def anonymize_samples(
    samples: Iterable[SampleFiles],
    out_dir: str | PathLike[str],
    config: AnonymizeConfig,
    on_event: Callable[[Event], None] | None = None,
    *,
    options: RunOptions | None = None,
    executor: Executor | None = None,
    shard_size: int = 0,
    others: Sequence[ItemRecord] = (),
) -> FolderReport:
    """Anonymise `samples` into `out_dir` as one engine run (see the module doc); never raises
    for one bad image.

    `others`: the records of the run's other items, journalled in the same `manifest.jsonl` by
    their own run (the clips of `p3m.video.runs.anonymize_videos`): they are entries of the
    manifest (.json, .csv), the counts and the privacy report too, after the images.

    `on_event` receives the run's progress events (`p3m.runs.RunStarted`, `ItemFinished`,
    `RunFinished`). `options`: the engine's options (`threads`: torch threads per worker, the
    same in every engine for byte-identical outputs); `config.resume=False` recomputes
    everything. `executor` runs the images elsewhere (e.g. `p3m.scale.RayExecutor`); the
    outputs, manifest and reports are the same. `shard_size`: see `plan_anonymize`. Raises
    ConfigError for wrong options and MissingDependencyError for a missing model package (both
    before any image, or from the first worker that meets them); KeyboardInterrupt after the
    images finished are journalled (the next run keeps them).
    """
    check_config(config)
    out_dir = output_folder(out_dir)
    # Kept images keep their journalled manifest entries: one without (outputs written, record
    # lost in a stop) is redone, so the manifest and privacy report cover every image.
    options = options or RunOptions()
    options = dataclasses.replace(options, kept_needs_record=True, overwrite=options.overwrite or not config.resume)
    with provisional_shard_map(out_dir, on_event) as forward:
        items = plan_anonymize(samples, out_dir, config.layout, shard_size)
        if not options.overwrite:
            check_kept_outputs(out_dir, items, config.settings(), "image")
        run = run_items(
            items, AnonymizeTaskFactory(config), out_dir / JOURNAL_NAME, options, forward, executor=executor
        )
    records = [manifest_record(record) for record in [*run.records, *others]]
    for entry in records[len(run.records):]:  # a clip that failed has no details: say what it is
        if entry.get("image") and Path(entry["image"]).suffix.lower() in VIDEO_SUFFIXES:
            entry.setdefault("kind", "video")
    if others:
        run = RunReport([*run.records, *others], run.seconds + sum(r.seconds for r in others if r.status != KEPT), run.workers)
    report = FolderReport(out_dir, records, run)
    write_manifest(report, config)
    from p3m.privacy.review import write_contact_sheet

    review = [record.attachments["review"] for record in run.records if "review" in record.attachments]
    summary = report.privacy_report().html_summary()
    flagged = [entry for entry in review if entry.flagged]
    write_contact_sheet(
        out_dir / "privacy_report.html", flagged, "p3m anonymize: privacy report", summary
    )
    if config.review:
        write_contact_sheet(out_dir / "review.html", review, summary_html=summary)
    return report


def anonymize_folder(
    images_dir: str | PathLike[str],
    alphas_dir: str | PathLike[str],
    out_dir: str | PathLike[str],
    config: AnonymizeConfig | None = None,
    facemask_dir: str | PathLike[str] | None = None,
    on_event: Callable[[Event], None] | None = None,
    *,
    options: RunOptions | None = None,
    executor: Executor | None = None,
    shard_size: int = 0,
) -> FolderReport:
    """Dataset mode: every image of `images_dir` with its matte from `alphas_dir` (matched by
    stem); the rest as `anonymize_samples`. Raises DatasetError for a missing folder or none
    with images."""
    config = config or AnonymizeConfig()
    samples = match_folder(images_dir, alphas_dir, facemask_dir)
    if not samples:
        raise DatasetError("no images found", images_dir)
    return anonymize_samples(
        samples, out_dir, config, on_event, options=options, executor=executor, shard_size=shard_size
    )
