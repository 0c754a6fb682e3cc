"""Face detection, face mask, obfuscation and audit on real face photos shipped by installed packages."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mediapipe")

from p3m.detection.faces import (  # noqa: E402
    Face,
    available_detectors,
    box_iou,
    dlib_model_path,
    merge_faces,
    run_detector,
)
from p3m.privacy import anonymize, detect_faces  # noqa: E402
from p3m.privacy.audit import audit_image  # noqa: E402
from p3m.privacy.facemask import face_areas, transition_area  # noqa: E402
from p3m.privacy.landmarks import add_landmarks  # noqa: E402

# Mesh points that any privacy mask must cover: eye corners, mouth corners, upper and lower lip.
MESH_INTERIOR = (33, 133, 362, 263, 61, 291, 0, 17)


def _grace_hopper() -> np.ndarray:
    matplotlib = pytest.importorskip("matplotlib")
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _cameraman() -> np.ndarray:
    from skimage import data

    return np.repeat(data.camera()[:, :, None], 3, axis=2)


PHOTOS = {"astronaut": _astronaut, "grace_hopper": _grace_hopper, "cameraman": _cameraman}
# Face boxes read off the photos by eye (x0, y0, x1, y1): each detection must overlap its face.
FACE_BOXES = {
    "astronaut": (175, 75, 270, 180),
    "grace_hopper": (175, 140, 365, 345),
    "cameraman": (200, 120, 275, 200),
}


@pytest.fixture(scope="module", params=sorted(PHOTOS))
def photo(request) -> tuple[str, np.ndarray]:
    return request.param, PHOTOS[request.param]()


def _enlarged(box, factor: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    pad_x, pad_y = (x1 - x0) * (factor - 1) / 2, (y1 - y0) * (factor - 1) / 2
    return x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y


def _inside(mask: np.ndarray, box) -> bool:
    x0, y0, x1, y1 = (round(v) for v in box)
    outside = mask.copy()
    outside[max(0, y0) : y1, max(0, x0) : x1] = False
    return not outside.any()


def _hair_alpha(shape: tuple[int, ...], box) -> np.ndarray:
    """Opaque person with semi-transparent 'strands' crossing the face and a soft left edge."""
    height, width = shape[:2]
    alpha = np.ones((height, width), np.float32)
    alpha[:, : width // 8] = 0.0
    alpha[:, width // 8 : width // 8 + 6] = np.linspace(0.1, 0.9, 6, dtype=np.float32)
    x0, y0, x1, y1 = (round(v) for v in box)
    for x in range(x0, x1, 17):  # 3-px strands with alpha 0.4..0.8 every 17 px over the face
        alpha[y0:y1, x : x + 3] = 0.4 + 0.4 * ((x - x0) % 2)
    return alpha


def test_detects_the_face_in_each_photo(photo):
    name, image = photo
    faces = detect_faces(image)
    # Recall first: a weak detection elsewhere may come along (Grace Hopper's hat badge, 12 px).
    confident = [f for f in faces if f.score >= 0.5]
    assert len(confident) == 1, f"{name}: {faces}"
    assert all(f.size < 0.2 * faces[0].size for f in faces[1:])
    assert box_iou(faces[0].box, FACE_BOXES[name]) > 0.5
    assert faces[0].score > 0.7
    assert {"centerface", "mediapipe-full"} <= set(faces[0].detectors)
    assert faces[0].keypoints5 is not None and faces[0].keypoints5.shape == (5, 2)


def test_no_face_on_a_cat_leaves_the_image_unchanged():
    from skimage import data

    image = data.chelsea()
    result = anonymize(image, alpha=np.ones(image.shape[:2], np.float32))
    assert result.faces == []
    assert not result.facemask.any()
    assert np.array_equal(result.image, image)
    assert any("no face found" in warning for warning in result.warnings)


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_mask_covers_face_interior_and_stays_inside_the_face(name):
    image = PHOTOS[name]()
    result = anonymize(image, alpha=None)
    face = result.faces[0]
    assert face.landmark_scheme == "mediapipe" and face.landmarks.shape == (468, 2)
    interior = np.zeros(image.shape[:2], np.uint8)
    import cv2

    hull = cv2.convexHull(face.landmarks[list(MESH_INTERIOR)]).astype(np.int32)
    cv2.fillPoly(interior, [hull], 1)
    assert interior.sum() > 500
    assert result.facemask[interior > 0].all(), "eyes-to-mouth region not fully masked"
    own = face_areas(image.shape, [face])[0].full(image.shape)
    # the coverage hull's margin (0.15 face widths) may reach a little past the detector's box
    assert _inside(own, _enlarged(face.box, 1.3))
    assert any("no alpha matte" in warning for warning in result.warnings)


def test_dlib68_landmarks_give_a_similar_mask():
    pytest.importorskip("dlib")
    image = _astronaut()
    mesh = anonymize(image).facemask
    dlib68 = anonymize(image, landmarks="dlib68")
    assert dlib68.faces[0].landmark_scheme == "dlib68"
    overlap = (mesh & dlib68.facemask).sum() / (mesh | dlib68.facemask).sum()
    assert overlap > 0.85


@pytest.mark.parametrize("method", ["blur", "mosaic", "mask"])
def test_only_masked_opaque_pixels_change(method):
    image = _astronaut()
    alpha = _hair_alpha(image.shape, FACE_BOXES["astronaut"])
    result = anonymize(image, alpha, method=method)
    transition = (alpha > 0) & (alpha < 1)
    changed = np.any(result.image != image, axis=2)
    assert result.facemask.sum() > 3000
    assert not (result.facemask & transition_area(alpha)).any()
    assert np.array_equal(result.image[~result.facemask], image[~result.facemask])
    assert np.array_equal(result.image[transition], image[transition])
    assert changed.sum() > 0.8 * result.facemask.sum()  # the face really was obfuscated
    if method == "mask":
        assert (result.image[result.facemask] == 0).all()


def test_blurred_face_is_found_by_no_detector_and_identity_is_gone():
    image = _astronaut()
    result = anonymize(image, method="blur")
    face_box = result.faces[0].box
    # dlib's CNN: see the slow test. MediaPipe's short-range model responds to head shape (hair,
    # ears) as well and may fire on the blurred head: the identity check is what counts.
    names = [n for n in available_detectors() if n not in ("dlib-cnn", "mediapipe-short")]
    assert {"centerface", "mediapipe-full"} <= set(names)
    for name in names:
        before = run_detector(image, name)
        after = run_detector(result.image, name)
        assert any(box_iou(f.box, face_box) > 0.3 for f in before), name
        assert not any(box_iou(f.box, face_box) > 0.1 for f in after), (
            f"{name} still finds the face"
        )
    audit = audit_image(result.image, ["mediapipe-full"], original=image, faces=result.faces)
    assert audit.faces_found == 0
    if audit.identity_distances is not None:
        assert audit.identity_distances[0] > 0.6 and audit.identity_matches == 0
        # The same check on the untouched image matches: the audit can see a leak.
        assert (
            audit_image(image, ["mediapipe-full"], original=image, faces=result.faces).identity_matches
            == 1
        )


@pytest.mark.slow
def test_blurred_faces_escape_the_dlib_cnn_detector():
    pytest.importorskip("dlib")
    astronaut = _astronaut()
    assert run_detector(astronaut, "dlib-cnn")  # the CNN does find the original face
    for name in ("astronaut", "grace_hopper"):
        result = anonymize(PHOTOS[name](), method="blur")
        after = run_detector(result.image, "dlib-cnn")
        assert not any(box_iou(f.box, result.faces[0].box) > 0.1 for f in after), name


def test_grace_hopper_blur_escapes_full_range_and_dlib_hog():
    # MediaPipe's short-range model also fires on this head with the face zeroed out (hat, hair,
    # ears): it sees head shape, not identity, so it is left out here (the audit reports it).
    image = _grace_hopper()
    result = anonymize(image, method="blur")
    names = [n for n in ("mediapipe-full", "dlib-hog") if n in available_detectors()]
    for name in names:
        assert not any(
            box_iou(f.box, result.faces[0].box) > 0.1 for f in run_detector(result.image, name)
        ), name


def test_merge_faces_unions_detectors():
    a = Face(box=(10, 10, 50, 50), score=0.9, detectors=("mediapipe-full",))
    b = Face(box=(12, 14, 52, 54), score=0.6, detectors=("dlib-hog",))
    c = Face(box=(100, 100, 140, 140), score=0.55, detectors=("dlib-hog",))
    merged = merge_faces([b, c, a])
    assert len(merged) == 2
    assert merged[0].box == a.box and merged[0].detectors == ("mediapipe-full", "dlib-hog")


def test_dlib_models_are_found_without_importing_face_recognition_models():
    path = dlib_model_path("shape_predictor_68_face_landmarks.dat")
    assert path.is_file() and path.stat().st_size > 1_000_000
    assert "face_recognition_models" not in sys.modules


def test_landmark_fallback_is_the_box_ellipse():
    from p3m.privacy import face_mask

    image = np.full((200, 200, 3), 128, np.uint8)  # no face for Face Mesh to find
    faces, warnings = add_landmarks(
        image, [Face(box=(50, 50, 150, 150), score=0.9, detectors=("x",))]
    )
    assert faces[0].landmarks is None and len(warnings) == 1
    mask = face_mask(image.shape, faces)
    area = np.pi * 55**2  # the inscribed ellipse grown by 10 %
    assert abs(mask.sum() - area) < 0.04 * area  # edge pixels are filled
    assert mask[100, 100] and mask[100, 47] and not mask[55, 55] and _inside(mask, (44, 44, 157, 157))


def test_small_face_in_a_large_image_is_found_by_the_tiled_pass():
    import cv2

    small = cv2.resize(_astronaut(), (256, 256), interpolation=cv2.INTER_AREA)  # face ~48 px
    canvas = np.full((1600, 2048, 3), 200, np.uint8)
    canvas[700:956, 1000:1256] = small
    # MediaPipe alone sees the whole image at 128/192 px and misses it; its tiles find it ...
    assert not detect_faces(canvas, "mediapipe", tiled=False, rotations=(0,), upscale=1)
    assert detect_faces(canvas, "mediapipe", rotations=(0,), upscale=1)
    result = anonymize(canvas)  # ... and so does the default search (CenterFace at native scale)
    (face,) = result.faces
    assert box_iou(face.box, (1087, 736, 1138, 787)) > 0.5
    assert face.landmark_scheme == "mediapipe" and result.facemask.sum() > 500


def test_top_level_api_and_mismatched_alpha():
    import p3m
    from p3m.errors import ShapeMismatchError

    image = _astronaut()
    with pytest.raises(ShapeMismatchError, match="100x90"):
        p3m.anonymize(image, alpha=np.ones((90, 100), np.float32))
    result = p3m.anonymize(image, alpha=np.full(image.shape[:2], 255, np.uint8), method="mosaic")
    assert isinstance(result, p3m.AnonymizeResult)
    assert result.faces[0].score > 0.7 and result.faces[0].landmarks is not None
    assert result.regions[0].parameter >= 2 and not result.warnings


@pytest.mark.slow
def test_alpha_from_selfie_cf_keeps_the_computed_transition_area():
    image = np.ascontiguousarray(_astronaut()[:320, 96:416])
    result = anonymize(image, alpha_from="selfie-cf")
    assert result.alpha is not None and result.alpha.shape == image.shape[:2]
    transition = (result.alpha > 0) & (result.alpha < 1)
    assert transition.any() and result.facemask.sum() > 3000
    assert np.array_equal(result.image[transition], image[transition])
    assert not any("no alpha matte" in warning for warning in result.warnings)


def test_documented_mesh_indices_follow_mediapipe_face_oval_and_brows():
    from mediapipe.python.solutions import face_mesh_connections as connections

    from p3m.privacy.landmarks import MESH_BROW_LEFT_UPPER, MESH_BROW_RIGHT_UPPER, MESH_JAW

    def vertices(edges):
        return {v for edge in edges for v in edge}

    oval = list(connections.FACEMESH_FACE_OVAL)
    assert set(MESH_JAW) <= vertices(oval)
    # consecutive jaw points are neighbours on the oval: a contiguous run of it, not a zigzag
    assert all(
        {a, b} in [set(e) for e in oval] for a, b in zip(MESH_JAW, MESH_JAW[1:], strict=False)
    )
    assert set(MESH_BROW_LEFT_UPPER) <= vertices(connections.FACEMESH_LEFT_EYEBROW)
    assert set(MESH_BROW_RIGHT_UPPER) <= vertices(connections.FACEMESH_RIGHT_EYEBROW)


def test_a_doubtful_detection_is_no_identity_match_in_the_audit():
    """The README's astronaut portrait: a 6 x 8 px CenterFace hit (score 0.16, no landmarks) on
    the mission patch was audited for identity and reported as a leak ("1 identity match(es)").
    A doubtful detection is masked and listed for annotation, but its distance is not measured;
    a real face is still checked (and matches on the untouched image)."""
    import dataclasses

    from p3m.detection.faces import Face
    from p3m.privacy.audit import _identity_available
    from p3m.privacy.pipeline import doubtful_detection

    assert _identity_available()  # dlib-bin and face_recognition_models are dependencies
    image = _astronaut()
    real = anonymize(image, method="blur").faces[0]
    patch = Face(box=(330.0, 330.0, 336.0, 338.0), score=0.16, detectors=("centerface",))
    assert doubtful_detection(patch) and not doubtful_detection(real)
    audit = audit_image(image, ["mediapipe-full"], original=image, faces=[dataclasses.replace(real), patch])
    assert audit.identity_distances is not None and audit.identity_distances[1] is None
    assert audit.identity_matches == 1  # the untouched real face: the audit still sees a leak
    assert audit.to_dict()["identity_distances"][1] is None
    alone = audit_image(image, ["mediapipe-full"], original=image, faces=[patch])
    assert alone.identity_matches == 0 and alone.identity_distances == [None]
