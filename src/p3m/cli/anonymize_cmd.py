"""`p3m anonymize`: obfuscate faces the P3M-10k way (hair and semi-transparent pixels untouched)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from p3m.cli import _scale
from p3m.cli._options import caps_image_pixels
from p3m.vocabulary import AnonymizeLayout, DetectionPreset
from p3m.vocabulary import LandmarkScheme as Landmarks
from p3m.vocabulary import ObfuscationMethod as Method
from p3m.vocabulary import Verification as Verify

if TYPE_CHECKING:
    from rich.console import Console

    from p3m.privacy.dataset import FolderReport

# Dataset-mode output layouts: those of p3m.vocabulary but "flat" (the single-image mode's).
Layout = Enum(  # type: ignore[misc]
    "Layout",
    {member.name: member.value for member in AnonymizeLayout if member is not AnonymizeLayout.flat},
    type=str,
)


def _rotations(value: str) -> tuple[int, ...]:
    from p3m.detection.multipass import check_rotations
    from p3m.errors import ConfigError

    try:
        rotations = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--rotations takes degrees such as 0,90,180,270, got {value!r}") from None
    return check_rotations(rotations, "--rotations")


def _split(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(part.strip() for part in value.split(",") if part.strip())


def anonymize_command(
    images: list[Path] | None = typer.Argument(
        None, help="Single-image mode: image files (needs -o); video files are anonymised frame by frame with face tracking."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Output folder (dataset mode: the set folder, e.g. P3M-10k/train).",
    ),
    images_dir: Path | None = typer.Option(
        None, "--images", help="Dataset mode: folder of images."
    ),
    alphas_dir: Path | None = typer.Option(
        None,
        "--alphas",
        help="Folder of alpha mattes matched by file stem (required in dataset mode).",
    ),
    alpha: list[Path] | None = typer.Option(
        None, "--alpha", help="Single-image mode: alpha matte of each IMAGE, in order (repeat)."
    ),
    facemask_dir: Path | None = typer.Option(
        None,
        "--facemask-dir",
        help="Hand-made face masks (same stems, white = obfuscate); they replace detection.",
    ),
    method: Method = typer.Option(Method.blur, "--method", help="Obfuscation (paper Table 8)."),
    layout: Layout = typer.Option(
        Layout.train, "--layout", help="Dataset mode: 'P3M-500-P' also writes trimap/."
    ),
    alpha_from: str = typer.Option(
        "auto",
        "--alpha-from",
        help="Single-image mode without a matte: compute one with this model ('auto', 'selfie-cf', a P3M-Net name).",
    ),
    no_alpha: bool = typer.Option(
        False,
        "--no-alpha",
        help="Single-image mode: do not compute a matte; hair over the face is then obfuscated too.",
    ),
    detectors: str = typer.Option(
        "default",
        "--detectors",
        help="Comma list of detectors to union: default (centerface + mediapipe + dlib-hog where installed), centerface, mediapipe (short+full range), mediapipe-short, mediapipe-full, dlib-hog, dlib-cnn, dlib.",
    ),
    centerface_confidence: float = typer.Option(
        0.1, "--centerface-confidence", min=0.01, max=0.99, help="CenterFace detection threshold."
    ),
    upscale: float = typer.Option(
        2.0,
        "--upscale",
        min=1.0,
        help="Factor of the upscaled CenterFace pass where small faces can be (1 = off).",
    ),
    rotations: str = typer.Option(
        "0,90,180,270",
        "--rotations",
        help="Orientations searched besides upright (always searched), for heads lying down or upside down (degrees, comma list).",
    ),
    verify: Verify = typer.Option(
        Verify.auto,
        "--verify",
        help="identity: attack each obfuscated face with dlib's face descriptor and strengthen until it is not recognised; none; auto = identity where dlib is installed.",
    ),
    identity_margin: float = typer.Option(
        0.65,
        "--identity-margin",
        min=0.0,
        help="Descriptor distance a face must reach (dlib's same-person threshold is 0.6).",
    ),
    alpha_estimated: bool = typer.Option(
        False,
        "--alpha-estimated",
        help="The given mattes are estimates (model output), not exact: never spare the inner face.",
    ),
    landmarks: Landmarks = typer.Option(
        Landmarks.mediapipe,
        "--landmarks",
        help="Face Mesh (Apache-2.0) or dlib's 68 points (non-commercial training data).",
    ),
    detect: DetectionPreset = typer.Option(
        DetectionPreset.thorough,
        "--detect",
        help="Face search: thorough (every orientation also upscaled, the default) or standard "
        "(upscaled upright only: same faces >= 24 px on group photos, fewer small turned ones, faster).",
    ),
    min_confidence: float = typer.Option(
        0.5,
        "--min-confidence",
        min=0.05,
        max=0.99,
        help="MediaPipe detection threshold (lower = more recall).",
    ),
    transition_margin: int = typer.Option(
        3,
        "--transition-margin",
        min=0,
        help="Pixels by which the 0<alpha<1 area is dilated before it is removed from the mask.",
    ),
    strength: float = typer.Option(
        1.0, "--strength", min=0.1, help="Multiplies blur sigma / mosaic block size."
    ),
    trimap_kernel: int = typer.Option(
        25,
        "--trimap-kernel",
        min=1,
        help="P3M-500-P trimap: ellipse kernel size of the dilate/erode rule.",
    ),
    audit: bool = typer.Option(
        True,
        "--audit/--no-audit",
        help="Run the detectors again on each output and check identity.",
    ),
    audit_detectors: str | None = typer.Option(
        None,
        "--audit-detectors",
        help="Comma list for the audit (default: every available detector; dlib-cnn costs seconds per image).",
    ),
    review: bool = typer.Option(
        False, "--review", help="Write review.html: each output with its mask outline."
    ),
    resume: bool = typer.Option(
        True, "--resume/--overwrite", help="Keep images whose outputs already exist."
    ),
    recursive: bool = typer.Option(
        False, "--recursive", "-r",
        help="Single-image mode: descend into the sub-folders of folders given (the outputs mirror the tree).",
    ),
    input_lists: list[Path] | None = _scale.INPUT_LIST_OPTION,
    shard_size: int = _scale.SHARD_SIZE_OPTION,
    engine: _scale.Engine = _scale.ENGINE_OPTION,
    ray_address: str | None = _scale.RAY_ADDRESS_OPTION,
    workers: int | None = _scale.WORKERS_OPTION,
    batch_size: int | None = _scale.BATCH_SIZE_OPTION,
    cpus_per_worker: float | None = _scale.CPUS_OPTION,
    gpus_per_worker: float | None = _scale.GPUS_OPTION,
    threads: int | None = _scale.THREADS_OPTION,
) -> None:
    """Obfuscate faces except the matte's transition area; write outputs, manifest and audit.

    Dataset mode: `p3m anonymize --images DIR --alphas DIR --out DIR [--layout train|P3M-500-P]`
    writes blurred_image/, mask/, facemask/ (and trimap/). Single-image mode:
    `p3m anonymize IMAGE... -o OUTDIR` writes <stem>.png and <stem>.facemask.png. Each obfuscated
    face is attacked with dlib's face descriptor and strengthened until it is not recognised
    (--verify). Each image gets one status: done, kept (an earlier run wrote it), needs_review
    (written, but a face stays unverified or the audit found one outside the masks),
    needs_annotation (no face found: not written) or error; the last three's reasons are in
    needs_annotation.txt and the manifest; privacy_report.json/.html sum the run up. Exit code 1 if an
    image failed. At scale: --input-list (dataset mode, with --alphas), --shard-size, and
    --engine ray (the same outputs, manifest and reports).
    """
    from rich.console import Console

    from p3m.cli._ui import run_progress
    from p3m.errors import ConfigError
    from p3m.io import files_by_stem, read_path_list
    from p3m.privacy.dataset import (
        AnonymizeConfig,
        SampleFiles,
        anonymize_samples,
        match_folder,
        samples_from_paths,
    )
    from p3m.privacy.landmarks import DLIB68_LICENCE_NOTE
    from p3m.runs import RunOptions

    out_console = Console(emoji=False)
    err = Console(emoji=False, stderr=True)
    if out is None:
        raise ConfigError("--out / -o is required")
    if str(out) == "-" or any(str(path) == "-" for path in images or ()):
        raise ConfigError(
            "p3m anonymize reads image files and writes a folder (outputs, manifest, privacy "
            "report): - (stdin/stdout) is not supported; give files or a folder and -o OUTDIR"
        )
    for folder in (path for path in images or () if path.is_dir()):
        if folder.resolve() == out.resolve():
            raise ConfigError(
                f"{folder}: the output folder must differ from the input folder (anonymize "
                "writes <stem>.png and <stem>.facemask.png beside the photos); choose another -o"
            )
    dataset_mode = images_dir is not None or bool(input_lists)
    if recursive and dataset_mode:
        raise ConfigError("-r is for folders given as inputs; a dataset run reads its --images folder alone")
    if bool(images) == dataset_mode:
        raise ConfigError(
            "give either image files (single-image mode) or --images DIR / --input-list FILE "
            "(dataset mode)"
        )
    executor = _scale.make_executor(engine, ray_address, workers, batch_size, cpus_per_worker, gpus_per_worker)
    if landmarks is Landmarks.dlib68:
        err.print(
            f"[yellow]licence:[/yellow] {DLIB68_LICENCE_NOTE}", highlight=False, soft_wrap=True
        )

    config = AnonymizeConfig(
        method=method.value,
        layout=layout.value if dataset_mode else "flat",
        detectors=_split(detectors) or ("default",),
        landmarks=landmarks.value,
        min_confidence=min_confidence,
        transition_margin=transition_margin,
        strength=strength,
        alpha_from=None if no_alpha else alpha_from,
        trimap_kernel=trimap_kernel,
        audit=audit,
        audit_detectors=_split(audit_detectors),
        review=review,
        resume=resume,
        verify=verify.value,
        identity_margin=identity_margin,
        alpha_estimated=True if alpha_estimated else None,
        centerface_confidence=centerface_confidence,
        upscale=upscale,
        rotations=_rotations(rotations),
        detection_preset=detect.value,
    )
    from p3m.privacy.pipeline import check_alpha_from

    check_alpha_from(config.alpha_from, "--alpha-from")  # before any image: a typo fails once
    # Video files go to p3m.video; when only videos were given, that is the whole run.
    from p3m.cli.video_cmd import anonymize_video_inputs

    folders_given = [path for path in images or () if path.is_dir()]
    files_given = [path for path in images or () if not path.is_dir()]
    # Videos in folders run too, as in p3m matte; with -r sub-folders too, the outputs mirroring the tree.
    images, videos, relative = _expand_inputs(images or (), recursive, out)
    if not recursive:
        _note_sub_folders(err, folders_given, out)
    # p3m never takes its own outputs as inputs (`photos/*` after a run into photos/): those a
    # run journal lists or a marked folder holds. Never by name alone: a user's `face_rgba.png`
    # passed over would be a face never anonymised.
    from p3m.inference.batch import leave_out_own_outputs

    images, _, _ = leave_out_own_outputs(images, named=files_given, by_name=False)
    videos, _, _ = leave_out_own_outputs(videos, named=files_given, by_name=False)  # <stem>.mp4 a journal lists
    videos = [(path, relative[path]) for path in videos]
    video_failures, video_run = anonymize_video_inputs(videos, out, config, len(images)) if videos else ([], None)
    video_records = video_run.records if video_run is not None else []
    if videos and not images and not dataset_mode:
        # The clips' manifest.json, manifest.csv and privacy report, as a run of images writes.
        report = anonymize_samples([], out, config, others=video_records)
        _scale.print_run_summary(
            out_console, video_run, unit="video", labels={"needs_review": "needs review"},
        )  # fmt: skip
        raise typer.Exit(code=1 if video_failures else 0)
    if dataset_mode:
        if alphas_dir is None:
            raise ConfigError("dataset mode needs --alphas DIR (the mattes are written to mask/)")
        samples = match_folder(images_dir, alphas_dir, facemask_dir) if images_dir is not None else []
        _note_dataset_videos(err, images_dir)
        if input_lists:
            taken = {sample.image.resolve() for sample in samples}
            listed = [path for listing in input_lists for path in read_path_list(listing)]
            samples += [
                sample for sample in samples_from_paths(listed, alphas_dir, facemask_dir)
                if sample.image.resolve() not in taken
            ]  # fmt: skip
        if not samples:
            raise ConfigError(f"no images found in {images_dir or ', '.join(map(str, input_lists or ()))}")
    else:
        if not images:
            raise ConfigError("no images found in " + ", ".join(map(str, folders_given)))
        if alpha and len(alpha) != len(images):
            raise ConfigError(f"--alpha given {len(alpha)} time(s) for {len(images)} image(s)")
        alphas = files_by_stem(alphas_dir) if alphas_dir is not None else {}
        masks = files_by_stem(facemask_dir) if facemask_dir is not None else {}
        samples = [
            SampleFiles(
                relative[path].with_suffix("").as_posix(), path, alpha[i] if alpha else alphas.get(path.stem),
                masks.get(path.stem),
            )  # named by the path relative to its folder: `sub/a` -> OUT/sub/a.png with -r
            for i, path in enumerate(images)
        ]
    from p3m.detection.faces import available_detectors, expand_detector_names

    audit_names = (
        expand_detector_names(config.audit_detectors)
        if config.audit_detectors
        else available_detectors()
    )
    if audit:
        err.print(f"audit detectors: {', '.join(audit_names)}", highlight=False)
    from p3m.privacy.verification import NO_DLIB_NOTE, resolve_verify

    if verify is Verify.auto and resolve_verify("auto") == "none":
        err.print(f"[yellow]note:[/yellow] {NO_DLIB_NOTE}", highlight=False, soft_wrap=True)

    if executor is not None:
        out_console.print(f"engine: {getattr(executor, 'name', type(executor).__name__)}", highlight=False)
    # The videos ran first: an interrupted line counts them too (every input of the command).
    others = (len(video_records) - len(video_run.failed), len(video_records)) if video_run is not None else (0, 0)
    with run_progress("[bold]anonymizing", err, unit="images", others=others) as on_event:
        report = anonymize_samples(
            samples, out, config, on_event,
            options=RunOptions(threads=threads), executor=executor, shard_size=shard_size,
            others=video_records,
        )  # fmt: skip

    _print_summary(out_console, err, report)
    if report.run is not None:
        _scale.print_run_summary(
            out_console, report.run, unit="input" if video_records else "image", per_worker=executor is not None,
            labels={"needs_annotation": "not written (no face found)"},
            counts={("failed" if status == "error" else status): n for status, n in report.counts.items()},
        )
    if report.failed or video_failures:
        raise typer.Exit(code=1)


def _expand_inputs(
    given: list[Path], recursive: bool, out: Path
) -> tuple[list[Path], list[Path], dict[Path, Path]]:
    """(files for the image code, video files, each file's path relative to its input root) of
    the files and folders given (`p3m.io.expand_folders`; with `recursive` every sub-folder's
    too, but not the output folder's). A file named directly is relative as its name alone."""
    from p3m.io import expand_folders

    images: list[Path] = []
    videos: list[Path] = []
    relative: dict[Path, Path] = {}
    skip = out.resolve()
    for path in given:
        folders = [path]
        if recursive and path.is_dir():
            folders += sorted(
                entry for entry in path.rglob("*")
                if entry.is_dir() and not entry.name.startswith(".") and skip not in (entry.resolve(), *entry.resolve().parents)
            )  # fmt: skip
        for folder in folders:
            found_images, found_videos = expand_folders([folder])
            for file in found_images + found_videos:
                relative.setdefault(file, file.relative_to(path) if path.is_dir() else Path(file.name))
            images += found_images
            videos += found_videos
    return list(dict.fromkeys(images)), list(dict.fromkeys(videos)), relative


def _note_sub_folders(err: Console, folders: list[Path], out: Path) -> None:
    """One line on the sub-folders of the folders given that hold images or videos and that a
    run without -r leaves out (not the output folder)."""
    from p3m.io import is_image_file, is_video_file

    skip = out.resolve()
    left = [
        entry for folder in folders for entry in sorted(folder.iterdir())
        if entry.is_dir() and not entry.name.startswith(".") and entry.resolve() != skip
        and any(is_image_file(file) or is_video_file(file) for file in entry.rglob("*"))
    ]  # fmt: skip
    if left:
        shown = ", ".join(path.name for path in left[:3]) + (", ..." if len(left) > 3 else "")
        err.print(
            f"note: left out {len(left)} sub-folder(s) with images or videos ({shown}; -r searches them)",
            highlight=False, soft_wrap=True,
        )  # fmt: skip


def _note_dataset_videos(err: Console, images_dir: Path | None) -> None:
    """One line on the clips of a dataset run's --images folder: a dataset (blurred_image/,
    mask/, ...) holds images only, so they are left out, said so, with how to anonymise them."""
    from p3m.io import is_video_file

    if images_dir is None or not images_dir.is_dir():
        return
    clips = sorted(path for path in images_dir.iterdir() if is_video_file(path))
    if clips:
        shown = ", ".join(path.name for path in clips[:3]) + (", ..." if len(clips) > 3 else "")
        err.print(
            f"note: left out {len(clips)} video(s) in {images_dir} ({shown}): videos are not part of a "
            f"dataset run; anonymise them with p3m anonymize {images_dir}/{clips[0].name} -o DIR",
            highlight=False, soft_wrap=True,
        )  # fmt: skip


TABLE_ROWS = 200
"""Runs of more images print no per-image table (manifest.csv has one row per image)."""


def _print_summary(out_console: Console, err: Console, report: FolderReport) -> None:
    """The per-image table (up to `TABLE_ROWS` images) and totals on stdout; missing faces and
    warnings on stderr."""
    if len(report.records) <= TABLE_ROWS:
        _print_table(out_console, report)
    else:
        out_console.print(
            f"{len(report.records)} images: one row per image in {report.out_dir / 'manifest.csv'}",
            highlight=False,
        )
    _print_totals(out_console, err, report)


def _print_table(out_console: Console, report: FolderReport) -> None:
    from rich.table import Table

    table = Table(title=f"p3m anonymize -> {report.out_dir}", title_justify="left")
    table.add_column("image")
    table.add_column("status")
    table.add_column("faces", justify="right")
    table.add_column("mask px", justify="right")
    table.add_column("audit: still found", justify="right")
    table.add_column("identity matches", justify="right")
    for record in report.records:
        audit = record.get("audit") or {}
        table.add_row(
            record["name"],
            record["status"],
            f"{record.get('tracks', 0)} tracked, in {record.get('frames_with_faces', 0)}/{record.get('frames', 0)} frames"
            if record.get("kind") == "video"
            else str(len(record.get("faces", []))) if "faces" in record else "",
            str(record.get("mask_area", "")),
            str(audit.get("faces_found", "")),
            str(audit.get("identity_matches", "")),
        )
    from p3m.cli._ui import print_table, table_console

    print_table(table_console(), table)  # piped: at its natural width, as every result table


def _print_totals(out_console: Console, err: Console, report: FolderReport) -> None:
    privacy = report.privacy_report()
    distance = privacy.min_identity_distance
    videos = f"; videos: {privacy.describe_videos()}" if privacy.videos else ""
    out_console.print(
        f"privacy: {privacy.images} image(s): {privacy.faces} face(s) found "
        f"({', '.join(f'{k} {v}' for k, v in sorted(privacy.faces_by_detector.items())) or 'none'}), "
        f"{privacy.faces_masked} masked, {privacy.spared_pixels} px spared as transition area, "
        f"{privacy.strengthened} strengthened, {privacy.unverified} unverified, minimum identity "
        f"distance {'n/a' if distance is None else f'{distance:.3f}'}{videos}. "
        f"Report: {report.out_dir / 'privacy_report.json'} and privacy_report.html",
        highlight=False,
    )
    # The counts per status are the run summary's line (printed after this one), once.
    counts = "" if report.run is not None else (
        f"done {report.count('done')}, kept {report.count('kept')}, needs review {report.count('needs_review')}, "
        f"needs annotation {report.count('needs_annotation')}, failed {len(report.failed)}; "
    )
    out_console.print(
        f"{counts}audit total: {report.audit_faces_found} face(s) still found, "
        f"{report.audit_identity_matches} identity match(es). Manifest: {report.out_dir / 'manifest.json'}",
        highlight=False,
    )
    if report.audit_by_detector:
        out_console.print(
            "audit by detector: "
            + ", ".join(f"{name} {count}" for name, count in report.audit_by_detector.items())
            + " (MediaPipe short-range also fires on obfuscated faces from head shape; "
            "identity matches are the leaks to fix)",
            highlight=False,
        )
    if report.needs_annotation:
        err.print(
            "[yellow]needs annotation or review (see needs_annotation.txt; a hand-made mask goes in with --facemask-dir):[/yellow] "
            + ", ".join(
                f"{name} ({'; '.join(reasons)})"
                for name, reasons in report.needs_annotation_reasons.items()
            ),
            highlight=False,
            soft_wrap=True,
        )
    for record in report.records:
        if record.get("kind") == "video":
            continue  # a clip's warnings were printed when it was written
        written_now = record["status"] in ("done", "needs_review") and not record.get("resumed")
        for warning in record.get("warnings", []) if written_now else []:
            err.print(
                f"[yellow]{record['name']}:[/yellow] {warning}", highlight=False, soft_wrap=True
            )


def register(app: typer.Typer) -> None:
    """Add `p3m anonymize` to the command line."""
    app.command("anonymize")(caps_image_pixels(anonymize_command))
