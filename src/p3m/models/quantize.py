"""Opt-in int8 P3M-Net for onnxruntime on CPU (`p3m export-onnx --int8`), with its error measured.

`quantize_onnx` turns a float32 export into an int8 one with onnxruntime's quantiser:

* "static" (default): convolutions and matrix products get int8 weights (per output channel)
  and uint8 activations whose ranges are calibrated on portraits (QDQ format, which
  onnxruntime runs with its int8 kernels: VNNI dot products on CPUs that have them). Pooling,
  unpooling, the output heads (`head_tap_convolutions`), the fusion argmax and everything
  else stays float32;
* "dynamic": int8 weights, activation ranges computed per call (no calibration, slower).

The calibration portraits are real photographs shipped by installed packages (scikit-image's
astronaut and camera man, matplotlib's Grace Hopper when matplotlib is present), or your own.
The report gives how far the int8 model's alpha (its fused output) and local alpha move from
float32 on those portraits: mean and worst pixel. int8 is never the default: judge that error
against your use first.

    report = quantize_onnx("p3m-r34.onnx", "p3m-r34.int8.onnx")
    print(report.summary())
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import ExportError, MissingDependencyError, P3MError
from p3m.io.atomic import temporary_path

__all__ = ["QuantizeReport", "calibration_portraits", "head_tap_convolutions", "quantize_onnx"]

logger = logging.getLogger(__name__)

METHODS = ("static", "dynamic")
CALIBRATION_SIDE = 384
# Quantised operator types: the compute (convolutions, matrix products). Pooling with indices,
# the scatter-based unpooling and the fusion stay in float32 (they move values, not sums).
QUANTIZED_OPS = ("Conv", "MatMul")


@dataclass(frozen=True)
class QuantizeReport:
    """What `quantize_onnx` wrote and how far its outputs are from the float32 model.

    Differences are |int8 - float32| over every pixel of every evaluation portrait, run at
    `size`: `alpha_*` for the fused alpha (`fusion`), `local_*` for the local alpha.
    """

    path: Path
    method: str
    images: int
    size: tuple[int, int]
    alpha_mean_abs_diff: float
    alpha_max_abs_diff: float
    local_mean_abs_diff: float
    local_max_abs_diff: float
    file_bytes: int

    @property
    def mean_abs_diff(self) -> float:
        return self.alpha_mean_abs_diff

    @property
    def max_abs_diff(self) -> float:
        return self.alpha_max_abs_diff

    def summary(self) -> str:
        return (
            f"{self.path} ({self.file_bytes / 2**20:.1f} MiB): {self.method} int8; alpha vs float32 on "
            f"{self.images} portraits at {self.size[0]}x{self.size[1]}: mean |diff| "
            f"{self.alpha_mean_abs_diff:.4f}, worst pixel {self.alpha_max_abs_diff:.3f} "
            f"(local alpha: {self.local_mean_abs_diff:.4f} / {self.local_max_abs_diff:.3f})"
        )


def calibration_portraits() -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 image) of the portrait photographs installed packages ship."""
    from skimage import data

    portraits = [("astronaut", data.astronaut())]
    camera = data.camera()
    portraits.append(("camera", np.repeat(camera[:, :, None], 3, axis=2)))
    try:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as stream:
            from PIL import Image

            portraits.append(("grace_hopper", np.asarray(Image.open(stream).convert("RGB"))))
    except Exception as error:  # matplotlib absent or without sample data
        logger.debug("no matplotlib sample portrait: %s", error)
    return portraits


def _normalised(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 -> 1 x 3 x H x W float32, resized like the official code, ImageNet-normalised."""
    from skimage.transform import resize

    from p3m.models.normalization import IMAGENET_MEAN, IMAGENET_STD

    scaled = resize(image, size).astype(np.float32)  # [0, 1]
    scaled = (scaled - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(scaled.transpose(2, 0, 1)[None])


def _inputs(images: Sequence[tuple[str, np.ndarray]], size: tuple[int, int]) -> list[np.ndarray]:
    """Each image and its mirror image, at `size`."""
    batches = []
    for _name, image in images:
        batches.append(_normalised(image, size))
        batches.append(_normalised(np.ascontiguousarray(image[:, ::-1]), size))
    return batches


def _require_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as error:
        raise MissingDependencyError(
            f"int8 export needs onnxruntime's quantisation tools ({error}); install them with "
            'pip install "p3m[onnx]"'
        ) from None
    return quantization


def _load_images(calibration: str | os.PathLike[str] | Iterable[np.ndarray] | None) -> list[tuple[str, np.ndarray]]:
    if calibration is None:
        return calibration_portraits()
    if isinstance(calibration, (str, os.PathLike)):
        from p3m.io import is_image_file, read_image

        folder = Path(calibration)
        if not folder.is_dir():
            raise ExportError("the calibration folder does not exist", folder)
        files = sorted(p for p in folder.iterdir() if is_image_file(p))
        if not files:
            raise ExportError("the calibration folder holds no images", folder)
        images = []
        for path in files:
            try:
                images.append((path.name, read_image(path)))
            except P3MError as error:  # one bad file does not stop the calibration
                logger.warning("calibration: skipped %s", error)
        if not images:
            raise ExportError(f"no calibration image could be read ({len(files)} tried)", folder)
        return images
    return [(f"image{i}", np.asarray(image)) for i, image in enumerate(calibration)]


def head_tap_convolutions(model: Any) -> list[str]:
    """Names of the output heads' tap convolutions in a fast-graph export, kept in float32.

    The fast graph computes each 3 x 3 head to K <= 4 channels (logits, alpha) as a 1 x 1
    convolution to its 9K taps followed by a shifted sum (`FusedConv2d._head_traced`):
    quantising the taps would add nine rounding errors into every logit, and in float32 the
    1 x 1 convolution costs little. Recognised by their weights: 1 x 1, 9K outputs.
    """
    shapes = {tensor.name: tuple(tensor.dims) for tensor in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        dims = shapes.get(node.input[1])
        if dims and len(dims) == 4 and dims[2:] == (1, 1) and dims[0] % 9 == 0 and dims[0] <= 36:
            names.append(node.name)
    return names


def index_pools_in_uint8(model: Any) -> int:
    """Run the index max-pools of a QDQ int8 model on the uint8 tensor instead of its float
    dequantisation; returns how many were moved. The results are the same, value and index.

    The quantiser leaves a MaxPool with an Indices output in float: `DequantizeLinear(q)`
    (or `Relu(DequantizeLinear(q))`) feeds it, and onnxruntime then converts the full-size map
    to float and its layout to NCHW before its scalar pool loop. Dequantisation (q - z) * s is
    increasing and one-to-one, so pooling q (or `Max(q, z)`, which is ReLU in the quantised
    domain) picks the same cells, with the same first-of-ties rule, and dequantising the
    pooled values gives the same numbers. onnxruntime's MaxPool takes uint8 with Indices.
    """
    from onnx import helper

    producer = {output: node for node in model.graph.node for output in node.output}
    bypassed: list[Any] = []
    moved = 0
    nodes = list(model.graph.node)
    replaced: dict[int, list[Any]] = {}
    for position, pool in enumerate(nodes):
        if pool.op_type != "MaxPool" or len(pool.output) != 2 or not pool.output[1]:
            continue
        source = producer.get(pool.input[0])
        relu = None
        if source is not None and source.op_type == "Relu":
            relu, source = source, producer.get(source.input[0])
        if source is None or source.op_type != "DequantizeLinear" or len(source.input) < 3:
            continue
        quantized, scale, zero_point = source.input[:3]
        stem = pool.name or pool.output[0]
        new_nodes = []
        pooled_input = quantized
        if relu is not None:
            pooled_input = f"{stem}_uint8_relu"
            new_nodes.append(helper.make_node("Max", [quantized, zero_point], [pooled_input], name=f"{stem}_uint8_relu"))
        pooled = f"{stem}_uint8"
        attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in pool.attribute}
        new_nodes.append(
            helper.make_node("MaxPool", [pooled_input], [pooled, pool.output[1]], name=f"{stem}_uint8_pool", **attributes)
        )
        new_nodes.append(
            helper.make_node("DequantizeLinear", [pooled, scale, zero_point], [pool.output[0]], name=f"{stem}_dequantize")
        )
        replaced[position] = new_nodes
        bypassed += [node for node in (relu, source) if node is not None]
        moved += 1
    if moved:
        rebuilt = []
        for position, node in enumerate(nodes):
            rebuilt.extend(replaced.get(position, [node]))
        # The float Relu / DequantizeLinear that fed only the pool have no reader left.
        read = {name for node in rebuilt for name in node.input} | {output.name for output in model.graph.output}
        unread = {id(node) for node in bypassed if not any(output in read for output in node.output)}
        if unread:
            read = {name for node in rebuilt if id(node) not in unread for name in node.input}
            read |= {output.name for output in model.graph.output}
            unread |= {id(node) for node in bypassed if not any(output in read for output in node.output)}
        del model.graph.node[:]
        model.graph.node.extend(node for node in rebuilt if id(node) not in unread)
    return moved


def quantize_onnx(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    method: str = "static",
    calibration: str | os.PathLike[str] | Iterable[np.ndarray] | None = None,
    size: tuple[int, int] = (CALIBRATION_SIDE, CALIBRATION_SIDE),
) -> QuantizeReport:
    """Quantise the float32 P3M-Net ONNX file `source` to int8 in `target` (written atomically).

    `method`: "static" (calibrated, fastest) or "dynamic". `calibration`: a folder of images, an
    iterable of RGB uint8 arrays, or None for the package-shipped portraits; the same images
    (and their mirror images) measure the error of the result at `size` (H, W). Metadata of
    the source file is kept, with `quantization` added.
    """
    if method not in METHODS:
        raise ExportError(f"unknown int8 method {method!r}; use one of {', '.join(METHODS)}")
    quantization = _require_quantization()
    import onnx
    import onnxruntime

    source, target = Path(source), Path(target).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"cannot create the folder to write into ({error.strerror})", target.parent) from error
    images = _load_images(calibration)
    batches = _inputs(images, size)
    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name

    temp_name = str(temporary_path(target))
    try:
        with tempfile.TemporaryDirectory() as scratch:
            prepared = Path(scratch) / "prepared.onnx"
            # Shape inference and graph clean-up first, as onnxruntime's quantiser recommends.
            quantization.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            float_heads = head_tap_convolutions(onnx.load(str(prepared)))
            if method == "static":

                class Reader(quantization.CalibrationDataReader):
                    """One portrait per calibration step (CalibStridedMinMax = 1), so that the
                    intermediate tensors of only one forward pass are held at a time."""

                    def __init__(self) -> None:
                        self.set_range(0, len(batches))

                    def __len__(self) -> int:
                        return len(batches)

                    def set_range(self, start_index: int, end_index: int) -> None:
                        self._feeds = iter([{input_name: b} for b in batches[start_index:end_index]])

                    def get_next(self) -> dict[str, np.ndarray] | None:
                        return next(self._feeds, None)

                quantization.quantize_static(
                    str(prepared),
                    temp_name,
                    Reader(),
                    quant_format=quantization.QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANTIZED_OPS),
                    per_channel=True,
                    reduce_range=False,
                    activation_type=quantization.QuantType.QUInt8,
                    weight_type=quantization.QuantType.QInt8,
                    calibrate_method=quantization.CalibrationMethod.MinMax,
                    nodes_to_exclude=float_heads,
                    extra_options={"CalibStridedMinMax": 1, "MatMulConstBOnly": True},
                )
            else:
                quantization.quantize_dynamic(
                    str(prepared),
                    temp_name,
                    op_types_to_quantize=list(QUANTIZED_OPS),
                    per_channel=True,
                    weight_type=quantization.QuantType.QInt8,
                    nodes_to_exclude=float_heads,
                    extra_options={"MatMulConstBOnly": True},
                )
        proto = onnx.load(temp_name)
        index_pools_in_uint8(proto)
        source_meta = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
        source_meta["quantization"] = f"int8 {method} (onnxruntime {onnxruntime.__version__})"
        del proto.metadata_props[:]
        for key, value in source_meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, temp_name)
        del proto
        report = _measure(source, Path(temp_name), input_name, batches, len(images), size, method, target)
        os.replace(temp_name, target)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    return report


def _measure(
    source: Path,
    quantized: Path,
    input_name: str,
    batches: list[np.ndarray],
    images: int,
    size: tuple[int, int],
    method: str,
    target: Path,
) -> QuantizeReport:
    """Run both files on the original images (not the mirrors); differences of fusion and local."""
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    providers = ["CPUExecutionProvider"]
    reference = onnxruntime.InferenceSession(str(source), options, providers=providers)
    candidate = onnxruntime.InferenceSession(str(quantized), options, providers=providers)
    names = [output.name for output in reference.get_outputs()]
    missing = [name for name in ("local", "fusion") if name not in names]
    if missing:
        raise ExportError(f"not a P3M-Net export: outputs {', '.join(missing)} are missing", source)
    sums = {"fusion": 0.0, "local": 0.0}
    worst = {"fusion": 0.0, "local": 0.0}
    pixels = 0
    for batch in batches[::2]:
        expected = dict(zip(("fusion", "local"), reference.run(["fusion", "local"], {input_name: batch}), strict=True))
        got = dict(zip(("fusion", "local"), candidate.run(["fusion", "local"], {input_name: batch}), strict=True))
        for name in sums:
            difference = np.abs(got[name].astype(np.float64) - expected[name].astype(np.float64))
            sums[name] += float(difference.sum())
            worst[name] = max(worst[name], float(difference.max()))
        pixels += batch.shape[-2] * batch.shape[-1]
    return QuantizeReport(
        path=target,
        method=method,
        images=images,
        size=size,
        alpha_mean_abs_diff=sums["fusion"] / pixels,
        alpha_max_abs_diff=worst["fusion"],
        local_mean_abs_diff=sums["local"] / pixels,
        local_max_abs_diff=worst["local"],
        file_bytes=quantized.stat().st_size,
    )
