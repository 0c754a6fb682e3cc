"""ONNX export of P3M-Net models, checked against PyTorch with onnxruntime.

The exported graph takes `image` (N x 3 x H x W float32 RGB, scaled to [0, 1] and normalised
with the ImageNet mean/std) and returns the official outputs under their names
(global_logits, local, fusion, side2, side1, side0), or only the three the test-time
strategies need. With `dynamic=True` batch, height and width are free (any multiple of 32),
which the official HYBRID strategy needs since it feeds two sizes per photo. Metadata in the
file (variant, size multiple, minimum size, mean/std) tells a runtime how to feed it;
`p3m.inference.onnx_runtime.OnnxP3MNet` reads it back.

Example::

    report = export_onnx("p3mnet-vitae-s", "p3m-vitae.onnx", weights="P3M-Net_ViTAE-S_trained_on_P3M-10k.pth")
    print(report.summary())
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from p3m.errors import ExportError, InputSizeError, MissingDependencyError
from p3m.io.atomic import temporary_path
from p3m.models.p3mnet import P3MOutput, check_input

__all__ = [
    "ALL_OUTPUTS",
    "INFERENCE_OUTPUTS",
    "ExportReport",
    "export_onnx",
    "onnx_metadata",
    "verify_size_for",
]

logger = logging.getLogger(__name__)

ALL_OUTPUTS: tuple[str, ...] = P3MOutput._fields
INFERENCE_OUTPUTS: tuple[str, ...] = ("global_logits", "local", "fusion")
"""What the official HYBRID / RESIZE strategies read; exporting only these skips the side heads."""

INPUT_NAME = "image"
MIN_OPSET = 18
INSTALL_HINT = 'pip install "p3m[onnx]"'
# Outputs compared with torch after export: |onnx - torch| <= atol + rtol * max|torch|.
# Kernel differences stay around 1e-6 relative; a graph that is wrong for the size errs by O(1).
VERIFY_ATOL = 1e-3
POOL_FLIP_SHARE = 1e-3
"""`local` / `fusion` may exceed VERIFY_ATOL at up to this share of pixels (max-pool near-ties)..."""
POOL_FLIP_ATOL = 5e-2
"""... by at most this much (see `_pool_flips_only`)."""
VERIFY_RTOL = 1e-4
# Fusion follows argmax(global_logits); pixels whose top two logits are this close may flip.
NEAR_TIE_GAP = 1e-3


@dataclass(frozen=True)
class ExportReport:
    """What `export_onnx` wrote and how well onnxruntime reproduces the torch model.

    `max_abs_diff` maps each output to max |onnxruntime - torch| at `verify_size` (fusion
    only where the global argmax is not a near-tie); empty when not verified.
    """

    path: Path
    variant: str
    opset: int
    dynamic: bool
    export_size: tuple[int, int]
    outputs: tuple[str, ...]
    file_bytes: int
    export_seconds: float
    metadata: dict[str, str] = field(repr=False)
    verify_size: tuple[int, int] | None = None
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    near_tie_pixels: int = 0
    quantization: Any = None  # a p3m.models.quantize.QuantizeReport for int8 exports

    def summary(self) -> str:
        """One line for logs and the command line."""
        size = "dynamic size" if self.dynamic else "fixed size {}x{}".format(*self.export_size)
        text = (
            f"{self.path} ({self.file_bytes / 2**20:.1f} MiB): {self.variant}, opset {self.opset}, "
            f"{size}, outputs {', '.join(self.outputs)}"
        )
        if self.verify_size is not None:
            worst = max(self.max_abs_diff.values(), default=0.0)
            text += (
                "; onnxruntime matches torch at {}x{} (max |diff| {:.2e})".format(
                    *self.verify_size, worst
                )
            )
        if self.quantization is not None:
            q = self.quantization
            text += (
                f"; {q.method} int8 from that float32 graph: alpha vs float32 on {q.images} "
                f"portraits at {q.size[0]}x{q.size[1]}: mean |diff| {q.alpha_mean_abs_diff:.4f}, "
                f"worst pixel {q.alpha_max_abs_diff:.3f}"
            )
        return text


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as error:
        raise MissingDependencyError(
            f"ONNX export needs the onnx package ({error}); install it with {INSTALL_HINT}"
        ) from None
    return onnx


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingDependencyError(
            f"running ONNX models needs onnxruntime ({error}); install it with {INSTALL_HINT}"
        ) from None
    return onnxruntime


def _parse_outputs(outputs: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(outputs, str):
        if outputs == "all":
            return ALL_OUTPUTS
        if outputs == "inference":
            return INFERENCE_OUTPUTS
        outputs = [name.strip() for name in outputs.split(",") if name.strip()]
    chosen = tuple(outputs)
    unknown = [name for name in chosen if name not in ALL_OUTPUTS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ExportError(
            f"invalid outputs {', '.join(chosen) or '(none)'}: choose distinct names among "
            f"{', '.join(ALL_OUTPUTS)}, or 'all' / 'inference'"
        )
    return chosen


class _SelectedOutputs(nn.Module):
    """Wraps a P3M-Net so that the traced graph returns a plain tuple of the chosen outputs."""

    def __init__(self, model: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.positions = tuple(ALL_OUTPUTS.index(name) for name in outputs)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        if getattr(self.model, "supports_output_selection", False):
            out = self.model(image, outputs=[ALL_OUTPUTS[position] for position in self.positions])
        else:
            out = self.model(image)
        return tuple(out[position] for position in self.positions)


def _build_model(
    model_or_name: nn.Module | str, weights: str | os.PathLike[str] | None
) -> tuple[nn.Module, str]:
    """The model to export (eval mode) and a description of its weights."""
    from p3m.models import create_model, load_checkpoint

    if isinstance(model_or_name, str):
        path = None
        if weights is not None:
            from p3m.models.hub import resolve_weights

            path = resolve_weights(weights, model=model_or_name)
        model = create_model(model_or_name, weights=path, device="cpu")
    else:
        model = model_or_name
        path = None if weights is None else Path(weights)
        if path is not None:
            load_checkpoint(model, path)
    if path is None:
        if isinstance(model_or_name, str):
            logger.warning(
                "exporting %s with randomly initialised weights (no weights given)", model_or_name
            )
        return model, "as given" if not isinstance(model_or_name, str) else "random initialisation"
    return model, Path(path).name


def _model_device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def verify_size_for(height: int, width: int, min_size: int = 32, multiple: int = 32) -> tuple[int, int]:
    """A second, different (and non-square) size to check a dynamic export at."""
    smaller = height - multiple
    verify_height = smaller if smaller >= min_size else height + multiple
    return verify_height, width + multiple


def onnx_metadata(
    variant: str,
    min_size: int,
    size_multiple: int,
    outputs: Sequence[str],
    dynamic: bool,
    export_size: tuple[int, int],
    weights: str,
) -> dict[str, str]:
    """The metadata_props written into the model: everything a runtime needs to feed it."""
    from p3m._version import __version__
    from p3m.models.normalization import IMAGENET_MEAN, IMAGENET_STD

    return {
        "p3m_version": __version__,
        "variant": variant,
        "min_size": str(min_size),
        "size_multiple": str(size_multiple),
        "dynamic_size": "true" if dynamic else "false",
        "export_size": "{}x{}".format(*export_size),
        "input": (
            f"{INPUT_NAME}: N x 3 x H x W float32 RGB; (pixel / 255 - mean) / std per channel; "
            f"H and W multiples of {size_multiple}, at least {min_size}"
        ),
        "normalize_mean": ",".join(str(v) for v in IMAGENET_MEAN),
        "normalize_std": ",".join(str(v) for v in IMAGENET_STD),
        "outputs": ",".join(outputs),
        "weights": weights,
        "torch_version": torch.__version__,
    }


def _clear_if_branch_shapes(graph: Any) -> None:
    """Drop shape annotations of If-branch outputs (type kept), recursively.

    torch's scatter_reduce symbolic wraps its inputs in a rank-0 check whose else branch is
    annotated with a wrong (1-D) shape; onnxruntime then warns on every run. Shapes of
    subgraph outputs are optional, so removing them is always valid.
    """
    for node in graph.node:
        for attribute in node.attribute:
            subgraphs = list(attribute.graphs)
            if attribute.HasField("g"):
                subgraphs.append(attribute.g)
            for subgraph in subgraphs:
                if node.op_type == "If":
                    for output in subgraph.output:
                        if output.type.HasField("tensor_type"):
                            output.type.tensor_type.ClearField("shape")
                _clear_if_branch_shapes(subgraph)


def _trace_to_file(
    wrapper: nn.Module, dummy: Tensor, path: str, outputs: tuple[str, ...], dynamic: bool, opset: int
) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    dynamic_axes = {name: dict(axes) for name in (INPUT_NAME, *outputs)} if dynamic else None
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        # The legacy (TorchScript) exporter: the dynamo one needs onnxscript and a newer onnx.
        torch.onnx.export(
            wrapper,
            (dummy,),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    for warning in caught:
        # Tracer warnings (input checks turned into constants) are expected; verification at
        # a second size catches any that would matter.
        logger.debug("export: %s", warning.message)


def _compare(
    reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]
) -> tuple[dict[str, float], list[str], int]:
    """Max |diff| per output, the outputs beyond tolerance, and the near-tie pixel count."""
    diffs: dict[str, float] = {}
    failed: list[str] = []
    ties = np.zeros((), dtype=bool)
    if "global_logits" in reference:
        top2 = np.sort(reference["global_logits"], axis=1)[:, -2:]
        ties = (top2[:, 1] - top2[:, 0] < NEAR_TIE_GAP)[:, None]
    for name, ref in reference.items():
        if got[name].shape != ref.shape:
            raise ExportError(
                f"onnxruntime returned {name} of shape {got[name].shape}, torch {ref.shape}"
            )
        diff = np.abs(got[name].astype(np.float64) - ref.astype(np.float64))
        if name == "fusion" and ties.ndim:
            diff = np.where(np.broadcast_to(ties, diff.shape), 0.0, diff)
        diffs[name] = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        tolerance = VERIFY_ATOL + VERIFY_RTOL * scale
        if diffs[name] > tolerance and not _pool_flips_only(name, diff, tolerance):
            failed.append(name)
    return diffs, failed, int(ties.sum()) if ties.ndim else 0


def _pool_flips_only(name: str, diff: np.ndarray, tolerance: float) -> bool:
    """Whether the pixels of `local` / `fusion` beyond `tolerance` are what an encoder max-pool
    decision flipped by float rounding looks like: a few pixels (`POOL_FLIP_SHARE`), each off
    by little (`POOL_FLIP_ATOL`). Trained weights make such near-ties common on the noise input
    (a 2-step B:B checkpoint: local 1.2e-3 at a handful of pixels), where a wrong graph (e.g.
    the wrong unpool collision rule) moves local by 0.1 or more over many pixels."""
    if name not in ("local", "fusion") or not diff.size:
        return False
    beyond = diff > tolerance
    return float(beyond.mean()) <= POOL_FLIP_SHARE and float(diff.max()) <= POOL_FLIP_ATOL


def _verify(
    model: nn.Module, path: str, outputs: tuple[str, ...], size: tuple[int, int], target: Path
) -> tuple[dict[str, float], int]:
    onnxruntime = _require_onnxruntime()
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, *size, generator=generator)
    device = _model_device(model)
    with torch.inference_mode():
        expected = model(image.to(device))
    reference = {name: expected[ALL_OUTPUTS.index(name)].float().cpu().numpy() for name in outputs}
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    results = session.run(list(outputs), {INPUT_NAME: image.numpy()})
    diffs, failed, ties = _compare(reference, dict(zip(outputs, results, strict=True)))
    if failed:
        detail = ", ".join(f"{name} {diffs[name]:.2e}" for name in failed)
        raise ExportError(
            "onnxruntime does not reproduce the torch model at {}x{} (max |diff|: {}); the file "
            "was not written ({{exact}} exports the reference operator sequence; {{verify}} "
            "skips this check)".format(*size, detail),
            target,
            options={"exact": True, "verify": False},
        )
    return diffs, ties


def export_onnx(
    model_or_name: nn.Module | str,
    path: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None,
    height: int = 512,
    width: int = 512,
    dynamic: bool = True,
    opset: int = 18,
    verify: bool = True,
    outputs: str | Sequence[str] = "all",
    exact: bool = False,
    int8: str | None = None,
    calibration: str | os.PathLike[str] | None = None,
    portable: bool = False,
) -> ExportReport:
    """Export a P3M-Net (registered name or built model) to the ONNX file `path`.

    The graph is the fast inference form (`p3m.models.optimize_for_inference`: BatchNorms
    folded, outputs not asked for pruned) unless `exact` (or the model is not a known P3M-Net
    structure), which traces the model's own operator sequence. The fast graph uses
    onnxruntime's fused attention operator (`com.microsoft.MultiHeadAttention`) for ViTAE-S
    unless `portable` (standard ONNX operators only, for other runtimes).

    `weights`: checkpoint path or cached model name (None keeps the model's weights; a name
    without weights exports a randomly initialised model). `height` x `width` is the trace size
    (the only size when `dynamic=False`). `outputs`: "all" (the six official outputs, or the
    three non-side ones for models without dBFI), "inference" (global_logits, local, fusion)
    or a list of names. With `verify`, onnxruntime runs the file at a second size (the export
    size when static) and every output is compared with torch; a mismatch raises ExportError
    and nothing is written. The file is written atomically.

    `int8` ("static" or "dynamic", opt-in) writes an int8 model instead, quantised from the
    verified float32 export by `p3m.models.quantize.quantize_onnx` (calibrated on `calibration`,
    a folder of portraits, or on the portraits installed packages ship); `report.quantization`
    then says how far its alpha is from float32's.
    """
    if opset < MIN_OPSET:
        raise ExportError(
            f"opset {opset} is too old: P3M-Net's unpooling needs ScatterElements with "
            f"reduction='max', available from opset {MIN_OPSET}"
        )
    if int8 not in (None, "static", "dynamic"):
        raise ExportError(f"unknown int8 method {int8!r}; use 'static' or 'dynamic'")
    onnx = _require_onnx()
    if verify or int8 is not None:
        _require_onnxruntime()
    chosen = _parse_outputs(outputs)
    target = Path(path).expanduser()
    if target.is_dir():
        raise ExportError("is a folder; give the path of the .onnx file to write", target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"cannot create the folder to write into ({error.strerror})", target.parent) from error
    model, weights_note = _build_model(model_or_name, weights)
    variant = str(getattr(model, "variant", type(model).__name__))
    # Models without dBFI (Table 7 ablations) have no side outputs: "all" means all they have.
    produced = tuple(getattr(model, "output_names", ALL_OUTPUTS))
    if outputs == "all":
        chosen = tuple(name for name in chosen if name in produced)
    absent = [name for name in chosen if name not in produced]
    if absent:
        raise ExportError(
            f"{variant} has no {', '.join(absent)} output (a model without dBFI has no side "
            f"outputs); choose among {', '.join(produced)}"
        )
    min_size = int(getattr(model, "min_size", 32))
    multiple = int(getattr(model, "size_multiple", 32))
    device = _model_device(model)
    dummy = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    try:
        check_input(dummy, variant, min_size, multiple)
    except InputSizeError as error:
        raise ExportError(f"cannot export at this size: {error}") from None

    was_training = model.training
    model.eval()
    traced, graph = model, "exact"
    if not exact:
        from p3m.models.optimize import can_optimize, optimize_for_inference

        if can_optimize(model):
            traced, graph = optimize_for_inference(model), "fast"
            for module in traced.modules():
                if hasattr(module, "onnxruntime_ops"):
                    module.onnxruntime_ops = not portable
    # A name only (no file yet): the writers create it with the umask's permissions (mkstemp
    # would leave the exported model readable by its owner only).
    temp_name = str(temporary_path(target))
    started = time.perf_counter()
    try:
        try:
            # eval() on the wrapper too: a module left in training mode is traced with
            # batch statistics (and its BatchNorm running stats get updated).
            wrapper = _SelectedOutputs(traced, chosen).eval()
            _trace_to_file(wrapper, dummy.to(device), temp_name, chosen, dynamic, opset)
        except Exception as error:  # the exporter raises many types; report one line
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ExportError(
                f"torch.onnx.export failed for {variant}: {type(error).__name__}: {message}", target
            ) from error
        metadata = onnx_metadata(
            variant, min_size, multiple, chosen, dynamic, (height, width), weights_note
        )
        metadata["graph"] = graph
        metadata["onnxruntime_ops"] = "false" if portable or graph == "exact" else "true"
        proto = onnx.load(temp_name)
        _clear_if_branch_shapes(proto.graph)
        del proto.metadata_props[:]
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        proto.doc_string = f"P3M-Net {variant} exported by p3m {metadata['p3m_version']}"
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as error:
            first = str(error).strip().splitlines()[0]
            raise ExportError(f"the exported graph is not valid ONNX: {first}", target) from error
        onnx.save(proto, temp_name)
        del proto
        export_seconds = time.perf_counter() - started

        verify_size = None
        diffs: dict[str, float] = {}
        ties = 0
        if verify:
            verify_size = verify_size_for(height, width, min_size, multiple) if dynamic else (height, width)
            diffs, ties = _verify(traced, temp_name, chosen, verify_size, target)
            logger.info("verified %s at %dx%d: %s", target, *verify_size, diffs)
        quantized = None
        if int8 is not None:
            from p3m.models.quantize import quantize_onnx

            quantized = quantize_onnx(temp_name, target, method=int8, calibration=calibration)
            os.unlink(temp_name)
        else:
            os.replace(temp_name, target)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    finally:
        model.train(was_training)
    if quantized is not None:
        metadata = {**metadata, "quantization": f"int8 {int8}"}
    return ExportReport(
        path=target,
        variant=variant,
        opset=opset,
        dynamic=dynamic,
        export_size=(height, width),
        outputs=chosen,
        file_bytes=target.stat().st_size,
        export_seconds=export_seconds,
        metadata=metadata,
        verify_size=verify_size,
        max_abs_diff=diffs,
        near_tie_pixels=ties,
        quantization=quantized,
    )
