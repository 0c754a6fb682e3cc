"""The fast inference path of every P3M-Net variant: `optimize_for_inference(model)`.

The exact models reproduce the official arithmetic (the reference tests check them bit for bit).
For inference the same function can be computed with far less work; the returned
`FastP3MNet` takes the same input and returns the same `P3MOutput`, within float rounding:

* every BatchNorm is folded into the convolution before it, and convolution + bias + ReLU /
  SiLU / sigmoid (and the ResNet basic block's residual add + ReLU) run as one oneDNN
  primitive on CPU (`p3m.models.fast_ops`);
* activations are kept in channels-last memory (NHWC) end to end, where oneDNN's convolutions
  and PyTorch's max-pools are several times faster than in NCHW; the transformer token
  tensors (N x h*w x C) are exactly the NHWC layout of their grids, so no copies are needed;
* attention runs through PyTorch's fused `scaled_dot_product_attention` (Swin-T window
  attention with its relative-position bias and shift mask merged into one additive mask;
  ViTAE-S global attention), and the MLP's Linear + GELU is one oneDNN primitive;
* the ResNet-34 max-unpooling keeps the reference "last pooled cell wins" rule at any thread
  count through `fast_ops.unpool_settled`, at the speed of PyTorch's own kernel;
* outputs the caller does not ask for are not computed: `model(x, outputs=("local",))` skips
  the last global stage and the side heads, `outputs=("global_logits",)` the whole matting
  decoder (the official HYBRID procedure needs exactly these two passes);
* the wide stride-1 3 x 3 convolutions (128 channels and more: the ResNet-34 encoder's last
  three stages and the decoders' deep levels) run as Winograd F(4x4, 3x3) or, at 512
  channels, F(2x2, 3x3) (`p3m.models.winograd`: 4x / 2.25x fewer multiplications, transformed
  weights computed once here); the 64-channel layers stay direct, where the transforms cost
  more than they save;
* the forward pass always runs under `torch.inference_mode()`.

Agreement with the exact model is tested for every registered variant at two sizes within the
tolerances of the reference contract (../shared/reference/models/README.md, two-thread rows).
`exact=True` returns the model unchanged for callers that need the reference arithmetic.

Example::

    model = optimize_for_inference(create_model("p3mnet-r34", weights="p3mnet_r34.pth"))
    out = model(x)                             # the six outputs, as the exact model
    alpha = model(x, outputs=("local",)).local # only what HYBRID's full-size pass needs
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m.models.blocks import DBFI, SBFI, TFI
from p3m.models.fast_blocks import (
    FastBasicBlock,
    FastConvStem,
    FastGlobalAttention,
    FastMaxPool3x3,
    FastMlp,
    FastNormalCell,
    FastPoolingMerge,
    FastSwinStage,
    onnx_unpool3x3,
    unpool2x2,
)
from p3m.models.fast_ops import FusedConv2d, unpool_settled
from p3m.models.ops import max_unpool2d_last_wins
from p3m.models.p3mnet import EncoderOutput, P3MOutput, check_input, decode, fuse_global_local

__all__ = ["ALL_OUTPUTS", "FastP3MNet", "can_optimize", "optimize_for_inference", "parse_outputs"]

logger = logging.getLogger(__name__)

ALL_OUTPUTS: tuple[str, ...] = P3MOutput._fields
_ACTIVATION_OF = {nn.ReLU: "relu", nn.SiLU: "silu", nn.Sigmoid: "sigmoid"}


def parse_outputs(outputs: Iterable[str] | None) -> frozenset[str]:
    """The set of `P3MOutput` field names requested (None: all six); unknown names raise ValueError."""
    if outputs is None:
        return frozenset(ALL_OUTPUTS)
    if isinstance(outputs, str):
        outputs = (outputs,)
    chosen = frozenset(outputs)
    unknown = sorted(chosen - set(ALL_OUTPUTS))
    if unknown or not chosen:
        raise ValueError(
            f"unknown outputs {', '.join(unknown) or '(none)'}; choose among {', '.join(ALL_OUTPUTS)}"
        )
    return chosen


# --------------------------------------------------------------------------- module rewriting


def _activation_name(module: nn.Module) -> str | None | bool:
    """'relu' / 'silu' / 'sigmoid' for a fusable activation module, False otherwise."""
    for kind, name in _ACTIVATION_OF.items():
        if type(module) is kind:
            return name
    return False


def _fusable_conv(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def _fold_sequential(sequence: nn.Sequential, channels_last: bool) -> nn.Sequential:
    """Conv [-> BatchNorm] [-> ReLU/SiLU/Sigmoid] runs of a Sequential become FusedConv2d modules."""
    children = list(sequence)
    fused: list[nn.Module] = []
    position = 0
    while position < len(children):
        child = children[position]
        if not _fusable_conv(child):
            fused.append(child)
            position += 1
            continue
        position += 1
        bn = None
        if position < len(children) and type(children[position]) is nn.BatchNorm2d:
            bn = children[position]
            position += 1
        activation = None
        if position < len(children):
            name = _activation_name(children[position])
            if name is not False:
                activation = name
                position += 1
        fused.append(FusedConv2d(child, bn, activation, channels_last))
    return nn.Sequential(*fused)


def _fuse_conv_bn_relu_attributes(block: nn.Module, channels_last: bool) -> None:
    """TFI / sBFI / dBFI: `relu(bn1(conv1(.)))` becomes one fused conv (bn1, relu -> Identity)."""
    block.conv1 = FusedConv2d(block.conv1, block.bn1, "relu", channels_last)
    block.bn1 = nn.Identity()
    block.relu = nn.Identity()
    for name in ("transform", "transform1", "transform2", "conv2"):
        conv = getattr(block, name, None)
        if _fusable_conv(conv):
            setattr(block, name, FusedConv2d(conv, None, None, channels_last))


def _rewrite(module: nn.Module, channels_last: bool, done: set[int]) -> None:
    """Replace, in place, every submodule the fast path knows with its fast form."""
    from p3m.models.backbones.resnet_mp import BasicBlock
    from p3m.models.backbones.swin import SwinStage
    from p3m.models.backbones.tokens import ConvStem, Mlp, PoolingMerge
    from p3m.models.backbones.vitae import GlobalAttention, NormalCell

    if id(module) in done:  # r34 registers its backbone modules twice
        return
    done.add(id(module))
    if isinstance(module, (TFI, SBFI, DBFI)):
        _fuse_conv_bn_relu_attributes(module, channels_last)
        return
    for name, child in list(module.named_children()):
        replacement: nn.Module | None = None
        if type(child) is ConvStem:
            replacement = FastConvStem(child, channels_last)
        elif type(child) is PoolingMerge:
            replacement = FastPoolingMerge(child)
        elif type(child) is BasicBlock:
            replacement = FastBasicBlock(child, channels_last)
        elif type(child) is SwinStage:
            replacement = FastSwinStage(child)
        elif type(child) is NormalCell:
            attention = child.attn
            if type(attention) is GlobalAttention:
                attention = FastGlobalAttention(attention)
            replacement = FastNormalCell(child, attention, _fold_sequential(child.PCM, channels_last))
        elif type(child) is Mlp:
            replacement = FastMlp(child)
        elif type(child) is nn.Sequential and any(_fusable_conv(c) for c in child):
            replacement = _fold_sequential(child, channels_last)
        elif _fusable_conv(child):
            replacement = FusedConv2d(child, None, None, channels_last)
        if replacement is not None:
            setattr(module, name, replacement)
        # Known blocks may hold further known blocks (a stage's pooling merge, ...).
        _rewrite(replacement if replacement is not None else child, channels_last, done)


# --------------------------------------------------------------------------- the fast decoder

_DBFI_NAMES = ("dbfi_2", "dbfi_1", "dbfi_0")
_STANDARD_BLOCKS = {
    **{f"tfi_{level}": TFI for level in (3, 2, 1, 0)},
    **{f"sbfi_{level}": SBFI for level in (2, 1, 0)},
    **{name: DBFI for name in _DBFI_NAMES},
}


def _standard_decoder(owner: nn.Module) -> bool:
    """True when every TFI / sBFI / dBFI is present in its usual form (not an ablation variant)."""
    return all(isinstance(getattr(owner, name, None), kind) for name, kind in _STANDARD_BLOCKS.items())


def _dbfi(block: nn.Module, global_feature: Tensor, top: Tensor, side: bool) -> tuple[Tensor, Tensor | None]:
    """`DBFI.forward`, with the side head computed only when asked for."""
    deep = block.upsample(block.transform2(top))
    fused = torch.cat([block.transform1(global_feature), deep], dim=1)
    refined = block.relu(block.bn1(block.conv1(fused))) + global_feature
    side_logits = block.upsample2(block.conv2(refined)) if side else None
    return refined, side_logits


# Level-0 strips of a region-restricted local pass, in H/2 cells: strips of REGION_ROWS rows,
# cut into runs of REGION_COLUMN_STEP-wide column blocks that touch the region (runs closer than
# REGION_MERGE_GAP merged), each computed with a halo of REGION_HALO cells. The halo covers the
# receptive field of what runs per run (TFI, sBFI, two decoder convolutions at H/2, the
# unpooling and the final 3 x 3 convolution at H: 6 cells), so runs give the values of the full
# computation. Few, long runs keep the number of operator calls low.
REGION_ROWS = 64
REGION_COLUMN_STEP = 16
REGION_MERGE_GAP = 32
REGION_HALO = 8


def _active_runs(active: Tensor, step: int, merge_gap: int) -> list[tuple[int, int]]:
    """[start, stop) column ranges covering the True entries of `active` in blocks of `step`."""
    length = active.shape[0]
    blocks = [bool(active[start : start + step].any()) for start in range(0, length, step)]
    runs: list[tuple[int, int]] = []
    for index, on in enumerate(blocks):
        if not on:
            continue
        start, stop = index * step, min(length, (index + 1) * step)
        if runs and start - runs[-1][1] <= merge_gap:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    return runs


def _tile_indices(indices: Tensor, row0: int, col0: int, full_width: int, tile_width: int) -> Tensor:
    """Flat pool indices into a full H x W plane -> flat indices into a tile starting at (row0, col0).

    Cells at the tile's top/left edge may point just outside it; they are sent to position 0 of
    the tile (their values only reach halo pixels, which are discarded).
    """
    rows = torch.div(indices, full_width, rounding_mode="floor") - row0
    cols = indices.remainder(full_width) - col0
    inside = (rows >= 0) & (cols >= 0) & (cols < tile_width)
    return torch.where(inside, rows * tile_width + cols, 0)


# With tiles (halos included) covering this share of the H/2 grid or more, the whole level-0
# pass is cheaper than the tiles (their halos overlap and each costs operator calls): measured
# on ResNet-34 at 1080 x 1620, tiles covering 1.21 of the grid took 4.53 s against 3.91 s.
REGION_FULL_PASS_ABOVE = 0.85


def _region_tiles(region: Tensor, half_h: int, half_w: int) -> list[tuple[int, int, int, int, int, int, int, int]]:
    """The level-0 tiles of `region` (H x W bool): (row0, row1, col0, col1) of H/2 cells each
    tile writes and (top, bottom, left, right) it computes, halo included."""
    cells = F.max_pool2d(region[None, None].float(), kernel_size=2, stride=2)[0, 0] > 0
    cells = cells[:half_h, :half_w]
    halo = REGION_HALO
    tiles = []
    for row0 in range(0, half_h, REGION_ROWS):
        row1 = min(half_h, row0 + REGION_ROWS)
        band = cells[row0:row1]
        if not bool(band.any()):
            continue
        for col0, col1 in _active_runs(band.any(dim=0), REGION_COLUMN_STEP, REGION_MERGE_GAP):
            top, bottom = max(0, row0 - halo), min(half_h, row1 + halo)
            left, right = max(0, col0 - halo), min(half_w, col1 + halo)
            tiles.append((row0, row1, col0, col1, top, bottom, left, right))
    return tiles


def _local_level0_in_region(
    owner: nn.Module,
    g1: Tensor,
    l1: Tensor,
    feature1: Tensor,
    shallow: Tensor,
    pooled_shallow: Tensor,
    indices0: Tensor,
    region: Tensor,
    unpool: Any,
) -> Tensor:
    """`local` (N x 1 x H x W) computed only on the H/2 runs touching `region` (H x W bool); 0
    elsewhere. When those runs cover most of the image (`REGION_FULL_PASS_ABOVE`), the whole
    level-0 pass runs instead, and what lies outside `region` is set to 0."""
    batch = l1.shape[0]
    half_h, half_w = l1.shape[-2:]
    full_h, full_w = shallow.shape[-2:]
    tiles = _region_tiles(region, half_h, half_w)
    covered = sum((bottom - top) * (right - left) for *_, top, bottom, left, right in tiles)
    if covered >= REGION_FULL_PASS_ABOVE * half_h * half_w:
        s0 = _sbfi(owner.sbfi_0, owner.tfi_0(g1, l1, feature1), {2: pooled_shallow})
        local = owner.decoder_final_l(unpool(owner.decoder0_l(s0), indices0, (full_h, full_w)))
        return local.masked_fill(~region[:full_h, :full_w], 0.0)
    local = shallow.new_zeros(batch, 1, full_h, full_w)
    for row0, row1, col0, col1, top, bottom, left, right in tiles:
        crop = (..., slice(top, bottom), slice(left, right))
        t = owner.tfi_0(g1[crop], l1[crop], feature1[crop])
        s = _sbfi(owner.sbfi_0, t, {2: pooled_shallow[crop]})
        decoded = owner.decoder0_l(s)
        tile_size = (2 * (bottom - top), 2 * (right - left))
        tile_indices = _tile_indices(indices0[crop], 2 * top, 2 * left, full_w, tile_size[1])
        restored = owner.decoder_final_l(unpool(decoded, tile_indices, tile_size))
        local[..., 2 * row0 : 2 * row1, 2 * col0 : 2 * col1] = restored[
            ..., 2 * (row0 - top) : 2 * (row1 - top), 2 * (col0 - left) : 2 * (col1 - left)
        ]
    return local


def _sbfi(block: nn.Module, local_feature: Tensor, pooled: dict[int, Tensor]) -> Tensor:
    """`SBFI.forward` with the shallow feature's pooling shared between the three blocks.

    A kernel-2 max-pool with stride s equals the stride-2 pool sampled every s/2 cells, so one
    pass over the full-resolution feature serves sBFI 0, 1 and 2 (same values, bit for bit).
    """
    shallow = block.transform2(pooled[block.maxpool.stride])
    fused = torch.cat([block.transform1(local_feature), shallow], dim=1)
    return block.relu(block.bn1(block.conv1(fused))) + local_feature


def _shared_pools(shallow: Tensor) -> dict[int, Tensor]:
    """Kernel-2 max-pools of `shallow` with strides 2, 4 and 8, from one stride-2 pass.

    Traced for ONNX, the subsampling is a kernel-1 MaxPool (same values): onnxruntime runs
    pools in its blocked NCHWc layout, but strided slices in plain NCHW, with layout reorders
    around them.
    """
    base = F.max_pool2d(shallow, kernel_size=2, stride=2)
    if torch.jit.is_tracing():
        return {2: base, 4: F.max_pool2d(base, 1, stride=2), 8: F.max_pool2d(base, 1, stride=4)}
    return {2: base, 4: base[..., ::2, ::2], 8: base[..., ::4, ::4]}


def fast_decode(
    owner: nn.Module,
    encoded: EncoderOutput,
    outputs: frozenset[str],
    unpool: Any,
    region: Tensor | None = None,
) -> P3MOutput:
    """The P3M-Net decoder data flow (`p3m.models.p3mnet.decode`) computing only `outputs`.

    With `region` (H x W bool), `local` is computed at full resolution only on the tiles that
    touch it (levels 4..1 still run on the whole image, so the values there equal the full
    computation) and is 0 elsewhere.
    """
    top, features, indices = encoded.top, encoded.features, encoded.indices
    want_logits = bool(outputs & {"global_logits", "fusion"})
    want_local = bool(outputs & {"local", "fusion"})
    # How far down the global branch must go: dBFI k feeds stage k's input and side k.
    need_g2 = want_local or want_logits or bool(outputs & {"side1", "side0"})
    need_g1 = want_local or want_logits or "side0" in outputs
    need_refined0 = want_logits or "side0" in outputs

    sides: dict[str, Tensor | None] = {"side2": None, "side1": None, "side0": None}
    g4 = owner.decoder4_g(top)
    g3 = owner.decoder3_g(g4)
    g2 = g1 = global_logits = None
    if need_g2 or "side2" in outputs:
        g3_refined, sides["side2"] = _dbfi(owner.dbfi_2, g3, top, "side2" in outputs)
        if need_g2:
            g2 = owner.decoder2_g(g3_refined)
            if need_g1 or "side1" in outputs:
                g2_refined, sides["side1"] = _dbfi(owner.dbfi_1, g2, top, "side1" in outputs)
                if need_g1:
                    g1 = owner.decoder1_g(g2_refined)
                    if need_refined0:
                        g1_refined, sides["side0"] = _dbfi(owner.dbfi_0, g1, top, "side0" in outputs)
                        if want_logits:
                            global_logits = owner.decoder0_g(g1_refined)
                            final_g = getattr(owner, "decoder_final_g", None)
                            if final_g is not None:
                                global_logits = final_g(global_logits)

    local = None
    if want_local and region is not None and not bool(region.any()):
        local = features[0].new_zeros(features[0].shape[0], 1, *features[0].shape[-2:])
    elif want_local:

        def up(x: Tensor, level: int) -> Tensor:
            return unpool(x, indices[level], tuple(features[level].shape[-2:]))

        shallow = features[0]
        pooled = _shared_pools(shallow)
        l4 = up(owner.decoder4_l(top), 4)
        t3 = owner.tfi_3(g4, l4, features[4])
        l3 = up(owner.decoder3_l(t3), 3)
        s2 = _sbfi(owner.sbfi_2, owner.tfi_2(g3, l3, features[3]), pooled)
        l2 = up(owner.decoder2_l(s2), 2)
        s1 = _sbfi(owner.sbfi_1, owner.tfi_1(g2, l2, features[2]), pooled)
        l1 = up(owner.decoder1_l(s1), 1)
        if region is None:
            s0 = _sbfi(owner.sbfi_0, owner.tfi_0(g1, l1, features[1]), pooled)
            l0 = up(owner.decoder0_l(s0), 0)
            local = owner.decoder_final_l(l0)  # a FusedConv2d with the sigmoid folded in
        else:
            local = _local_level0_in_region(
                owner, g1, l1, features[1], shallow, pooled[2], indices[0], region, unpool
            )

    fusion = fuse_global_local(global_logits, local) if "fusion" in outputs else None
    return P3MOutput(
        global_logits if "global_logits" in outputs else None,
        local if "local" in outputs else None,
        fusion,
        sides["side2"],
        sides["side1"],
        sides["side0"],
    )


# --------------------------------------------------------------------------- the fast model


# ResNet-34 pools whose exported values come from a value-only MaxPool beside the index one
# (`FastMaxPool3x3.blocked_values`). mp1 feeds layer1's identity shortcut: from the index pool
# (plain NCHW), onnxruntime could not fuse layer1's residual adds into its NCHWc convolutions.
BLOCKED_POOLS = frozenset({1})


def _pool_kind(model: nn.Module) -> str:
    """How the encoder pools: 'overlapping' (r34's 3x3/s2), 'disjoint' (2x2/s2) or 'unknown'."""
    from p3m.models.backbones.swin import SwinTEncoder
    from p3m.models.backbones.vitae import ViTAESEncoder
    from p3m.models.p3mnet_r34 import P3MNetR34

    if isinstance(model, P3MNetR34):
        return "overlapping"
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, (SwinTEncoder, ViTAESEncoder)):
        return "disjoint"
    return "unknown"


class FastP3MNet(nn.Module):
    """A P3M-Net rewritten for inference by `optimize_for_inference` (see the module docstring).

    `forward(x, outputs=None)`: x is N x 3 x H x W ImageNet-normalised (the exact model's input);
    returns `P3MOutput` whose fields not in `outputs` (default: all six) are None. Runs under
    `torch.inference_mode()`. Stateless during forward, so one instance may serve several
    threads. Not a checkpoint: its state_dict holds folded weights.
    """

    supports_output_selection = True

    def __init__(self, model: nn.Module, channels_last: bool = True, winograd: bool = True) -> None:
        super().__init__()
        self.variant = str(getattr(model, "variant", type(model).__name__))
        self.min_size = int(getattr(model, "min_size", 32))
        self.size_multiple = int(getattr(model, "size_multiple", 32))
        self.channels_last = channels_last
        self.pool_kind = _pool_kind(model)
        from p3m.models.p3mnet_r34 import P3MNetR34

        self._flat_layout = isinstance(model, P3MNetR34)  # encode() / decoder modules on the model
        owner = model if self._flat_layout else model.decoder
        # With every integration block in place, `fast_decode` runs the decoder and the last
        # local convolution takes the official sigmoid with it; otherwise (ablation variants)
        # the model's own `decode` does, on the rewritten modules.
        self.standard_decoder = _standard_decoder(owner) and _fusable_conv(
            getattr(owner, "decoder_final_l", None)
        )
        if self.standard_decoder:
            owner.decoder_final_l = FusedConv2d(owner.decoder_final_l, None, "sigmoid", channels_last)
        _rewrite(model, channels_last, set())
        if self._flat_layout:
            # Index max-pools that export as plain MaxPool + window codes (see FastMaxPool3x3).
            for level in range(5):
                setattr(model, f"mp{level}", FastMaxPool3x3(blocked_values=level in BLOCKED_POOLS))
        self.net = model
        self.winograd_layers = 0
        if winograd and channels_last:
            self.winograd_layers = sum(
                conv.enable_winograd() for conv in model.modules() if isinstance(conv, FusedConv2d)
            )
        # `forward(..., region=...)` restricts the full-resolution local decoding to a region.
        self.supports_region = self.standard_decoder

    @property
    def _decoder_owner(self) -> nn.Module:
        return self.net if self._flat_layout else self.net.decoder

    def _encode(self, x: Tensor) -> EncoderOutput:
        return self.net.encode(x) if self._flat_layout else self.net.encoder(x)

    def check_input(self, x: Tensor) -> None:
        check = getattr(self.net, "check_input", None)
        if check is not None:
            check(x)
        else:
            check_input(x, self.variant, self.min_size, self.size_multiple)

    def _unpool(self, values: Tensor, indices: Tensor, size: tuple[int, int]) -> Tensor:
        if self.pool_kind == "overlapping":
            if torch.jit.is_tracing() and getattr(getattr(self.net, "mp0", None), "onnxruntime_ops", False):
                return onnx_unpool3x3(values, indices, size)
            return unpool_settled(values, indices, size)
        if self.pool_kind == "disjoint":
            return unpool2x2(values, indices, size)
        return max_unpool2d_last_wins(values, indices, size)

    def forward(
        self, x: Tensor, outputs: Iterable[str] | None = None, region: Tensor | None = None
    ) -> P3MOutput:
        """Outputs named in `outputs` (default all), the others None.

        `region` (H x W bool tensor or array, same for every batch item): compute `local` only
        where it is needed. It then equals the full computation on the region (and a margin)
        and is 0 elsewhere; `fusion` cannot be asked for with a region.
        """
        wanted = parse_outputs(outputs)
        self.check_input(x)
        if region is not None:
            region = torch.as_tensor(region, dtype=torch.bool, device=x.device)
            if tuple(region.shape) != tuple(x.shape[-2:]):
                raise ValueError(
                    f"region must be H x W = {tuple(x.shape[-2:])}, got {tuple(region.shape)}"
                )
            if "fusion" in wanted:
                raise ValueError("fusion needs local everywhere; do not pass a region with it")
        with torch.inference_mode(mode=not torch.jit.is_tracing()):
            result = self.decode(self.encode(x), wanted, region)
            return P3MOutput(*(None if t is None else t.contiguous() for t in result))

    def encode(self, x: Tensor) -> EncoderOutput:
        """The encoder pass alone (no input checks): features in the fast memory format."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._encode(x)

    def decode(
        self,
        encoded: EncoderOutput,
        outputs: Iterable[str] | None = None,
        region: Tensor | None = None,
    ) -> P3MOutput:
        """The decoder pass alone on `encoded` (from `encode`, or any `EncoderOutput`)."""
        wanted = parse_outputs(outputs)
        if self.standard_decoder:
            return fast_decode(self._decoder_owner, encoded, wanted, self._unpool, region)
        # An ablation variant (some integration blocks absent or replaced): the model's own
        # data flow, on the rewritten modules, every output computed.
        result = decode(self._decoder_owner, encoded)
        return P3MOutput(
            *(value if name in wanted else None for name, value in zip(ALL_OUTPUTS, result, strict=True))
        )


def can_optimize(model: nn.Module) -> bool:
    """True for the P3M-Net structures `optimize_for_inference` knows (every registered variant:
    the ResNet-34 model, and `P3MNet` with its encoder / decoder pair)."""
    from p3m.models.p3mnet import P3MNet
    from p3m.models.p3mnet_r34 import P3MNetR34

    if isinstance(model, FastP3MNet):
        return True
    if isinstance(model, P3MNetR34):
        return True
    return isinstance(model, P3MNet) and all(
        hasattr(getattr(model, "decoder", None), name) for name in ("decoder4_g", "decoder_final_l")
    )


def optimize_for_inference(
    model: nn.Module,
    exact: bool = False,
    *,
    channels_last: bool = True,
    inplace: bool = False,
    winograd: bool = True,
) -> nn.Module:
    """The fast inference form of a P3M-Net (any registered variant); see the module docstring.

    `exact=True` returns `model` itself (in eval mode): the reference arithmetic. Otherwise a
    `FastP3MNet` built from a copy of `model` (or from `model` itself with `inplace=True`, which
    saves memory but leaves `model` rewritten). `channels_last=False` keeps NCHW activations
    (slower on CPU; for devices where NHWC does not pay). `winograd=False` keeps every 3 x 3
    convolution direct (Winograd, `p3m.models.winograd`, is used with channels-last only, on
    the wide layers where it pays). The model must be in eval mode.
    Raises ValueError for a model in training mode or one that is not a P3M-Net.
    """
    if isinstance(model, FastP3MNet):
        return model
    if model.training:
        raise ValueError("optimize_for_inference needs a model in eval mode; call model.eval() first")
    if exact:
        return model
    if not can_optimize(model):
        raise ValueError(
            f"optimize_for_inference takes a P3M-Net model (a registered variant), got "
            f"{type(model).__name__}"
        )
    target = model if inplace else copy.deepcopy(model)
    for parameter in target.parameters():
        parameter.requires_grad_(False)
    return FastP3MNet(target, channels_last=channels_last, winograd=winograd).eval()
