"""The official P3M-Net test-time strategies, HYBRID and RESIZE (SPEC-r34.md, section 11).

HYBRID (what the papers report): a global pass at half size gives the trimap, a local pass at
full size (cut to multiples of 32, capped at 1600) gives the detail, and known trimap pixels
override the local alpha. RESIZE: one pass at half size, the network's own fusion resized back.

    >>> model = create_model("p3mnet-r34", weights="p3mnet_r34.pth")
    >>> alpha = predict_alpha_p3mnet(model, image, "hybrid")   # float32 H x W in [0, 1]

Any callable taking a normalised 1 x 3 x H x W tensor and returning `P3MOutput` (or a tuple
`global_logits, local, fusion, ...`) works as `model`.

`global_filter` is the hook video matting uses (`p3m.video`): it sees the global pass's class
probabilities (softmax of the global logits) with the image of that pass and returns the
probabilities the trimap is taken from (e.g. smoothed over time); the local pass and the
fusion rule are unchanged, so each frame's detail is still solved on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from p3m.inference.fusion import fuse_trimap_and_local, trimap_from_global_logits
from p3m.inference.preprocess import image_to_tensor, resize_like_official, working_size
from p3m.vocabulary import TestStrategy, values

__all__ = [
    "STRATEGIES",
    "GlobalFilter",
    "P3MNetPrediction",
    "Strategy",
    "model_device",
    "predict_alpha_p3mnet",
    "predict_p3mnet",
]

Strategy = Literal["hybrid", "resize"]
STRATEGIES: tuple[str, ...] = values(TestStrategy)

GlobalFilter = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""`global_filter(image, probabilities) -> probabilities`: image RGB uint8 h x w x 3 (the global
pass input), probabilities float32 3 x h x w (background, transition, foreground; softmax of
the global logits); returns 3 x h x w scores whose argmax gives the trimap."""


@dataclass(frozen=True)
class P3MNetPrediction:
    """Alpha (float32 H x W in [0, 1]) and trimap (uint8 {0, 128, 255}) at the input size.

    `alpha_u8_official` is what the official saver writes: the float64 alpha x 255, truncated.
    """

    alpha: np.ndarray
    trimap: np.ndarray
    alpha_u8_official: np.ndarray
    pass_sizes: dict[str, tuple[int, int]]


def model_device(model: Callable[..., object]) -> torch.device:
    """The device of a module's first parameter (CPU for parameterless callables)."""
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device
    return torch.device("cpu")


def _run(model: Callable[..., object], x: torch.Tensor, outputs: tuple[str, ...], region: np.ndarray | None) -> object:
    """One forward pass; models that can skip outputs (`FastP3MNet`) compute only `outputs`."""
    with torch.inference_mode():
        if getattr(model, "supports_output_selection", False):
            if region is not None:
                return model(x, outputs=outputs, region=torch.from_numpy(region).to(x.device))
            return model(x, outputs=outputs)
        return model(x)


def _forward(
    model: Callable[..., object],
    image_0_255: np.ndarray,
    device: torch.device,
    outputs: tuple[str, ...] = ("global_logits", "local", "fusion"),
    region: np.ndarray | None = None,
    global_filter: GlobalFilter | None = None,
) -> dict[str, np.ndarray]:
    """One official `inference_once`: of trimap (uint8), local and fusion (float32 H x W), the
    ones `outputs` asks for ("global_logits" gives the trimap).

    With `global_filter`, the trimap comes from the filtered class probabilities and the fusion
    is recomputed from it with the network's own rule (local in the transition, 1 in the
    foreground, 0 elsewhere).
    """
    asked = tuple(outputs)
    if global_filter is not None and "fusion" in asked:
        asked = tuple(name for name in asked if name != "fusion")
        asked += () if "local" in asked else ("local",)
        if "global_logits" not in asked:
            asked += ("global_logits",)
    x = image_to_tensor(image_0_255, device)
    result = _run(model, x, asked, region)
    del x
    global_logits, local, fusion = result[0], result[1], result[2]
    arrays: dict[str, np.ndarray] = {}
    if "local" in asked:
        arrays["local"] = local[0, 0].float().cpu().numpy()
    if global_filter is None:
        if "global_logits" in asked:
            arrays["trimap"] = trimap_from_global_logits(global_logits.float().cpu().numpy())
        if "fusion" in asked:
            arrays["fusion"] = fusion[0, 0].float().cpu().numpy()
        return arrays
    probabilities = torch.softmax(global_logits[:1].float(), dim=1)[0].cpu().numpy()
    image_u8 = np.clip(np.rint(image_0_255), 0, 255).astype(np.uint8)
    filtered = np.asarray(global_filter(image_u8, probabilities), dtype=np.float32)
    if filtered.shape != probabilities.shape:
        raise ValueError(
            f"global_filter returned shape {filtered.shape}, expected {probabilities.shape}"
        )
    arrays["trimap"] = trimap_from_global_logits(filtered[None])
    if "fusion" in outputs:
        local_np = arrays["local"]
        fused = np.where(arrays["trimap"] == 128, local_np, (arrays["trimap"] == 255).astype(np.float32))
        arrays["fusion"] = fused.astype(np.float32)
    return arrays


def local_region(trimap_back: np.ndarray, local_size: tuple[int, int]) -> np.ndarray:
    """Pixels of the local pass (at `local_size`) that the HYBRID combine can read: bool mask.

    The combine takes the local alpha where the resized trimap is neither exactly 0 nor 255;
    the resize back to the image size reads the 2 x 2 bilinear neighbours of each such pixel
    (and, when shrinking, a Gaussian anti-aliasing support). The mask covers all of them with
    one pixel to spare.
    """
    height, width = trimap_back.shape
    local_h, local_w = local_size
    unknown = (trimap_back != 0) & (trimap_back != 255)
    region = np.zeros(local_size, dtype=bool)
    if not unknown.any():
        return region
    rows = np.clip(np.floor((np.arange(height) + 0.5) * local_h / height - 0.5), 0, local_h - 1)
    cols = np.clip(np.floor((np.arange(width) + 0.5) * local_w / width - 0.5), 0, local_w - 1)
    ys, xs = np.nonzero(unknown)
    region[rows[ys].astype(np.intp), cols[xs].astype(np.intp)] = True
    sigma = max(0.0, (max(local_h / height, local_w / width) - 1.0) / 2.0)
    margin = 2 + int(np.ceil(4.0 * sigma + 0.5))
    grown = torch.nn.functional.max_pool2d(
        torch.from_numpy(region)[None, None].float(), 2 * margin + 1, stride=1, padding=margin
    )
    return grown[0, 0].numpy() > 0


def _min_side(model: Callable[..., object]) -> int:
    return int(getattr(model, "min_size", 32) or 32)


def predict_p3mnet(
    model: Callable[..., object],
    image: np.ndarray,
    strategy: Strategy = "hybrid",
    global_filter: GlobalFilter | None = None,
    band_only: bool = True,
) -> P3MNetPrediction:
    """Run the official HYBRID or RESIZE procedure on an RGB uint8 image; see the module docstring.

    The model's input constraints are honoured through its `min_size` attribute: on images so
    small that the official sizes would fall below it (where the official code fails), the passes
    run at `min_size` instead. Everything else is the official procedure, step for step.
    `global_filter` (default None: the official procedure) filters the global pass's class
    probabilities before the trimap is taken (see `GlobalFilter`; used for video).

    Models that can skip outputs (`p3m.models.optimize_for_inference`) compute only what the
    procedure reads: the trimap in the global pass, the local alpha in HYBRID's full-size pass,
    and (`band_only`, the default) that alpha only on the tiles that hold the pixels the combine
    takes from it (where the resized trimap is neither 0 nor 255), which gives the same alpha.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 H x W x 3, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    device = model_device(model)
    min_side = _min_side(model)
    if isinstance(model, torch.nn.Module) and model.training:
        raise ValueError("the model is in training mode; call model.eval() first")

    global_size = working_size(height, width, 0.5, min_side=min_side)
    global_input = resize_like_official(image, global_size) * 255.0
    global_outputs = ("global_logits",) if strategy == "hybrid" else ("global_logits", "fusion")
    global_pass = _forward(model, global_input, device, global_outputs, global_filter=global_filter)
    del global_input
    trimap_back = resize_like_official(global_pass["trimap"], (height, width)) * 255.0
    pass_sizes = {"global": global_size}

    if strategy == "resize":
        alpha = resize_like_official(global_pass["fusion"], (height, width))
    else:
        local_size = working_size(height, width, 1.0, min_side=min_side)
        pass_sizes["local"] = local_size
        region = None
        if band_only and getattr(model, "supports_region", False):
            region = local_region(trimap_back, local_size)
        local_input = resize_like_official(image, local_size) * 255.0
        local_small = _forward(model, local_input, device, ("local",), region)["local"]
        del local_input
        local_back = resize_like_official(local_small, (height, width))
        alpha = fuse_trimap_and_local(trimap_back, local_back)

    # The trimap the combine rule used: exact 0 / 255 are known, everything else is unknown.
    trimap = np.full((height, width), 128, dtype=np.uint8)
    trimap[trimap_back == 0] = 0
    trimap[trimap_back == 255] = 255
    alpha_u8_official = (alpha * 255.0).astype(np.uint8)
    alpha32 = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    return P3MNetPrediction(
        alpha=alpha32, trimap=trimap, alpha_u8_official=alpha_u8_official, pass_sizes=pass_sizes
    )


def predict_alpha_p3mnet(
    model: Callable[..., object], image: np.ndarray, strategy: Strategy = "hybrid"
) -> np.ndarray:
    """Official HYBRID / RESIZE alpha of a P3M-Net model: float32 H x W in [0, 1] at the input size.

    Used by `p3m evaluate-model`; the official saver stores `(alpha * 255)` truncated to uint8
    (`p3m.io.alpha_to_uint8(alpha, truncate=True)`).
    """
    return predict_p3mnet(model, image, strategy).alpha
