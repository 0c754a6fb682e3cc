"""`p3m.anonymize_video`: the P3M-10k face obfuscation on every frame, plus face tracking.

Each frame gets the recipe of `p3m.anonymize` for images (the public privacy API is called per
frame, so improvements there apply here): faces detected by the detector union, outlined by
landmarks, the matte's transition area (0 < alpha < 1, from temporally smoothed video matting)
left untouched, blur / mosaic / zeros.

A detector can miss a face in one frame that it finds in the frames around it (motion blur, a
turned head): that frame would leak the face. `FaceTracker` links detections across frames
into tracks and fills such gaps: where a track has detections on both sides of a gap of at
most `max_gap` frames, the face box is interpolated linearly, enlarged by `fill_margin`, and
its inscribed ellipse is obfuscated as well; a track is also held for `hold` frames before its
first and after its last detection (a face entering or leaving while the detector lags).
Frames are released once nothing later can change their masks (`max_gap` frames of lookahead,
kept in a bounded buffer).

Verification: every `audit_every`-th frame and every frame where tracking filled a face is run
through the detectors again, with the identity check on the faces of tracks seen in at least two
frames (`p3m.privacy.audit.audit_image`; see `TrackedFace.confirmed`); the report counts faces
still found and identity matches. A JSON-lines manifest beside the output lists each frame's faces and how each was found.

    >>> report = anonymize_video("clip.mp4", "out/clip.mp4", method="blur")
    >>> report.filled_frames, report.audit_faces_found
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import ConfigError, VideoWriteError
from p3m.video.events import EventCallback, ProgressMeter, VideoFinished, VideoStarted
from p3m.video.pipeline import Consumer
from p3m.video.reader import Frame, VideoInfo, VideoReader
from p3m.video.temporal import TemporalConfig

__all__ = [
    "AnonymizedFrame",
    "FaceTracker",
    "TrackedFace",
    "VideoAnonymizeReport",
    "anonymize_video",
    "iter_anonymize_video",
]

logger = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".faces.jsonl"


# --------------------------------------------------------------------------- tracking


Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackedFace:
    """A face box in one frame: `source` is "detected", "interpolated" or "held".

    `confirmed`: the track was detected in at least two frames (so far, lookahead included).
    A face seen once is obfuscated all the same, but it is often a false detection (a collar,
    a pattern), so the audit's identity check leaves it out: comparing a blurred non-face with
    the original gives descriptor distances under dlib's threshold (measured: 0.42-0.61).
    """

    track: int
    box: Box
    source: str
    confirmed: bool = True


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre_distance(a: Box, b: Box) -> float:
    """Distance of the centres in units of the boxes' mean size."""
    ax, ay = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    size = (
        np.sqrt(max(a[2] - a[0], 1) * max(a[3] - a[1], 1))
        + np.sqrt(max(b[2] - b[0], 1) * max(b[3] - b[1], 1))
    ) / 2
    return float(np.hypot(ax - bx, ay - by) / size)


@dataclass
class _Track:
    ident: int
    detections: dict[int, Box] = field(default_factory=dict)
    count: int = 0

    @property
    def last_index(self) -> int:
        return max(self.detections)

    def box_before(self, index: int) -> tuple[int, Box] | None:
        earlier = [i for i in self.detections if i < index]
        if not earlier:
            return None
        i = max(earlier)
        return i, self.detections[i]

    def box_after(self, index: int) -> tuple[int, Box] | None:
        later = [i for i in self.detections if i > index]
        if not later:
            return None
        i = min(later)
        return i, self.detections[i]


class FaceTracker:
    """Links per-frame face boxes into tracks and fills the frames a detector missed.

    Feed frames in order with `add(index, boxes)`; `release(index)` gives the faces of a frame
    once no later detection can change them (call it for frames at least `lookahead` behind
    the newest), `release(index, final=True)` at the end of the clip. Boxes are
    (x0, y0, x1, y1) pixels. A detection joins the track whose last box overlaps it best
    (IoU >= `iou_threshold`, or centres within `max_shift` box sizes); the track must have
    been seen within `max_gap` frames.
    """

    def __init__(
        self,
        max_gap: int = 12,
        hold: int = 2,
        iou_threshold: float = 0.2,
        max_shift: float = 0.75,
    ) -> None:
        if max_gap < 1 or hold < 0:
            raise ConfigError(f"max_gap must be >= 1 and hold >= 0, got {max_gap}, {hold}")
        self.max_gap = max_gap
        self.hold = hold
        self.iou_threshold = iou_threshold
        self.max_shift = max_shift
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._newest = -1

    @property
    def lookahead(self) -> int:
        """Frames a frame must wait for before `release` is final for it."""
        return max(self.max_gap, self.hold)

    def add(self, index: int, boxes: Sequence[Box]) -> None:
        if index <= self._newest:
            raise ValueError(f"frames must be added in order: {index} after {self._newest}")
        self._newest = index
        live = [t for t in self._tracks if index - t.last_index <= self.max_gap + 1]
        claimed: set[int] = set()
        for box in sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])):
            best, best_score = None, 0.0
            for track in live:
                if track.ident in claimed:
                    continue
                last = track.detections[track.last_index]
                score = _iou(box, last)
                if score < self.iou_threshold and _centre_distance(box, last) > self.max_shift:
                    continue
                score = max(score, 1e-3)
                if score > best_score:
                    best, best_score = track, score
            if best is None:
                best = _Track(self._next_id)
                self._next_id += 1
                self._tracks.append(best)
            best.detections[index] = tuple(float(v) for v in box)  # type: ignore[assignment]
            best.count += 1
            claimed.add(best.ident)

    def release(self, index: int, final: bool = False) -> list[TrackedFace]:
        """The faces of frame `index`: detected, interpolated across a gap, or held at a track end."""
        if not final and self._newest - index < self.lookahead:
            raise ValueError(f"frame {index} is not final yet (newest frame {self._newest})")
        faces: list[TrackedFace] = []
        for track in self._tracks:
            confirmed = track.count >= 2
            if index in track.detections:
                faces.append(
                    TrackedFace(track.ident, track.detections[index], "detected", confirmed)
                )
                continue
            before, after = track.box_before(index), track.box_after(index)
            if (
                before is not None
                and after is not None
                and after[0] - before[0] - 1 <= self.max_gap
            ):
                t = (index - before[0]) / (after[0] - before[0])
                box = tuple(b0 + t * (b1 - b0) for b0, b1 in zip(before[1], after[1], strict=True))
                faces.append(TrackedFace(track.ident, box, "interpolated", confirmed))  # type: ignore[arg-type]
            elif before is not None and after is None and index - before[0] <= self.hold:
                faces.append(TrackedFace(track.ident, before[1], "held", confirmed))
            elif after is not None and before is None and after[0] - index <= self.hold:
                faces.append(TrackedFace(track.ident, after[1], "held", confirmed))
        self._forget(index)
        return faces

    def _forget(self, index: int) -> None:
        """Drop what no frame after `index` can need (keeps memory flat on long clips)."""
        horizon = index - self.max_gap - 1
        for track in self._tracks:
            old = [i for i in track.detections if i < horizon]
            # Keep the newest old detection: it may still bound a gap.
            for i in sorted(old)[:-1]:
                del track.detections[i]
        self._tracks = [
            t
            for t in self._tracks
            if t.last_index >= horizon or index - t.last_index <= self.max_gap + 1
        ]


def _enlarge(box: Box, margin: float, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return (
        max(0.0, x0 - dx),
        max(0.0, y0 - dy),
        min(float(width), x1 + dx),
        min(float(height), y1 + dy),
    )


# --------------------------------------------------------------------------- anonymisation


@dataclass
class AnonymizedFrame:
    """One output frame: the anonymised image, the obfuscated mask and the faces behind it."""

    index: int
    pts: int
    time: float
    image: np.ndarray = field(repr=False)
    facemask: np.ndarray = field(repr=False)
    faces: list[TrackedFace]
    audit: dict | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def filled(self) -> bool:
        """True when tracking obfuscated a face the detectors missed in this frame."""
        return any(face.source != "detected" for face in self.faces)


@dataclass
class VideoAnonymizeReport:
    """Totals of `anonymize_video`; per-frame details are in the manifest (JSON lines)."""

    source: Path
    output: Path
    manifest: Path
    frames: int = 0
    frames_with_faces: int = 0
    filled_frames: int = 0
    tracks: int = 0
    audited_frames: int = 0
    audit_faces_found: int = 0
    audit_identity_matches: int = 0
    audit_uncovered: int = 0
    """Faces the audit found outside every face mask (left visible), summed over audited frames."""
    warnings: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    info: VideoInfo | None = None
    method: str = ""
    """The obfuscation the output used ("blur", "mosaic", "mask"), after any strengthening."""
    strength: float = 1.0
    strengthened: list[str] = field(default_factory=list)
    """One line per pass redone stronger because the audit still matched an identity."""

    @property
    def frames_without_faces(self) -> int:
        return self.frames - self.frames_with_faces

    @property
    def identity_leak(self) -> bool:
        """The audit still matched a face's identity in the output (after any strengthening):
        the video is not anonymised, a failure (`p3m anonymize` exits with code 1)."""
        return self.audit_identity_matches > 0


@dataclass
class _Pending:
    frame: Frame
    alpha: np.ndarray | None
    facemask: np.ndarray
    faces: list[Any]
    warnings: list[str]


def _default_audit_detectors() -> tuple[str, ...]:
    from p3m.detection.faces import available_detectors

    # dlib's CNN costs seconds per frame on a CPU: left out of the per-frame video audit.
    return tuple(name for name in available_detectors() if name != "dlib-cnn")


def iter_anonymize_video(
    source: str | os.PathLike[str],
    method: str = "blur",
    *,
    on_event: EventCallback | None = None,
    **options: Any,
) -> Iterator[AnonymizedFrame]:
    """Anonymised frames of a video in order (for your own loop); `options` as `anonymize_video`
    (without `keep_audio` and `overwrite`). Each `AnonymizedFrame` has the image, the mask that
    was obfuscated, the tracked faces and the audit result when the frame was audited."""
    reader = VideoReader(source)
    timing: list[float] = []
    try:
        yield from _anonymized_frames(
            reader, method, on_event=on_event, outputs={}, elapsed=timing, **options
        )
    finally:
        reader.close()
    if on_event is not None and timing:
        on_event(VideoFinished(reader.path, int(timing[1]), timing[0]))


def _anonymized_frames(
    reader: VideoReader,
    method: str = "blur",
    *,
    alpha_from: str | None = "auto",
    detectors: Sequence[str] = ("mediapipe",),
    landmarks: str = "mediapipe",
    min_confidence: float = 0.5,
    transition_margin: int | None = None,
    strength: float = 1.0,
    max_gap: int | None = None,
    hold: int = 2,
    fill_margin: float = 0.15,
    audit: bool = True,
    audit_every: int | None = None,
    audit_detectors: Sequence[str] | None = None,
    temporal: bool | TemporalConfig = True,
    workers: int | None = None,
    queue_size: int = 4,
    on_event: EventCallback | None = None,
    outputs: dict[str, Path],
    elapsed: list[float],
) -> Iterator[AnonymizedFrame]:
    """The anonymisation pipeline; appends (elapsed seconds, frames) to `elapsed` when done."""
    from p3m.detection.faces import Face
    from p3m.privacy import anonymize, face_masks_for_image
    from p3m.privacy.facemask import TRANSITION_MARGIN, polygon_mask
    from p3m.privacy.pipeline import doubtful_detection

    info = reader.info
    rate = float(info.frame_rate) if info.frame_rate else 25.0
    gap = max_gap if max_gap is not None else max(2, round(0.5 * rate))
    tracker = FaceTracker(max_gap=gap, hold=hold)
    every = audit_every if audit_every is not None else max(1, round(rate))
    audit_names = (
        tuple(audit_detectors) if audit_detectors is not None else _default_audit_detectors()
    )
    margin = TRANSITION_MARGIN if transition_margin is None else transition_margin
    meter = ProgressMeter(reader.path, info.frame_count, on_event)

    if alpha_from is not None:
        from p3m.video.matte import (
            DEFAULT_MAX_PIXELS,
            _build_matter,
            _stream,
            _temporal_config,
            default_workers,
        )

        model = "selfie-cf" if alpha_from == "selfie-cf" else alpha_from
        matter = _build_matter(model, None, "hybrid", None, DEFAULT_MAX_PIXELS)
        if on_event is not None:
            on_event(
                VideoStarted(reader.path, info, "anonymize", outputs, matter.name, matter.note)
            )
        matted = (
            (item.index, item.pts, item.image, _snap(item.alpha))
            for item, _ in _stream(
                reader,
                matter,
                _temporal_config(temporal),
                foreground=False,
                workers=workers or default_workers(),
                queue_size=queue_size,
            )
        )
    else:
        if on_event is not None:
            on_event(VideoStarted(reader.path, info, "anonymize", outputs, None, None))
        matted = ((f.index, f.pts, f.image, None) for f in reader)

    buffer: deque[_Pending] = deque()
    # Tracks with a detection that is surely a face. A weak detection without landmarks is
    # possibly none (`p3m.anonymize` neither verifies nor strengthens it): the identity check
    # leaves it and the boxes tracking fills from it out, as a descriptor of a few blurred
    # pixels matches another of a few pixels (an 11x15 px "face" at a frame's edge did).
    face_tracks: set[int] = set()

    def finish(pending: _Pending, final: bool) -> AnonymizedFrame:
        frame = pending.frame
        tracked = tracker.release(frame.index, final=final)
        extra, identity_faces = [], []
        for face in tracked:
            if face.source == "detected":
                found = [f for f in pending.faces if tuple(float(v) for v in f.box) == face.box]
                found = [f for f in found if not doubtful_detection(f)]
                if found:
                    face_tracks.add(face.track)
                identity_faces += found if face.confirmed else []
                continue
            filled = Face(
                box=_enlarge(face.box, fill_margin, info.width, info.height),
                score=0.0,
                detectors=("tracked",),
            )
            extra.append(filled)
            if face.confirmed and face.track in face_tracks:
                identity_faces.append(filled)
        facemask = pending.facemask
        if extra:
            facemask = facemask | polygon_mask(facemask.shape, extra)
        result = anonymize(
            frame.image,
            pending.alpha,
            method,
            facemask=facemask,
            transition_margin=margin,
            strength=strength,
        )
        report_audit = None
        if audit and audit_names and (frame.index % every == 0 or extra):
            from p3m.privacy.audit import audit_image

            found = audit_image(
                result.image,
                detectors=audit_names,
                original=frame.image,
                faces=identity_faces,
                facemask=result.facemask,
            )
            report_audit = found.to_dict()
        return AnonymizedFrame(
            frame.index,
            frame.pts,
            frame.time,
            result.image,
            result.facemask,
            tracked,
            report_audit,
            pending.warnings,
        )

    for index, pts, image, alpha in matted:
        frame = Frame(index, image, pts, info.time_base)
        facemask, faces, warnings = face_masks_for_image(
            image, alpha, detectors=detectors, landmarks=landmarks,
            min_confidence=min_confidence, transition_margin=margin,
        )  # fmt: skip
        tracker.add(index, [face.box for face in faces])
        buffer.append(_Pending(frame, alpha, facemask, list(faces), list(warnings)))
        while buffer and index - buffer[0].frame.index >= tracker.lookahead:
            yield finish(buffer.popleft(), final=False)
            meter.advance()
    while buffer:
        yield finish(buffer.popleft(), final=True)
        meter.advance()
    elapsed.extend([meter.finish(), float(meter.done)])


def _snap(alpha: np.ndarray) -> np.ndarray:
    """A computed matte as `p3m.privacy.pipeline.compute_alpha` treats it: 8-bit steps, values
    within its snap distance of 0 or 1 set there (estimation noise must not punch holes in the
    face mask)."""
    from p3m.privacy.pipeline import COMPUTED_ALPHA_SNAP

    alpha = np.round(np.clip(alpha, 0, 1) * 255).astype(np.float32) / np.float32(255)
    alpha[alpha >= 1 - COMPUTED_ALPHA_SNAP] = 1
    alpha[alpha <= COMPUTED_ALPHA_SNAP] = 0
    return alpha


def anonymize_video(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    method: str = "blur",
    *,
    alpha_from: str | None = "auto",
    detectors: Sequence[str] = ("mediapipe",),
    landmarks: str = "mediapipe",
    min_confidence: float = 0.5,
    transition_margin: int | None = None,
    strength: float = 1.0,
    max_gap: int | None = None,
    hold: int = 2,
    fill_margin: float = 0.15,
    audit: bool = True,
    audit_every: int | None = None,
    audit_detectors: Sequence[str] | None = None,
    keep_audio: bool = True,
    temporal: bool | TemporalConfig = True,
    workers: int | None = None,
    overwrite: bool = True,
    queue_size: int = 4,
    on_event: EventCallback | None = None,
    strengthen: bool = True,
) -> VideoAnonymizeReport:
    """Obfuscate every face of a video with the P3M-10k recipe and face tracking.

    `destination`: an .mp4 file, or a folder receiving `<stem>.mp4`; the manifest
    `<stem>.faces.jsonl` is written beside it (one JSON object per frame: faces with box,
    track and source, audit result when audited). `method`, `detectors`, `landmarks`,
    `min_confidence`, `transition_margin` and `strength` are those of `p3m.anonymize`.
    `alpha_from`: the matting model for the transition area ("auto", "selfie-cf", a P3M-Net
    name; None obfuscates hair over faces too). Tracking: `max_gap` (frames; default half a
    second), `hold`, `fill_margin` (see the module docstring). `audit_every` (frames; default
    one per second) with `audit_detectors` (default: every available detector but dlib's CNN).
    `keep_audio=False` drops the sound (voices identify people too). The output is H.264 MP4
    and appears only when complete. Raises `VideoReadError`, `VideoWriteError`, `ConfigError`.

    Strengthening, as `p3m.anonymize` does per face for images: when the audit (`audit=True`)
    still matches the identity of a face, the clip is obfuscated again on the next rung of
    `p3m.privacy.obfuscation.strengthening_ladder` (blur twice as strong, ..., mosaic, solid
    fill) until no face matches or the ladder ends; each pass costs a whole run of the clip.
    `report.method` / `report.strength` say what the output used, `report.strengthened` the
    steps taken, and `report.identity_leak` is True when even the last rung left a match
    (the CLI then exits with code 1). `strengthen=False` keeps one pass.
    """
    source_path = Path(source).expanduser()
    destination = Path(destination).expanduser()
    if destination.suffix.lower() != ".mp4":
        destination = destination / f"{source_path.stem}.mp4"
    if destination.resolve() == source_path.resolve():
        # This video's problem, not the run's: a folder run reports it and goes on (as images do).
        raise VideoWriteError(
            f"its output {destination.name} would overwrite the input; choose another folder or name", source_path
        )
    manifest = destination.with_name(destination.stem + MANIFEST_SUFFIX)
    reader = VideoReader(source_path)
    info = reader.info
    report = VideoAnonymizeReport(reader.path, destination, manifest, info=info)
    if not overwrite and destination.exists():
        reader.close()
        report.warnings.append("output exists; kept (overwrite=False)")
        return report
    from p3m.privacy.obfuscation import strengthening_ladder

    ladder = strengthening_ladder(method, strength) if strengthen and audit else [(method, strength)]
    start = time.perf_counter()
    history: list[str] = []
    for rung, (step_method, step_strength) in enumerate(ladder):
        if rung:
            reader = VideoReader(source_path)  # a reader iterates once: the clip again, stronger
        report = _anonymize_pass(
            reader, destination, manifest, step_method, keep_audio=keep_audio, queue_size=queue_size,
            on_event=on_event, alpha_from=alpha_from, detectors=detectors, landmarks=landmarks,
            min_confidence=min_confidence, transition_margin=transition_margin, strength=step_strength,
            max_gap=max_gap, hold=hold, fill_margin=fill_margin, audit=audit, audit_every=audit_every,
            audit_detectors=audit_detectors, temporal=temporal, workers=workers,
        )  # fmt: skip
        report.method, report.strength = step_method, step_strength
        if not report.audit_identity_matches or rung + 1 == len(ladder):
            break
        following = ladder[rung + 1]
        strengthened = (
            f"the audit matched the identity of {report.audit_identity_matches} face(s) with "
            f"{step_method} x{step_strength:g}: the clip was obfuscated again with {following[0]} "
            f"x{following[1]:g}"
        )
        logger.info("%s: %s", source_path, strengthened)
        history.append(strengthened)
    report.elapsed = time.perf_counter() - start
    report.strengthened = history
    report.warnings[:0] = history
    if report.frames_with_faces == 0:
        report.warnings.append("no face found in any frame: check the video by hand")
    elif report.frames_without_faces:
        report.warnings.append(
            f"{report.frames_without_faces} of {report.frames} frames have no face (check them if a person is visible)"
        )
    if report.audit_identity_matches:
        last = ", the strongest obfuscation p3m tries" if strengthen else ""  # the ladder's end
        report.warnings.append(
            f"identity leak: the audit matched the identity of {report.audit_identity_matches} face(s) "
            f"with {report.method} x{report.strength:g}{last}: obfuscation too weak, see the manifest"
        )
    if report.audit_uncovered:
        report.warnings.append(
            f"the audit found {report.audit_uncovered} face(s) outside every face mask (left visible) in "
            f"{report.audited_frames} audited frames: see the manifest"
        )
    elif report.audit_faces_found:
        report.warnings.append(
            f"the audit's detectors still fire {report.audit_faces_found} time(s) in {report.audited_frames} "
            "audited frames, all on obfuscated faces (MediaPipe short-range also responds to head shape); "
            + ("none outside the face masks: see the manifest" if not report.audit_identity_matches
               else "see the identity matches above")
        )
    if on_event is not None:
        on_event(
            VideoFinished(
                reader.path,
                report.frames,
                report.elapsed,
                {"video": destination, "manifest": manifest},
            )
        )
    return report


def _anonymize_pass(
    reader: VideoReader,
    destination: Path,
    manifest: Path,
    method: str,
    *,
    keep_audio: bool,
    queue_size: int,
    on_event: EventCallback | None,
    **options: Any,
) -> VideoAnonymizeReport:
    """One pass of `anonymize_video` over the clip with `method` and `options["strength"]`:
    the output and its manifest written (atomically), the report's counts filled in."""
    from p3m.video.writer import VideoWriter

    info = reader.info
    report = VideoAnonymizeReport(reader.path, destination, manifest, info=info)
    try:
        writer = VideoWriter(
            destination,
            "mp4",
            "rgb",
            width=info.width,
            height=info.height,
            time_base=info.time_base,
            frame_rate=info.frame_rate,
            audio_from=reader.path if keep_audio and not info.is_sequence else None,
        )
    except BaseException:
        reader.close()
        raise
    from p3m.io.atomic import atomic_open

    tracks: set[int] = set()
    timing: list[float] = []
    start = time.perf_counter()
    try:
        with (
            atomic_open(manifest, "w", encoding="utf-8") as lines,
            Consumer(
                lambda item: writer.write(item.image, item.pts), size=queue_size, name="p3m-encode"
            ) as sink,
        ):
            for item in _anonymized_frames(
                reader,
                method,
                **options,
                queue_size=queue_size,
                on_event=on_event,
                outputs={"video": destination, "manifest": manifest},
                elapsed=timing,
            ):
                sink.put(item)
                report.frames += 1
                report.frames_with_faces += bool(item.faces)
                report.filled_frames += item.filled
                tracks.update(face.track for face in item.faces)
                if item.audit is not None:
                    report.audited_frames += 1
                    report.audit_faces_found += item.audit["faces_found"]
                    report.audit_identity_matches += item.audit["identity_matches"]
                    report.audit_uncovered += len(item.audit.get("uncovered") or ())
                record = {
                    "frame": item.index,
                    "time": round(item.time, 4),
                    "faces": [
                        {
                            "track": f.track,
                            "box": [round(v, 1) for v in f.box],
                            "source": f.source,
                            "confirmed": f.confirmed,
                        }
                        for f in item.faces
                    ],
                    "mask_area": int(item.facemask.sum()),
                }
                if item.audit is not None:
                    record["audit"] = item.audit
                if item.warnings:
                    record["warnings"] = item.warnings
                lines.write(json.dumps(record) + "\n")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        reader.close()
    report.tracks = len(tracks)
    report.elapsed = time.perf_counter() - start
    report.warnings += reader.warnings
    if writer.note:
        report.warnings.append(writer.note)
    return report
