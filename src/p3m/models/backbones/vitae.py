"""ViTAE-S encoder of P3M-Net ("Rethinking Portrait Matting with Privacy Preserving", Ma, Li et al.).

ViTAE-S (Xu et al., NeurIPS 2021) without its reduction cells, in the "noRC max-pooling" form
the P3M-Net authors use: a convolutional stem with two index-returning max-pools, then four
stages of normal cells (global attention in parallel with a grouped-convolution branch, PCM),
separated by "LayerNorm -> 2x2 index max-pool -> Linear C->2C" merges. Stage 1 uses a
Performer (linear attention with 32 random features); stages 2-4 full softmax attention.
Specification: SPEC-vitae.md of the reference data (sections 2-3).

Performer random features. The official model draws the stage-1 random feature matrices from
the unseeded global RNG at construction; they are in no checkpoint, so official results vary
from process to process. Here each matrix is a non-persistent buffer `w` (1 x 32 x 64) on
`layers.0.NC.0.attn` and `layers.0.NC.1.attn`, drawn with the official recipe (orthogonal
rows of norm sqrt(32)) from a private generator with the fixed seed `PERFORMER_SEED`: outputs
are reproducible, the global RNG is not touched, and the 808-key official checkpoint still
loads strictly. To use other features, copy them into those buffers.

Example::

    encoder = ViTAESEncoder()
    features = encoder(torch.randn(1, 3, 512, 512))   # EncoderOutput(top, features, indices)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m.models.backbones.tokens import ConvStem, Mlp, PoolingMerge, grid_to_tokens, tokens_to_grid
from p3m.models.p3mnet import FULL_INTEGRATION, EncoderOutput, Integration, P3MDecoder, P3MNet

# Seed of the private generator that draws the stage-1 Performer random features.
PERFORMER_SEED = 0
# Largest attention matrix (batch x heads x tokens^2 elements) computed explicitly, as the
# official code does; larger ones (inputs above ~512x512) go through the fused SDPA kernel.
ATTENTION_EXACT_ELEMENTS = 1 << 25
# Query blocks of the explicit attention in traced (ONNX-exported) graphs.
EXPORT_QUERY_BLOCKS = 16


def attend_in_query_blocks(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """softmax(q k^T * scale) v, computed for `EXPORT_QUERY_BLOCKS` blocks of queries at a time
    (B x heads x tokens x head_dim each): the ONNX export's attention, with peak memory a
    fraction of the full attention matrix; the same arithmetic per query as the whole product."""
    return torch.cat(
        [
            ((block @ k.transpose(-2, -1)) * scale).softmax(dim=-1) @ v
            for block in q.tensor_split(EXPORT_QUERY_BLOCKS, dim=2)
        ],
        dim=2,
    )


def performer_random_features(
    num_features: int, dim: int, generator: torch.Generator, heads: int = 1
) -> Tensor:
    """heads x m x d matrix with orthogonal rows of norm sqrt(m), drawn from `generator` only.

    The official recipe: a normal draw, then per head a fresh normal m x d matrix
    orthonormalised by QR of its transpose (columns sign-fixed by sign(diag R)), times sqrt(m).
    """
    features = torch.randn(heads, num_features, dim, generator=generator)
    for head in range(heads):
        fresh = torch.randn(num_features, dim, generator=generator)
        q, r = torch.linalg.qr(fresh.t())
        features[head] = (q * torch.sign(torch.diagonal(r))).t()
    return features * math.sqrt(num_features)


class PerformerAttention(nn.Module):
    """Single-head Performer attention (positive random features, no scaling, kqv order k|q|v)."""

    epsilon = 1e-8

    def __init__(self, dim: int, generator: torch.Generator, kernel_ratio: float = 0.5) -> None:
        super().__init__()
        self.dim = dim
        self.num_features = int(dim * kernel_ratio)
        self.kqv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # Present in official checkpoints but never used in forward.
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.register_buffer(
            "w", performer_random_features(self.num_features, dim, generator), persistent=False
        )

    def _feature_map(self, u: Tensor) -> Tensor:
        """phi(u) = exp(W u - |u|^2 / 2) / sqrt(m) for every token of B x N x d."""
        half_norm = (u * u).sum(dim=-1, keepdim=True) / 2
        projected = torch.einsum("btd,md->btm", u, self.w[0].to(u.dtype))
        return torch.exp(projected - half_norm) / math.sqrt(self.num_features)

    def forward(self, x: Tensor) -> Tensor:
        kqv = self.kqv(x)
        # exp() of the random features overflows or underflows in half precision, so the
        # linear attention runs in at least float32 (as the official code does), even under AMP.
        dtype = torch.promote_types(kqv.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            k, q, v = kqv.to(dtype).split(self.dim, dim=-1)
            k_features, q_features = self._feature_map(k), self._feature_map(q)
            summed = k_features.sum(dim=1)
            denominator = torch.einsum("btm,bm->bt", q_features, summed).unsqueeze(-1)
            context = torch.einsum("btd,btm->bdm", v, k_features)
            y = torch.einsum("btm,bdm->btd", q_features, context) / (denominator + self.epsilon)
        return self.proj(y.to(kqv.dtype))


class GlobalAttention(nn.Module):
    """Multi-head softmax self-attention over all tokens (qkv with bias, head dim C/heads)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if torch.jit.is_tracing():
            # ONNX export: one graph serves every size and ONNX has no fused attention, so
            # attend block of queries by block of queries; peak memory is 1/EXPORT_QUERY_BLOCKS
            # of the full attention matrix (which takes 5 GB at ~1.7 MP inputs).
            out = attend_in_query_blocks(q, k, v, self.scale)
        elif batch * self.num_heads * tokens * tokens <= ATTENTION_EXACT_ELEMENTS:
            # The official computation, bit for bit (the references are matched exactly).
            attn = (q @ k.transpose(-2, -1)) * self.scale
            out = attn.softmax(dim=-1) @ v
        else:
            # Stage 2 attends over H/8 x W/8 tokens, so the attention matrix grows with the
            # square of the image area (2 GB at 1024x1024): use the fused kernel, whose memory
            # is linear in the token count and which is ~5x faster; differences are float noise.
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, channels))


class NormalCell(nn.Module):
    """x + Attn(LN1 x) + PCM(x), then + MLP(LN2 .); PCM = grouped 3x3 convs with BN and SiLU."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        groups: int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn: nn.Module = (
            GlobalAttention(dim, num_heads)
            if generator is None
            else PerformerAttention(dim, generator)
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.PCM = nn.Sequential(
            nn.Conv2d(dim, 4 * dim, 3, padding=1, groups=groups),
            nn.BatchNorm2d(4 * dim),
            nn.SiLU(),
            nn.Conv2d(4 * dim, dim, 3, padding=1, groups=groups),
            nn.BatchNorm2d(dim),
            nn.SiLU(),
            nn.Conv2d(dim, dim, 3, padding=1, groups=groups),
            nn.SiLU(),
        )

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        # The convolution branch reads the un-normalised tokens, in parallel with attention.
        convolved = grid_to_tokens(self.PCM(tokens_to_grid(x, height, width)))
        x = x + self.attn(self.norm1(x))
        x = x + convolved
        return x + self.mlp(self.norm2(x))


class ViTAEStage(nn.Module):
    """A reduction slot `RC` (stem or pooling merge) and the normal cells `NC`."""

    def __init__(self, reduction: nn.Module, cells: list[NormalCell]) -> None:
        super().__init__()
        self.RC = reduction
        self.NC = nn.ModuleList(cells)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """Runs the normal cells on N x (h*w) x C tokens (the reduction is called separately)."""
        for cell in self.NC:
            x = cell(x, height, width)
        return x


class ViTAESEncoder(nn.Module):
    """ViTAE-S encoder of P3M-Net: returns `EncoderOutput(top, features, indices)`.

    top: 512 x H/32 x W/32 tokens of stage 4 (no final norm); features: the stem conv outputs
    (32 x H, 64 x H/2) and the LayerNorm'd outputs of stages 1-3 (64 x H/4, 128 x H/8,
    256 x H/16); indices: the 2x2 max-pool indices of each feature. `head` (the ImageNet
    classifier) is unused but kept so that official checkpoints load strictly.
    """

    token_dims = (64, 128, 256, 512)
    depths = (2, 2, 12, 2)
    num_heads = (1, 2, 4, 8)
    pcm_groups = (1, 32, 64, 128)

    def __init__(self, num_classes: int = 1000, performer_seed: int = PERFORMER_SEED) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(performer_seed)
        stages = []
        for stage, (dim, depth, heads, groups) in enumerate(
            zip(self.token_dims, self.depths, self.num_heads, self.pcm_groups, strict=True)
        ):
            reduction = ConvStem(dim, final_relu=False) if stage == 0 else PoolingMerge(dim // 2, eps=1e-5)
            cells = [
                NormalCell(dim, heads, groups, generator if stage == 0 else None)
                for _ in range(depth)
            ]
            stages.append(ViTAEStage(reduction, cells))
        self.layers = nn.ModuleList(stages)
        self.head = nn.Linear(self.token_dims[-1], num_classes)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of features[0..4] and of top."""
        return (32, 64, 64, 128, 256, 512)

    def forward(self, x: Tensor) -> EncoderOutput:
        tokens, height, width, features, indices = self.layers[0].RC(x)
        tokens = self.layers[0](tokens, height, width)
        for stage in self.layers[1:]:
            tokens, feature, index = stage.RC(tokens, height, width)
            features.append(feature)
            indices.append(index)
            height, width = height // 2, width // 2
            tokens = stage(tokens, height, width)
        top = tokens_to_grid(tokens, height, width)
        return EncoderOutput(top, tuple(features), tuple(indices))


class P3MNetViTAES(P3MNet):
    """P3M-Net with the ViTAE-S encoder (27,463,052 parameters; SPEC-vitae.md).

    The two stage-1 Performer blocks hold their random features as non-persistent buffers
    `encoder.layers.0.NC.0.attn.w` and `encoder.layers.0.NC.1.attn.w` (1 x 32 x 64). They are
    not in the state_dict (nor in the official checkpoint, whose model drew them from the
    unseeded global RNG, so official outputs vary between processes); p3m draws them with the
    official recipe from a private generator seeded with `performer_seed`, so results are
    deterministic and the global RNG is untouched. Other values can be copied into the buffers.
    Takes every H and W that are multiples of 32 (minimum 32). `integration` leaves out
    integration modules for the Table 7 ablations (`basic-vitae-s`, `p3mnet-vitae-s-tfi`, ...;
    see `Integration`).

    Example: ``out = P3MNetViTAES().eval()(x)``, x: N x 3 x H x W ImageNet-normalised.
    """

    def __init__(
        self, performer_seed: int = PERFORMER_SEED, integration: Integration = FULL_INTEGRATION
    ) -> None:
        super().__init__(
            ViTAESEncoder(performer_seed=performer_seed),
            P3MDecoder(512, (256, 128, 64, 64), 32, 32, integration=integration),
            variant=integration.variant_name("vitae-s"),
            min_size=32,
            fcp_layers=(
                "encoder.layers.0.RC.act1",
                "encoder.layers.0.RC.act2",
                "encoder.layers.1.RC.skip",
                "encoder.layers.2.RC.skip",
                "encoder.layers.3.RC.skip",
            ),
        )

    @property
    def performer_features(self) -> tuple[Tensor, Tensor]:
        """The random-feature buffers `w` of the two stage-1 Performer blocks."""
        return tuple(cell.attn.w for cell in self.encoder.layers[0].NC)  # type: ignore[return-value]


def _register() -> None:
    from p3m.models.registry import P3M_NET_SOURCE_PAGE, CheckpointSpec, ModelSpec, register_model

    register_model(
        ModelSpec(
            name="p3mnet-vitae-s",
            constructor=P3MNetViTAES,
            description=(
                "P3M-Net with the ViTAE-S encoder (IJCV 2023), 27.46M parameters; the authors' "
                "best published model"
            ),
            min_size=32,
            size_multiple=32,
            checkpoints=(
                CheckpointSpec(
                    file_name="P3M-Net_ViTAE-S_trained_on_P3M-10k.pth",
                    url="https://drive.google.com/uc?export=download&id=1QbSjPA_Mxs7rITp_a9OJiPeFRDwxemqK",
                    source_page=P3M_NET_SOURCE_PAGE,
                    sha256=None,
                    note=(
                        "Official P3M-Net(ViTAE-S) trained on P3M-10k (README of the source page); "
                        "{'state_dict': ...} with the 808 keys of this model. No checksum is published. "
                        "Mirror: https://pan.baidu.com/s/19FuiR1RwamqvxfhdXDL1fg (password hxxy). The "
                        "Performer random features are not in it; p3m uses its fixed-seed ones."
                    ),
                ),
            ),
            num_parameters=27_463_052,
        )
    )


_register()
