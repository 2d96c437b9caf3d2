"""Dense and Conv: the compute dtype in and out, float32 accumulation inside."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from muse.layers import Conv, Dense


def _copy_params(source: nnx.Module, target: nnx.Module) -> None:
    nnx.update(target, nnx.state(source, nnx.Param))


def test_float32_dense_and_conv_equal_the_flax_layers_exactly():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 64))
    dense = Dense(64, 32, use_bias=True, dtype=jnp.float32, rngs=nnx.Rngs(1))
    plain = nnx.Linear(64, 32, use_bias=True, dtype=jnp.float32, rngs=nnx.Rngs(2))
    _copy_params(dense, plain)
    np.testing.assert_array_equal(dense(x), plain(x))
    conv = Conv(64, 8, (3, 3), dtype=jnp.float32, rngs=nnx.Rngs(3))
    plain_conv = nnx.Conv(64, 8, (3, 3), dtype=jnp.float32, rngs=nnx.Rngs(4))
    _copy_params(conv, plain_conv)
    np.testing.assert_array_equal(conv(x), plain_conv(x))


def test_bf16_layers_multiply_bf16_into_float32_and_return_bf16():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 64)).astype(jnp.bfloat16)
    for layer in (
        Dense(64, 32, use_bias=True, dtype=jnp.bfloat16, rngs=nnx.Rngs(1)),
        Conv(64, 8, (3, 3), dtype=jnp.bfloat16, rngs=nnx.Rngs(2)),
    ):
        assert layer(x).dtype == jnp.bfloat16
        graphdef, state = nnx.split(layer)
        program = jax.jit(lambda s, v, g=graphdef: nnx.merge(g, s)(v)).lower(state, x).as_text()
        # The product itself: bf16 operands, a float32 result (XLA's fast CPU path).
        products = re.findall(r"stablehlo\.(?:dot_general|convolution).*", program)
        assert products and all(re.search(r"bf16>\) -> tensor<[0-9x]*xf32>", p) for p in products)
