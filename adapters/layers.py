"""Adapter modules: StyleDrop bottleneck MLPs (rounds 1 and 2) and LoRA on linear layers.

Every module here knows its adapter index k and a `gate_source` callable returning the
[B, K] gate of the forward pass in progress (or None: fully on); it scales its own
output per row by column k, so one batched forward can mix rows with the adapter on,
off (the frozen base) or replaced by another adapter.

StyleDrop adapter (Houlsby placement, the paper's exact form): delta = gelu(h @ Wd) @ Wu
with the exact (erf) GELU, no bias, no norm, no scale; Wu starts at zero so the adapted
model starts identical to the base, Wd is truncated normal with std 0.02.

* Round 2 (`BottleneckAdapter`): independent Wd [D, H], Wu [H, D] per layer and position.
* Round 1 (`FactorisedAdapter`): per position one shared Wd [D, H], Wu [H, D]
  (`SharedBottleneck`, the same module object referenced from every layer) plus per
  layer l the zero-initialised offsets od_l [H] and ou_l [D]:
  Wd_l = Wd + 1 od_l^T (od_l added to every row), Wu_l = Wu + 1 ou_l^T.

LoRA (`LoRALinear`): wraps an `nnx.Linear` (kept whole as `base_layer`, PEFT's name):
out = base(x) + sum_k gate_k * (alpha / r) * (x @ A_k) @ B_k, with A kaiming-uniform
(a = sqrt(5), PyTorch's Linear default) and B zero, as PEFT initialises them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from adapters.params import AdapterParam
from muse.low_precision import matmul

GateSource = Callable[[], jax.Array | None]

_TRUNCATED_NORMAL = jax.nn.initializers.truncated_normal(stddev=0.02)


def gate_column(gate: jax.Array | None, index: int, like: jax.Array) -> jax.Array | None:
    """Column `index` of a [B, K] gate, shaped to broadcast over `like` [B, ...].

    Args:
        gate: [B, K] per-row adapter weights, or None (every adapter fully on). A gate
            with no columns ([B, 0]) also means fully on: the pipeline sends one when no
            guidance branch names adapter weights.
        index: The adapter's index k.
        like: The adapter output [B, ...] the column multiplies.

    Returns:
        [B, 1, ..., 1] in `like.dtype`, or None when the adapter is fully on.
    """
    if gate is None:
        return None
    gate = jnp.asarray(gate)
    if gate.ndim != 2:
        raise ValueError(f"The adapter gate must be [batch, adapters], got shape {gate.shape}.")
    if gate.shape[1] == 0:
        return None
    if gate.shape[0] != like.shape[0]:
        raise ValueError(
            f"The adapter gate has {gate.shape[0]} rows but the batch has {like.shape[0]}."
        )
    if index >= gate.shape[1]:
        raise ValueError(
            f"Adapter {index} has no gate column: the gate has {gate.shape[1]} columns;"
            " give one column per injected adapter."
        )
    column = gate[:, index].astype(like.dtype)  # [B]
    return column.reshape((like.shape[0],) + (1,) * (like.ndim - 1))


def _apply_gate(delta: jax.Array, gate_source: GateSource, index: int) -> jax.Array:
    column = gate_column(gate_source(), index, delta)
    return delta if column is None else delta * column


def _bottleneck(h: jax.Array, down: jax.Array, up: jax.Array) -> jax.Array:
    """gelu(h @ Wd) @ Wu in h's dtype; h: [B, N, D], down: [D, H], up: [H, D]."""
    hidden = jax.nn.gelu(matmul(h, down), approximate=False)  # [B, N, H]
    return matmul(hidden, up)  # [B, N, D]


class BottleneckAdapter(nnx.Module):
    """StyleDrop round-2 adapter: independent Wd [D, H] and Wu [H, D].

    Args:
        dim: Width D of the residual stream.
        bottleneck: Hidden width H.
        index: The adapter index k (its gate column).
        gate_source: Returns the [B, K] gate of the forward in progress (or None).
        rngs: Initialisation randomness.
    """

    def __init__(
        self, dim: int, bottleneck: int, index: int, gate_source: GateSource, *, rngs: nnx.Rngs
    ):
        self.index = index
        self.gate_source = gate_source
        self.down = AdapterParam(_TRUNCATED_NORMAL(rngs.params(), (dim, bottleneck), jnp.float32))
        self.up = AdapterParam(jnp.zeros((bottleneck, dim), jnp.float32))

    def __call__(self, h: jax.Array) -> jax.Array:
        # h: [B, N, D] -> gated delta [B, N, D]
        delta = _bottleneck(h, self.down[...], self.up[...])
        return _apply_gate(delta, self.gate_source, self.index)


class SharedBottleneck(nnx.Module):
    """The round-1 matrices Wd [D, H] and Wu [H, D] shared by every layer at one position."""

    def __init__(self, dim: int, bottleneck: int, *, rngs: nnx.Rngs):
        self.down = AdapterParam(_TRUNCATED_NORMAL(rngs.params(), (dim, bottleneck), jnp.float32))
        self.up = AdapterParam(jnp.zeros((bottleneck, dim), jnp.float32))


class FactorisedAdapter(nnx.Module):
    """StyleDrop round-1 adapter of one layer: shared matrices plus per-layer offsets.

    Layer l computes gelu(h @ (Wd + 1 od_l^T)) @ (Wu + 1 ou_l^T). `shared` is the same
    `SharedBottleneck` object in every layer, so NNX stores its weights once and their
    gradient sums the contributions of all layers.

    Args:
        shared: The position's shared matrices.
        index: The adapter index k (its gate column).
        gate_source: Returns the [B, K] gate of the forward in progress (or None).
    """

    def __init__(self, shared: SharedBottleneck, index: int, gate_source: GateSource):
        dim, bottleneck = shared.down.get_value().shape
        self.index = index
        self.gate_source = gate_source
        self.shared = shared
        self.down_offset = AdapterParam(jnp.zeros((bottleneck,), jnp.float32))  # od_l [H]
        self.up_offset = AdapterParam(jnp.zeros((dim,), jnp.float32))  # ou_l [D]

    def __call__(self, h: jax.Array) -> jax.Array:
        # h: [B, N, D] -> gated delta [B, N, D]
        down = self.shared.down[...] + self.down_offset[...][None, :]  # [D, H]
        up = self.shared.up[...] + self.up_offset[...][None, :]  # [H, D]
        return _apply_gate(_bottleneck(h, down, up), self.gate_source, self.index)


class LoRABranch(nnx.Module):
    """One LoRA update of a linear layer: (alpha / r) * (x @ A) @ B, gated by column k.

    Weights are kept as kernels (A: [in, r], B: [r, out]); files store PEFT's
    `lora_A.weight` [r, in] and `lora_B.weight` [out, r], their transposes.

    Args:
        in_features: Input width of the wrapped layer.
        out_features: Output width of the wrapped layer.
        rank: r.
        scale: alpha / r.
        index: The adapter index k (its gate column).
        gate_source: Returns the [B, K] gate of the forward in progress (or None).
        rngs: Initialisation randomness.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        scale: float,
        index: int,
        gate_source: GateSource,
        *,
        rngs: nnx.Rngs,
    ):
        self.index = index
        self.gate_source = gate_source
        self.scale = scale
        # kaiming_uniform_(a=sqrt(5)) on [r, in]: gain sqrt(2 / 6), bound gain * sqrt(3 / in).
        bound = 1.0 / math.sqrt(in_features)
        self.lora_a = AdapterParam(
            jax.random.uniform(
                rngs.params(), (in_features, rank), jnp.float32, minval=-bound, maxval=bound
            )
        )
        self.lora_b = AdapterParam(jnp.zeros((rank, out_features), jnp.float32))

    def __call__(self, x: jax.Array, dtype) -> jax.Array:
        # x: [B, ..., in] -> gated update [B, ..., out] in `dtype`
        x = x.astype(dtype)
        delta = matmul(matmul(x, self.lora_a[...]), self.lora_b[...])
        return _apply_gate(delta * jnp.asarray(self.scale, dtype), self.gate_source, self.index)


class LoRALinear(nnx.Module):
    """An `nnx.Linear` plus LoRA updates; the original layer stays whole in `base_layer`.

    Wrapping moves the base weights from `<name>.kernel` to `<name>.base_layer.kernel`
    in NNX paths (as PEFT does in PyTorch); `adapters.remove_adapters` puts the original
    layer back.

    Args:
        base_layer: The wrapped linear layer (frozen).
    """

    def __init__(self, base_layer: nnx.Linear):
        self.base_layer = base_layer
        self.loras = nnx.List([])

    @property
    def in_features(self) -> int:
        """Input width of the wrapped layer."""
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        """Output width of the wrapped layer."""
        return self.base_layer.out_features

    def __call__(self, x: jax.Array) -> jax.Array:
        # x: [B, ..., in] -> [B, ..., out]
        y = self.base_layer(x)
        for lora in self.loras:
            y = y + lora(x, y.dtype)
        return y
