"""The U-ViT token transformer of Muse / aMUSEd (a port of diffusers' `UVit2DModel`).

Data flow for a [B, H, W] grid of token ids (NHWC inside):

    ids -> embed (Embedding, RMSNorm, 1x1 conv)          [B, H, W, block]
        -> down stage ([2x2 down], N x (ConvNeXt, attention))
        -> flatten, RMSNorm, Linear                       [B, h*w, hidden]
        -> L transformer layers (adaptive norms, self-attention, cross-attention, GEGLU)
        -> RMSNorm, Linear, unflatten                     [B, h, w, block]
        -> up stage (N x (ConvNeXt, attention), [2x2 up])
        -> logits (1x1 conv, RMSNorm, 1x1 conv)           [B, H, W, codebook]

Attribute names mirror the PyTorch modules so checkpoints convert by name
(see `muse.weights`).

Adapters plug in without this file knowing their kind:

* every transformer layer has two slots, `adapter_attn` (after the cross-attention
  residual) and `adapter_ff` (after the feed-forward residual), each an `nnx.List` of
  modules mapping h [B, N, D] to a delta [B, N, D] that the layer adds (empty in the
  base model);
* `UVit2D.__call__` takes `adapter_gate` [B, K]: the weight of adapter k in row b, so one
  batched forward can run some rows with an adapter and others without (StyleDrop
  guidance) or with another adapter (style + subject). Every adapter, in a slot or
  inside another layer (LoRA on q/k/v), scales its own output by its column of the gate,
  read from `current_adapter_gate()` during the forward.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
from flax import nnx

from muse.config import TransformerConfig
from muse.layers import (
    AdaptiveNorm,
    Attention,
    Conv,
    Dense,
    Downsample2x2,
    FeedForward,
    GlobalResponseNorm,
    RMSNorm,
    Upsample2x2,
    exact_gelu,
    sinusoidal_embedding,
)
from muse.weights import identity

_ADAPTER_GATE: contextvars.ContextVar[jax.Array | None] = contextvars.ContextVar(
    "adapter_gate", default=None
)


def current_adapter_gate() -> jax.Array | None:
    """The [B, K] adapter gate of the forward pass in progress (None: every adapter fully on)."""
    return _ADAPTER_GATE.get()


@contextlib.contextmanager
def _adapter_gate_scope(gate: jax.Array | None):
    token = _ADAPTER_GATE.set(gate)
    try:
        yield
    finally:
        _ADAPTER_GATE.reset(token)


class ConvEmbed(nnx.Module):
    """Token ids -> embedding -> RMSNorm -> 1x1 conv to the block width."""

    def __init__(self, cfg: TransformerConfig, *, dtype, rngs: nnx.Rngs):
        self.dtype = dtype
        self.embeddings = nnx.Embed(cfg.vocab_size, cfg.in_channels, rngs=rngs)
        self.layer_norm = RMSNorm(
            cfg.in_channels, cfg.layer_norm_eps, cfg.ln_elementwise_affine, dtype=dtype
        )
        self.conv = Conv(
            cfg.in_channels,
            cfg.block_out_channels,
            (1, 1),
            use_bias=cfg.use_bias,
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        # ids: [B, H, W] -> [B, H, W, block]
        return self.conv(self.layer_norm(self.embeddings(ids)))


class CondEmbed(nnx.Module):
    """Pooled text + micro-condition features -> conditioning vector c (Linear, SiLU, Linear)."""

    def __init__(self, in_dim: int, hidden: int, use_bias: bool, *, dtype, rngs: nnx.Rngs):
        self.linear_1 = Dense(in_dim, hidden, use_bias=use_bias, dtype=dtype, rngs=rngs)
        self.linear_2 = Dense(hidden, hidden, use_bias=use_bias, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear_2(jax.nn.silu(self.linear_1(x)))


class ConvNextBlock(nnx.Module):
    """Depthwise 3x3 -> RMSNorm -> Linear x4 -> GELU -> GRN -> Linear, residual, then modulation."""

    def __init__(self, channels: int, cfg: TransformerConfig, *, dtype, rngs: nnx.Rngs):
        wide = 4 * channels
        self.depthwise = Conv(
            channels,
            channels,
            (3, 3),
            padding=((1, 1), (1, 1)),
            feature_group_count=channels,
            use_bias=cfg.use_bias,
            dtype=dtype,
            rngs=rngs,
        )
        self.norm = RMSNorm(channels, cfg.layer_norm_eps, cfg.ln_elementwise_affine, dtype=dtype)
        self.channelwise_linear_1 = Dense(
            channels, wide, use_bias=cfg.use_bias, dtype=dtype, rngs=rngs
        )
        self.channelwise_norm = GlobalResponseNorm(wide)
        self.channelwise_linear_2 = Dense(
            wide, channels, use_bias=cfg.use_bias, dtype=dtype, rngs=rngs
        )
        self.cond_embeds_mapper = Dense(
            cfg.hidden_size, 2 * channels, use_bias=cfg.use_bias, dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        # x: [B, H, W, C]; cond: [B, hidden]
        residual = x
        x = self.norm(self.depthwise(x))
        x = exact_gelu(self.channelwise_linear_1(x))
        x = self.channelwise_linear_2(self.channelwise_norm(x))
        x = x + residual
        scale, shift = jnp.split(self.cond_embeds_mapper(jax.nn.silu(cond)), 2, axis=-1)
        return x * (1 + scale[:, None, None, :]) + shift[:, None, None, :]


class TextAttentionBlock(nnx.Module):
    """Two pre-norm attentions, both to the text (the reference's `SkipFFTransformerBlock`)."""

    def __init__(self, channels: int, cfg: TransformerConfig, *, dtype, rngs: nnx.Rngs):
        heads = cfg.block_num_heads
        # The text arrives at the hidden width; map it to the block width when they differ.
        self.kv_mapper = (
            Dense(cfg.hidden_size, channels, use_bias=cfg.use_bias, dtype=dtype, rngs=rngs)
            if cfg.hidden_size != channels
            else None
        )
        self.norm1 = RMSNorm(channels, 1e-6, dtype=dtype)
        self.attn1 = Attention(
            channels, channels, heads, channels // heads, cfg.use_bias, dtype=dtype, rngs=rngs
        )
        self.norm2 = RMSNorm(channels, 1e-6, dtype=dtype)
        self.attn2 = Attention(
            channels, channels, heads, channels // heads, cfg.use_bias, dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array, text: jax.Array) -> jax.Array:
        # x: [B, tokens, C]; text: [B, T, hidden]
        if self.kv_mapper is not None:
            text = self.kv_mapper(jax.nn.silu(text))
        x = x + self.attn1(self.norm1(x), text)
        return x + self.attn2(self.norm2(x), text)


class ConvStage(nnx.Module):
    """Optional 2x2 downsample, N x (ConvNeXt block, text attention block), optional upsample."""

    def __init__(
        self, cfg: TransformerConfig, downsample: bool, upsample: bool, *, dtype, rngs: nnx.Rngs
    ):
        channels = cfg.block_out_channels
        eps, affine, bias = cfg.layer_norm_eps, cfg.ln_elementwise_affine, cfg.use_bias
        self.downsample = (
            Downsample2x2(channels, eps, affine, bias, dtype=dtype, rngs=rngs)
            if downsample
            else None
        )
        self.res_blocks = nnx.List(
            [
                ConvNextBlock(channels, cfg, dtype=dtype, rngs=rngs)
                for _ in range(cfg.num_res_blocks)
            ]
        )
        self.attention_blocks = nnx.List(
            [
                TextAttentionBlock(channels, cfg, dtype=dtype, rngs=rngs)
                for _ in range(cfg.num_res_blocks)
            ]
        )
        self.upsample = (
            Upsample2x2(channels, eps, affine, bias, dtype=dtype, rngs=rngs) if upsample else None
        )

    def __call__(self, x: jax.Array, cond: jax.Array, text: jax.Array) -> jax.Array:
        # x: [B, H, W, C]
        if self.downsample is not None:
            x = self.downsample(x)
        for res_block, attention_block in zip(self.res_blocks, self.attention_blocks, strict=True):
            x = res_block(x, cond)
            batch, height, width, channels = x.shape
            tokens = attention_block(x.reshape(batch, height * width, channels), text)
            x = tokens.reshape(batch, height, width, channels)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class TransformerLayer(nnx.Module):
    """Adaptive-norm transformer layer: self-attention, cross-attention, GEGLU feed-forward.

    `adapter_attn` runs after the cross-attention residual and `adapter_ff` after the
    feed-forward residual (StyleDrop's Houlsby placement); see the module docstring.
    """

    def __init__(self, cfg: TransformerConfig, *, dtype, rngs: nnx.Rngs):
        dim, heads = cfg.hidden_size, cfg.num_attention_heads
        eps, affine, bias = cfg.layer_norm_eps, cfg.ln_elementwise_affine, cfg.use_bias
        self.norm1 = AdaptiveNorm(dim, dim, "rms", eps, affine, bias, dtype=dtype, rngs=rngs)
        self.attn1 = Attention(dim, dim, heads, dim // heads, bias, dtype=dtype, rngs=rngs)
        self.norm2 = AdaptiveNorm(dim, dim, "rms", eps, affine, bias, dtype=dtype, rngs=rngs)
        self.attn2 = Attention(dim, dim, heads, dim // heads, bias, dtype=dtype, rngs=rngs)
        self.norm3 = AdaptiveNorm(dim, dim, "layer", eps, affine, bias, dtype=dtype, rngs=rngs)
        self.ff = FeedForward(dim, cfg.intermediate_size, bias, dtype=dtype, rngs=rngs)
        self.adapter_attn = nnx.List([])
        self.adapter_ff = nnx.List([])

    def __call__(self, h: jax.Array, text: jax.Array, cond: jax.Array) -> jax.Array:
        # h: [B, N, D]; text: [B, T, D]; cond: [B, D]
        x = self.norm1(h, cond)
        h = h + self.attn1(x, x)
        h = h + self.attn2(self.norm2(h, cond), text)
        h = _apply_adapters(self.adapter_attn, h)
        h = h + self.ff(self.norm3(h, cond))
        return _apply_adapters(self.adapter_ff, h)


def _apply_adapters(adapters: nnx.List, h: jax.Array) -> jax.Array:
    """Returns h + sum of the adapters' deltas; every adapter sees the same input h."""
    out = h
    for adapter in adapters:
        out = out + adapter(h)
    return out


class MlmLayer(nnx.Module):
    """Block width -> 1x1 conv -> RMSNorm -> 1x1 conv to codebook logits."""

    def __init__(self, cfg: TransformerConfig, *, dtype, rngs: nnx.Rngs):
        self.conv1 = Conv(
            cfg.block_out_channels,
            cfg.in_channels,
            (1, 1),
            use_bias=cfg.use_bias,
            dtype=dtype,
            rngs=rngs,
        )
        self.layer_norm = RMSNorm(
            cfg.in_channels, cfg.layer_norm_eps, cfg.ln_elementwise_affine, dtype=dtype
        )
        self.conv2 = Conv(
            cfg.in_channels,
            cfg.codebook_size,
            (1, 1),
            use_bias=cfg.use_bias,
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv2(self.layer_norm(self.conv1(x)))


class UVit2D(nnx.Module):
    """The Muse / aMUSEd token transformer.

    Args:
        cfg: Sizes (see `TransformerConfig` presets).
        dtype: Compute dtype (float32 or bfloat16); parameters stay float32.
        rngs: Initialisation randomness.
    """

    # Only the optional position embedding is a parameter of the module itself; aMUSEd's
    # checkpoints have none, so the name is ours.
    TORCH_PARAMS = {"position_embedding": ("position_embedding", identity)}

    def __init__(self, cfg: TransformerConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.cfg = cfg
        self.dtype = dtype
        self.encoder_proj = Dense(
            cfg.encoder_hidden_size, cfg.hidden_size, use_bias=cfg.use_bias, dtype=dtype, rngs=rngs
        )
        self.encoder_proj_layer_norm = RMSNorm(
            cfg.hidden_size, cfg.layer_norm_eps, cfg.ln_elementwise_affine, dtype=dtype
        )
        self.embed = ConvEmbed(cfg, dtype=dtype, rngs=rngs)
        self.cond_embed = CondEmbed(
            cfg.micro_cond_embed_dim + cfg.cond_embed_dim,
            cfg.hidden_size,
            cfg.use_bias,
            dtype=dtype,
            rngs=rngs,
        )
        self.down_block = ConvStage(cfg, cfg.downsample, False, dtype=dtype, rngs=rngs)
        self.project_to_hidden_norm = RMSNorm(
            cfg.block_out_channels, cfg.layer_norm_eps, cfg.ln_elementwise_affine, dtype=dtype
        )
        self.project_to_hidden = Dense(
            cfg.block_out_channels, cfg.hidden_size, use_bias=cfg.use_bias, dtype=dtype, rngs=rngs
        )
        # [cells of the transformer's grid, D], zero at init: a base that gains it keeps
        # computing what it did and learns the positions from there.
        self.position_embedding = (
            nnx.Param(jnp.zeros((cfg.layer_grid_cells, cfg.hidden_size), jnp.float32))
            if cfg.position_embedding
            else None
        )
        self.transformer_layers = nnx.List(
            [TransformerLayer(cfg, dtype=dtype, rngs=rngs) for _ in range(cfg.num_hidden_layers)]
        )
        self.project_from_hidden_norm = RMSNorm(
            cfg.hidden_size, cfg.layer_norm_eps, cfg.ln_elementwise_affine, dtype=dtype
        )
        self.project_from_hidden = Dense(
            cfg.hidden_size, cfg.block_out_channels, use_bias=cfg.use_bias, dtype=dtype, rngs=rngs
        )
        self.up_block = ConvStage(cfg, False, cfg.upsample, dtype=dtype, rngs=rngs)
        self.mlm_layer = MlmLayer(cfg, dtype=dtype, rngs=rngs)

    def __call__(
        self,
        ids: jax.Array,
        text_hidden: jax.Array,
        text_pooled: jax.Array,
        micro_conds: jax.Array,
        adapter_gate: jax.Array | None = None,
    ) -> jax.Array:
        """Predicts codebook logits for every position.

        Args:
            ids: [B, H, W] int token ids (mask token = `cfg.mask_token_id`).
            text_hidden: [B, T, encoder_hidden_size] penultimate text-encoder states.
            text_pooled: [B, cond_embed_dim] projected pooled text embedding.
            micro_conds: [B, 5] (orig width, orig height, crop top, crop left, aesthetic score).
            adapter_gate: [B, K] weight of adapter k's output in row b (None: all on).

        Returns:
            [B, H, W, codebook_size] logits in float32.
        """
        cfg = self.cfg
        batch = ids.shape[0]
        text = self.encoder_proj_layer_norm(self.encoder_proj(text_hidden))  # [B, T, D]
        micro = sinusoidal_embedding(micro_conds.reshape(-1), cfg.micro_cond_encode_dim)
        micro = micro.reshape(batch, -1)  # [B, 5 * micro_cond_encode_dim]
        pooled = jnp.concatenate([text_pooled.astype(jnp.float32), micro], axis=-1)
        cond = self.cond_embed(pooled.astype(self.dtype))  # [B, D]

        with _adapter_gate_scope(adapter_gate):
            x = self.down_block(self.embed(ids), cond, text)  # [B, h, w, C]
            _, height, width, channels = x.shape
            h = x.reshape(batch, height * width, channels)
            h = self.project_to_hidden(self.project_to_hidden_norm(h))  # [B, h*w, D]
            if self.position_embedding is not None:
                h = h + self.position_embedding[...].astype(h.dtype)  # [h*w, D] broadcast
            for layer in self.transformer_layers:
                h = layer(h, text, cond)
            h = self.project_from_hidden(self.project_from_hidden_norm(h))  # [B, h*w, C]
            x = h.reshape(batch, height, width, channels)
            x = self.up_block(x, cond, text)
            return self.mlm_layer(x).astype(jnp.float32)
