"""The privacy report of a run: what was found, masked, spared, strengthened and left for a person.

Totals over the per-image reports (`AnonymizeResult.report()`, kept in each manifest record):
faces found per detector, faces masked, face-area pixels spared as transition area, faces
strengthened by the identity check, faces left unverified, the minimum identity distance, the
images sent to `needs_annotation.txt` and why, and the detection cost in seconds per megapixel.
Clips (`p3m anonymize` of videos) are counted apart: videos, frames, frames with faces, face
tracks, what the audit still found. Written as `privacy_report.json` and as the header of the
HTML review sheet.

    >>> report = PrivacyReport()
    >>> for record in records: report.add(record)
    >>> report.to_dict()["faces_by_detector"]
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["PrivacyReport"]


@dataclass
class PrivacyReport:
    """Running totals; `add` takes manifest records (dicts with "name", "status", "report")."""

    verify: str | None = None
    identity_margin: float | None = None
    images: int = 0
    images_with_faces: int = 0
    faces: int = 0
    faces_by_detector: dict[str, int] = field(default_factory=dict)
    faces_masked: int = 0
    landmark_fallbacks: int = 0
    mask_pixels: int = 0
    spared_pixels: int = 0
    strengthened: int = 0
    unverified: int = 0
    min_identity_distance: float | None = None
    min_identity_image: str | None = None
    needs_annotation: dict[str, list[str]] = field(default_factory=dict)
    errors: int = 0
    detection_seconds: float = 0.0
    megapixels: float = 0.0
    videos: int = 0
    video_errors: int = 0
    video_frames: int = 0
    video_frames_with_faces: int = 0
    video_tracks: int = 0
    video_audit_faces_found: int = 0
    video_identity_matches: int = 0

    def add(self, record: dict) -> None:
        """Count one manifest record: an image's (records without a report count as images
        only), or a clip's ("kind": "video", from `p3m.video.runs.VideoAnonymizeTask`), counted
        apart: videos, frames, frames with faces, face tracks and the audit's findings."""
        reasons = list(record.get("needs_annotation") or ())
        if reasons:
            self.needs_annotation[record["name"]] = reasons
        if record.get("kind") == "video":
            self.videos += 1
            self.video_errors += record.get("status") == "error"
            self.video_frames += int(record.get("frames", 0))
            self.video_frames_with_faces += int(record.get("frames_with_faces", 0))
            self.video_tracks += int(record.get("tracks", 0))
            audit = record.get("audit") or {}
            self.video_audit_faces_found += int(audit.get("faces_found", 0))
            self.video_identity_matches += int(audit.get("identity_matches", 0))
            return
        self.images += 1
        if record.get("status") == "error":
            self.errors += 1
        report = record.get("report")
        if not report:
            return
        self.verify = self.verify or report.get("verify")
        self.identity_margin = self.identity_margin or report.get("identity_margin")
        self.faces += report["faces"]
        self.images_with_faces += report["faces"] > 0
        for name, count in report.get("faces_by_detector", {}).items():
            self.faces_by_detector[name] = self.faces_by_detector.get(name, 0) + count
        for key in ("faces_masked", "landmark_fallbacks", "mask_pixels", "spared_pixels",
                    "strengthened", "unverified"):  # fmt: skip
            setattr(self, key, getattr(self, key) + int(report.get(key, 0)))
        distance = report.get("min_identity_distance")
        if distance is not None and (
            self.min_identity_distance is None or distance < self.min_identity_distance
        ):
            self.min_identity_distance = distance
            self.min_identity_image = record["name"]
        detection = report.get("detection") or {}
        self.detection_seconds += detection.get("seconds", 0.0)
        self.megapixels += detection.get("megapixels", 0.0)

    def extend(self, records: Iterable[dict]) -> PrivacyReport:
        for record in records:
            self.add(record)
        return self

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "images_with_faces": self.images_with_faces,
            "errors": self.errors,
            "faces": self.faces,
            "faces_by_detector": dict(sorted(self.faces_by_detector.items())),
            "faces_masked": self.faces_masked,
            "landmark_fallbacks": self.landmark_fallbacks,
            "mask_pixels": self.mask_pixels,
            "spared_pixels": self.spared_pixels,
            "verify": self.verify,
            "identity_margin": self.identity_margin,
            "strengthened": self.strengthened,
            "unverified": self.unverified,
            "min_identity_distance": self.min_identity_distance,
            "min_identity_image": self.min_identity_image,
            "needs_annotation": {name: list(r) for name, r in sorted(self.needs_annotation.items())},
            "detection_seconds": round(self.detection_seconds, 3),
            "detection_seconds_per_megapixel": round(
                self.detection_seconds / self.megapixels, 3
            ) if self.megapixels else None,
            "videos": self.videos,
            "video_errors": self.video_errors,
            "video_frames": self.video_frames,
            "video_frames_with_faces": self.video_frames_with_faces,
            "video_tracks": self.video_tracks,
            "video_audit_faces_found": self.video_audit_faces_found,
            "video_identity_matches": self.video_identity_matches,
        }  # fmt: skip

    def describe_videos(self) -> str:
        """One phrase on the clips, "" without any: `2 video(s) (1 failed): 40 frames, faces in
        31, 3 face track(s); the audit still found 0 face(s), 0 identity match(es)`."""
        if not self.videos:
            return ""
        failed = f" ({self.video_errors} failed)" if self.video_errors else ""
        return (
            f"{self.videos} video(s){failed}: {self.video_frames} frames, faces in {self.video_frames_with_faces}, "
            f"{self.video_tracks} face track(s); the audit still found {self.video_audit_faces_found} face(s), "
            f"{self.video_identity_matches} identity match(es)"
        )

    def html_summary(self) -> str:
        """An HTML fragment (a table and the list of images to annotate) for the review sheet."""
        data = self.to_dict()
        detectors = ", ".join(f"{k} {v}" for k, v in data["faces_by_detector"].items()) or "none"
        distance = data["min_identity_distance"]
        rows = [
            ("images", f"{data['images']} ({data['errors']} failed)"),
            ("faces found", f"{data['faces']} (by detector: {detectors})"),
            ("faces masked", f"{data['faces_masked']} ({data['landmark_fallbacks']} with the ellipse fallback)"),
            ("pixels spared as transition area", f"{data['spared_pixels']} of {data['mask_pixels'] + data['spared_pixels']} face-area pixels"),
            ("identity check", f"{data['verify'] or 'n/a'} (margin {data['identity_margin']})"),
            ("faces strengthened", str(data["strengthened"])),
            ("faces unverified", str(data["unverified"])),
            ("minimum identity distance", "n/a" if distance is None else f"{distance:.3f} ({data['min_identity_image']})"),
            ("detection", f"{data['detection_seconds_per_megapixel']} s per megapixel"),
        ]  # fmt: skip
        if self.videos:
            rows.append(("videos", self.describe_videos()))
        table = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
        )
        annotate = "".join(
            f"<li><b>{html.escape(name)}</b>: {html.escape('; '.join(reasons))}</li>"
            for name, reasons in data["needs_annotation"].items()
        )
        return (
            f"<table class='report'>{table}</table>"
            f"<p>Needs annotation ({len(data['needs_annotation'])}):</p><ul>{annotate or '<li>none</li>'}</ul>"
        )
