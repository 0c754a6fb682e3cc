"""Run a P3M-Net exported by `p3m export-onnx` with onnxruntime, as a drop-in for the torch model.

`OnnxP3MNet` takes the same normalised N x 3 x H x W tensor the torch model takes and returns
a `P3MOutput` of torch tensors, so the official strategies and `p3m.matte` use it unchanged:

    >>> network = OnnxP3MNet("p3m-vitae.onnx")
    >>> result = p3m.matte("portrait.jpg", model=network)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from p3m.errors import CheckpointError, DeviceError, InputSizeError, MissingDependencyError
from p3m.models.device import parse_device
from p3m.models.p3mnet import P3MOutput, check_input

__all__ = [
    "OnnxP3MNet",
    "default_threads",
    "is_onnx_path",
    "providers_for_device",
    "prune_to_outputs",
    "session_options",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "p3m[onnx]"'


def is_onnx_path(value: object) -> bool:
    """True for a str / PathLike naming an .onnx file (what `--model` accepts besides names)."""
    return isinstance(value, (str, os.PathLike)) and str(value).lower().endswith(".onnx")


def _parse_floats(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    return tuple(float(part) for part in text.split(","))


def providers_for_device(device: str | torch.device | None) -> list[Any] | None:
    """onnxruntime providers for a torch-style device name: CUDA first for "cuda" / "cuda:N",
    None (onnxruntime's CPU default) for None, "auto" and "cpu".

    The name is checked like every `--device` (`p3m.models.device.parse_device`); "cuda" on an
    onnxruntime without its CUDA provider raises `DeviceError` here, in p3m's words, instead of
    onnxruntime warning and quietly running on the CPU.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return None
    parsed = parse_device(device)
    if parsed.type == "cpu":
        return None
    if parsed.type != "cuda":
        raise DeviceError(f"ONNX models run on cpu or cuda with onnxruntime, not on {parsed.type}")
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingDependencyError(
            f"running ONNX models needs onnxruntime ({error}); install it with {INSTALL_HINT}"
        ) from None
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise DeviceError(
            f"{parsed} requested but this onnxruntime has no CUDAExecutionProvider (install "
            "onnxruntime-gpu on a machine with CUDA); use {device}",
            options={"device": "cpu"},
        )
    cuda: Any = "CUDAExecutionProvider"
    if parsed.index is not None:
        cuda = ("CUDAExecutionProvider", {"device_id": parsed.index})
    return [cuda, "CPUExecutionProvider"]


def _subgraph_inputs(node: Any) -> set[str]:
    """Names a node's subgraphs (If / Loop bodies) read from the enclosing graph."""
    names: set[str] = set()
    for attribute in node.attribute:
        graphs = list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else [])
        for graph in graphs:
            produced = {i.name for i in graph.input} | {i.name for i in graph.initializer}
            for inner in graph.node:
                produced.update(inner.output)
            for inner in graph.node:
                names.update(n for n in inner.input if n and n not in produced)
                names.update(n for n in _subgraph_inputs(inner) if n not in produced)
    return names


def prune_to_outputs(model: Any, outputs: Sequence[str]) -> Any:
    """A copy of the ONNX `model` that computes only the graph `outputs` (nodes and initializers
    nothing needs are dropped; metadata kept)."""
    import onnx

    graph = model.graph
    producer = {name: index for index, node in enumerate(graph.node) for name in node.output}
    keep: set[int] = set()
    stack = list(outputs)
    while stack:
        index = producer.get(stack.pop())
        if index is None or index in keep:
            continue
        keep.add(index)
        node = graph.node[index]
        stack.extend(name for name in node.input if name)
        stack.extend(_subgraph_inputs(node))
    nodes = [node for index, node in enumerate(graph.node) if index in keep]
    used = {name for node in nodes for name in node.input} | set().union(*(_subgraph_inputs(n) for n in nodes))
    pruned = onnx.helper.make_graph(
        nodes,
        graph.name,
        list(graph.input),
        [output for output in graph.output if output.name in outputs],
        [tensor for tensor in graph.initializer if tensor.name in used],
        value_info=[info for info in graph.value_info if info.name in used],
    )
    result = onnx.helper.make_model(pruned, opset_imports=list(model.opset_import))
    result.ir_version = model.ir_version
    for prop in model.metadata_props:
        result.metadata_props.add(key=prop.key, value=prop.value)
    return result


def default_threads() -> int:
    """Intra-op threads for onnxruntime: PyTorch's (physical cores unless set), within the CPUs
    this process may run on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), usable))


def session_options(threads: int) -> Any:
    """onnxruntime session options for P3M-Net: every graph optimisation (constant folding,
    Conv/BN/activation and Gelu fusions, NCHWc layouts), `threads` intra-op threads, one graph
    at a time (the graph has no parallel branches worth a second pool)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    return options


class OnnxP3MNet:
    """A P3M-Net ONNX file behind the torch model's interface: `network(x) -> P3MOutput`.

    `providers`: onnxruntime execution providers, names or (name, options) pairs (default: CPU;
    `providers_for_device` gives them for a device name). `threads`: intra-op threads
    (default: `default_threads()`). `variant`, `min_size` and `size_multiple` come from the
    file's metadata; outputs the file does not contain (an "inference" export has no side
    outputs) are None in the returned `P3MOutput`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise MissingDependencyError(
                f"running ONNX models needs onnxruntime ({error}); install it with {INSTALL_HINT}"
            ) from None
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise CheckpointError("no such ONNX model file", self.path)
        self._onnxruntime = onnxruntime
        self._pruned: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()
        self.threads = int(threads) if threads is not None else default_threads()
        self._providers = list(providers or ["CPUExecutionProvider"])
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), session_options(self.threads), providers=self._providers
            )
        except Exception as error:  # onnxruntime raises its own exception types
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"onnxruntime cannot load this file: {first}", self.path) from None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise CheckpointError(
                "not a P3M-Net export (expected one N x 3 x H x W input)", self.path
            )
        self.input_name = inputs[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]
        missing = [name for name in P3MOutput._fields[:3] if name not in self.output_names]
        if missing:
            raise CheckpointError(
                f"not a P3M-Net export: outputs {', '.join(missing)} are missing "
                f"(it has {', '.join(self.output_names)})",
                self.path,
            )
        self.variant = self.metadata.get("variant", self.path.stem)
        self.min_size = int(self.metadata.get("min_size", 32))
        self.size_multiple = int(self.metadata.get("size_multiple", 32))
        self.mean = _parse_floats(self.metadata.get("normalize_mean"))
        self.std = _parse_floats(self.metadata.get("normalize_std"))
        # A static export accepts exactly its traced size (and batch).
        dims = inputs[0].shape
        self.fixed_size = (
            (int(dims[2]), int(dims[3])) if isinstance(dims[2], int) and isinstance(dims[3], int) else None
        )
        self.fixed_batch = int(dims[0]) if isinstance(dims[0], int) else None
        self._check_normalisation()

    def _check_normalisation(self) -> None:
        from p3m.models.normalization import IMAGENET_MEAN, IMAGENET_STD

        expected = (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
        if (self.mean, self.std) not in (expected, (None, None)):
            # The strategies normalise with the ImageNet statistics; a file wanting others
            # would silently give wrong mattes.
            raise CheckpointError(
                f"this file expects mean {self.mean} / std {self.std}, but p3m feeds the "
                f"ImageNet statistics {expected[0]} / {expected[1]}",
                self.path,
            )

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def check_input(self, x: torch.Tensor) -> None:
        """InputSizeError unless the file can take `x` (same rules as the torch model)."""
        check_input(x, self.variant, self.min_size, self.size_multiple)
        if self.fixed_size is not None and tuple(x.shape[2:]) != self.fixed_size:
            raise InputSizeError(
                f"{self.path.name} was exported for {self.fixed_size[0]}x{self.fixed_size[1]} "
                f"inputs only, got {x.shape[2]}x{x.shape[3]} (export it again with dynamic axes, the default)"
            )
        if self.fixed_batch is not None and x.shape[0] != self.fixed_batch:
            raise InputSizeError(
                f"{self.path.name} was exported for batches of {self.fixed_batch}, got {x.shape[0]}"
            )

    def __call__(self, x: torch.Tensor, outputs: Sequence[str] | None = None) -> P3MOutput:
        """Forward pass: normalised N x 3 x H x W float tensor -> P3MOutput of CPU float32 tensors.

        `outputs` (names of `P3MOutput` fields, default all the file has): only those are
        computed, by a copy of the graph pruned to them (built on first use, then kept); the
        others are None.
        """
        self.check_input(x)
        names = self._select(outputs)
        image = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        results = self._session_for(names).run(list(names), {self.input_name: image})
        by_name: dict[str, Any] = {
            name: torch.from_numpy(value) for name, value in zip(names, results, strict=True)
        }
        return P3MOutput(*(by_name.get(name) for name in P3MOutput._fields))

    supports_output_selection = True

    def _select(self, outputs: Sequence[str] | None) -> tuple[str, ...]:
        if outputs is None:
            return tuple(self.output_names)
        wanted = [outputs] if isinstance(outputs, str) else list(outputs)
        unknown = [name for name in wanted if name not in P3MOutput._fields]
        if unknown:
            raise ValueError(f"unknown outputs {', '.join(unknown)}; choose among {', '.join(P3MOutput._fields)}")
        missing = [name for name in wanted if name not in self.output_names]
        if missing:
            raise InputSizeError(f"{self.path.name} has no output {', '.join(missing)} (it has {', '.join(self.output_names)})")
        return tuple(name for name in self.output_names if name in wanted)

    def _session_for(self, names: tuple[str, ...]) -> Any:
        """The full session, or one on the graph pruned to `names` (onnxruntime runs every node
        of a graph whatever outputs are fetched)."""
        if len(names) == len(self.output_names):
            return self.session
        with self._lock:
            session = self._pruned.get(names)
            if session is None:
                import onnx

                model = onnx.load(str(self.path))
                pruned = prune_to_outputs(model, names)
                del model
                session = self._onnxruntime.InferenceSession(
                    pruned.SerializeToString(), session_options(self.threads), providers=self._providers
                )
                self._pruned[names] = session
            return session

    forward = __call__

    def __repr__(self) -> str:
        return f"OnnxP3MNet({str(self.path)!r}, variant={self.variant!r}, providers={self.providers})"
