"""P3M-Net (ResNet-34) against the reference contract in tests/data/reference/models (r34 section).

The model is filled with the deterministic rule of tests/reference_fill.py and must reproduce
the official outputs; its state_dict must equal the official layout key by key.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REFERENCE_DIR, requires_shared, shared_reference
from p3m.errors import CheckpointError, InputSizeError
from p3m.models import (
    P3MOutput,
    fuse_global_local,
    identify_variant,
    load_backbone_checkpoint,
    load_checkpoint,
    predict,
    read_state_dict,
    save_checkpoint,
)
from p3m.models.checkpoints import extract_state_dict
from p3m.models.ops import max_pool3x3s2_with_indices, max_unpool2d_last_wins
from p3m.models.p3mnet_r34 import P3MNetR34
from reference_fill import fill_model, load_manifest

MODELS_DIR = REFERENCE_DIR / "models"
OUTPUT_NAMES = ("global", "local", "fusion", "side2", "side1", "side0")
LOGIT_NAMES = ("global", "side2", "side1", "side0")
# Strict tier of the reference README for a float32 CPU implementation.
LOGIT_ATOL, LOGIT_RTOL = 1e-4, 1e-5
PROBABILITY_ATOL = 1e-5
NEAR_TIE_GAP = 1e-3


@contextlib.contextmanager
def num_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_manifest(MODELS_DIR / "r34_state_dict.json")


@pytest.fixture(scope="module")
def filled_model(manifest: dict) -> P3MNetR34:
    model = P3MNetR34().eval()
    fill_model(model, manifest)
    return model


@pytest.fixture(scope="module")
def blank_model() -> P3MNetR34:
    """An unfilled model for tests that only need the layout (building one takes a second or two)."""
    return P3MNetR34().eval()


def reference_path(size: str) -> Path:
    if size == "256x256":
        return MODELS_DIR / "r34_io_256x256.npz"
    return shared_reference(f"models/r34_io_{size}.npz")


def run(model: torch.nn.Module, x: np.ndarray | torch.Tensor, threads: int = 1) -> P3MOutput:
    with num_threads(threads):
        return predict(model, torch.as_tensor(x))


def assert_matches_reference(output: P3MOutput, reference: np.lib.npyio.NpzFile) -> None:
    mine = dict(zip(OUTPUT_NAMES, (t.numpy() for t in output), strict=True))
    for name in LOGIT_NAMES:
        np.testing.assert_allclose(
            mine[name], reference[name], atol=LOGIT_ATOL, rtol=LOGIT_RTOL, err_msg=name
        )
    np.testing.assert_allclose(
        mine["local"], reference["local"], atol=PROBABILITY_ATOL, rtol=0, err_msg="local"
    )

    ref_logits = reference["global"][0]
    top2 = np.sort(ref_logits, axis=0)[-2:]
    clear = (top2[1] - top2[0]) >= NEAR_TIE_GAP
    assert (~clear).sum() < 100  # the README counts 45 / 56 near-tie pixels
    my_classes = mine["global"][0].argmax(axis=0)
    np.testing.assert_array_equal(my_classes[clear], ref_logits.argmax(axis=0)[clear])
    fusion, ref_fusion, local = mine["fusion"][0, 0], reference["fusion"][0, 0], mine["local"][0, 0]
    np.testing.assert_allclose(fusion[clear], ref_fusion[clear], atol=PROBABILITY_ATOL, rtol=0)
    # Near ties: fusion must follow the implementation's own argmax exactly.
    expected = np.where(my_classes == 1, local, (my_classes == 2).astype(np.float32))
    np.testing.assert_array_equal(fusion[~clear], expected[~clear])


# --- layout -------------------------------------------------------------------------------------


def test_state_dict_equals_manifest(manifest: dict) -> None:
    state = P3MNetR34().state_dict()
    expected = [
        (key, list(shape), dtype) for key, shape, dtype, _kind, _filled in manifest["entries"]
    ]
    actual = [(key, list(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in state.items()]
    assert len(actual) == 713
    assert actual == expected


def test_aliases_are_the_same_tensors(manifest: dict) -> None:
    model = P3MNetR34()
    state = model.state_dict()
    assert len(manifest["aliases"]) == 216
    for alias, canonical in manifest["aliases"].items():
        assert state[alias].data_ptr() == state[canonical].data_ptr(), alias
    assert model.encoder2 is model.resnet.layer2
    assert model.encoder0[0] is model.resnet.conv1


def test_parameter_counts() -> None:
    model = P3MNetR34()
    assert model.num_parameters() == 39_478_060
    assert sum(p.numel() for p in model.encoder_parameters()) == 21_797_672
    assert sum(p.numel() for p in model.decoder_parameters()) == 17_680_388
    assert sum(p.numel() for p in model.resnet.fc.parameters()) == 513_000


def test_fcp_layers_are_encoder_modules_used_in_forward(blank_model: P3MNetR34) -> None:
    seen: list[str] = []
    handles = [
        blank_model.get_submodule(name).register_forward_hook(
            lambda *_args, name=name: seen.append(name)
        )
        for name in blank_model.fcp_layers
    ]
    try:
        predict(blank_model, torch.zeros(1, 3, 32, 32))
    finally:
        for handle in handles:
            handle.remove()
    assert seen == list(blank_model.fcp_layers)


# --- numerics against the official model --------------------------------------------------------


@pytest.mark.parametrize("size", ["256x256", pytest.param("320x448", marks=requires_shared)])
def test_outputs_match_reference(filled_model: P3MNetR34, size: str) -> None:
    reference = np.load(reference_path(size))
    output = run(filled_model, reference["input"])
    assert isinstance(output, P3MOutput)
    assert output._fields == ("global_logits", "local", "fusion", "side2", "side1", "side0")
    assert_matches_reference(output, reference)


def test_outputs_do_not_depend_on_thread_count(filled_model: P3MNetR34) -> None:
    """With 3 threads the official unpool races (local off by 2.6e-2); ours must not."""
    reference = np.load(reference_path("256x256"))
    single = run(filled_model, reference["input"], threads=1)
    for threads in (2, 3):
        output = run(filled_model, reference["input"], threads=threads)
        assert_matches_reference(output, reference)
        # Only float summation order may differ: far below the 1e-2 of an unpool race.
        assert (output.local - single.local).abs().max() < 1e-5


def test_inference_outputs_are_inference_tensors(filled_model: P3MNetR34) -> None:
    output = predict(filled_model, torch.zeros(1, 3, 32, 32))
    assert all(t.is_inference() for t in output)


# --- ops -----------------------------------------------------------------------------------------


def test_unpool_last_wins_on_hand_made_collisions() -> None:
    # A 2 x 3 pooled plane unpooled into 4 x 6; cells 0, 1 and 4 collide on position 1,
    # cells 2 and 5 on position 10; cell 3 writes alone to position 12.
    values = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])
    indices = torch.tensor([[[[1, 1, 10], [12, 1, 10]]]])
    out = max_unpool2d_last_wins(values, indices, (4, 6)).flatten()
    expected = torch.zeros(24)
    expected[1] = 5.0  # last of cells 0, 1, 4 in row-major order
    expected[10] = 6.0  # cell 5 beats cell 2
    expected[12] = 4.0
    assert torch.equal(out, expected)


def collision_heavy_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # ReLU'd, coarsely quantised input: many ties and overlapping-window collisions, like the encoder.
    x = torch.randint(-3, 3, (2, 5, 34, 46), generator=generator).float().relu()
    pooled, indices = max_pool3x3s2_with_indices(x)
    values = torch.randn(pooled.shape, generator=generator)
    return x, values, indices


def test_unpool_equals_single_thread_torch_and_is_thread_independent() -> None:
    x, values, indices = collision_heavy_case()
    flat = indices.flatten(2)
    collisions = sum(
        int(row.numel() - row.unique().numel()) for row in flat.reshape(-1, flat.shape[-1])
    )
    assert collisions > 100
    with num_threads(1):
        expected = F.max_unpool2d(
            values, indices, kernel_size=2, stride=2, output_size=x.shape[-2:]
        )
    results = []
    for threads in (1, 2, 3):
        with num_threads(threads):
            results.append(max_unpool2d_last_wins(values, indices, x.shape[-2:]))
    for result in results:
        assert torch.equal(result, expected)


def test_unpool_gradient_equals_torch() -> None:
    x, values, indices = collision_heavy_case(seed=1)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    mine = values.clone().requires_grad_(True)
    max_unpool2d_last_wins(mine, indices, x.shape[-2:]).backward(grad)
    theirs = values.clone().requires_grad_(True)
    F.max_unpool2d(theirs, indices, kernel_size=2, stride=2, output_size=x.shape[-2:]).backward(
        grad
    )
    assert torch.equal(mine.grad, theirs.grad)


def test_index_pool_ties_pick_first_cell_of_window() -> None:
    _pooled, indices = max_pool3x3s2_with_indices(torch.zeros(1, 1, 4, 4))
    # windows start at rows/cols -1 and 1; padding is never picked, so the first valid cell wins
    assert indices.flatten().tolist() == [0, 1, 4, 5]


def test_fusion_rule_and_ties() -> None:
    logits = torch.tensor(
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 2.0]]
    )
    global_logits = logits.T.reshape(1, 3, 1, 5)
    local = torch.full((1, 1, 1, 5), 0.25)
    fusion = fuse_global_local(global_logits, local).flatten().tolist()
    assert fusion == [0.25, 1.0, 0.0, 0.0, 0.25]


# --- input validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, problem",
    [
        (torch.zeros(1, 3, 65, 96), "multiples of 32"),
        (torch.zeros(1, 3, 0, 32), "multiples of 32"),
        (torch.zeros(3, 64, 64), "N x 3 x H x W"),
        (torch.zeros(1, 4, 64, 64), "N x 3 x H x W"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "float"),
        (np.zeros((1, 3, 64, 64), np.float32), "torch.Tensor"),
    ],
)
def test_bad_input_raises_input_size_error(blank_model: P3MNetR34, x: object, problem: str) -> None:
    with pytest.raises(InputSizeError, match=problem) as info:
        blank_model(x)
    assert "p3mnet-r34" in str(info.value) and "\n" not in str(info.value)


# --- checkpoints ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_checkpoint(filled_model: P3MNetR34, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(
        filled_model, tmp_path_factory.mktemp("ckpt") / "r34.pth", extra={"epoch": 7}
    )


def small_input(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(seed))


def test_saved_file_is_official_format(saved_checkpoint: Path, manifest: dict) -> None:
    payload = torch.load(saved_checkpoint, map_location="cpu", weights_only=True)
    assert payload["epoch"] == 7
    assert list(payload["state_dict"]) == [entry[0] for entry in manifest["entries"]]
    # The alias keys share storage, so the file holds each backbone tensor once.
    assert os.path.getsize(saved_checkpoint) < 1.05 * 39_478_060 * 4 + 2_000_000
    assert not [p for p in saved_checkpoint.parent.iterdir() if p.name.endswith(".tmp")]


def test_save_load_gives_identical_outputs(filled_model: P3MNetR34, saved_checkpoint: Path) -> None:
    fresh = P3MNetR34().eval()
    report = load_checkpoint(fresh, saved_checkpoint)
    assert report.missing == report.unexpected == report.mismatched == ()
    x = small_input()
    for mine, theirs in zip(run(fresh, x), run(filled_model, x), strict=True):
        assert torch.equal(mine, theirs)


def test_bare_and_module_prefixed_state_dicts_load(
    saved_checkpoint: Path, blank_model: P3MNetR34, tmp_path: Path
) -> None:
    state = read_state_dict(saved_checkpoint)
    path = tmp_path / "bare.pth"
    torch.save(state, path)
    for tensor in blank_model.state_dict().values():
        tensor.zero_()
    load_checkpoint(blank_model, path)
    loaded = blank_model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    # DataParallel / DDP checkpoints carry a `module.` prefix on every key.
    prefixed = {"state_dict": {f"module.{key}": value for key, value in state.items()}}
    assert extract_state_dict(prefixed, "ddp.pth").keys() == state.keys()


def fake_state_dict(manifest_name: str) -> dict[str, torch.Tensor]:
    """The keys of another variant's manifest, with tiny tensors (only the keys matter)."""
    entries = load_manifest(MODELS_DIR / manifest_name)["entries"]
    return {key: torch.zeros(1) for key, *_rest in entries}


def assert_one_line_error(
    error: pytest.ExceptionInfo[CheckpointError], path: Path, *needles: str
) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize(
    "manifest_name, variant, first_unexpected",
    [
        ("swin_state_dict.json", "p3mnet-swin-t", "encoder.patch_embed.proj1.weight"),
        ("vitae_state_dict.json", "p3mnet-vitae-s", "encoder.layers.0.RC.proj1.weight"),
    ],
)
def test_other_variant_checkpoint_names_the_variant(
    blank_model: P3MNetR34, tmp_path: Path, manifest_name: str, variant: str, first_unexpected: str
) -> None:
    path = tmp_path / f"{variant}.pth"
    state = fake_state_dict(manifest_name)
    assert identify_variant(state) == variant
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(blank_model, path)
    assert_one_line_error(
        error, path, f"looks like a {variant} checkpoint", "resnet.conv1.weight", first_unexpected
    )


def test_truncated_checkpoint(
    saved_checkpoint: Path, blank_model: P3MNetR34, tmp_path: Path
) -> None:
    path = tmp_path / "truncated.pth"
    path.write_bytes(saved_checkpoint.read_bytes()[:5_000_000])
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(blank_model, path)
    assert_one_line_error(error, path, "truncated or corrupt PyTorch checkpoint")


def test_text_file_is_not_a_checkpoint(blank_model: P3MNetR34, tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(blank_model, path)
    assert_one_line_error(error, path, "is not a PyTorch checkpoint")


def test_a_video_or_onnx_file_is_named_for_what_it_is(blank_model: P3MNetR34, tmp_path: Path) -> None:
    """A clip or an ONNX file passed as weights said "holds Python objects that a weights-only
    load refuses", which reads like an unsafe pickle."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00" + bytes(range(256)) * 4)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(blank_model, clip)
    assert_one_line_error(error, clip, "is not a PyTorch checkpoint")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x08\x12\x07pytorch" + bytes(64))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(blank_model, onnx_file)
    assert_one_line_error(error, onnx_file, "is an ONNX file, not a PyTorch checkpoint")


def test_missing_file(blank_model: P3MNetR34, tmp_path: Path) -> None:
    path = tmp_path / "absent.pth"
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(blank_model, path)
    assert_one_line_error(error, path, "no such checkpoint file")


def test_missing_keys_are_named(
    saved_checkpoint: Path, blank_model: P3MNetR34, tmp_path: Path
) -> None:
    state = read_state_dict(saved_checkpoint)
    for key in ("tfi_3.conv1.weight", "decoder_final_l.bias"):
        del state[key]
    path = tmp_path / "partial.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(blank_model, path)
    assert_one_line_error(
        error, path, "2 keys missing", "tfi_3.conv1.weight", "decoder_final_l.bias"
    )
    assert "looks like" not in str(error.value)  # it is an r34 checkpoint, just incomplete

    report = load_checkpoint(blank_model, path, strict=False)
    assert report.missing == ("tfi_3.conv1.weight", "decoder_final_l.bias")


def test_wrong_shapes_are_named(
    saved_checkpoint: Path, blank_model: P3MNetR34, tmp_path: Path
) -> None:
    state = read_state_dict(saved_checkpoint)
    state["decoder_final_l.weight"] = torch.zeros(2, 64, 3, 3)
    path = tmp_path / "shapes.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(blank_model, path)
    assert_one_line_error(error, path, "decoder_final_l.weight (2, 64, 3, 3) vs (1, 64, 3, 3)")


def test_non_state_dict_pickle(blank_model: P3MNetR34, tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save({"epoch": 3, "lr": 0.01}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(blank_model, path)
    assert_one_line_error(error, path, "no state_dict")


def test_gradients_reach_encoder_and_both_decoders() -> None:
    model = P3MNetR34().train()
    output = model(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)))
    (output.local.mean() + output.global_logits.mean() + output.side2.mean()).backward()
    for name in (
        "resnet.conv1.weight",
        "decoder_final_l.weight",
        "decoder0_g.6.weight",
        "dbfi_2.conv2.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_imagenet_backbone_weights(blank_model: P3MNetR34, tmp_path: Path) -> None:
    """A DataParallel-saved ImageNet ResNet file loads into `resnet`, and is refused as a whole model."""
    generator = torch.Generator().manual_seed(4)
    conv1 = torch.randn(64, 3, 7, 7, generator=generator)
    block = torch.randn(64, 64, 3, 3, generator=generator)
    path = tmp_path / "r34mp_pretrained_imagenet.pth.tar"
    state = {"module.conv1.weight": conv1, "module.layer1.0.conv1.weight": block}
    torch.save({"state_dict": state, "epoch": 90}, path)

    report = load_backbone_checkpoint(blank_model, path)
    assert torch.equal(blank_model.resnet.conv1.weight.detach(), conv1)
    assert torch.equal(blank_model.encoder1[0][0].conv1.weight.detach(), block)
    assert "fc.weight" in report.missing and not report.unexpected

    with pytest.raises(CheckpointError) as error:
        load_checkpoint(blank_model, path)
    assert_one_line_error(error, path, "ImageNet ResNet backbone", "resnet.conv1.weight")
