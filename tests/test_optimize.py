"""The fast inference path (`p3m.models.optimize_for_inference`) against the exact models and the
reference vectors of every variant, and the HYBRID / RESIZE mattes it gives.

The fast path folds BatchNorms, fuses operators and changes memory layouts, so it agrees with
the reference within float rounding, not bit for bit. Rounding can flip a max-pool decision where
two inputs of a window are nearly equal; the decoder is therefore checked twice: with the exact
encoder's pool indices (every output within the reference tolerances on every pixel), and as a
whole (pool flips allowed only at near-ties, affecting a handful of `local` pixels).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REFERENCE_DIR, requires_shared, shared_reference
from p3m.inference.strategies import local_region, predict_p3mnet
from p3m.models import create_model, optimize_for_inference
from p3m.models.fast_ops import fold_batchnorm, unpool_nonoverlapping, unpool_settled
from p3m.models.ops import (
    max_pool2x2_with_indices,
    max_pool3x3s2_with_indices,
    max_unpool2d_last_wins,
)
from p3m.models.optimize import FastP3MNet
from p3m.models.optimize import _tile_indices as _original_tile_indices
from p3m.models.p3mnet import EncoderOutput, P3MOutput
from reference_fill import fill_model, load_manifest

MODELS_DIR = REFERENCE_DIR / "models"

@pytest.fixture(autouse=True)
def cores_free(monkeypatch):
    """The fast path's Winograd layers are checked too: no fallback for a busy test machine."""
    import p3m.models.fast_ops as fast_ops

    monkeypatch.setattr(fast_ops, "cores_oversubscribed", lambda: False)


NAMES = ("global", "local", "fusion", "side2", "side1", "side0")
LOGITS = ("global", "side2", "side1", "side0")
NEAR_TIE_GAP = 1e-3
# Reference README tolerances, |fast - ref| <= atol + rtol * |ref|: r34 and Swin-T from their
# tables (which cover two-thread noise), ViTAE-S its strict CPU tier (1e-5, 1e-6 at gain 0.5).
TOLERANCES = {
    "r34": {"logits": (1e-3, 1e-4), "local": 1e-4},
    "swin": {"logits": (1e-4, 1e-4), "local": 1e-4},
    "vitae": {"logits": (1e-5, 0.0), "local": 1e-5},
    "vitae-gain0.5": {"logits": (1e-6, 0.0), "local": 1e-6},
}
MODEL_NAMES = {"r34": "p3mnet-r34", "swin": "p3mnet-swin-t", "vitae": "p3mnet-vitae-s"}
PERFORMER_KEYS = ("encoder.layers.0.NC.0.attn.w", "encoder.layers.0.NC.1.attn.w")
CASES = [
    pytest.param("r34", "r34_io_256x256.npz", id="r34-256x256"),
    pytest.param("r34", "r34_io_320x448.npz", id="r34-320x448", marks=requires_shared),
    pytest.param("swin", "swin_io_256x256.npz", id="swin-256x256"),
    pytest.param("swin", "swin_io_320x448.npz", id="swin-320x448", marks=requires_shared),
    pytest.param("vitae", "vitae_io_256x256.npz", id="vitae-256x256"),
    pytest.param("vitae", "vitae_io_320x448.npz", id="vitae-320x448", marks=requires_shared),
    pytest.param("vitae", "vitae_io_256x256_gain0.5.npz", id="vitae-256x256-gain0.5"),
]


def load_reference(file_name: str) -> np.lib.npyio.NpzFile:
    path = MODELS_DIR / file_name
    return np.load(path if path.exists() else shared_reference(f"models/{file_name}"))


@pytest.fixture(scope="module")
def filled() -> dict:
    """(exact, fast) models filled by the reference rule, built once per (variant, gain).

    The ViTAE-S Performer features are the same in every ViTAE-S reference file; they are
    injected before the fast model is built.
    """
    cache: dict[tuple[str, float | None], tuple[torch.nn.Module, FastP3MNet]] = {}

    def get(variant: str, gain: float | None = None) -> tuple[torch.nn.Module, FastP3MNet]:
        if (variant, gain) not in cache:
            model = create_model(MODEL_NAMES[variant], device="cpu")
            fill_model(model, load_manifest(MODELS_DIR / f"{variant}_state_dict.json"), gain)
            if variant == "vitae":
                reference = load_reference("vitae_io_256x256.npz")
                buffers = dict(model.named_buffers())
                for key in PERFORMER_KEYS:
                    buffers[key].copy_(torch.from_numpy(reference[f"nonstate.{key}"]))
            cache[(variant, gain)] = (model, optimize_for_inference(model))
        return cache[(variant, gain)]

    return get


def exact_encode(model: torch.nn.Module, x: torch.Tensor) -> EncoderOutput:
    return model.encode(x) if hasattr(model, "encode") else model.encoder(x)


def assert_within(output: P3MOutput, reference, tolerance: dict, pool_flips: int = 0) -> None:
    """Every output within `tolerance` of the reference on every pixel; with pool flips, `local`
    and `fusion` may leave it on at most 1 % of the pixels, keeping their mean within it."""
    mine = {name: value.numpy() for name, value in zip(NAMES, output, strict=True)}
    atol, rtol = tolerance["logits"]
    for name in LOGITS:
        np.testing.assert_allclose(mine[name], reference[name], atol=atol, rtol=rtol, err_msg=name)
    top2 = np.sort(reference["global"][0], axis=0)[-2:]
    clear = (top2[1] - top2[0]) >= NEAR_TIE_GAP
    assert np.array_equal(mine["global"][0].argmax(axis=0)[clear], reference["global"][0].argmax(axis=0)[clear])
    allowed = clear.size // 100 if pool_flips else 0
    for name, where in (("local", np.ones_like(clear)), ("fusion", clear)):
        difference = np.abs(mine[name] - reference[name])[0, 0][where]
        off = int((difference > tolerance["local"]).sum())
        assert off <= allowed, f"{name} off at {off} pixels ({pool_flips} pool flips)"
        assert difference.mean() <= tolerance["local"], name


@pytest.mark.parametrize(("variant", "file_name"), CASES)
def test_fast_path_matches_reference(filled, variant: str, file_name: str) -> None:
    reference = load_reference(file_name)
    model, fast = filled(variant, 0.5 if "gain0.5" in file_name else None)
    tolerance = TOLERANCES["vitae-gain0.5" if "gain0.5" in file_name else variant]
    x = torch.from_numpy(reference["input"])
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            exact_encoded = exact_encode(model, x)
            fast_encoded = fast.encode(x)
            # 1. The decoder's arithmetic: with the exact pool decisions, every pixel agrees.
            shared = EncoderOutput(fast_encoded.top, fast_encoded.features, exact_encoded.indices)
            assert_within(fast.decode(shared), reference, tolerance)
            # 2. Pool decisions differ only at near-ties (rounding of equal-looking inputs).
            flips = 0
            for feature, mine, theirs in zip(
                exact_encoded.features, fast_encoded.indices, exact_encoded.indices, strict=True
            ):
                differ = (mine != theirs).flatten(2)
                flips += int(differ.sum())
                planes = feature.flatten(2)
                at_mine = planes.gather(2, mine.flatten(2))[differ]
                at_theirs = planes.gather(2, theirs.flatten(2))[differ]
                assert torch.all((at_mine - at_theirs).abs() <= 1e-4 * at_theirs.abs().clamp(min=1.0))
            assert flips <= 8
            # 3. The whole fast model: a near-tie flip may move `local` at a few pixels only.
            output = fast.decode(fast_encoded)
        assert_within(output, reference, tolerance, pool_flips=flips)
    finally:
        torch.set_num_threads(previous)


# --- every registered model, small random input ------------------------------------------------


# The three P3M-Net variants and two ablation structures (no BFI at all; TFI + sBFI only, which
# has no side outputs); the other ablation rows combine the same blocks.
FAST_CASES = ["p3mnet-r34", "p3mnet-swin-t", "p3mnet-vitae-s", "basic-r34", "p3mnet-swin-t-tfi-sbfi"]


@pytest.fixture(scope="module", params=FAST_CASES)
def pair(request) -> tuple[torch.nn.Module, FastP3MNet]:
    torch.manual_seed(0)
    model = create_model(request.param, device="cpu")
    return model, optimize_for_inference(model)


def test_fast_equals_exact_and_selects_outputs(pair) -> None:
    model, fast = pair
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        exact = model(x)
    full = fast(x)
    assert isinstance(full, P3MOutput) and all(t is None or t.is_inference() for t in full)
    for name, a, b in zip(P3MOutput._fields, exact, full, strict=True):
        assert (a is None) == (b is None), name
        if a is None:
            continue
        scale = float(a.abs().max())
        assert float((a - b).abs().max()) <= 1e-5 * max(1.0, scale), name
    choices = [("local",), ("global_logits",), ("global_logits", "fusion")]
    if exact.side1 is not None:
        choices.append(("side1",))
    for chosen in choices:
        part = fast(x, outputs=chosen)
        for name, value in zip(P3MOutput._fields, part, strict=True):
            if name in chosen:
                assert torch.equal(value, getattr(full, name)), (chosen, name)
            else:
                assert value is None, (chosen, name)
    with pytest.raises(ValueError, match="unknown outputs"):
        fast(x, outputs=("alpha",))


def test_concurrent_calls_give_the_sequential_results(pair) -> None:
    """One FastP3MNet may serve several threads (a folder run's compute and service workers)."""
    from concurrent.futures import ThreadPoolExecutor

    _model, fast = pair
    inputs = [torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(seed)) for seed in range(4)]
    sequential = [fast(x).local for x in inputs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        concurrent = list(pool.map(lambda x: fast(x).local, inputs))
    assert all(torch.equal(a, b) for a, b in zip(sequential, concurrent, strict=True))


def test_region_restricted_local_equals_full(pair) -> None:
    _model, fast = pair
    if not fast.supports_region:
        # Only ablation decoders lack the region pass; HYBRID then runs the whole local pass.
        assert fast.variant not in ("p3mnet-r34", "p3mnet-swin-t", "p3mnet-vitae-s"), fast.variant
        return
    x = torch.randn(1, 3, 320, 288, generator=torch.Generator().manual_seed(2))
    region = torch.zeros(320, 288, dtype=torch.bool)
    region[100:104, 30:200] = True
    region[250:320, 270:288] = True
    full = fast(x, outputs=("local",)).local
    part = fast(x, outputs=("local",), region=region).local
    assert torch.equal(part[0, 0][region], full[0, 0][region])
    assert float((part[0, 0] == 0).float().mean()) > 0.3  # tiles without region were skipped
    assert torch.equal(fast(x, outputs=("local",), region=torch.zeros_like(region)).local, torch.zeros_like(full))
    with pytest.raises(ValueError, match="fusion"):
        fast(x, outputs=("fusion",), region=region)
    # A region whose tiles cover most of the image runs the whole level-0 pass instead: the
    # same values on the region, 0 off it.
    dense = torch.ones(320, 288, dtype=torch.bool)
    dense[::7, ::5] = False
    whole = fast(x, outputs=("local",), region=dense).local
    assert torch.equal(whole[0, 0][dense], full[0, 0][dense]) and not whole[0, 0][~dense].any()


def test_a_dense_region_takes_the_whole_level0_pass(monkeypatch) -> None:
    import p3m.models.optimize as optimize

    torch.manual_seed(0)
    fast = optimize_for_inference(create_model("p3mnet-r34", device="cpu"))
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    region = torch.zeros(256, 256, dtype=torch.bool)
    region[::9, :] = True  # a row every 9 pixels: every tile is needed
    calls: list[int] = []

    def counted(*args, **kwargs):
        calls.append(1)
        return _original_tile_indices(*args, **kwargs)

    monkeypatch.setattr(optimize, "_tile_indices", counted)
    whole = fast(x, outputs=("local",), region=region).local
    assert calls == []  # no tile was computed
    monkeypatch.setattr(optimize, "REGION_FULL_PASS_ABOVE", 10.0)
    tiled = fast(x, outputs=("local",), region=region).local
    assert calls and torch.equal(whole[0, 0][region], tiled[0, 0][region])


def test_every_known_block_is_rewritten(pair) -> None:
    from p3m.models.backbones.resnet_mp import BasicBlock
    from p3m.models.backbones.swin import SwinStage, WindowAttention
    from p3m.models.backbones.tokens import ConvStem, Mlp, PoolingMerge
    from p3m.models.backbones.vitae import GlobalAttention, NormalCell

    _model, fast = pair
    slow = (BasicBlock, SwinStage, WindowAttention, ConvStem, Mlp, PoolingMerge, GlobalAttention, NormalCell)
    for name, module in fast.named_modules():
        assert not isinstance(module, slow), name
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.Conv2d)):
            # only the ResNet's own stem remains, which the r34 encoder reads through its aliases
            assert name.startswith("net.resnet."), name


@pytest.mark.parametrize("variant", ["p3mnet-r34", "p3mnet-swin-t", "p3mnet-vitae-s"])
def test_convolutions_write_channels_last(variant: str) -> None:
    """Every convolution of the fast path writes channels-last maps with the canonical strides
    oneDNN recognises, token grids included (a 1 x C x h x w view of tokens has batch stride C:
    oneDNN then wrote NCHW, and each later concatenation and convolution converted layouts).
    (Ablation variants run the model's own decoder data flow, with its NCHW unpooling.)"""
    from p3m.models.fast_ops import FusedConv2d

    torch.manual_seed(0)
    fast = optimize_for_inference(create_model(variant, device="cpu"))
    seen: list[str] = []

    def check(module, inputs, output) -> None:
        if output.dim() == 4 and output.shape[1] > 1:
            n, c, h, w = output.shape
            assert output.stride() == (c * h * w, 1, w * c, c), (names[module], output.stride())
            seen.append(names[module])

    names = {module: name for name, module in fast.named_modules()}
    hooks = [m.register_forward_hook(check) for m in names if isinstance(m, FusedConv2d)]
    try:
        fast(torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1)))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) > 10


def test_canonical_channels_last() -> None:
    from p3m.models.fast_ops import canonical_channels_last

    tokens = torch.randn(7 * 9, 5)  # h*w x C rows, seen as a 1 x C x 7 x 9 map
    grid = tokens.t().reshape(1, 5, 7, 9)
    assert grid.is_contiguous(memory_format=torch.channels_last) and grid.stride()[0] == 5
    fixed = canonical_channels_last(grid)
    assert fixed.stride() == (5 * 7 * 9, 1, 9 * 5, 5) and torch.equal(fixed, grid)
    assert fixed.data_ptr() == grid.data_ptr()  # a view, no copy
    nchw = torch.randn(1, 5, 7, 9)
    assert canonical_channels_last(nchw) is nchw
    batch = torch.randn(2, 5, 7, 9).contiguous(memory_format=torch.channels_last)
    assert canonical_channels_last(batch) is batch


def test_optimize_arguments(pair) -> None:
    model, fast = pair
    assert optimize_for_inference(model, exact=True) is model
    assert optimize_for_inference(fast) is fast
    assert fast.variant == model.variant and fast.min_size == model.min_size
    training = copy.deepcopy(model).train()
    with pytest.raises(ValueError, match="eval mode"):
        optimize_for_inference(training)
    with pytest.raises(ValueError, match="P3M-Net"):
        optimize_for_inference(torch.nn.Conv2d(3, 3, 1).eval())


# --- building blocks ------------------------------------------------------------------------------


def collision_heavy(seed: int, pool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(-3, 3, (2, 6, 34, 46), generator=generator).float().relu()
    pooled, indices = pool(x)
    return x, torch.randn(pooled.shape, generator=generator), indices


@pytest.mark.parametrize("channels_last", [False, True])
def test_settled_unpool_is_the_last_wins_rule_at_any_thread_count(channels_last: bool) -> None:
    x, values, indices = collision_heavy(0, max_pool3x3s2_with_indices)
    if channels_last:
        values = values.contiguous(memory_format=torch.channels_last)
        indices = indices.contiguous(memory_format=torch.channels_last)
    expected = max_unpool2d_last_wins(values, indices, x.shape[-2:])
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            assert torch.equal(unpool_settled(values, indices, x.shape[-2:]), expected)
    finally:
        torch.set_num_threads(previous)


def test_nonoverlapping_unpool_equals_exact() -> None:
    x, values, indices = collision_heavy(1, max_pool2x2_with_indices)
    assert torch.equal(
        unpool_nonoverlapping(values, indices, x.shape[-2:]),
        max_unpool2d_last_wins(values, indices, x.shape[-2:]),
    )


def test_fold_batchnorm() -> None:
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(4, 5, 3, padding=1)
    bn = torch.nn.BatchNorm2d(5).eval()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-1, 1)
    weight, bias = fold_batchnorm(conv, bn)
    x = torch.randn(2, 4, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(F.conv2d(x, weight, bias, padding=1), bn(conv(x)), atol=1e-5, rtol=1e-5)


# --- the official strategies on the fast path ---------------------------------------------------


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    from skimage import data

    from p3m.inference.upsample import shrink_image

    return shrink_image(data.astronaut(), (300, 260))


@pytest.mark.parametrize("variant", ["r34", "swin"])
@pytest.mark.parametrize("strategy", ["hybrid", "resize"])
def test_mattes_agree_with_the_exact_path(filled, portrait: np.ndarray, variant: str, strategy: str) -> None:
    model, fast = filled(variant)
    exact = predict_p3mnet(model, portrait, strategy)
    mine = predict_p3mnet(fast, portrait, strategy)
    band = exact.trimap == 128
    assert band.mean() > 0.01  # the filled models give a real transition band here
    difference = np.abs(mine.alpha - exact.alpha)
    assert difference.mean() < 1e-3
    assert difference[band].mean() < 5e-3
    if strategy == "hybrid":
        # The band-only local pass gives the alpha of the full local pass, bit for bit.
        assert np.array_equal(predict_p3mnet(fast, portrait, strategy, band_only=False).alpha, mine.alpha)


def test_local_region_covers_what_the_combine_reads() -> None:
    trimap = np.zeros((90, 70))
    trimap[40:45, 10:60] = 128.0
    trimap[80:90, 0:5] = 37.0  # a fractional value from the resize counts as unknown
    for size in ((64, 64), (96, 64), (128, 96)):
        region = local_region(trimap, size)
        from skimage.transform import resize

        # Perturb the local map outside the region: the resized values read by the combine stay.
        inside = np.random.default_rng(0).random(size)
        outside = np.where(region, inside, 5.0)
        unknown = (trimap != 0) & (trimap != 255)
        assert np.array_equal(resize(inside, trimap.shape)[unknown], resize(outside, trimap.shape)[unknown])
        assert region.mean() < 0.5
    assert not local_region(np.full((20, 20), 255.0), (32, 32)).any()
