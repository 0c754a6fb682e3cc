"""dlib's face recognition ResNet run by onnxruntime: the same descriptors, several times faster.

The identity check of `p3m.privacy.verification` attacks every obfuscated face with dlib's
face recognition model (`dlib_face_recognition_resnet_model_v1.dat`, shipped by
`face_recognition_models`; 128-D descriptors, same person below distance 0.6). The `dlib-bin`
wheel is built without BLAS, so its network costs about 75 ms per 150 x 150 chip on a CPU core,
which made the identity loop most of an image's anonymisation time. This module reads the
network's weights from the same file and runs the same computation as an ONNX graph
(onnxruntime, built in memory at first use, nothing written to disk): on this machine the
descriptors agree with dlib's to ~1e-6 and cost a few ms per chip.

The network (dlib's `dnn_face_recognition_ex.cpp`, "anet_type"; read from the file, checked
against this layout): input 150 x 150 RGB, `(pixel - channel mean) / 256`; conv 7x7/2 (32),
affine, ReLU, max-pool 3x3/2; residual stages of 3 x 32, 4 x 64, 3 x 128, 3 x 256 and 1 x 256
channels, each stage but the first opening with a down-sampling block (3x3/2 conv, no padding;
the shortcut a 2x2/2 average pool; dlib's `add_prev` adds tensors of different sizes by
zero-extending both to the larger one); every block conv 3x3 + affine, ReLU, conv 3x3 + affine,
added to the shortcut, ReLU; global average pool; a 256 x 128 linear map without bias.
The affine layers (batch normalisation frozen by dlib) are folded into the preceding convs.

The file format (dlib's serialisation): integers are one byte holding the byte count (bit 7:
negative) followed by that many little-endian bytes; strings an integer length and the bytes;
tensors a version integer (2), four integer dimensions and little-endian float32 values; layers
are written from the input outward, each opening with its name ("con_4", "affine_", "fc_2").

    >>> network = DescriptorNetwork.load()           # onnxruntime session, cached
    >>> network.descriptors(chips)                   # N x 128 float64, chips 150 x 150 x 3 uint8
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p3m.errors import MissingDependencyError, P3MError

__all__ = ["CHANNEL_MEANS", "DescriptorNetwork", "descriptor_network_available", "read_dlib_resnet"]

logger = logging.getLogger(__name__)

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHANNEL_MEANS = (122.782, 117.001, 104.298)  # dlib's input_rgb_image defaults (read from the file)
CHIP_SIDE = 150
# (channels, blocks, first block down-samples) per stage, input side first (dlib's alevel4..0).
_STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class _Reader:
    """Sequential reader of dlib's serialisation format."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def integer(self) -> int:
        head = self.data[self.pos]
        count, negative = head & 0x0F, bool(head & 0x80)
        if count > 8:
            raise P3MError(f"not a dlib integer at byte {self.pos}")
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + count], "little")
        self.pos += 1 + count
        return -value if negative else value

    def floating(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(mantissa) * 2.0**exponent

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise P3MError(f"unexpected dlib tensor version {version} at byte {self.pos}")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, "<f4", count, self.pos)
        self.pos += 4 * count
        return values.reshape(shape).astype(np.float32)

    def seek_name(self, name: str) -> None:
        """Move just past the next serialised string `name` (searched, never inside tensor data)."""
        encoded = bytes([1, len(name)]) + name.encode()
        found = self.data.find(encoded, self.pos)
        if found < 0:
            raise P3MError(f"{name!r} not found in the dlib model file")
        self.pos = found + len(encoded)


@dataclass(frozen=True)
class _Conv:
    weight: np.ndarray  # out x in x kh x kw
    bias: np.ndarray  # out
    stride: int
    padding: int


def read_dlib_resnet(path: str | Path) -> tuple[list[_Conv], np.ndarray, tuple[float, ...]]:
    """The convs (affines folded in, input side first), the 256 x 128 linear map and the channel
    means of dlib's face recognition model file. Raises `P3MError` when the file does not hold
    the expected network."""
    reader = _Reader(Path(path).read_bytes())
    reader.seek_name("input_rgb_image_sized")
    means = tuple(reader.floating() for _ in range(3))
    layout = [(3, 32, 7)]
    in_channels = 32
    for channels, blocks, _ in _STAGES:
        for _ in range(blocks):
            layout += [(in_channels, channels, 3), (channels, channels, 3)]
            in_channels = channels
    convs = []
    for inputs, outputs, kernel in layout:
        reader.seek_name("con_4")
        params = reader.tensor().ravel()
        filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.integer() for _ in range(7))
        expected = outputs * inputs * kernel * kernel + outputs
        if (filters, rows, cols) != (outputs, kernel, kernel) or params.size != expected or (
            stride_y != stride_x or pad_y != pad_x
        ):
            raise P3MError(f"unexpected conv layer in {path}: {filters} x {rows} x {cols}")
        weight = params[: expected - outputs].reshape(outputs, inputs, kernel, kernel)
        bias = params[expected - outputs :]
        reader.seek_name("affine_")
        affine = reader.tensor().ravel()
        if affine.size != 2 * outputs:
            raise P3MError(f"unexpected affine layer in {path}: {affine.size} values")
        gamma, beta = affine[:outputs], affine[outputs:]
        convs.append(
            _Conv(weight * gamma[:, None, None, None], bias * gamma + beta, stride_y, pad_y)
        )
    reader.seek_name("fc_2")
    outputs, inputs = reader.integer(), reader.integer()
    linear = reader.tensor().reshape(-1)
    if (outputs, inputs) != (128, 256) or linear.size != 256 * 128:
        raise P3MError(f"unexpected linear layer in {path}: {inputs} -> {outputs}")
    return convs, linear.reshape(256, 128), means


def _conv_side(side: int, kernel: int, stride: int, padding: int) -> int:
    return (side + 2 * padding - kernel) // stride + 1


def _onnx_graph(convs: Sequence[_Conv], linear: np.ndarray, means: Sequence[float]) -> bytes:
    """The network as a serialised ONNX model (input "chips": N x 150 x 150 x 3 uint8 RGB)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list = []
    weights: list = []
    counter = iter(range(10_000))

    def name(prefix: str) -> str:
        return f"{prefix}_{next(counter)}"

    def constant(value: np.ndarray, prefix: str) -> str:
        key = name(prefix)
        weights.append(numpy_helper.from_array(np.ascontiguousarray(value), key))
        return key

    def node(op: str, inputs: list[str], **attributes) -> str:
        out = name(op.lower())
        nodes.append(helper.make_node(op, inputs, [out], **attributes))
        return out

    def conv(x: str, layer: _Conv) -> str:
        kernel = layer.weight.shape[-1]
        return node(
            "Conv", [x, constant(layer.weight, "w"), constant(layer.bias, "b")],
            kernel_shape=[kernel, kernel], strides=[layer.stride] * 2, pads=[layer.padding] * 4,
        )  # fmt: skip

    chips = "chips"
    x = node("Cast", [chips], to=TensorProto.FLOAT)
    x = node("Transpose", [x], perm=[0, 3, 1, 2])
    mean = np.float32(means).reshape(1, 3, 1, 1)
    x = node("Sub", [x, constant(mean, "mean")])
    x = node("Mul", [x, constant(np.float32(1 / 256), "scale")])
    layers = iter(convs)
    stem = next(layers)
    x = node("Relu", [conv(x, stem)])
    side = _conv_side(CHIP_SIDE, 7, stem.stride, stem.padding)
    x = node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])
    side = _conv_side(side, 3, 2, 0)
    channels = 32
    for stage_channels, blocks, down in _STAGES:
        for block in range(blocks):
            first, second = next(layers), next(layers)
            y = conv(x, first)
            y_side = _conv_side(side, 3, first.stride, first.padding)
            y = conv(node("Relu", [y]), second)
            y_side = _conv_side(y_side, 3, 1, second.padding)
            shortcut, short_side = x, side
            if down and block == 0:
                shortcut = node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
                short_side = _conv_side(side, 2, 2, 0)
            out_side, out_channels = max(y_side, short_side), max(stage_channels, channels)
            y = _zero_extend(node, constant, y, (stage_channels, y_side), (out_channels, out_side))
            shortcut = _zero_extend(
                node, constant, shortcut, (channels, short_side), (out_channels, out_side)
            )
            x = node("Relu", [node("Add", [y, shortcut])])
            side, channels = out_side, out_channels
    x = node("GlobalAveragePool", [x])
    x = node("Flatten", [x])
    x = node("MatMul", [x, constant(linear, "fc")])
    nodes[-1].output[0] = "descriptors"
    graph = helper.make_graph(
        nodes, "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(chips, TensorProto.UINT8, ["n", CHIP_SIDE, CHIP_SIDE, 3])],
        [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["n", 128])],
        weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _zero_extend(node, constant, x: str, shape: tuple[int, int], target: tuple[int, int]) -> str:
    """`x` (channels, side) zero-extended to `target`: more channels, more bottom/right pixels
    (how dlib's `add_prev` adds tensors of unequal sizes)."""
    more_channels, more_side = target[0] - shape[0], target[1] - shape[1]
    if not more_channels and not more_side:
        return x
    pads = np.array([0, 0, 0, 0, 0, more_channels, more_side, more_side], np.int64)
    return node("Pad", [x, constant(pads, "pads")])


def descriptor_network_available() -> bool:
    """Whether onnx and onnxruntime are installed (the model file is checked by the caller)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


class DescriptorNetwork:
    """dlib's face recognition network as an onnxruntime session (see the module doc)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise MissingDependencyError(
                f"the fast identity check needs onnxruntime ({error}): pip install 'p3m[onnx]'"
            ) from None
        from p3m.detection.centerface import session_options

        self.session = onnxruntime.InferenceSession(
            _onnx_graph(*read_dlib_resnet(path)),
            session_options(threads),
            providers=["CPUExecutionProvider"],
        )
        self.lock = threading.Lock()

    @classmethod
    @functools.cache
    def load(cls) -> DescriptorNetwork:
        """The network of `face_recognition_models`' model file, built once per process."""
        from p3m.detection.faces import dlib_model_path

        return cls(dlib_model_path(MODEL_FILE))

    def descriptors(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """N x 128 float64 descriptors of aligned 150 x 150 RGB uint8 chips (dlib's
        `compute_face_descriptor` on the same chips, to float32 rounding)."""
        if not len(chips):
            return np.zeros((0, 128))
        batch = np.ascontiguousarray(np.stack([np.asarray(c, np.uint8) for c in chips]))
        if batch.shape[1:] != (CHIP_SIDE, CHIP_SIDE, 3):
            raise P3MError(f"face chips must be {CHIP_SIDE} x {CHIP_SIDE} x 3, got {batch.shape[1:]}")
        with self.lock:
            (out,) = self.session.run(["descriptors"], {"chips": batch})
        return out.astype(np.float64)
