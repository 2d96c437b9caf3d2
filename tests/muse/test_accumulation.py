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


def _loss_of(layer_graph):
    def loss(state, inputs):
        return jnp.sum(jnp.square(nnx.merge(layer_graph, state)(inputs).astype(jnp.float32)))

    return loss


def test_float32_dense_gradients_equal_the_flax_layer_exactly():
    x = jax.random.normal(jax.random.key(0), (2, 5, 64))
    dense = Dense(64, 32, use_bias=True, dtype=jnp.float32, rngs=nnx.Rngs(1))
    plain = nnx.Linear(64, 32, use_bias=True, dtype=jnp.float32, rngs=nnx.Rngs(2))
    _copy_params(dense, plain)
    grads = []
    for layer in (dense, plain):
        graphdef, state = nnx.split(layer)
        grads.append(jax.grad(_loss_of(graphdef), argnums=(0, 1))(state, x))
    for ours, theirs in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_bf16_dense_backward_is_bf16_products_into_float32_and_close_to_float32():
    x = jax.random.normal(jax.random.key(0), (2, 5, 64))
    graphs = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        layer = Dense(64, 32, use_bias=True, dtype=dtype, rngs=nnx.Rngs(1))
        graphs[dtype] = nnx.split(layer)
    grad_fn = {d: jax.grad(_loss_of(g), argnums=(0, 1)) for d, (g, _) in graphs.items()}
    state = graphs[jnp.float32][1]
    exact = grad_fn[jnp.float32](state, x)
    low = grad_fn[jnp.bfloat16](state, x.astype(jnp.bfloat16))
    for ours, reference in zip(jax.tree.leaves(low), jax.tree.leaves(exact), strict=True):
        scale = float(jnp.max(jnp.abs(reference)))
        np.testing.assert_allclose(
            np.asarray(ours, np.float32), np.asarray(reference), atol=0.03 * scale
        )
    program = jax.jit(grad_fn[jnp.bfloat16]).lower(state, x.astype(jnp.bfloat16)).as_text()
    products = re.findall(r"stablehlo\.dot_general.*", program)
    # Forward, input gradient and kernel gradient: all three bf16 x bf16 -> f32.
    assert len(products) == 3
    assert all(re.search(r"bf16>\) -> tensor<[0-9x]*xf32>", p) for p in products), products
