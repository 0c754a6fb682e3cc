"""Every registered model is built, run on a small input and round-tripped through save/load.

Parametrised over `list_models()`, so a model is tested the moment it is registered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from p3m.errors import InputSizeError, ModelNotFoundError
from p3m.models import (
    P3MOutput,
    create_model,
    fuse_global_local,
    get_spec,
    identify_variant,
    list_models,
    predict,
    read_state_dict,
    resolve_device,
    save_checkpoint,
)

MODEL_NAMES = list_models()
SHA256 = re.compile(r"[0-9a-f]{64}")


def build(name: str, weights: Path | None = None) -> torch.nn.Module:
    # Seeded so that any non-persistent random state (e.g. ViTAE performer features) is equal
    # between the saved and the reloaded model; the global RNG is left untouched.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_model(name, weights=weights, device="cpu")


def test_required_models_are_registered() -> None:
    assert "p3mnet-r34" in MODEL_NAMES


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ModelNotFoundError, match="p3mnet-r34"):
        get_spec("p3mnet-resnet999")


def test_selfie_cf_asked_for_as_a_network_says_it_has_no_weights() -> None:
    """`p3m export-onnx selfie-cf`, `p3m weights import F --as selfie-cf`: not "unknown model"
    (it is the default model) but why there is nothing to export or import."""
    with pytest.raises(ModelNotFoundError, match="selfie-cf is the classical matting pipeline, not a network") as raised:
        get_spec("selfie-cf")
    assert "no weights" in str(raised.value) and "ONNX" in str(raised.value) and "unknown" not in str(raised.value)


@pytest.fixture(scope="module", params=MODEL_NAMES)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One model per registered name, its small test input, outputs and saved checkpoint."""
    name = request.param
    spec = get_spec(name)
    model = build(name)
    side = -(-max(64, spec.min_size) // spec.size_multiple) * spec.size_multiple
    x = torch.randn(
        1, 3, side, side + spec.size_multiple, generator=torch.Generator().manual_seed(0)
    )
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        output = predict(model, x)
    finally:
        torch.set_num_threads(previous)
    path = save_checkpoint(model, tmp_path_factory.mktemp(name) / f"{name}.pth")
    yield {"name": name, "spec": spec, "model": model, "x": x, "output": output, "path": path}
    path.unlink()  # up to 180 MB per model: do not keep one per registered model until the end


def test_spec_is_complete(built: dict) -> None:
    spec = built["spec"]
    assert spec.name == built["name"]
    assert spec.description
    assert spec.size_multiple == 32
    for checkpoint in spec.checkpoints + spec.backbone_weights:
        assert checkpoint.file_name
        assert checkpoint.source_page.startswith("https://")
        assert checkpoint.url is None or checkpoint.url.startswith("https://")
        # Unknown checksums are an explicit None, never an empty or made-up string.
        assert checkpoint.sha256 is None or SHA256.fullmatch(checkpoint.sha256)


def test_model_interface(built: dict) -> None:
    model, spec = built["model"], built["spec"]
    assert model.variant == built["name"]
    assert not model.training
    assert model.min_size == spec.min_size and model.size_multiple == spec.size_multiple
    if spec.num_parameters is not None:
        assert model.num_parameters() == spec.num_parameters
    assert sum(p.numel() for p in model.encoder_parameters()) > 0
    for layer in model.fcp_layers:
        model.get_submodule(layer)
    assert next(model.parameters()).device == torch.device("cpu")


def test_output_shapes_and_ranges(built: dict) -> None:
    output, x, model = built["output"], built["x"], built["model"]
    assert isinstance(output, P3MOutput)
    n, _c, h, w = x.shape
    channels = (3, 1, 1, 3, 3, 3)
    # Models without dBFI (Table 7 ablations) have no side outputs: those fields are None.
    assert model.output_names == (P3MOutput._fields if model.integration.dbfi else P3MOutput._fields[:3])
    for name, tensor, c in zip(P3MOutput._fields, output, channels, strict=True):
        if name not in model.output_names:
            assert tensor is None, name
            continue
        assert tensor.shape == (n, c, h, w)
        assert tensor.dtype == torch.float32
        assert torch.isfinite(tensor).all()
    assert output.local.min() >= 0 and output.local.max() <= 1
    assert torch.equal(output.fusion, fuse_global_local(output.global_logits, output.local))


def test_rejects_sizes_that_are_not_multiples(built: dict) -> None:
    x = built["x"]
    with pytest.raises(InputSizeError, match=built["name"]):
        built["model"](x[..., :-1])


def test_save_load_round_trip(built: dict) -> None:
    state = read_state_dict(built["path"])
    assert list(state) == list(built["model"].state_dict())
    assert identify_variant(state) == built["name"]
    reloaded = build(built["name"], weights=built["path"])
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = predict(reloaded, built["x"])
    finally:
        torch.set_num_threads(previous)
    for mine, theirs in zip(again, built["output"], strict=True):
        assert (mine is None and theirs is None) or torch.equal(mine, theirs)


def test_default_device_is_what_is_available() -> None:
    model = create_model("p3mnet-r34")
    assert next(model.parameters()).device.type == resolve_device().type


def test_export_onnx_is_reachable_from_p3m_models_without_importing_onnx() -> None:
    import subprocess
    import sys

    code = (
        "import sys, p3m.models as m; assert 'onnx' not in sys.modules; "
        "assert m.export_onnx.__module__ == 'p3m.models.export'; "
        "assert m.IMAGENET_MEAN == (0.485, 0.456, 0.406) and m.IMAGENET_STD == (0.229, 0.224, 0.225); "
        "assert 'onnx' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
