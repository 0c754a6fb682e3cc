"""p3m.inference: the official strategies, the pixel budget, p3m.matte, selfie-cf, foreground."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize

import p3m
from p3m.errors import MissingDependencyError, P3MError
from p3m.inference import foreground as fg
from p3m.inference.preprocess import working_size
from p3m.inference.strategies import predict_alpha_p3mnet, predict_p3mnet
from p3m.models import P3MOutput, create_model, get_spec, list_models
from reference_fill import fill_model, load_manifest

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def filled_r34(reference_dir):
    model = create_model("p3mnet-r34", device="cpu")
    fill_model(model, load_manifest(reference_dir / "models" / "r34_state_dict.json"))
    return model.eval()


@pytest.fixture(scope="module")
def portrait_small() -> np.ndarray:
    """The astronaut, shrunk to an awkward 150 x 214 (neither side a multiple of 32)."""
    image = resize(data.astronaut(), (150, 214), anti_aliasing=True)
    return (image * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------- the plain procedure


def _official_size(n: int, ratio: float) -> int:
    t = int(n * ratio)
    return min(1600, t - (t % 32))


def _official_once(model, image_0_255: np.ndarray):
    """SPEC-r34 section 11, `inference_once`, written out plainly."""
    x = image_0_255.astype(np.float32)
    x = torch.from_numpy(x).permute(2, 0, 1) / 255.0
    x = (x - torch.from_numpy(IMAGENET_MEAN)[:, None, None]) / torch.from_numpy(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        outputs = model(x[None])
    global_logits = outputs[0].numpy()[0]
    trimap = np.argmax(global_logits, axis=0)
    trimap = np.choose(trimap, [0, 128, 255]).astype(np.uint8)
    return trimap, outputs[1].numpy()[0, 0], outputs[2].numpy()[0, 0]


def _official_hybrid(model, image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    global_image = resize(image, (_official_size(h, 0.5), _official_size(w, 0.5))) * 255.0
    trimap, _, _ = _official_once(model, global_image)
    global_result = resize(trimap, (h, w)) * 255.0
    local_image = resize(image, (_official_size(h, 1.0), _official_size(w, 1.0))) * 255.0
    _, local, _ = _official_once(model, local_image)
    local_result = resize(local, (h, w))
    weight = np.ones_like(global_result)
    weight[global_result == 255] = 0
    weight[global_result == 0] = 0
    return global_result * (1 - weight) / 255.0 + local_result * weight, global_result


def _official_resize(model, image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    scaled = resize(image, (_official_size(h, 0.5), _official_size(w, 0.5))) * 255.0
    _, _, fusion = _official_once(model, scaled)
    return resize(fusion, (h, w))


# --------------------------------------------------------------------------- tests


def test_working_size_follows_the_official_rule():
    assert working_size(1080, 1620, 0.5) == (512, 800)
    assert working_size(1080, 1620, 1.0) == (1056, 1600)
    assert working_size(4000, 6000, 1.0) == (1600, 1600)  # each axis capped on its own
    assert working_size(40, 50, 0.5) == (32, 32)  # official would give 0: clamped to the minimum
    assert working_size(300, 300, 0.5, min_side=256) == (256, 256)


def test_hybrid_reproduces_the_official_procedure(filled_r34, portrait_small):
    expected, global_result = _official_hybrid(filled_r34, portrait_small)
    # The filled model must exercise all three branches of the combine rule.
    assert (global_result == 0).any() or (global_result == 255).any()
    assert ((global_result != 0) & (global_result != 255)).any()

    prediction = predict_p3mnet(filled_r34, portrait_small, "hybrid")
    assert prediction.pass_sizes == {"global": (64, 96), "local": (128, 192)}
    np.testing.assert_array_equal(prediction.alpha_u8_official, (expected * 255).astype(np.uint8))
    np.testing.assert_allclose(prediction.alpha, expected, rtol=0, atol=1e-6)
    known = (global_result == 0) | (global_result == 255)
    assert np.array_equal(prediction.trimap[known], global_result[known].astype(np.uint8))

    result = p3m.matte(portrait_small, model=filled_r34, max_pixels=None, foreground=False)
    assert result.alpha.dtype == np.float32 and result.alpha.shape == portrait_small.shape[:2]
    np.testing.assert_allclose(result.alpha, expected, rtol=0, atol=1e-6)
    assert result.resized is None
    assert result.model == "p3mnet-r34"


def test_resize_reproduces_the_official_procedure(filled_r34, portrait_small):
    expected = _official_resize(filled_r34, portrait_small)
    alpha = predict_alpha_p3mnet(filled_r34, portrait_small, "resize")
    np.testing.assert_allclose(alpha, expected, rtol=0, atol=1e-6)
    result = p3m.matte(portrait_small, model=filled_r34, strategy="resize", max_pixels=None)
    np.testing.assert_allclose(result.alpha, expected, rtol=0, atol=1e-6)


def test_combine_rule_matches_the_reference_vectors(reference_dir):
    from p3m.inference.fusion import fuse_trimap_and_local

    vectors = np.load(reference_dir / "losses" / "utilities.npz")
    out = fuse_trimap_and_local(vectors["fusion_test_global_in"], vectors["fusion_test_local_in"])
    np.testing.assert_array_equal(out, vectors["fusion_test_out"])


class _EdgeModel(torch.nn.Module):
    """A cheap stand-in for P3M-Net: foreground where the image is bright, a soft local alpha."""

    min_size = 32
    variant = "edge-stub"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> P3MOutput:
        self.calls.append(tuple(x.shape[2:]))
        brightness = x.mean(dim=1, keepdim=True) * self.scale
        local = torch.sigmoid(4 * brightness)
        logits = torch.cat([-brightness * 8, 1 - (brightness * 8).abs(), brightness * 8], dim=1)
        fusion = local
        return P3MOutput(logits, local, fusion, logits, logits, logits)


def test_pixel_budget_shrinks_big_images_and_says_so():
    height, width = 4000, 6000  # 24 MP
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    disc = ((rows - 0.5) ** 2 + (cols - 0.5) ** 2 < 0.1).astype(np.uint8)
    image = np.repeat((40 + 180 * disc)[:, :, None], 3, axis=2).astype(np.uint8)
    model = _EdgeModel().eval()
    result = p3m.matte(image, model=model, max_pixels=500_000, foreground=False)
    assert result.alpha.shape == (height, width)
    assert result.resized is not None
    assert result.resized.original_size == (height, width)
    ph, pw = result.resized.processed_size
    assert ph * pw <= 500_000 and abs(pw / ph - 1.5) < 0.01
    assert "500" in result.resized.describe() or "0.50 MP" in result.resized.describe()
    # The model never saw more than the budget, and the matte follows the disc.
    assert max(h * w for h, w in model.calls) <= 500_000
    assert result.alpha[2000, 3000] > 0.9 and result.alpha[100, 100] < 0.1
    # Under the budget nothing is resized.
    small = image[::20, ::20].copy()
    assert p3m.matte(small, model=model, foreground=False).resized is None


def test_halo_straight_alpha_beats_premultiplied_cutout():
    rng = np.random.default_rng(0)
    height, width = 96, 128
    yy, xx = np.mgrid[0:height, 0:width]
    radius = np.hypot(yy - height / 2, xx - width / 2)
    alpha = np.clip((40 - radius) / 12, 0, 1).astype(np.float32)  # wide soft edge
    true_fg = np.empty((height, width, 3), np.float32)
    true_fg[...] = (230, 180, 40)
    true_fg += rng.normal(0, 4, true_fg.shape).astype(np.float32)
    background = np.zeros((height, width, 3), np.float32)
    background[...] = (20, 40, 160)
    background[:, ::2] += 30
    a = alpha[:, :, None]
    image = np.clip(a * true_fg + (1 - a) * background + 0.5, 0, 255).astype(np.uint8)

    foreground = fg.estimate_foreground(image, alpha)
    rgba = fg.cutout_rgba(foreground, alpha)
    assert rgba.shape == (height, width, 4) and rgba.dtype == np.uint8

    def over_white(colour: np.ndarray, straight_alpha: np.ndarray) -> np.ndarray:
        w = straight_alpha[:, :, None].astype(np.float32) / 255
        return w * colour.astype(np.float32) + (1 - w) * 255

    truth = a * true_fg + (1 - a) * 255
    semi = (alpha > 0.05) & (alpha < 0.95)
    ours = np.abs(over_white(rgba[:, :, :3], rgba[:, :, 3]) - truth)[semi].mean()
    premultiplied = np.clip(a * image, 0, 255).astype(np.uint8)
    theirs = np.abs(over_white(premultiplied, rgba[:, :, 3]) - truth)[semi].mean()
    naive = np.abs(over_white(image, rgba[:, :, 3]) - truth)[semi].mean()
    assert ours < 0.25 * theirs, (ours, theirs)
    assert ours < 0.5 * naive, (ours, naive)
    # composite() is the same blend.
    assert np.abs(fg.composite(foreground, alpha, "white").astype(float) - over_white(foreground, rgba[:, :, 3])).max() <= 1.0


def test_composite_over_an_image_and_colour_parsing():
    foreground = np.full((8, 10, 3), 200, np.uint8)
    alpha = np.zeros((8, 10), np.float32)
    alpha[:, 5:] = 1
    backdrop = np.zeros((4, 5, 3), np.uint8)  # resized to fit
    out = fg.composite(foreground, alpha, backdrop)
    assert out.shape == (8, 10, 3) and out[:, :5].max() == 0 and out[:, 5:].min() == 200
    assert fg.parse_color("#ff0000") == (255, 0, 0)
    assert fg.parse_color("0,128,255") == (0, 128, 255)
    with pytest.raises(p3m.P3MError):
        fg.parse_color("not-a-colour")


def test_composite_over_an_image_file_given_as_str_or_path(tmp_path, monkeypatch):
    """As `p3m matte --background FILE`: a file named by a str (relative to the working
    directory) or a PathLike is read; a missing one is a one-line error naming it."""
    from pathlib import Path

    from PIL import Image

    from p3m.inference.api import MatteResult

    foreground = np.full((8, 10, 3), 200, np.uint8)
    alpha = np.zeros((8, 10), np.float32)
    alpha[:, 5:] = 1
    backdrop = np.zeros((8, 10, 3), np.uint8)
    backdrop[:, :, 2] = 255
    Image.fromarray(backdrop).save(tmp_path / "wall.png")
    monkeypatch.chdir(tmp_path)
    result = MatteResult(alpha=alpha, image=foreground, model="stub", foreground=foreground)
    expected = result.composite(backdrop)
    assert tuple(expected[0, 0]) == (0, 0, 255)
    for given in ("wall.png", Path("wall.png"), str(tmp_path / "wall.png"), tmp_path / "wall.png"):
        np.testing.assert_array_equal(result.composite(given), expected)
    with pytest.raises(p3m.P3MError, match=r"missing\.png: file not found"):
        result.composite(Path("missing.png"))
    with pytest.raises(p3m.P3MError, match=r"missing\.png: background image not found"):
        result.composite("missing.png")
    assert tuple(result.composite("blue")[0, 0]) == (0, 0, 255)  # a colour still reads as one


def test_selfie_cf_mattes_the_astronaut():
    image = data.astronaut()
    result = p3m.matte(image, model="selfie-cf")
    alpha = result.alpha
    assert result.model == "selfie-cf" and alpha.shape == (512, 512) and alpha.dtype == np.float32
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert alpha[130:160, 200:250].mean() > 0.95  # face
    assert alpha[20:80, 400:480].mean() < 0.05  # backdrop top right
    assert alpha[:, 0:10].mean() < 0.5  # the flag is not a person
    fractional = ((alpha > 0.02) & (alpha < 0.98)).mean()
    assert 0.001 < fractional < 0.2  # a soft edge, not a binary mask or mush
    assert set(np.unique(result.trimap)) <= {0, 128, 255}
    assert result.foreground.shape == image.shape


def test_auto_falls_back_to_selfie_cf_and_says_how_to_get_p3mnet(tmp_path, monkeypatch):
    monkeypatch.setenv("P3M_HOME", str(tmp_path / "home"))
    result = p3m.matte(data.astronaut()[::2, ::2].copy(), foreground=False)
    assert result.model == "selfie-cf"
    assert "p3m weights download p3mnet-vitae-s" in result.note
    assert "p3m weights import" in result.note


def test_missing_mediapipe_names_what_to_install(monkeypatch):
    from p3m.inference import selfie_cf

    monkeypatch.setattr(selfie_cf, "_SEGMENTERS", {})
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    monkeypatch.setitem(sys.modules, "mediapipe.python", None)
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    with pytest.raises(MissingDependencyError) as info:
        selfie_cf.matte_selfie_cf(np.zeros((64, 64, 3), np.uint8))
    message = str(info.value)
    assert 'pip install "p3m[privacy]"' in message and "mediapipe" in message.lower()
    assert "\n" not in message


# The published variants and one Table 7 ablation (no side outputs); the other ablations
# differ from these only inside the decoder, which tests/test_registry.py runs for each.
MATTED_MODELS = [name for name in list_models() if get_spec(name).ablation_of is None] + ["basic-r34"]


@pytest.mark.slow
@pytest.mark.parametrize("name", MATTED_MODELS)
def test_p3mnet_variant_from_a_checkpoint_file(name, tmp_path, monkeypatch):
    """Every registered variant: a checkpoint the test writes, used by name, path and from the cache."""
    from p3m.models import save_checkpoint
    from p3m.models.hub import import_weights

    monkeypatch.setenv("P3M_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    model = create_model(name, device="cpu")
    checkpoint = tmp_path / f"{name}.pth"
    save_checkpoint(model, checkpoint)
    height, width = max(96, model.min_size), max(128, model.min_size)
    image = (resize(data.astronaut(), (height, width)) * 255).astype(np.uint8)
    expected = predict_alpha_p3mnet(model, image, "hybrid")
    assert expected.shape == (height, width)

    result = p3m.matte(image, model=name, weights=checkpoint, foreground=False)
    assert result.model == name
    np.testing.assert_allclose(result.alpha, expected, atol=1e-6)

    import_weights(checkpoint, name)
    # From the cache: by name, and for ViTAE-S through model="auto".
    cached = p3m.matte(image, model="auto" if name == "p3mnet-vitae-s" else name, foreground=False)
    assert cached.model == name and cached.note is None
    np.testing.assert_allclose(cached.alpha, expected, atol=1e-6)


def test_guided_upsampling_follows_the_full_resolution_edge():
    from p3m.inference.upsample import resize_alpha, upsample_alpha

    height, width = 300, 400
    yy, xx = np.mgrid[0:height, 0:width]
    true_alpha = (np.hypot(yy - 150, xx - 200) < 90).astype(np.float32)
    image = np.where(true_alpha[:, :, None] > 0, 210, 30).astype(np.uint8).repeat(3, axis=2)
    alpha_small = resize_alpha(true_alpha, (75, 100))  # the matte a budgeted pass would give
    guided = upsample_alpha(alpha_small, image, method="guided")
    bilinear = upsample_alpha(alpha_small, image, method="bilinear")
    assert guided.shape == (height, width) and guided.dtype == np.float32
    assert np.abs(guided - true_alpha).mean() < 0.5 * np.abs(bilinear - true_alpha).mean()
    # Flat regions stay exactly 0 and 1.
    assert guided[150, 200] == 1.0 and guided[5, 5] == 0.0


def test_matte_accepts_arrays_paths_and_pil_images(tmp_path):
    from PIL import Image

    image = data.astronaut()[::4, ::4].copy()
    path = tmp_path / "portrait.png"
    Image.fromarray(image).save(path)
    model = _EdgeModel().eval()
    from_array = p3m.matte(image, model=model)
    from_path = p3m.matte(path, model=model)
    from_pil = p3m.matte(Image.fromarray(image), model=model)
    assert from_array.model == "edge-stub"
    np.testing.assert_array_equal(from_array.alpha, from_path.alpha)
    np.testing.assert_array_equal(from_array.alpha, from_pil.alpha)
    assert from_array.foreground.shape == image.shape and from_array.rgba().shape == (128, 128, 4)
    with pytest.raises(p3m.P3MError):
        p3m.matte(tmp_path / "missing.png", model=model)
    with pytest.raises(p3m.P3MError):
        p3m.matte(image, model=model, strategy="crop")


def test_auto_with_explicit_weights_picks_the_variant_from_the_checkpoint(tmp_path):
    from p3m.inference.api import Matter
    from p3m.models import save_checkpoint

    torch.manual_seed(0)
    checkpoint = tmp_path / "mine.pth"
    save_checkpoint(create_model("p3mnet-r34", device="cpu"), checkpoint)
    matter = Matter("auto", weights=checkpoint, device="cpu")
    assert matter.name == "p3mnet-r34" and matter.note is None


def test_matter_runs_any_backend_and_joins_the_notes():
    """The backend protocol: Matter takes a user's backend and reports its per-image note."""
    from p3m.inference import BackendOutput, Matter

    class HalfBackend:
        name = "half"
        note = "a test backend"

        def matte(self, image):
            alpha = np.full(image.shape[:2], 0.5, dtype=np.float32)
            return BackendOutput(alpha=alpha, note="constant alpha")

    matter = Matter(HalfBackend())
    assert (matter.name, matter.note) == ("half", "a test backend")
    result = matter(np.zeros((8, 6, 3), np.uint8), foreground=False)
    assert result.alpha.shape == (8, 6) and float(result.alpha.mean()) == 0.5
    assert result.model == "half" and result.note == "a test backend; constant alpha"
    with pytest.raises(P3MError):
        Matter(HalfBackend(), weights="x.pth")


def test_a_checkpoint_given_as_the_model_is_sent_to_weights(tmp_path):
    """`--model wrongkeys.pth` / `model="bad.pth"` said only "unknown model"; an unknown name
    lists every model `model=` takes, auto and selfie-cf included."""
    from p3m.cli import command_line_option
    from p3m.errors import ModelNotFoundError
    from p3m.inference.backends import resolve_backend

    with pytest.raises(ModelNotFoundError) as raised:
        resolve_backend(str(tmp_path / "bad.pth"))
    assert "weights='" in str(raised.value) and "bad.pth: is not a model name" in str(raised.value)
    assert f"--weights {tmp_path / 'bad.pth'}" in raised.value.worded(command_line_option)
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'nosuch' \(known models: auto, selfie-cf, basic-r34"):
        resolve_backend("nosuch")


def test_backends_are_chosen_from_the_arguments(filled_r34):
    from p3m.inference.backends import P3MNetBackend, SelfieCFBackend, resolve_backend

    assert isinstance(resolve_backend("selfie-cf"), SelfieCFBackend)
    backend = resolve_backend(filled_r34, strategy="resize")
    assert isinstance(backend, P3MNetBackend) and backend.strategy == "resize"
