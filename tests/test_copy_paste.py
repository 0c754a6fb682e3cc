"""P3M-CP: the copy-and-paste operation, source sets, ICP and FCP (p3m.training.copy_paste)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from p3m.errors import ConfigError, DatasetError
from p3m.training.copy_paste import (
    CopyPasteConfig,
    CopyPasteTrainingHook,
    CPSourceSet,
    FeatureCopyPaste,
    ImageCopyPaste,
    PasteParams,
    build_cp_sources,
    celebamask_face_region,
    copy_paste,
    make_training_hook,
    mask_centroids,
    resize_mask,
    sample_paste_params,
)

torch.set_num_threads(1)


def _box_mask(shape: tuple[int, int], top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + height, left : left + width] = True
    return mask


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 <= radius**2


def _identity(count: int) -> PasteParams:
    return PasteParams(torch.ones(count), torch.zeros(count))


def _binomial_bounds(trials: int, probability: float, sigmas: float = 5.0) -> tuple[float, float]:
    spread = sigmas * math.sqrt(trials * probability * (1 - probability))
    return trials * probability - spread, trials * probability + spread


# --------------------------------------------------------------------------- the CP function


def test_paste_is_exactly_the_overlap_of_both_masks() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 48, 64, generator=generator)
    source = torch.rand(1, 3, 40, 40, generator=generator) + 2.0  # values no target pixel has
    # Same areas (20x12 = 240) -> scale 1; integer centroid offset -> a pure shift.
    target_mask = torch.zeros(2, 1, 48, 64, dtype=torch.bool)
    target_mask[0, 0, 10:30, 20:32] = True
    target_mask[1, 0, 5:17, 30:50] = True  # 12 x 20: the overlap with a 20 x 12 source is 12 x 12
    source_mask = torch.from_numpy(_box_mask((40, 40), 4, 10, 20, 12))[None, None]

    result = copy_paste(target, source, target_mask, source_mask, params=_identity(2))

    expected_region = torch.zeros_like(target_mask)
    expected_region[0, 0, 10:30, 20:32] = True
    expected_region[1, 0, 5:17, 34:46] = True
    assert torch.equal(result.region, expected_region)
    outside = ~result.region.expand_as(target)
    assert torch.equal(result.output[outside], target[outside])  # bit-identical outside
    torch.testing.assert_close(result.output[0, :, 10:30, 20:32], source[0, :, 4:24, 10:22])
    # sample 1: centres (39.5, 10.5) and (15.5, 13.5) -> source col = x - 24, row = y + 3
    torch.testing.assert_close(result.output[1, :, 5:17, 34:46], source[0, :, 8:20, 10:22])


def test_random_augmentation_changes_only_the_target_mask() -> None:
    generator = torch.Generator().manual_seed(3)
    target = torch.rand(4, 3, 64, 64, generator=generator)
    source = torch.full((4, 3, 50, 30), 7.0)
    target_mask = torch.from_numpy(np.stack([_disc((64, 64), (30 + i, 28), 12 + i) for i in range(4)]))
    source_mask = torch.from_numpy(_disc((50, 30), (15, 25), 11))
    config = CopyPasteConfig(scale_range=(0.5, 1.5), max_rotation_degrees=45)

    result = copy_paste(target, source, target_mask, source_mask, config=config, generator=generator)

    region = result.region[:, 0]
    assert region.any(dim=(1, 2)).all()
    assert not (region & ~target_mask).any()  # never outside the target facemask
    changed = (result.output != target).any(dim=1)
    assert torch.equal(changed, region)
    torch.testing.assert_close(result.output.permute(0, 2, 3, 1)[region], torch.full((int(region.sum()), 3), 7.0))


def test_numpy_uint8_image_in_and_out() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (40, 50, 3), dtype=np.uint8)
    face = np.full((30, 30, 3), 255, np.uint8)
    facemask = (_box_mask((40, 50), 10, 10, 15, 20) * 255).astype(np.uint8)  # uint8 0/255 on disk
    face_mask = _disc((30, 30), (15, 15), 14)

    result = copy_paste(image, face, facemask, face_mask, generator=np.random.default_rng(1))

    assert result.output.dtype == np.uint8 and result.output.shape == image.shape
    assert result.region.shape == (40, 50) and result.region.any()
    assert not (result.region & (facemask == 0)).any()
    np.testing.assert_array_equal(result.output[~result.region], image[~result.region])
    np.testing.assert_array_equal(result.output[result.region], 255)


def test_features_take_masks_at_image_resolution() -> None:
    # FCP: features at stride 4, masks at image size; masks are resized by area + 0.5 threshold.
    features = torch.randn(1, 16, 16, 16, requires_grad=True)
    source_features = torch.randn(1, 16, 16, 16)
    facemask = torch.from_numpy(_box_mask((64, 64), 16, 16, 32, 34))[None, None]
    face_mask = torch.from_numpy(_box_mask((64, 64), 8, 8, 32, 34))[None, None]

    result = copy_paste(features, source_features, facemask, face_mask, params=_identity(1))

    small = resize_mask(facemask, (16, 16))
    # 34 px wide at stride 4 = 8.5 cells: the half-covered column has exactly 0.5 -> kept.
    assert small[0, 0].sum() == 8 * 9
    assert torch.equal(result.region, small)  # same area, same shape -> the whole facemask
    outside = ~result.region.expand_as(features)
    assert torch.equal(result.output[outside], features[outside])
    torch.testing.assert_close(result.output[0, :, 4:12, 4:13], source_features[0, :, 2:10, 2:11])


def test_alignment_puts_the_source_centre_on_the_target_centre() -> None:
    # Source channels hold their own x and y coordinates; bilinear sampling of a linear ramp is
    # exact, so each pasted value tells which source point landed there.
    height, width = 60, 80
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij")
    source = torch.stack([xs, ys])[None]
    source_centre = (23.0, 31.0)
    source_mask = torch.from_numpy(_disc((height, width), source_centre, 9))
    target_centre = (50.0, 20.0)
    target_mask = torch.from_numpy(_disc((64, 96), target_centre, 15))
    target = torch.zeros(1, 2, 64, 96, dtype=torch.float64)

    for angle, scale in [(0.0, 1.0), (30.0, 1.3), (-20.0, 0.8)]:
        params = PasteParams(torch.tensor([scale]), torch.tensor([angle]))
        result = copy_paste(target, source, target_mask, source_mask, params=params)
        centre_value = result.output[0, :, int(target_centre[1]), int(target_centre[0])]
        torch.testing.assert_close(centre_value, torch.tensor(source_centre, dtype=torch.float64))
        # and the pasted region is centred on the target centre
        (centre,), _ = mask_centroids(result.region)
        torch.testing.assert_close(centre, torch.tensor(target_centre, dtype=torch.float64), atol=0.5, rtol=0)


def test_size_match_and_rotation_follow_the_params() -> None:
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    source = torch.stack([xs, ys])[None]
    source_mask = torch.from_numpy(_disc((40, 40), (20, 20), 8))  # radius 8
    target_mask = torch.from_numpy(_disc((64, 64), (32, 32), 24))  # radius 24: match scale = 3
    params = PasteParams(torch.tensor([1.0]), torch.tensor([90.0]))
    result = copy_paste(torch.zeros(1, 2, 64, 64), source, target_mask, source_mask, params=params)
    # Target offset (+9, 0) from the centre maps back to source offset R(-90)(9, 0) / s = (0, -9 / s),
    # s = sqrt(area ratio) ~ 3 (pixel discs are not exactly pi r^2).
    scale = math.sqrt(float(target_mask.sum()) / float(source_mask.sum()))
    assert abs(scale - 3) < 0.05
    expected = torch.tensor([20.0, 20.0 - 9.0 / scale])
    torch.testing.assert_close(result.output[0, :, 32, 41], expected, atol=1e-4, rtol=0)
    area = float(result.region.sum())
    assert abs(area - math.pi * 24**2) / (math.pi * 24**2) < 0.05  # scaled disc fills the target


def test_empty_masks_change_nothing() -> None:
    target = torch.rand(2, 3, 32, 32)
    source = torch.rand(1, 3, 32, 32)
    full = torch.ones(1, 1, 32, 32, dtype=torch.bool)
    empty = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    for target_mask, source_mask in [(empty, full), (full.expand(2, -1, -1, -1), empty[:1])]:
        result = copy_paste(target, source, target_mask, source_mask, generator=torch.Generator().manual_seed(0))
        assert torch.equal(result.output, target) and not result.region.any()


def test_deterministic_given_a_generator() -> None:
    target = np.zeros((48, 48, 3), np.uint8)
    source = np.random.default_rng(5).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    target_mask = _disc((48, 48), (24, 24), 14)
    source_mask = _disc((32, 32), (16, 16), 12)
    config = CopyPasteConfig(scale_range=(0.7, 1.3), max_rotation_degrees=40)

    def run(generator):
        return copy_paste(target, source, target_mask, source_mask, config=config, generator=generator).output

    np.testing.assert_array_equal(run(np.random.default_rng(9)), run(np.random.default_rng(9)))
    np.testing.assert_array_equal(run(torch.Generator().manual_seed(9)), run(torch.Generator().manual_seed(9)))
    assert not np.array_equal(run(np.random.default_rng(9)), run(np.random.default_rng(10)))
    params = sample_paste_params(1000, config, np.random.default_rng(0))
    assert params.scale_factors.min() >= 0.7 and params.scale_factors.max() <= 1.3
    assert params.angles_degrees.abs().max() <= 40 and params.angles_degrees.std() > 15


# --------------------------------------------------------------------------- source sets


def _write_png(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture()
def celebamask_folder(tmp_path):
    """Three CelebAMask-HQ-style samples: images 128 px, part masks 64 px; id 2 has no eyebrows."""
    import cv2

    root = tmp_path / "celeba"
    rng = np.random.default_rng(0)
    for face_id in range(3):
        _write_png(root / "CelebA-HQ-img" / f"{face_id}.jpg", rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
        anno = root / "CelebAMask-HQ-mask-anno" / "0"
        skin = np.zeros((64, 64), np.uint8)
        cv2.ellipse(skin, (32, 34), (18, 26), 0, 0, 360, 255, -1)  # rows 8..60: forehead included
        skin[30:34, 24:28] = 0  # an eye hole, filled by the eye part
        _write_png(anno / f"{face_id:05d}_skin.png", skin)
        if face_id < 2:
            _write_png(anno / f"{face_id:05d}_l_brow.png", _box_mask((64, 64), 24, 20, 3, 9).astype(np.uint8) * 255)
            _write_png(anno / f"{face_id:05d}_r_brow.png", _box_mask((64, 64), 24, 36, 3, 9).astype(np.uint8) * 255)
            _write_png(anno / f"{face_id:05d}_l_eye.png", _box_mask((64, 64), 30, 24, 4, 4).astype(np.uint8) * 255)
    return root


def test_celebamask_region_is_skin_below_the_brow_line() -> None:
    skin = _disc((100, 100), (50, 55), 40)
    left_brow = _box_mask((100, 100), 40, 30, 4, 14)
    right_brow = _box_mask((100, 100), 36, 56, 4, 14)  # tilted head: the line slopes up to the right
    region = celebamask_face_region(skin, left_brow, right_brow, line_margin=0.0)
    assert region[left_brow].all() and region[right_brow].all()  # the eyebrows are inside
    assert not region[:30].any() and skin[20:36, 50].all() and not region[20:36, 50].any()  # forehead out
    # The line through the top points (36.5, 40) and (62.5, 36), raised by 1 px so the brows'
    # flat tops (corners at x = 30 and x = 56) are below it: y = 39 - (x - 36.5) * 4 / 26.
    assert region[40, 36] and not region[39, 36]  # line at y = 39.08
    assert region[35, 63] and not region[34, 63]  # line at y = 34.92
    assert not (region & ~skin).any()
    with pytest.raises(ValueError, match="eyebrow"):
        celebamask_face_region(skin, None, None)


def test_build_from_celebamask_layout(celebamask_folder, tmp_path) -> None:
    out = tmp_path / "sources"
    report = build_cp_sources(celebamask_folder, out, source_format="celebamask-hq", line_margin=0.0)
    assert report.written == 2
    assert len(report.skipped) == 1 and "eyebrow" in report.skipped[0][1]
    index = json.loads((out / "index.json").read_text())
    assert [entry["name"] for entry in index["faces"]] == ["0", "1"]
    sources = CPSourceSet(out)
    assert len(sources) == 2
    image, mask = sources[0]
    assert image.dtype == np.uint8 and image.shape[:2] == mask.shape and mask.dtype == bool
    # Part masks are 64 px for a 128 px image: the region is upscaled to the image. Skin rows 8..60
    # (64 px scale), brow tops at row 24 -> face rows 24..60 = 37 rows -> about 74 px; the crop adds
    # 10 % of the face box on each side; the eye hole in the skin is filled.
    from scipy.ndimage import binary_fill_holes

    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    assert 72 <= rows.max() - rows.min() + 1 <= 76 and 72 <= cols.max() - cols.min() + 1 <= 76
    assert 6 <= rows.min() <= 9 and mask.shape[0] - rows.max() >= 6
    assert np.array_equal(binary_fill_holes(mask), mask)
    with pytest.raises(DatasetError, match=r"already holds a P3M-CP source set \(pass overwrite=True to replace it\)"):
        build_cp_sources(celebamask_folder, out)
    assert build_cp_sources(celebamask_folder, out, overwrite=True, line_margin=0.0).written == 2


def test_cp_sources_cli(celebamask_folder, tmp_path) -> None:
    from typer.testing import CliRunner

    from p3m.cli import app

    result = CliRunner().invoke(app, ["cp-sources", "build", str(celebamask_folder), str(tmp_path / "cli")])
    assert result.exit_code == 1  # one sample skipped (no eyebrows): reported, the rest written
    assert "no eyebrow" in result.output and "2 face(s) written" in result.output
    assert len(CPSourceSet(tmp_path / "cli")) == 2


def test_build_from_face_photos_with_the_landmark_pipeline(tmp_path) -> None:
    pytest.importorskip("mediapipe", reason="the landmark pipeline needs mediapipe (p3m[privacy])")
    from skimage import data

    photos = tmp_path / "photos"
    _write_png(photos / "astronaut.png", data.astronaut())
    (photos / "broken.jpg").write_bytes(b"not an image")
    report = build_cp_sources(photos, tmp_path / "faces", source_format="faces")
    assert report.written == 1
    assert [path.endswith("broken.jpg") for path, _ in report.skipped] == [True]
    image, mask = CPSourceSet(tmp_path / "faces")[0]
    # The astronaut's face is about 110 px wide in the 512 px photo; the crop keeps it at full scale.
    assert 80 <= mask.shape[1] <= 160 and 0.3 < mask.mean() < 0.9
    # The private area covers eyes and mouth: the mask's centre is skin-coloured (reddish), not background.
    centres, _ = mask_centroids(torch.from_numpy(mask)[None, None])
    cx, cy = centres[0].tolist()
    pixel = image[int(cy), int(cx)].astype(int)
    assert pixel[0] > pixel[2] + 20


def test_source_set_errors(tmp_path) -> None:
    with pytest.raises(DatasetError, match="cp-sources build"):
        CPSourceSet(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "p3m-cp-sources", "version": 1, "faces": []}))
    with pytest.raises(DatasetError, match="no faces"):
        CPSourceSet(tmp_path)
    with pytest.raises(DatasetError, match="no '<id>_skin.png'"):
        build_cp_sources(tmp_path, tmp_path / "out")


# --------------------------------------------------------------------------- ICP and FCP


@pytest.fixture()
def source_set(celebamask_folder, tmp_path) -> CPSourceSet:
    build_cp_sources(celebamask_folder, tmp_path / "sources")
    return CPSourceSet(tmp_path / "sources")


def test_icp_rate_is_the_probability_and_only_the_facemask_changes(source_set) -> None:
    icp = ImageCopyPaste(source_set, probability=0.5)
    facemask = (_disc((40, 40), (20, 22), 10) * 255).astype(np.uint8)
    image = np.zeros((40, 40, 3), np.uint8)
    trials = 400
    for index in range(trials):
        arrays = icp({"image": image, "facemask": facemask}, np.random.default_rng([7, index]))
        changed = (arrays["image"] != image).any(axis=2)
        assert not (changed & (facemask == 0)).any()
    low, high = _binomial_bounds(trials, 0.5)
    assert icp.stats.draws == trials and low <= icp.stats.applied <= high
    # deterministic per sample generator
    first = icp({"image": image, "facemask": facemask}, np.random.default_rng([7, 3]))["image"]
    again = icp({"image": image, "facemask": facemask}, np.random.default_rng([7, 3]))["image"]
    np.testing.assert_array_equal(first, again)


def test_icp_skips_and_counts_samples_without_facemask(source_set) -> None:
    icp = ImageCopyPaste(source_set, probability=1.0)
    image = np.zeros((32, 32, 3), np.uint8)
    assert icp({"image": image}, np.random.default_rng(0))["image"] is image
    assert icp({"image": image, "facemask": np.zeros((32, 32), np.uint8)}, np.random.default_rng(0))["image"] is image
    assert icp.stats.skipped_no_facemask == 2 and icp.stats.applied == 0


def test_fcp_rate_is_the_probability(source_set) -> None:
    fcp = FeatureCopyPaste(source_set, probability=0.5)
    trials = 2000
    rng = np.random.default_rng(1)
    applied = sum(fcp.draw(rng) for _ in range(trials))
    low, high = _binomial_bounds(trials, 0.5)
    assert low <= applied <= high
    assert sum(FeatureCopyPaste(source_set, probability=0.0).draw(rng) for _ in range(50)) == 0


def _model(name: str = "p3mnet-r34") -> torch.nn.Module:
    from p3m.models import create_model

    return create_model(name).train()


def _r34() -> torch.nn.Module:
    return _model("p3mnet-r34")


def _registered_models() -> list[str]:
    """Every registered model except the Table 7 ablations: FCP acts on the encoder, and an
    ablation's encoder (and its `fcp_layers`) is its full model's."""
    from p3m.models import get_spec, list_models

    return [name for name in list_models() if get_spec(name).ablation_of is None]


def _batch_norm_buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    return [b.clone() for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for b in m.buffers()]


@pytest.mark.parametrize("name", _registered_models())
def test_fcp_no_gradient_reaches_the_source_branch(source_set, name) -> None:
    model = _model(name)
    fcp = FeatureCopyPaste(source_set, probability=1.0)
    layer = fcp.layer_name(model)
    assert layer == model.fcp_layers[0]  # shallow by default
    images = torch.randn(2, 3, 64, 64, requires_grad=True)
    facemask = torch.from_numpy(_disc((64, 64), (30, 30), 12)).float()[None, None].expand(2, -1, -1, -1)
    rng = np.random.default_rng(0)
    source_image, source_mask = fcp.source_batch(images.detach(), facemask, rng)
    assert source_image.shape == (1, 3, 64, 64) and source_mask.any()

    buffers = _batch_norm_buffers(model)
    source_features = fcp.source_features(model, layer, source_image)
    assert not source_features.requires_grad
    # The source pass leaves batch-norm running statistics and the training mode as they were.
    assert all(torch.equal(a, b) for a, b in zip(buffers, _batch_norm_buffers(model), strict=True))
    assert all(module.training for module in model.modules())

    # Even a source that asks for gradients gets none: the paste hook detaches it.
    source_features = source_features.clone().requires_grad_(True)
    outputs = fcp.forward_with_source(model, images, facemask, source_features, source_mask, rng)
    loss = sum(output.float().square().mean() for output in outputs if output is not None)
    loss.backward()
    assert source_features.grad is None
    assert images.grad is not None and images.grad.abs().sum() > 0  # the target branch learns
    assert not model.get_submodule(layer)._forward_hooks  # the temporary hook is gone


@pytest.mark.parametrize("name", _registered_models())
def test_fcp_replaces_each_layer_output_inside_the_facemask_only(source_set, name) -> None:
    model = _model(name)
    images = torch.randn(2, 3, 64, 64)
    facemask = torch.zeros(2, 1, 64, 64)
    facemask[0, 0, 16:48, 16:44] = 1  # sample 1 has no facemask: untouched
    plain: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(layer).register_forward_hook(lambda m, i, o, layer=layer: plain.setdefault(layer, o))
        for layer in model.fcp_layers
    ]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    for layer in model.fcp_layers:
        fcp = FeatureCopyPaste(source_set, layer=layer, probability=1.0)
        rng = np.random.default_rng(0)
        source_image, source_mask = fcp.source_batch(images, facemask, rng)
        features = fcp.source_features(model, layer, source_image)
        # The paste hook runs before hooks registered earlier, so this one sees the merged output.
        pasted: list[torch.Tensor] = []
        handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o, seen=pasted: seen.append(o))
        with torch.no_grad():
            fcp.forward_with_source(model, images, facemask, features, source_mask, rng)
        handle.remove()
        assert len(pasted) == 1, layer
        changed = (pasted[0] != plain[layer]).any(dim=1, keepdim=True)
        small = resize_mask(facemask, tuple(changed.shape[-2:]))
        assert not changed[1].any() and not (changed & ~small).any(), layer
        if changed.shape[-1] >= 8:  # at 2 x 2 or 4 x 4 cells the masks may vanish by area vote
            assert changed[0].any(), layer


def test_icp_on_a_normalised_batch_pastes_image_and_foreground_alike(source_set) -> None:
    icp = ImageCopyPaste(source_set, probability=1.0)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 48, 48, generator=generator)
    foreground = images.clone()
    facemask = torch.zeros(3, 1, 48, 48)
    facemask[0, 0, 10:30, 12:32] = 1
    facemask[2, 0, 20:44, 8:30] = 1  # sample 1 has none: skipped and counted
    new_images, new_foreground = icp.apply_to_batch(images, facemask, np.random.default_rng(4), foreground)
    changed = (new_images != images).any(dim=1, keepdim=True)
    assert changed[0].any() and changed[2].any() and not changed[1].any()
    assert not (changed & (facemask < 0.5)).any()
    assert torch.equal(new_foreground, new_images)
    # Pasted values are a real face, normalised like the images (ImageNet mean/std of uint8 / 255).
    low = (0 - 0.485) / 0.229
    high = (1 - 0.406) / 0.225
    assert new_images[changed.expand_as(images)].min() >= low - 1e-5
    assert new_images[changed.expand_as(images)].max() <= high + 1e-5
    assert icp.stats.as_dict() == {"cp_draws": 3, "cp_applied": 2, "cp_skipped_no_facemask": 1}


def test_icp_rate_on_batches_is_the_probability(source_set) -> None:
    icp = ImageCopyPaste(source_set, probability=0.5)
    facemask = torch.zeros(8, 1, 32, 32)
    facemask[:, :, 8:24, 10:22] = 1
    images = torch.zeros(8, 3, 32, 32)
    rng = np.random.default_rng(11)
    pasted = 0
    for _ in range(50):
        new_images, _ = icp.apply_to_batch(images, facemask, rng)
        pasted += int((new_images != images).flatten(1).any(dim=1).sum())
    low, high = _binomial_bounds(400, 0.5)
    assert icp.stats.draws == 400 and low <= icp.stats.applied <= high and pasted == icp.stats.applied


def test_training_hook_arms_fcp_for_one_step_only(source_set) -> None:
    model = _r34()
    hook = CopyPasteTrainingHook("fcp", source_set, probability=1.0)
    hook.setup(model)
    layer = model.get_submodule(hook.feature_cp.layer)
    facemask = torch.zeros(2, 1, 64, 64)
    facemask[:, :, 20:50, 16:40] = 1
    batch = {"image": torch.randn(2, 3, 64, 64), "facemask": facemask}
    seen: list[torch.Tensor] = []
    watcher = layer.register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    with torch.no_grad():
        model(batch["image"])
        batch = hook.before_forward(batch, np.random.default_rng(0))
        model(batch["image"])
        hook.after_step()
        model(batch["image"])
    watcher.remove()
    # seen: plain forward, the source pass (stopped at G1), the step's forward, the next forward
    assert len(seen) == 4 and seen[1].shape[0] == 1
    assert not torch.equal(seen[0], seen[2])  # the step's forward got the pasted features
    assert torch.equal(seen[0], seen[3])  # and the next forward is plain again
    hook.close()
    assert not layer._forward_hooks
    assert hook.stats.applied == 1


def test_training_hook_checks_its_config(source_set) -> None:
    from types import SimpleNamespace

    model = _r34()

    def cp(mode, sources=source_set, layer=None, probability=0.5):
        return SimpleNamespace(mode=mode, sources=sources, layer=layer, probability=probability)

    assert make_training_hook(cp("none", None), model).mode == "none"
    with pytest.raises(ConfigError, match="needs cp sources"):
        make_training_hook(cp("icp", None), model)
    with pytest.raises(ConfigError, match="must be one of"):
        make_training_hook(cp("both"), model)
    with pytest.raises(ConfigError, match="fcp_layers"):
        make_training_hook(cp("fcp", layer="decoder0_g"), model)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        make_training_hook(cp("icp", probability=1.5), model)
    hook = make_training_hook(cp("fcp"), model)
    assert hook.feature_cp.layer == model.fcp_layers[0] and hook.image_cp is None
    assert make_training_hook(cp("fcp", layer="encoder1"), model).feature_cp.layer == "encoder1"
    assert isinstance(CopyPasteTrainingHook("icp", source_set).image_cp, ImageCopyPaste)


# --------------------------------------------------------------------------- smoke training runs


@pytest.fixture()
def synthetic_root(tmp_path):
    from p3m.data.synthetic import write_synthetic_dataset

    root = tmp_path / "synthetic"
    write_synthetic_dataset(root, n_train=4, n_val=2, seed=0, min_size=64, max_size=96)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["icp", "fcp"])
def test_smoke_training_run(mode, synthetic_root, source_set, tmp_path, monkeypatch) -> None:
    import p3m.training.copy_paste as cp_module
    from p3m.training.config import load_config
    from p3m.training.trainer import train

    built: list[CopyPasteTrainingHook] = []

    def make_and_keep(cp_config, model=None):
        built.append(make_training_hook(cp_config, model))
        return built[-1]

    monkeypatch.setattr(cp_module, "make_training_hook", make_and_keep)
    config = load_config(values={
        "model": "p3mnet-r34",
        "data.root": str(synthetic_root), "data.crop_sizes": [64], "data.output_size": 64, "data.workers": 0,
        "optim.batch_size": 2, "optim.max_steps": 3,
        "validation.every_epochs": 0, "validation.at_end": False,
        "cp.mode": mode, "cp.sources": str(source_set.root), "cp.probability": 1.0,
        "run.out_dir": str(tmp_path / "run"), "run.progress": False, "run.threads": 1,
        "run.checkpoint_every": 0,
    })
    result = train(config)

    assert result.step == 3 and all(math.isfinite(loss) for loss in result.losses)
    assert (tmp_path / "run" / "model.pth").is_file()
    (hook,) = built
    stats = hook.stats
    # probability 1: every draw pastes unless a 64 px crop cut the face out of the sample
    if mode == "icp":
        assert stats.draws == 6 and stats.applied + stats.skipped_no_facemask == 6
    else:
        assert stats.draws == 3
        assert not hook.model.get_submodule(hook.feature_cp.layer)._forward_hooks  # closed
    assert stats.applied >= 1


def test_old_import_paths_warn_and_still_work() -> None:
    import p3m.training.copy_paste as package

    with pytest.warns(DeprecationWarning, match="p3m.training.copy_paste.operation"):
        from p3m.privacy.copy_paste import copy_paste as old_copy_paste
    with pytest.warns(DeprecationWarning, match="p3m.training.copy_paste.sources"):
        from p3m.privacy.cp_sources import CPSourceSet as OldSourceSet
    assert old_copy_paste is package.copy_paste and OldSourceSet is package.CPSourceSet
    from p3m.training.hooks import make_copy_paste_hook

    with pytest.warns(DeprecationWarning, match="make_training_hook"):
        hook = make_copy_paste_hook(type("CP", (), {"mode": "none", "sources": None, "probability": 0.5})(), None)
    assert isinstance(hook, CopyPasteTrainingHook) and hook.mode == "none"
