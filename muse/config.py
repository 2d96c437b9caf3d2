"""Model sizes as frozen dataclasses, with presets.

The field names follow the diffusers configs of the aMUSEd checkpoints
(`UVit2DModel`, `VQModel`), so a `config.json` from a checkpoint folder maps onto
them one to one. The `tiny` presets are the test configuration: every optional
branch of the architecture is switched on (hidden width differs from the block
width so the kv mapper exists; 2x2 down/up sampling around the transformer).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _from_dict(cls, values: dict[str, Any]):
    """Builds a dataclass from a dict, ignoring keys the dataclass does not know."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key in names:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes of the U-ViT token transformer (diffusers `UVit2DModel`)."""

    # Global.
    hidden_size: int = 1024
    use_bias: bool = False
    # Conditioning: pooled text (cond_embed_dim) + 5 micro-conditions.
    cond_embed_dim: int = 768
    micro_cond_encode_dim: int = 256
    micro_cond_embed_dim: int = 1280
    encoder_hidden_size: int = 768
    # Tokens: codebook ids, then the mask token at vocab_size - 1.
    vocab_size: int = 8256
    codebook_size: int = 8192
    # Convolutional stages around the transformer.
    in_channels: int = 768
    block_out_channels: int = 768
    num_res_blocks: int = 3
    downsample: bool = False
    upsample: bool = False
    block_num_heads: int = 12
    # Transformer layers.
    num_hidden_layers: int = 22
    num_attention_heads: int = 16
    intermediate_size: int = 2816
    # A learned embedding of each grid position, added before the transformer layers. Not
    # in aMUSEd, whose only position signal is its depthwise convolutions: from a fully
    # masked grid those tell apart only the cells near the border, so every interior cell
    # gets the same first prediction (the embedded zoo's small grid needs it).
    position_embedding: bool = False
    # Norms.
    layer_norm_eps: float = 1e-6
    ln_elementwise_affine: bool = True
    # Latent grid side (tokens per row).
    sample_size: int = 16

    @property
    def mask_token_id(self) -> int:
        """Id of the mask token (the last entry of the embedding table)."""
        return self.vocab_size - 1

    @property
    def layer_grid_cells(self) -> int:
        """Cells of the grid the transformer layers see (the token grid, halved by `downsample`)."""
        side = self.sample_size // 2 if self.downsample else self.sample_size
        return side * side

    @property
    def num_micro_conds(self) -> int:
        """Number of micro-conditioning scalars: width, height, crop top, crop left, aesthetic."""
        return 5

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransformerConfig:
        """Builds the config from a diffusers `transformer/config.json` dict."""
        return _from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict (diffusers field names)."""
        return dataclasses.asdict(self)

    def diffusers_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the equivalent diffusers `UVit2DModel`.

        That model has no position embedding: with `position_embedding`, add ours to it
        with `bench.fixtures.add_position_embedding`.
        """
        values = self.to_dict()
        del values["position_embedding"]
        return values

    @classmethod
    def tiny(cls) -> TransformerConfig:
        """Test preset: every branch on, hidden (32) != block width (16)."""
        return cls(
            hidden_size=32,
            cond_embed_dim=16,
            micro_cond_encode_dim=4,
            micro_cond_embed_dim=20,
            encoder_hidden_size=24,
            vocab_size=40,
            codebook_size=32,
            in_channels=12,
            block_out_channels=16,
            num_res_blocks=2,
            downsample=True,
            upsample=True,
            block_num_heads=2,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=48,
            sample_size=8,
        )

    @classmethod
    def amused_256(cls) -> TransformerConfig:
        """AMUSEd 256: 16x16 latent grid, no down/up sampling."""
        return cls(sample_size=16)

    @classmethod
    def amused_512(cls) -> TransformerConfig:
        """AMUSEd 512: 32x32 latent grid, 2x2 down/up sampling around the transformer."""
        return cls(sample_size=32, downsample=True, upsample=True)


@dataclass(frozen=True)
class VQConfig:
    """Sizes of the VQ-GAN tokenizer (diffusers `VQModel`)."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 256, 512, 768)
    layers_per_block: int = 2
    latent_channels: int = 64
    num_vq_embeddings: int = 8192
    vq_embed_dim: int | None = None
    norm_num_groups: int = 32
    sample_size: int = 32
    mid_block_add_attention: bool = False

    @property
    def embed_dim(self) -> int:
        """Width of a codebook vector."""
        return self.vq_embed_dim or self.latent_channels

    @property
    def downscale_factor(self) -> int:
        """Pixels per token side: 2 ** (number of stride-2 downsamplers)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VQConfig:
        """Builds the config from a diffusers `vqvae/config.json` dict."""
        return _from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict (diffusers field names)."""
        values = dataclasses.asdict(self)
        values["block_out_channels"] = list(self.block_out_channels)
        return values

    def diffusers_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the equivalent diffusers `VQModel` (aMUSEd layout)."""
        levels = len(self.block_out_channels)
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "down_block_types": ["DownEncoderBlock2D"] * levels,
            "up_block_types": ["UpDecoderBlock2D"] * levels,
            "block_out_channels": list(self.block_out_channels),
            "layers_per_block": self.layers_per_block,
            "latent_channels": self.latent_channels,
            "num_vq_embeddings": self.num_vq_embeddings,
            "norm_num_groups": self.norm_num_groups,
            "vq_embed_dim": self.vq_embed_dim,
            "sample_size": self.sample_size,
            "mid_block_add_attention": False,
            "lookup_from_codebook": True,
            "force_upcast": True,
        }

    @classmethod
    def tiny(cls) -> VQConfig:
        """Test preset: two levels ([8, 16] channels), 4-wide latents, 32 codes."""
        return cls(
            block_out_channels=(8, 16),
            layers_per_block=1,
            latent_channels=4,
            num_vq_embeddings=32,
            norm_num_groups=4,
            sample_size=16,
        )

    @classmethod
    def amused(cls) -> VQConfig:
        """The VQ-GAN shared by aMUSEd 256 and 512 (factor 16, 8192 codes of width 64)."""
        return cls()


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding defaults stored with a model (diffusers `AmusedScheduler` + pipeline)."""

    mask_token_id: int = 8255
    masking_schedule: str = "cosine"
    # Re-masking rule: "amused" (diffusers' scheduler) or "maskgit" (the paper's sampler).
    decoding: str = "amused"
    num_steps: int = 12
    guidance_scale: float = 10.0
    # aMUSEd: (start, end) annealed linearly; MaskGIT: a scalar choice temperature.
    temperature: float | tuple[float, float] = (2.0, 0.0)
    # Softmax temperature of the token draw (1: the references' rule; below 1 sharper).
    token_temperature: float = 1.0
    aesthetic_score: float = 6.0
    crop_coords: tuple[int, int] = (0, 0)
    # StyleDrop guidance (Eq. 4) lambda_B for adapted sampling on this model; None: the
    # paper's 5. With an adapter that changes nothing, lambda_B = guidance_scale - 1 gives
    # the logits of plain sampling at guidance_scale.
    styledrop_lambda_b: float | None = None
    # The fraction of decoding steps in which adapted sampling on this model draws the
    # content prompt alone (no descriptor, no adapter) before StyleDrop guidance takes over;
    # 0: the paper's rule, the adapter throughout.
    styledrop_content_first: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SamplingConfig:
        """Builds the config from a dict (a diffusers scheduler config works too)."""
        return _from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict."""
        values = dataclasses.asdict(self)
        if isinstance(self.temperature, tuple):
            values["temperature"] = list(self.temperature)
        values["crop_coords"] = list(self.crop_coords)
        return values


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a converted model folder."""

    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    vq: VQConfig = field(default_factory=VQConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # Free-form provenance: where the weights came from.
    source: str = ""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`."""
        return cls(
            transformer=TransformerConfig.from_dict(values["transformer"]),
            vq=VQConfig.from_dict(values["vq"]),
            sampling=SamplingConfig.from_dict(values.get("sampling", {})),
            source=values.get("source", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict."""
        return {
            "transformer": self.transformer.to_dict(),
            "vq": self.vq.to_dict(),
            "sampling": self.sampling.to_dict(),
            "source": self.source,
        }
