"""The audit names faces left visible: a face found outside every face mask is a leak."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")


def test_a_face_outside_every_face_mask_is_reported_as_missed() -> None:
    from skimage import data

    from p3m.privacy.audit import audit_image

    image = np.ascontiguousarray(data.astronaut())
    nothing_masked = np.zeros(image.shape[:2], np.uint8)
    audit = audit_image(image, detectors=("centerface",), facemask=nothing_masked)
    assert audit.faces_found >= 1 and audit.missed_faces == audit.faces_found
    warning = audit.warning()
    assert warning is not None and "outside every face mask, left visible" in warning
    assert audit.to_dict()["uncovered"] and not audit.passed
    # The same detection over a masked face is not a missed one (it may be head shape).
    masked = nothing_masked.copy()
    x0, y0, x1, y1 = (round(v) for v in audit.boxes[0])
    masked[y0:y1, x0:x1] = 1
    again = audit_image(image, detectors=("centerface",), facemask=masked)
    assert again.faces_found >= 1 and again.missed_faces == again.faces_found - 1
    # Without a face mask nothing is judged.
    assert audit_image(image, detectors=("centerface",)).uncovered == []


def test_anonymize_takes_p3m_matte_result_as_an_estimated_matte() -> None:
    pytest.importorskip("mediapipe")
    import p3m
    from p3m.inference.api import MatteResult

    image = np.full((64, 64, 3), 128, np.uint8)
    matte = MatteResult(alpha=np.full((64, 64), 0.5, np.float32), image=image, model="test")
    estimated = p3m.anonymize(image, alpha=matte, verify="none")
    assert estimated.alpha_estimated and estimated.report()["alpha"] == "estimated"
    given = p3m.anonymize(image, alpha=matte.alpha, verify="none")
    assert not given.alpha_estimated and given.report()["alpha"] == "given"


def test_audit_of_an_anonymize_result_judges_against_its_face_mask() -> None:
    from types import SimpleNamespace

    from skimage import data

    from p3m.privacy.audit import audit_anonymized

    image = np.ascontiguousarray(data.astronaut())
    result = SimpleNamespace(image=image, faces=[], facemask=np.zeros(image.shape[:2], bool))
    audit = audit_anonymized(result, image, ("centerface",))
    assert audit.faces_found >= 1 and audit.missed_faces == audit.faces_found
