"""The P3M-Net multi-task framework, independent of the backbone.

A shared encoder feeds two decoders: a global (segmentation) decoder that predicts a 3-class
trimap and, through dBFI, three deep-supervision side outputs; and a local (matting) decoder
that predicts alpha in the transition region, restored to full resolution by max-unpooling
with the encoder's pooling indices and guided by TFI and sBFI. Fusion takes the local alpha in
the transition class, 1 in the foreground and 0 in the background (Ma, Li et al., "Rethinking
Portrait Matting with Privacy Preserving", IJCV 2023; Li et al., ACM MM 2021).

A backbone plugs in by returning an `EncoderOutput`; `P3MDecoder` and `P3MNet` give the
Swin-T / ViTAE-S layout (`encoder.*`, `decoder.*`), while the ResNet-34 model keeps its
official flat layout but decodes with the same `decode` function.

`Integration` says which of the three integration modules a model has; the ablations of the
paper's Table 7 (`basic-r34`, `p3mnet-r34-tfi`, ...) leave some out (see `Integration`).

Example::

    model = P3MNet(encoder, P3MDecoder(768, (384, 192, 96, 96), 48, 48), variant="p3mnet-swin-t")
    out = model(x)              # x: N x 3 x H x W, ImageNet-normalised, H and W multiples of 32
    alpha = out.fusion          # N x 1 x H x W in [0, 1]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from p3m.errors import InputSizeError
from p3m.models.blocks import DBFI, SBFI, TFI, conv3x3, decoder0_global_stage, decoder_stage
from p3m.models.ops import max_unpool2d_last_wins


class P3MOutput(NamedTuple):
    """The six outputs in the official order, all N x C x H x W float tensors at input resolution.

    global_logits: 3-class logits (background, transition, foreground), no softmax applied;
    local: sigmoid alpha for the transition region (1 channel); fusion: fused alpha in [0, 1];
    side2 / side1 / side0: 3-class logits of dbfi_2 / dbfi_1 / dbfi_0 (deep supervision).
    The side outputs are None for models without dBFI (the Table 7 ablations `basic-*`,
    `*-tfi`, `*-tfi-sbfi`: the side heads are part of dBFI) and in ONNX files exported
    without them.
    """

    global_logits: Tensor
    local: Tensor
    fusion: Tensor
    side2: Tensor | None
    side1: Tensor | None
    side0: Tensor | None


OUTPUT_NAMES: tuple[str, ...] = P3MOutput._fields
SIDE_OUTPUT_NAMES: tuple[str, ...] = ("side2", "side1", "side0")


@dataclass(frozen=True)
class Integration:
    """Which integration modules a P3M-Net has: TFI, sBFI, dBFI (IJCV paper section 3, Table 7).

    The full model has all three. Leaving a module out keeps every decoder width and passes on
    the feature the module would have consumed or refined, so only the module's own parameters
    go:

    * no TFI: each local decoder stage consumes the plain unpooled local-decoder feature (the
      TFI's `l` input, same width). The counts cannot tell this from another parameter-free
      merge (say, adding the encoder feature as a U-Net skip would); the paper presents TFI as
      what brings the global-decoder and encoder features into the matting decoder, so without
      it the matting decoder sees the encoder only through the shared encoder's pooling indices.
    * no sBFI: the TFI output (without TFI: the unpooled feature) goes on unchanged. sBFI adds
      its result to that feature (a residual), so leaving it out removes the fusion of the
      shallow encoder feature and nothing else.
    * no dBFI: the global decoder stage output goes on unchanged (dBFI is residual as well)
      and there are no side outputs (None), since the side heads `dbfi_k.conv2` are part of
      dBFI; training then drops the three deep-supervision terms of the loss.

    With these choices the ResNet-34 counts equal Table 7's: basic 37,666,860 (37.67M),
    +TFI 38,929,452 (38.93M), +TFI+sBFI 39,171,628 (39.17M), +TFI+dBFI 39,235,884 (39.24M),
    full 39,478,060 (39.48M). Keeping the side heads without dBFI would add 6,912 parameters
    and give 38.94M for +TFI and 39.18M for +TFI+sBFI, so the counts say that the ablations
    without dBFI have no side heads.
    """

    tfi: bool = True
    sbfi: bool = True
    dbfi: bool = True

    @property
    def is_full(self) -> bool:
        return self.tfi and self.sbfi and self.dbfi

    @property
    def modules(self) -> tuple[str, ...]:
        """Names of the modules present, in the paper's order: a subset of (tfi, sbfi, dbfi)."""
        return tuple(name for name in ("tfi", "sbfi", "dbfi") if getattr(self, name))

    def variant_name(self, backbone: str) -> str:
        """Registry name on `backbone` ("r34", "swin-t", "vitae-s"): p3mnet-r34 (full),
        basic-r34 (none), otherwise p3mnet-r34- plus the modules, e.g. p3mnet-r34-tfi-sbfi."""
        if self.is_full:
            return f"p3mnet-{backbone}"
        if not self.modules:
            return f"basic-{backbone}"
        return f"p3mnet-{backbone}-" + "-".join(self.modules)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The `P3MOutput` fields a model with these modules fills (the others are None)."""
        if self.dbfi:
            return OUTPUT_NAMES
        return tuple(name for name in OUTPUT_NAMES if name not in SIDE_OUTPUT_NAMES)


FULL_INTEGRATION = Integration()


class EncoderOutput(NamedTuple):
    """What a backbone hands to the decoder.

    `features` are the inputs of the five index-returning pools, shallowest first (level k at
    H / 2**k); `indices[k]` are the pooling indices produced from `features[k]`; `top` is the
    deepest feature at H / 32.
    """

    top: Tensor
    features: tuple[Tensor, Tensor, Tensor, Tensor, Tensor]
    indices: tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


def fuse_global_local(global_logits: Tensor, local: Tensor) -> Tensor:
    """Fused alpha: `local` where argmax(global) is transition (1), 1 where foreground (2), else 0.

    On exactly equal logits the lowest class index wins (torch.argmax returns the first maximum).
    """
    classes = global_logits.argmax(dim=1, keepdim=True)
    transition = (classes == 1).to(local.dtype)
    foreground = (classes == 2).to(local.dtype)
    return local * transition + foreground


def _dbfi(module: nn.Module | None, feature: Tensor, top: Tensor) -> tuple[Tensor, Tensor | None]:
    # Without dBFI the stage output goes on unchanged and there is no side output.
    return (feature, None) if module is None else module(feature, top)


def _tfi(module: nn.Module | None, global_: Tensor, local: Tensor, encoder: Tensor) -> Tensor:
    # Without TFI the local stage consumes its own unpooled feature.
    return local if module is None else module(global_, local, encoder)


def _sbfi(module: nn.Module | None, local: Tensor, shallow: Tensor) -> Tensor:
    # sBFI is residual: without it the feature goes on unchanged.
    return local if module is None else module(local, shallow)


def decode(decoder: nn.Module, encoded: EncoderOutput) -> P3MOutput:
    """Run the global and local decoders of `decoder` on `encoded` (the one P3M-Net data flow).

    `decoder` is any module with the official attribute names (decoder{4..0}_{g,l},
    decoder_final_l, tfi_{3..0}, sbfi_{2..0}, dbfi_{2..0}, optionally decoder_final_g);
    both `P3MDecoder` and the flat ResNet-34 model qualify. Integration modules set to None
    are left out as `Integration` describes (the Table 7 ablations).
    """
    top = encoded.top
    features = encoded.features
    indices = encoded.indices

    # Global branch. The TFIs are guided by the stage outputs g4..g1 taken before their dBFI.
    g4 = decoder.decoder4_g(top)
    g3 = decoder.decoder3_g(g4)
    g3_refined, side2 = _dbfi(decoder.dbfi_2, g3, top)
    g2 = decoder.decoder2_g(g3_refined)
    g2_refined, side1 = _dbfi(decoder.dbfi_1, g2, top)
    g1 = decoder.decoder1_g(g2_refined)
    g1_refined, side0 = _dbfi(decoder.dbfi_0, g1, top)
    global_logits = decoder.decoder0_g(g1_refined)
    final_g = getattr(decoder, "decoder_final_g", None)
    if final_g is not None:
        global_logits = final_g(global_logits)

    # Local branch: unpool level k with the indices of the pool over features[k].
    def unpool(x: Tensor, level: int) -> Tensor:
        return max_unpool2d_last_wins(x, indices[level], features[level].shape[-2:])

    shallow = features[0]
    l4 = unpool(decoder.decoder4_l(top), 4)
    t3 = _tfi(decoder.tfi_3, g4, l4, features[4])
    l3 = unpool(decoder.decoder3_l(t3), 3)
    s2 = _sbfi(decoder.sbfi_2, _tfi(decoder.tfi_2, g3, l3, features[3]), shallow)
    l2 = unpool(decoder.decoder2_l(s2), 2)
    s1 = _sbfi(decoder.sbfi_1, _tfi(decoder.tfi_1, g2, l2, features[2]), shallow)
    l1 = unpool(decoder.decoder1_l(s1), 1)
    s0 = _sbfi(decoder.sbfi_0, _tfi(decoder.tfi_0, g1, l1, features[1]), shallow)
    l0 = unpool(decoder.decoder0_l(s0), 0)
    local = torch.sigmoid(decoder.decoder_final_l(l0))

    fusion = fuse_global_local(global_logits, local)
    return P3MOutput(global_logits, local, fusion, side2, side1, side0)


def add_decoder_modules(
    owner: nn.Module,
    top_channels: int,
    widths: Sequence[int],
    last_width: int,
    shallow_channels: int,
    *,
    r34_layout: bool = False,
    integration: Integration = FULL_INTEGRATION,
) -> None:
    """Register the decoder modules on `owner` in the official order of the chosen layout.

    Swin/ViTAE layout: decoder4_g..decoder0_g, decoder_final_g, decoder4_l..decoder0_l,
    decoder_final_l, tfi_3..tfi_0, sbfi_2..sbfi_0, dbfi_2..dbfi_0; stages go in -> out.
    r34 layout: tfi, sbfi, dbfi first, then the decoders; stages go in -> in -> in -> out,
    decoder0_g emits the 3 logits itself and there is no decoder_final_g.
    Modules that `integration` leaves out are registered as None (the attribute exists and is
    None: no parameters, no state_dict keys), so the other keys keep their official names.
    """
    c1, c2, c3, c4 = widths
    stage_inputs = (top_channels, c1, c2, c3)
    stage_outputs = (c1, c2, c3, c4)

    def stage_widths(c_in: int, c_out: int) -> tuple[int, int, int, int]:
        return (c_in, c_in, c_in, c_out) if r34_layout else (c_in, c_out, c_out, c_out)

    def add_decoders() -> None:
        for branch, upsample in (("g", True), ("l", False)):
            for level, c_in, c_out in zip((4, 3, 2, 1), stage_inputs, stage_outputs, strict=True):
                owner.add_module(
                    f"decoder{level}_{branch}", decoder_stage(stage_widths(c_in, c_out), upsample)
                )
            if branch == "g":
                if r34_layout:
                    owner.add_module("decoder0_g", decoder0_global_stage((c4, c4, c4, 3)))
                else:
                    owner.add_module(
                        "decoder0_g",
                        decoder0_global_stage((c4, last_width, last_width, last_width)),
                    )
                    owner.add_module("decoder_final_g", conv3x3(last_width, 3))
            else:
                last = (c4, c4, c4) if r34_layout else (c4, last_width, last_width)
                owner.add_module("decoder0_l", decoder_stage(last, upsample=False))
                owner.add_module("decoder_final_l", conv3x3(last[-1], 1))

    def add_integration() -> None:
        for level, c in zip((3, 2, 1, 0), (c1, c2, c3, c4), strict=True):
            owner.add_module(f"tfi_{level}", TFI(c) if integration.tfi else None)
        for level, c, stride in zip((2, 1, 0), (c2, c3, c4), (8, 4, 2), strict=True):
            sbfi = SBFI(c, shallow_channels, stride) if integration.sbfi else None
            owner.add_module(f"sbfi_{level}", sbfi)
        for level, c, scale in zip((2, 1, 0), (c2, c3, c4), (4, 8, 16), strict=True):
            dbfi = DBFI(c, top_channels, scale, 32 // scale) if integration.dbfi else None
            owner.add_module(f"dbfi_{level}", dbfi)

    if r34_layout:
        add_integration()
        add_decoders()
    else:
        add_decoders()
        add_integration()


class P3MDecoder(nn.Module):
    """The P3M-Net decoder in the Swin-T / ViTAE-S layout (state_dict keys `decoder.*`).

    Widths: `top_channels` of the deepest feature, stage widths (C1, C2, C3, C4) of decoder
    levels 4..1, `last_width` of the full-resolution stage, `shallow_channels` of features[0].
    Swin-T: (768, (384, 192, 96, 96), 48, 48); ViTAE-S: (512, (256, 128, 64, 64), 32, 32).
    The encoder's features[4..1] must have C1, C2, C3, C4 channels and features[0]
    `last_width` (it is unpooled into the last stage and feeds every sBFI). `integration`
    leaves modules out for the Table 7 ablations (their attributes are then None).
    """

    def __init__(
        self,
        top_channels: int,
        widths: Sequence[int],
        last_width: int,
        shallow_channels: int,
        integration: Integration = FULL_INTEGRATION,
    ) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"expected 4 stage widths (C1, C2, C3, C4), got {tuple(widths)}")
        self.top_channels = int(top_channels)
        self.widths = tuple(int(c) for c in widths)
        self.last_width = int(last_width)
        self.shallow_channels = int(shallow_channels)
        self.integration = integration
        add_decoder_modules(
            self,
            self.top_channels,
            self.widths,
            self.last_width,
            self.shallow_channels,
            integration=integration,
        )

    def forward(self, encoded: EncoderOutput) -> P3MOutput:
        return decode(self, encoded)


def check_input(x: object, variant: str, min_size: int, size_multiple: int = 32) -> None:
    """Raise InputSizeError unless `x` is a float N x 3 x H x W tensor the model can take."""
    if not isinstance(x, Tensor):
        raise InputSizeError(f"{variant} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputSizeError(
            f"{variant} expects an N x 3 x H x W image tensor, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise InputSizeError(
            f"{variant} expects a float tensor normalised with the ImageNet mean/std, got {x.dtype}"
        )
    height, width = int(x.shape[2]), int(x.shape[3])
    if height % size_multiple or width % size_multiple or height < min_size or width < min_size:
        fit_h = max(min_size, height - height % size_multiple)
        fit_w = max(min_size, width - width % size_multiple)
        raise InputSizeError(
            f"{variant} cannot take a {height}x{width} input: height and width must be multiples of "
            f"{size_multiple} and at least {min_size} (resize or pad first, e.g. to {fit_h}x{fit_w})"
        )


class P3MModel(nn.Module):
    """Common interface of every P3M-Net variant (no modules of its own).

    Attributes: `variant` (registry name), `min_size`, `size_multiple`, `fcp_layers` (encoder
    submodule names after which feature-level copy-paste may be applied, shallowest first) and
    `backbone_prefix` (the submodule holding the ImageNet-pretrainable backbone) and
    `integration` (which of TFI, sBFI, dBFI the model has: all three except in the ablations).
    """

    variant: str = "p3mnet"
    min_size: int = 32
    size_multiple: int = 32
    fcp_layers: tuple[str, ...] = ()
    backbone_prefix: str = "encoder"
    integration: Integration = FULL_INTEGRATION

    @property
    def output_names(self) -> tuple[str, ...]:
        """The `P3MOutput` fields this model fills; the others are None (no dBFI: no sides)."""
        return self.integration.output_names

    def check_input(self, x: Tensor) -> None:
        check_input(x, self.variant, self.min_size, self.size_multiple)

    def backbone(self) -> nn.Module:
        return self.get_submodule(self.backbone_prefix)

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the backbone (each shared tensor once)."""
        return self.backbone().parameters()

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter that is not in the backbone (each shared tensor once)."""
        backbone_ids = {id(p) for p in self.encoder_parameters()}
        return (p for p in self.parameters() if id(p) not in backbone_ids)

    def num_parameters(self) -> int:
        """Distinct parameter count (shared tensors counted once, unused heads included)."""
        return sum(p.numel() for p in self.parameters())


class P3MNet(P3MModel):
    """P3M-Net with a pluggable encoder: `encoder(x) -> EncoderOutput`, `decoder(enc) -> P3MOutput`.

    The encoder may define `input_size_problem(height, width) -> str | None` for
    variant-specific size limits beyond "multiple of 32, at least `min_size`".
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        variant: str,
        min_size: int = 32,
        fcp_layers: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.variant = variant
        self.min_size = int(min_size)
        self.fcp_layers = tuple(fcp_layers)
        self.integration = getattr(decoder, "integration", FULL_INTEGRATION)

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        problem_of = getattr(self.encoder, "input_size_problem", None)
        if problem_of is not None:
            problem = problem_of(int(x.shape[2]), int(x.shape[3]))
            if problem:
                raise InputSizeError(
                    f"{self.variant} cannot take a {x.shape[2]}x{x.shape[3]} input: {problem}"
                )

    def forward(self, x: Tensor) -> P3MOutput:
        self.check_input(x)
        return self.decoder(self.encoder(x))


def predict(model: nn.Module, x: Tensor, device: str | torch.device | None = None) -> P3MOutput:
    """Run `model` on the normalised batch `x` under torch.inference_mode() on the model's device.

    `device` defaults to the device of the model's parameters; outputs stay on that device.
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    with torch.inference_mode():
        return model(x.to(device))
