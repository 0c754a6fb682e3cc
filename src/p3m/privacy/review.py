"""Contact sheet for a person to check anonymised outputs: one self-contained HTML file.

Each entry shows the output with the face-mask outline (red) and the boxes detectors still find
(yellow), as an embedded PNG thumbnail, with the image name, face count, warnings and audit.

    >>> entry = review_entry("p_1", anonymised, facemask, notes=["1 face"])   # keeps only a thumbnail
    >>> write_contact_sheet("review.html", [entry])
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike

import cv2
import numpy as np
from PIL import Image

from p3m.io import atomic_write_text

__all__ = ["ReviewEntry", "outline_image", "review_entry", "write_contact_sheet"]

THUMBNAIL_SIDE = 384
_MASK_COLOUR = (255, 0, 0)
_AUDIT_COLOUR = (255, 220, 0)


@dataclass
class ReviewEntry:
    """One image of the contact sheet; `flagged` entries are listed first and framed in red."""

    name: str
    thumbnail_uri: str
    notes: list[str] = field(default_factory=list)
    flagged: bool = False


def review_entry(
    name: str,
    image: np.ndarray,
    facemask: np.ndarray,
    audit_boxes: Sequence[Sequence[float]] = (),
    notes: Sequence[str] = (),
    flagged: bool = False,
) -> ReviewEntry:
    """Entry with the outlined thumbnail already encoded, so a long run keeps only small strings."""
    thumbnail = outline_image(image, facemask, audit_boxes)
    return ReviewEntry(name, _png_data_uri(thumbnail), list(notes), flagged)


def outline_image(
    image: np.ndarray,
    facemask: np.ndarray,
    audit_boxes: Sequence[Sequence[float]] = (),
    side: int = THUMBNAIL_SIDE,
) -> np.ndarray:
    """Thumbnail (longer side `side`) with the mask outline and the audit boxes drawn on it."""
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    thumbnail = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image.copy()
    mask = (
        cv2.resize(facemask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        if scale < 1
        else facemask.astype(np.uint8)
    )
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(thumbnail, contours, -1, _MASK_COLOUR, 1, lineType=cv2.LINE_AA)
    for box in audit_boxes:
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        cv2.rectangle(thumbnail, (x0, y0), (x1, y1), _AUDIT_COLOUR, 1)
    return thumbnail


def _png_data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1em;background:#f4f4f4}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;padding:6px;background:#fff;border:2px solid #ddd;max-width:396px}
figure.flagged{border-color:#d00}
figcaption{font-size:12px;word-break:break-all}
img{display:block;max-width:384px}
table.report{border-collapse:collapse;background:#fff;margin-bottom:1em}
table.report th,table.report td{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}
"""


def write_contact_sheet(
    path: str | PathLike[str],
    entries: Sequence[ReviewEntry],
    title: str = "p3m anonymize review",
    summary_html: str = "",
) -> None:
    """Write a self-contained HTML contact sheet (thumbnails embedded as PNG data URIs), atomically.

    `summary_html` (trusted HTML, e.g. `PrivacyReport.html_summary()`) goes above the grid."""
    ordered = sorted(entries, key=lambda e: (not e.flagged, e.name))
    flagged = sum(e.flagged for e in entries)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        summary_html,
        f"<p>{len(entries)} image(s), {flagged} flagged (red frame: warnings or faces still found). "
        "Red line: obfuscated area; yellow box: a face a detector still finds.</p><div class='grid'>",
    ]
    for entry in ordered:
        notes = "".join(f"<br>{html.escape(note)}" for note in entry.notes)
        parts.append(
            f"<figure class='{'flagged' if entry.flagged else ''}'>"
            f"<img src='{entry.thumbnail_uri}' alt='{html.escape(entry.name)}'>"
            f"<figcaption><b>{html.escape(entry.name)}</b>{notes}</figcaption></figure>"
        )
    parts.append("</div></body></html>\n")
    atomic_write_text(path, "".join(parts))
