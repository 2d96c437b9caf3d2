"""Building blocks of the U-ViT: norms, attention, feed-forward, resampling, embeddings.

Every layer computes in a configurable dtype (float32 or bfloat16) while keeping its
parameters in float32. Norm statistics are always taken in float32, as the reference
does, because bfloat16 squares lose too many bits. Matrix products and convolutions
(`Dense`, `Conv`) multiply in that dtype but accumulate in float32: on CPUs with AVX-512
BF16, XLA runs bf16 x bf16 -> f32 products on its fast path (about twice its fp32 rate),
while bf16 x bf16 -> bf16 products are upcast and run slower than fp32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from muse import low_precision
from muse.weights import identity


class _Float32Accumulation:
    """Mixin for `nnx.Linear` / `nnx.Conv`: float32 accumulation, output in the layer's dtype.

    In float32 the layer computes exactly what the plain Flax layer does.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, preferred_element_type=jnp.float32, **kwargs)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        # inputs: [..., in] -> [..., out] in the layer's dtype (the inputs' if it has none)
        return super().__call__(inputs).astype(self.dtype or inputs.dtype)


class Dense(_Float32Accumulation, nnx.Linear):
    """`nnx.Linear` (same arguments) multiplying in its dtype, accumulating in float32.

    In bf16 its gradients are bf16 products with float32 results too
    (`muse.low_precision`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, dot_general=low_precision.dot_general, **kwargs)


class Conv(_Float32Accumulation, nnx.Conv):
    """`nnx.Conv` (same arguments) multiplying in its dtype, accumulating in float32."""


def exact_gelu(x: jax.Array) -> jax.Array:
    """GELU in its erf form (PyTorch's default; JAX defaults to the tanh approximation)."""
    return jax.nn.gelu(x, approximate=False)


class RMSNorm(nnx.Module):
    """Root-mean-square norm over the last axis, statistics in float32."""

    TORCH_PARAMS = {"scale": ("weight", identity)}

    def __init__(self, dim: int, eps: float, affine: bool = True, dtype=jnp.float32):
        self.eps = eps
        self.dtype = dtype
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32)) if affine else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(variance + self.eps)
        if self.scale is not None:
            y = y * self.scale[...]
        return y.astype(self.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis with a weight and no bias (as aMUSEd's `norm3`)."""

    TORCH_PARAMS = {"scale": ("weight", identity)}

    def __init__(self, dim: int, eps: float, affine: bool = True, dtype=jnp.float32):
        self.eps = eps
        self.dtype = dtype
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32)) if affine else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        variance = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(variance + self.eps)
        if self.scale is not None:
            y = y * self.scale[...]
        return y.astype(self.dtype)


class AdaptiveNorm(nnx.Module):
    """Continuous adaptive norm: norm(x) * (1 + scale) + shift, (scale, shift) from the condition.

    Args:
        dim: Width of the normalised features.
        cond_dim: Width of the conditioning vector.
        kind: "rms" or "layer".
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        kind: str,
        eps: float,
        affine: bool,
        use_bias: bool,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.linear = Dense(cond_dim, 2 * dim, use_bias=use_bias, dtype=dtype, rngs=rngs)
        norm_cls = {"rms": RMSNorm, "layer": LayerNorm}[kind]
        self.norm = norm_cls(dim, eps, affine, dtype=dtype)

    def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        # x: [batch, tokens, dim]; cond: [batch, cond_dim]
        scale, shift = jnp.split(self.linear(jax.nn.silu(cond)), 2, axis=-1)
        return self.norm(x) * (1 + scale[:, None, :]) + shift[:, None, :]


class GlobalResponseNorm(nnx.Module):
    """ConvNeXt-v2 global response norm over the spatial axes of [B, H, W, C] features."""

    TORCH_PARAMS = {
        "gamma": ("gamma", lambda w: w.reshape(-1)),
        "beta": ("beta", lambda w: w.reshape(-1)),
    }

    def __init__(self, dim: int):
        self.gamma = nnx.Param(jnp.zeros((dim,), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((dim,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        # x: [batch, height, width, channels]
        gx = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=(1, 2), keepdims=True))
        nx = (gx / (jnp.mean(gx, axis=-1, keepdims=True) + 1e-6)).astype(x.dtype)
        gamma = self.gamma[...].astype(x.dtype)
        beta = self.beta[...].astype(x.dtype)
        return gamma * (x * nx) + beta + x


class Attention(nnx.Module):
    """Multi-head attention with separate q/k/v projections and no masking.

    The text is attended to in full, padding tokens included, as in the reference.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int,
        heads: int,
        head_dim: int,
        use_bias: bool,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.to_q = Dense(query_dim, inner, use_bias=use_bias, dtype=dtype, rngs=rngs)
        self.to_k = Dense(context_dim, inner, use_bias=use_bias, dtype=dtype, rngs=rngs)
        self.to_v = Dense(context_dim, inner, use_bias=use_bias, dtype=dtype, rngs=rngs)
        # A list so the PyTorch key is `to_out.0` (index 1 is a parameterless dropout there).
        self.to_out = nnx.List([Dense(inner, query_dim, use_bias=use_bias, dtype=dtype, rngs=rngs)])

    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        # x: [batch, queries, query_dim]; context: [batch, keys, context_dim]
        batch, queries, _ = x.shape
        q = self.to_q(x).reshape(batch, queries, self.heads, self.head_dim)
        k = self.to_k(context).reshape(batch, context.shape[1], self.heads, self.head_dim)
        v = self.to_v(context).reshape(batch, context.shape[1], self.heads, self.head_dim)
        out = jax.nn.dot_product_attention(q, k, v)  # [batch, queries, heads, head_dim]
        return self.to_out[0](out.reshape(batch, queries, self.heads * self.head_dim))


class GEGLU(nnx.Module):
    """Projection to [value || gate] and value * gelu(gate)."""

    def __init__(self, dim: int, inner: int, use_bias: bool, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.proj = Dense(dim, 2 * inner, use_bias=use_bias, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        value, gate = jnp.split(self.proj(x), 2, axis=-1)
        return value * exact_gelu(gate)


class FeedForward(nnx.Module):
    """GEGLU feed-forward: dim -> 2 * inner -> inner -> dim."""

    # PyTorch keeps these in a Sequential: [GEGLU, Dropout, Linear].
    TORCH_NAMES = {"geglu": "net.0", "out": "net.2"}

    def __init__(self, dim: int, inner: int, use_bias: bool, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.geglu = GEGLU(dim, inner, use_bias, dtype=dtype, rngs=rngs)
        self.out = Dense(inner, dim, use_bias=use_bias, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.geglu(x))


class Downsample2x2(nnx.Module):
    """RMSNorm then a 2x2 stride-2 convolution (after zero padding right and bottom by one)."""

    def __init__(self, channels: int, eps: float, affine: bool, use_bias: bool, *, dtype, rngs):
        self.norm = RMSNorm(channels, eps, affine, dtype=dtype)
        self.conv = Conv(
            channels,
            channels,
            (2, 2),
            strides=2,
            padding="VALID",
            use_bias=use_bias,
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        # x: [batch, height, width, channels] -> [batch, height / 2, width / 2, channels]
        x = self.norm(x)
        x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return self.conv(x)


class ConvTranspose2x2(nnx.Module):
    """Transposed 2x2 stride-2 convolution written as an einsum over the kernel.

    Each input pixel writes a 2x2 patch of the output, so there is no overlap and no
    kernel-flip convention to get wrong.
    """

    # PyTorch ConvTranspose2d weight: [in, out, kh, kw] -> ours [in, kh, kw, out].
    TORCH_PARAMS = {
        "kernel": ("weight", lambda w: w.transpose(0, 2, 3, 1)),
        "bias": ("bias", identity),
    }

    def __init__(self, channels_in: int, channels_out: int, use_bias: bool, *, dtype, rngs):
        scale = 1.0 / math.sqrt(channels_in * 4)
        self.dtype = dtype
        self.kernel = nnx.Param(
            jax.random.uniform(
                rngs.params(), (channels_in, 2, 2, channels_out), jnp.float32, -scale, scale
            )
        )
        self.bias = nnx.Param(jnp.zeros((channels_out,), jnp.float32)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        # x: [batch, height, width, in] -> [batch, 2 * height, 2 * width, out]
        batch, height, width, _ = x.shape
        kernel = self.kernel[...].astype(self.dtype)
        y = jnp.einsum(
            "bhwc,cpqo->bhpwqo", x.astype(self.dtype), kernel, preferred_element_type=jnp.float32
        ).astype(self.dtype)
        y = y.reshape(batch, 2 * height, 2 * width, kernel.shape[-1])
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class Upsample2x2(nnx.Module):
    """RMSNorm then a transposed 2x2 stride-2 convolution."""

    def __init__(self, channels: int, eps: float, affine: bool, use_bias: bool, *, dtype, rngs):
        self.norm = RMSNorm(channels, eps, affine, dtype=dtype)
        self.conv = ConvTranspose2x2(channels, channels, use_bias, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(self.norm(x))


def sinusoidal_embedding(values: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Embeds scalars as [cos, sin] features (cos first), frequencies exp(-ln(P) * i / (dim / 2)).

    Args:
        values: [n] scalars (micro-conditions: sizes, crop coordinates, aesthetic score).
        dim: Even embedding width.
        max_period: Longest period of the sinusoids.

    Returns:
        [n, dim] float32 embeddings.
    """
    half = dim // 2
    exponent = -math.log(max_period) * np.arange(half, dtype=np.float32) / half
    angles = values.astype(jnp.float32)[:, None] * jnp.exp(jnp.asarray(exponent))[None, :]
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)
