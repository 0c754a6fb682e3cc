"""Verified anonymisation: every feature covered whatever the pose, the inner face never spared
with an estimated matte (an exact matte's band untouched), the identity loop, the report, odd inputs.
"""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mediapipe")
pytest.importorskip("onnxruntime")

from p3m.detection import detect_faces  # noqa: E402
from p3m.detection.faces import Face  # noqa: E402
from p3m.errors import ImageWriteError, P3MError  # noqa: E402
from p3m.privacy import anonymize  # noqa: E402
from p3m.privacy.facemask import face_areas, inner_face_mask, transition_area  # noqa: E402
from p3m.privacy.landmarks import MESH_FEATURES, add_landmarks, feature_points  # noqa: E402
from p3m.privacy.obfuscation import strengthening_ladder  # noqa: E402
from p3m.privacy.testdata import POSES, posed_astronaut  # noqa: E402

needs_dlib = pytest.mark.skipif(
    importlib.util.find_spec("dlib") is None, reason="identity verification needs dlib"
)


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def astronaut_features() -> np.ndarray:
    """Face Mesh's eye, brow, nose, lip and chin points on the untouched astronaut: the truth
    carried into each warped pose."""
    from p3m.detection import detect_faces

    image = _astronaut()
    (face,), _ = add_landmarks(image, detect_faces(image))
    assert face.landmarks is not None
    return face.landmarks[list(MESH_FEATURES)]


@pytest.mark.parametrize("pose", POSES)
def test_every_feature_of_a_posed_head_is_inside_the_mask(pose, astronaut_features):
    posed = posed_astronaut(pose)
    result = anonymize(posed.image, verify="none")
    assert len(result.faces) == 1, result.faces
    truth = posed.transform(astronaut_features)
    depth = cv2.distanceTransform(result.facemask.astype(np.uint8), cv2.DIST_L2, 5)
    inside = depth[np.floor(truth[:, 1]).astype(int), np.floor(truth[:, 0]).astype(int)]
    assert inside.min() >= 1, f"{pose}: {np.sum(inside < 1)} feature point(s) outside the mask"
    # ... and the mask is a face, not the whole image
    assert result.facemask.sum() < 4 * cv2.contourArea(cv2.convexHull(truth))


def _spilling_matte(shape: tuple[int, ...], face: Face) -> np.ndarray:
    """An estimated-looking matte: opaque person, a soft band over the hair and one spilling
    across the cheek and eye (as a matting model does next to hair)."""
    alpha = np.ones(shape[:2], np.float32)
    x0, y0, x1, y1 = (int(v) for v in face.box)
    alpha[: y0 + 10, :] = 0.5  # hair and above: semi-transparent
    alpha[y0 : y1, x0 - 10 : x0 + (x1 - x0) // 2] = 0.6  # the band spills over half the face
    return alpha


def test_estimated_matte_never_spares_the_inner_face():
    image = _astronaut()
    probe = anonymize(image, verify="none")
    alpha = _spilling_matte(image.shape, probe.faces[0])
    estimated = anonymize(image, alpha, alpha_estimated=True, verify="none")
    (face,) = estimated.faces
    inner = inner_face_mask(image.shape, [face])
    area = face_areas(image.shape, [face])[0].full(image.shape)
    assert (inner & area).sum() > 2000
    assert estimated.facemask[inner & area].all(), "inner-face pixels were spared"
    assert estimated.alpha_estimated and estimated.spared_pixels > 0  # the hair band still is
    changed = np.any(estimated.image != image, axis=2)
    assert changed[inner & area].mean() > 0.9

    # The same matte taken as exact (P3M-10k): every 0 < alpha < 1 pixel bit-identical.
    exact = anonymize(image, alpha, verify="none")
    transition = (alpha > 0) & (alpha < 1)
    assert not exact.alpha_estimated
    assert np.array_equal(exact.image[transition], image[transition])
    assert not (exact.facemask & transition_area(alpha)).any()
    assert exact.spared_pixels > estimated.spared_pixels


def test_alpha_from_marks_the_matte_estimated(monkeypatch):
    import p3m.privacy.pipeline as pipeline

    image = _astronaut()
    probe = anonymize(image, verify="none")
    monkeypatch.setattr(pipeline, "compute_alpha", lambda img, model: _spilling_matte(img.shape, probe.faces[0]))
    result = anonymize(image, alpha_from="auto", verify="none")
    assert result.alpha_estimated and result.report()["alpha"] == "estimated"
    inner = inner_face_mask(image.shape, result.faces)
    assert result.facemask[inner & face_areas(image.shape, result.faces)[0].full(image.shape)].all()


def test_a_failing_matte_estimate_obfuscates_the_whole_face(monkeypatch):
    """c20: pymatting's "Trimap did not contain foreground values" on a small person."""
    import p3m.privacy.pipeline as pipeline

    def fail(image, model):
        raise ValueError("Trimap did not contain foreground values (values >= 0.900000)")

    monkeypatch.setattr(pipeline, "compute_alpha", fail)
    canvas = np.full((512, 512, 3), 200, np.uint8)
    canvas[200:302, 200:302] = cv2.resize(_astronaut(), (102, 102), interpolation=cv2.INTER_AREA)
    result = anonymize(canvas, alpha_from="auto", verify="none")
    assert result.alpha is None and result.faces
    assert any("matte estimation failed" in w for w in result.warnings)
    assert result.facemask.sum() > 50 and result.spared_pixels == 0


@needs_dlib
def test_identity_loop_raises_a_weak_blur_until_it_clears_the_margin():
    image = _astronaut()
    result = anonymize(image, method="blur", strength=0.1, verify="identity")
    (face,) = result.faces
    record = face.obfuscation
    assert record["identity_distance_initial"] < 0.6  # the weak blur is still recognised
    assert record["identity_distance"] >= 0.65 and record["status"] == "verified"
    assert record["strengthened"] and record["method"] == "blur" and record["strength"] > 0.1
    assert result.strengthened == 1 and result.min_identity_distance >= 0.65
    assert face.to_dict()["obfuscation"]["identity_distance"] == record["identity_distance"]
    assert not result.needs_annotation


@needs_dlib
def test_a_face_that_stays_recognisable_is_unverified_and_needs_annotation():
    image = _astronaut()
    result = anonymize(image, method="blur", verify="identity", identity_margin=5.0)  # unreachable
    (face,) = result.faces
    assert face.obfuscation["status"] == "unverified" and face.obfuscation["method"] == "mask"
    assert (result.image[result.facemask] == 0).all()  # the last rung: a solid fill
    assert result.unverified == 1 and "unverified" in result.needs_annotation[0]
    assert result.report()["unverified"] == 1


@needs_dlib
def test_onnx_descriptors_equal_dlibs_own():
    """The identity check's onnxruntime network gives dlib's descriptors (real faces, a blurred
    face, noise), and both backends reach the same verdict."""
    from skimage import data

    from p3m.privacy.landmarks import dlib5_points
    from p3m.privacy.verification import IdentityVerifier

    image = _astronaut()
    (face,), _ = add_landmarks(image, detect_faces(image, rotations=(0,)))
    blurred = cv2.GaussianBlur(image, (0, 0), 3)
    onnx, reference = IdentityVerifier("onnx"), IdentityVerifier("dlib")
    chips = onnx.chips(image, [dlib5_points(face)]) + onnx.chips(blurred, [dlib5_points(face)])
    greys = [cv2.resize(np.uint8(255 * f), (150, 150)) for f in data.lfw_subset()[:3]]
    chips += [cv2.cvtColor(g, cv2.COLOR_GRAY2RGB) for g in greys]
    chips.append(np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8))
    ours, theirs = onnx.descriptors(chips), reference.descriptors(chips)
    assert ours.shape == theirs.shape == (6, 128)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert 0.2 < np.linalg.norm(ours[0] - ours[1]) < 0.6  # a light blur: still the same person
    with pytest.raises(P3MError, match="descriptor backend"):
        IdentityVerifier("cuda")


def test_ladder_goes_from_larger_sigma_to_mosaic_to_fill():
    assert strengthening_ladder("blur", 1.0) == [
        ("blur", 1.0), ("blur", 2.0), ("blur", 4.0), ("mosaic", 1.0), ("mosaic", 2.0), ("mask", 1.0)
    ]  # fmt: skip
    assert strengthening_ladder("blur", 0.1)[:4] == [("blur", 0.1), ("blur", 0.2), ("blur", 0.4), ("blur", 0.8)]
    assert strengthening_ladder("mosaic", 1.0) == [("mosaic", 1.0), ("mosaic", 2.0), ("mask", 1.0)]
    assert strengthening_ladder("mask") == [("mask", 1.0)]


def test_fallback_ellipse_contains_box_and_keypoints():
    image = np.full((200, 200, 3), 128, np.uint8)  # nothing for Face Mesh to find
    keypoints5 = np.float32([[80, 90], [120, 90], [100, 110], [85, 130], [115, 130]])
    face = Face((60, 60, 140, 150), 0.9, ("centerface",), keypoints5=keypoints5)
    (faces, notes) = add_landmarks(image, [face])
    assert faces[0].landmarks is None and "Face Mesh" in faces[0].landmark_note and notes
    (area,) = face_areas(image.shape, faces)
    mask = area.full(image.shape)
    for x, y in feature_points(faces[0]):
        assert mask[int(y), int(x)]
    assert mask[105, 100] and mask[65, 100]  # centre and the top of the box
    assert mask.sum() < 1.6 * 80 * 90


def test_landmarks_that_disagree_with_the_detector_fall_back():
    image = _astronaut()
    from p3m.detection import detect_faces

    (face,) = detect_faces(image)
    wrong = face.keypoints5 + np.float32([0, 45])  # the detector "saw" the eyes at the mouth
    (checked,), _ = add_landmarks(image, [Face(face.box, face.score, face.detectors, keypoints5=wrong)])
    assert checked.landmarks is None and "keypoints" in checked.landmark_note


def test_rgba_input_keeps_its_alpha_channel(tmp_path):
    image = _astronaut()
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    rgba[:, 400:, 3] = 0
    result = anonymize(rgba, verify="none")
    assert result.input_alpha is not None and np.array_equal(result.input_alpha, rgba[:, :, 3])
    assert result.faces and result.image.shape == image.shape
    # What the input's alpha hid stays hidden in every form of the result: black in the RGB
    # `image` (an RGB save or a dropped alpha shows nothing), alpha 0 in `rgba` and in the file.
    hidden = rgba[:, :, 3] == 0
    assert not result.image[hidden].any()
    assert np.array_equal(result.image[~hidden & ~result.facemask], image[~hidden & ~result.facemask])
    assert result.rgba.dtype == np.uint8 and np.array_equal(result.rgba, np.dstack([result.image, rgba[:, :, 3]]))
    result.save(tmp_path / "face.png")
    with Image.open(tmp_path / "face.png") as saved:
        assert saved.mode == "RGBA" and np.array_equal(np.asarray(saved), result.rgba)
    with pytest.raises(ImageWriteError, match="alpha channel"):
        result.save(tmp_path / "face.jpg")
    assert not (tmp_path / "face.jpg").exists()
    opaque = anonymize(image, verify="none")
    assert opaque.input_alpha is None and opaque.rgba.shape == (*image.shape[:2], 4)
    assert (opaque.rgba[:, :, 3] == 255).all()
    opaque.save(tmp_path / "opaque.jpg")
    with Image.open(tmp_path / "opaque.jpg") as saved:
        assert saved.mode == "RGB" and saved.size == image.shape[1::-1]


def test_report_counts_what_happened():
    image = _astronaut()
    result = anonymize(image, np.ones(image.shape[:2], np.float32), verify="none")
    report = result.report()
    assert report["faces"] == 1 and report["faces_masked"] == 1
    assert report["faces_by_detector"]["centerface"] == 1
    assert report["mask_pixels"] == int(result.facemask.sum()) and report["spared_pixels"] == 0
    assert report["detection"]["seconds_per_megapixel"] > 0
    with pytest.raises(P3MError, match="unknown verification"):
        anonymize(image, verify="maybe")
