"""P3M-10k layout check, augmentation properties, datasets/sampler and the synthetic data set."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from p3m.data import transforms
from p3m.data.datasets import EpochSampler, MattingTrainDataset, normalize_image
from p3m.data.layout import check_layout, find_samples
from p3m.data.synthetic import make_portrait, write_synthetic_dataset
from p3m.data.transforms import AugmentConfig, augment, choose_crop
from p3m.data.trimap import trimap_from_alpha
from p3m.errors import DatasetError
from p3m.io import read_alpha_u8, read_image

ALL_SETS = ("train", "P3M-500-P", "P3M-500-NP", "RWP")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, n_train=6, n_val=2, seed=3, min_size=96, max_size=128)
    return root


@pytest.fixture
def synthetic_copy(synthetic_root, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(synthetic_root, copy)
    return copy


# --------------------------------------------------------------------------- synthetic data


def test_synthetic_set_has_the_p3m_layout(synthetic_root):
    report = check_layout(synthetic_root, ALL_SETS)
    assert report.ok, report.problems
    assert report.counts == {"train": 6, "P3M-500-P": 2, "P3M-500-NP": 2, "RWP": 2}
    assert set(report.extras["train"]) == {"fg", "bg", "facemask"}
    assert set(report.extras["P3M-500-P"]) == {"trimap", "facemask"}
    samples = find_samples(synthetic_root, "train")
    assert all(s.foreground and s.background and s.facemask for s in samples)
    private = find_samples(synthetic_root, "P3M-500-P")
    assert all(s.image.parent.name == "blurred_image" and s.trimap is not None for s in private)
    assert find_samples(synthetic_root, "P3M-500-NP")[0].image.parent.name == "original_image"


def test_synthetic_face_obfuscated_only_in_private_version(synthetic_root):
    for sample in find_samples(synthetic_root, "train"):
        blurred = read_image(sample.image).astype(int)
        normal = read_image(synthetic_root / "train" / "original_image" / sample.image.name).astype(int)
        facemask = read_alpha_u8(sample.facemask) > 0
        assert facemask.sum() > 100
        changed = np.abs(blurred - normal).max(axis=2) > 0
        near_face = cv2.dilate(facemask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        assert not changed[~near_face].any(), "the obfuscation leaked outside the face"
        assert np.abs(blurred - normal)[facemask].mean() > 3, "the face is not obfuscated"


def test_synthetic_portrait_has_soft_hair_edges_and_consistent_composite():
    portrait = make_portrait(np.random.default_rng(7), 120, 100)
    alpha = portrait.alpha
    assert alpha.shape == (120, 100) and alpha.dtype == np.uint8
    soft = (alpha > 0) & (alpha < 255)
    assert soft.mean() > 0.01 and (alpha == 255).mean() > 0.1 and (alpha == 0).mean() > 0.2
    assert len(np.unique(alpha[soft])) > 50  # many fractional levels, not just an antialiased edge
    a = alpha[..., None] / 255.0
    composite = a * portrait.foreground + (1 - a) * portrait.background
    assert np.abs(composite - portrait.image).max() <= 1.0


def test_synth_and_check_data_commands(tmp_path):
    from p3m.cli import app

    runner = CliRunner()
    out = tmp_path / "synth"
    result = runner.invoke(app, ["synth-data", str(out), "--n", "3", "--n-val", "1", "--min-size", "64", "--max-size", "80"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "train" / "mask").glob("*.png"))) == 3
    result = runner.invoke(app, ["check-data", str(out)])
    assert result.exit_code == 0 and "layout OK" in result.output
    (out / "train" / "mask" / "synth_train_0001.png").unlink()
    result = runner.invoke(app, ["check-data", str(out)])
    assert result.exit_code == 1
    assert "synth_train_0001" in result.output


def test_check_data_on_a_missing_root_is_one_error(tmp_path):
    import subprocess
    import sys

    missing = tmp_path / "nodir"
    result = subprocess.run(
        [sys.executable, "-m", "p3m.cli", "check-data", str(missing)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {missing}: data root does not exist"]
    assert "data layout" not in result.stdout  # no empty table first


# --------------------------------------------------------------------------- layout check


def test_layout_check_reports_missing_and_unmatched(synthetic_copy):
    root = synthetic_copy
    (root / "train" / "mask" / "synth_train_0002.png").unlink()
    shutil.copy(root / "train" / "mask" / "synth_train_0000.png", root / "train" / "mask" / "stray.png")
    shutil.rmtree(root / "validation" / "P3M-500-NP" / "trimap")
    (root / "train" / "fg" / "synth_train_0003.png").unlink()
    report = check_layout(root)
    assert not report.ok
    text = " | ".join(report.problems)
    assert "1 image(s) without a matte" in text and "synth_train_0002" in text
    assert "1 matte(s) without an image" in text and "stray" in text
    assert "P3M-500-NP: missing folder(s)" in text and "trimap" in text
    assert "optional folder" in text and "synth_train_0003" in text
    with pytest.raises(DatasetError) as raised:
        report.raise_if_problems()
    assert "\n" not in str(raised.value) and str(root) in str(raised.value)
    with pytest.raises(DatasetError, match="without a matte"):
        find_samples(root, "train")


def test_deep_layout_check_finds_unreadable_and_mismatched_files(synthetic_copy):
    root = synthetic_copy
    assert check_layout(root, ALL_SETS, deep=True).ok
    (root / "train" / "fg" / "synth_train_0001.png").write_bytes(b"not a png")
    mask = root / "validation" / "P3M-500-P" / "mask" / "synth_p_0000.png"
    alpha = read_alpha_u8(mask)
    cv2.imwrite(str(mask), alpha[:-3])
    report = check_layout(root, deep=True)
    text = " | ".join(report.problems)
    assert "train: 1 unreadable file(s) (fg/synth_train_0001.png)" in text
    assert "P3M-500-P: 1 file(s) of another size" in text and "mask/synth_p_0000.png" in text
    assert check_layout(root).ok  # the quick check only looks at names


def test_deep_check_reads_headers_only_and_names_a_file_over_the_cap(synthetic_copy):
    """A mask whose header claims 14000 x 13000: one problem line naming it (it was a
    traceback from Pillow's DecompressionBombError), found without decoding it."""
    from conftest import png_header_claiming

    mask = synthetic_copy / "validation" / "P3M-500-P" / "mask" / "synth_p_0000.png"
    mask.write_bytes(png_header_claiming(14000, 13000))
    text = " | ".join(check_layout(synthetic_copy, deep=True).problems)
    assert "P3M-500-P: 1 unreadable file(s) (mask/synth_p_0000.png (too large: image is 14000x13000" in text


def test_deep_check_finds_a_truncated_file(synthetic_copy):
    """A mask cut after 300 bytes has a whole header: the deep check decodes every file, so it
    names it instead of training dying when it reaches it."""
    mask = synthetic_copy / "train" / "mask" / "synth_train_0003.png"
    mask.write_bytes(mask.read_bytes()[:300])
    text = " | ".join(check_layout(synthetic_copy, deep=True).problems)
    assert "train: 1 unreadable file(s) (mask/synth_train_0003.png (truncated))" in text


def test_an_incomplete_required_extra_is_not_listed_as_an_extra(synthetic_copy):
    for trimap in (synthetic_copy / "validation" / "P3M-500-P" / "trimap").iterdir():
        trimap.unlink()
    report = check_layout(synthetic_copy, ALL_SETS)
    assert any("without trimap" in problem for problem in report.problems)
    assert "trimap" not in report.extras["P3M-500-P"]


def test_dataset_reports_size_mismatch_with_file_name(synthetic_copy):
    from p3m.errors import ShapeMismatchError

    samples = find_samples(synthetic_copy, "train")
    alpha = read_alpha_u8(samples[0].alpha)
    cv2.imwrite(str(samples[0].alpha), alpha[:, :-2])
    dataset = MattingTrainDataset(samples, AugmentConfig(crop_sizes=(64,), output_size=64), seed=0)
    with pytest.raises(ShapeMismatchError, match="synth_train_0000.png: alpha is"):
        dataset[(0, 0)]


def test_layout_check_of_missing_root(tmp_path):
    report = check_layout(tmp_path / "nowhere")
    assert report.problems == ["data root does not exist or is not a folder"]


def test_protocol_n_reads_normal_images_from_user_folder(synthetic_copy, tmp_path):
    normal = tmp_path / "normal"
    shutil.copytree(synthetic_copy / "train" / "original_image", normal)
    samples = find_samples(synthetic_copy, "train", protocol="N", normal_images=normal)
    assert [s.image.parent for s in samples] == [normal] * 6
    (normal / "synth_train_0004.png").unlink()
    report = check_layout(synthetic_copy, ["train"], protocol="N", normal_images=normal)
    assert any("matte(s) without an image" in p and "synth_train_0004" in p for p in report.problems)


# --------------------------------------------------------------------------- augmentation


def _sample_arrays(seed=0, height=150, width=130):
    portrait = make_portrait(np.random.default_rng(seed), height, width)
    return {
        "image": portrait.image,
        "alpha": portrait.alpha,
        "foreground": portrait.foreground,
        "background": portrait.background,
        "facemask": portrait.facemask,
    }


def test_augment_is_deterministic_and_shaped():
    arrays = _sample_arrays()
    config = AugmentConfig(crop_sizes=(64, 96, 128), output_size=64, trimap_kernel_range=(5, 9))
    first = augment(arrays, config, np.random.default_rng(11))
    second = augment(arrays, config, np.random.default_rng(11))
    for key in ("image", "alpha", "trimap", "foreground", "background", "facemask"):
        np.testing.assert_array_equal(first[key], second[key])
        assert first[key].shape[:2] == (64, 64)
    assert first["alpha"].dtype == np.float32 and first["trimap"].dtype == np.float32
    assert first["image"].dtype == np.uint8
    assert set(np.unique(first["facemask"])) <= {0, 255}  # nearest neighbour for the face mask


def test_trimap_is_made_at_native_resolution_with_kernel_in_range(monkeypatch):
    calls = []

    def spy(alpha, kernel_size):
        calls.append((alpha.shape, kernel_size))
        return trimap_from_alpha(alpha, kernel_size)

    monkeypatch.setattr(transforms, "trimap_from_alpha", spy)
    arrays = _sample_arrays()
    config = AugmentConfig(crop_sizes=(64,), output_size=32)  # paper kernel range 15..30
    rng = np.random.default_rng(0)
    for _ in range(120):
        augment(arrays, config, rng)
    assert {shape for shape, _ in calls} == {(150, 130)}
    kernels = [k for _, k in calls]
    assert min(kernels) == 15 and max(kernels) == 30


def test_crop_size_choice_and_fallback():
    trimap = np.zeros((600, 900), np.uint8)
    trimap[300, 450] = 128
    rng = np.random.default_rng(1)
    sizes = {choose_crop(trimap, AugmentConfig(), rng)[2] for _ in range(60)}
    assert sizes == {512}  # 768 and 1024 do not fit in 600 px: 512 is used
    big = np.zeros((1100, 1200), np.uint8)
    sizes = {choose_crop(big, AugmentConfig(), rng)[2] for _ in range(60)}
    assert sizes == {512, 768, 1024}
    for _ in range(60):
        top, left, size = choose_crop(trimap, AugmentConfig(crop_sizes=(700,)), rng)
        assert size == 600 and top == 0 and 0 <= left <= 300  # smaller than every crop: short side


def test_crop_centred_on_transition_with_probability():
    trimap = np.zeros((400, 400), np.uint8)
    trimap[200:204, 300:304] = 128  # a tiny unknown region
    rng = np.random.default_rng(5)
    always = AugmentConfig(crop_sizes=(64,), transition_probability=1.0)
    for _ in range(50):
        top, left, size = choose_crop(trimap, always, rng)
        assert (trimap[top : top + size, left : left + size] == 128).any()
    half = AugmentConfig(crop_sizes=(64,), transition_probability=0.5)
    hits = []
    for _ in range(400):
        top, left, size = choose_crop(trimap, half, rng)
        hits.append((trimap[top : top + size, left : left + size] == 128).any())
    assert 0.4 < np.mean(hits) < 0.65  # 0.5 on purpose plus a few random crops that hit it


def test_flip_probability_and_mirroring():
    arrays = _sample_arrays(seed=2)
    never = AugmentConfig(crop_sizes=(96,), output_size=96, flip_probability=0.0)
    always = AugmentConfig(crop_sizes=(96,), output_size=96, flip_probability=1.0)
    plain = augment(arrays, never, np.random.default_rng(3))
    flipped = augment(arrays, always, np.random.default_rng(3))
    for key in ("image", "alpha", "trimap"):
        np.testing.assert_array_equal(flipped[key], plain[key][:, ::-1])
    half = AugmentConfig(crop_sizes=(96,), output_size=96, flip_probability=0.5)
    rng = np.random.default_rng(4)
    flips = 0
    for _ in range(200):
        state = rng.bit_generator.state
        out = augment(arrays, half, rng)
        rng_copy = np.random.default_rng()
        rng_copy.bit_generator.state = state
        unflipped = augment(arrays, never, rng_copy)
        flips += not np.array_equal(out["alpha"], unflipped["alpha"])
    assert 70 < flips < 130


def test_resize_to_output_makes_interpolated_trimap_values_like_official():
    arrays = _sample_arrays(seed=4, height=200, width=200)
    config = AugmentConfig(crop_sizes=(160,), output_size=64, trimap_kernel_range=(9, 9), transition_probability=1.0)
    out = augment(arrays, config, np.random.default_rng(0))
    values = set(np.unique(out["trimap"]).tolist())
    assert {0.0, 128.0, 255.0} <= values | {0.0, 255.0}
    assert values - {0.0, 128.0, 255.0}, "bilinear resize should create non-canonical trimap values"
    assert all(float(v).is_integer() for v in values)  # resized as uint8, as officially


# --------------------------------------------------------------------------- datasets and sampler


def test_train_dataset_items(synthetic_root):
    samples = find_samples(synthetic_root, "train")
    config = AugmentConfig(crop_sizes=(64, 96), output_size=64, trimap_kernel_range=(5, 9))
    dataset = MattingTrainDataset(samples, config, seed=1, use_facemask=True)
    item = dataset[(0, 2)]
    assert set(item) == {"image", "alpha", "trimap", "foreground", "background", "facemask", "index"}
    assert item["image"].shape == (3, 64, 64) and item["alpha"].shape == (1, 64, 64)
    assert item["alpha"].max() <= 255 and item["alpha"].max() > 1
    assert set(torch.unique(item["facemask"]).tolist()) <= {0.0, 1.0}
    again = dataset[(0, 2)]
    assert all(torch.equal(item[k], again[k]) for k in item)
    other_epoch = dataset[(1, 2)]
    assert not torch.equal(item["alpha"], other_epoch["alpha"]) or not torch.equal(item["image"], other_epoch["image"])
    plain = MattingTrainDataset(samples, config, seed=1, use_composition=False)
    assert set(plain[(0, 2)]) == {"image", "alpha", "trimap", "index"}


def test_normalize_image_matches_torchvision_formula():
    image = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    tensor = normalize_image(image)
    expected = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-6)


def test_epoch_sampler_shards_and_skips():
    dataset = list(range(10))
    ranks = [EpochSampler(dataset, num_replicas=2, rank=r, seed=3) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(4)
    shards = [list(s) for s in ranks]
    assert all(epoch == 4 for shard in shards for epoch, _ in shard)
    assert not {i for _, i in shards[0]} & {i for _, i in shards[1]}
    assert len(shards[0]) == len(shards[1]) == 5
    ranks[0].set_epoch(4, skip=3)
    assert list(ranks[0]) == shards[0][3:] and len(ranks[0]) == 2
    ranks[0].set_epoch(5)
    assert [i for _, i in ranks[0]] != [i for _, i in shards[0]]


def test_check_data_reports_rwp_636(synthetic_copy):
    """RWP-636 is reported when it is there (under its paper name), is no problem when it is not,
    and every spelling of its name is accepted."""
    from p3m.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["check-data", str(synthetic_copy)], terminal_width=200)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "RWP-636" in line)
    assert "2" in row
    report = check_layout(synthetic_copy)  # the default: every set there is
    assert report.counts == {"train": 6, "P3M-500-P": 2, "P3M-500-NP": 2, "RWP": 2}
    for spelling in ("RWP-636", "rwp636", "RWP"):
        only = runner.invoke(app, ["check-data", str(synthetic_copy), "--sets", spelling], terminal_width=200)
        assert only.exit_code == 0 and "RWP-636" in only.stdout, (spelling, only.output)
    shutil.rmtree(synthetic_copy / "RWP-636")
    without = runner.invoke(app, ["check-data", str(synthetic_copy)], terminal_width=200)
    assert without.exit_code == 0 and "layout OK" in without.stdout
    assert "RWP-636" in without.output and "not found" in without.output
    assert "RWP" not in check_layout(synthetic_copy).counts
    asked = runner.invoke(app, ["check-data", str(synthetic_copy), "--sets", "RWP-636"], terminal_width=200)
    assert asked.exit_code == 1  # asked for by name: its absence is a problem
