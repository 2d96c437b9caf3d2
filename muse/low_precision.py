"""Matrix products for bfloat16 compute that stay on the CPU's fast path, forward and backward.

On CPUs with AVX-512 BF16 or AMX, XLA runs a bf16 x bf16 product with a float32 result
two to four times as fast as a float32 product (measured on an EPYC and a Xeon), and a
bf16 x bf16 -> bf16 product (or a mixed bf16 x f32 one) slower than float32. Asking for
float32 accumulation fixes the forward (`muse.layers.Dense`), but JAX's transpose of
that product multiplies the float32 cotangent with a bf16 operand, so every backward
product is off the fast path. The products here have a hand-written VJP that casts the
cotangent to the operands' dtype first, so all three products of a training step
(forward, input gradient, weight gradient) are bf16 x bf16 -> f32, as PyTorch's autocast
computes them. In float32 they are the plain product, exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def default_compute_dtype() -> str:
    """The compute dtype that "auto" means on this JAX backend: bfloat16 on a GPU, else float32.

    A GPU's tensor cores run bf16 products several times faster than float32 ones; on a
    CPU the gain depends on the instruction set (see above), so float32 stays the default.
    """
    return "bfloat16" if jax.default_backend() == "gpu" else "float32"


def is_low_precision(dtype) -> bool:
    """True for floating dtypes narrower than float32 (bfloat16, float16)."""
    dtype = jnp.dtype(dtype)
    return bool(jnp.issubdtype(dtype, jnp.floating)) and dtype.itemsize < 4


def _contract_last_first(x: jax.Array, w: jax.Array) -> jax.Array:
    # x: [..., in], w: [in, out] -> [..., out] float32
    dims = (((x.ndim - 1,), (0,)), ((), ()))
    return lax.dot_general(x, w, dims, preferred_element_type=jnp.float32)


@jax.custom_vjp
def matmul_f32_accumulate(x: jax.Array, w: jax.Array) -> jax.Array:
    """The product x @ w with a float32 result; its gradients are products in x's dtype.

    Args:
        x: [..., in] inputs.
        w: [in, out] kernel, same dtype as `x`.

    Returns:
        [..., out] float32.
    """
    return _contract_last_first(x, w)


def _forward(x: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _contract_last_first(x, w), (x, w)


def _backward(
    residuals: tuple[jax.Array, jax.Array], cotangent: jax.Array
) -> tuple[jax.Array, jax.Array]:
    x, w = residuals
    g = cotangent.astype(x.dtype)  # [..., out]
    dx = lax.dot_general(
        g, w, (((g.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.float32
    )  # [..., in]
    leading = tuple(range(x.ndim - 1))
    dw = lax.dot_general(
        x, g, ((leading, leading), ((), ())), preferred_element_type=jnp.float32
    )  # [in, out]
    return dx.astype(x.dtype), dw.astype(w.dtype)


matmul_f32_accumulate.defvjp(_forward, _backward)


def dot_general(
    lhs: jax.Array,
    rhs: jax.Array,
    dimension_numbers,
    precision=None,
    preferred_element_type=None,
    **kwargs,
) -> jax.Array:
    """`lax.dot_general` for `nnx.Linear(dot_general=...)`, fast-path gradients in bf16.

    Low-precision kernel products with a float32 result go through
    `matmul_f32_accumulate`; every other call is `lax.dot_general` unchanged.
    """
    standard = dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ()))
    if (
        standard
        and rhs.ndim == 2
        and lhs.dtype == rhs.dtype
        and is_low_precision(lhs.dtype)
        and preferred_element_type is not None
        and jnp.dtype(preferred_element_type) == jnp.float32
        and precision is None
        and kwargs.get("out_sharding") is None
    ):
        return matmul_f32_accumulate(lhs, rhs)
    return lax.dot_general(
        lhs, rhs, dimension_numbers, precision=precision,
        preferred_element_type=preferred_element_type, **kwargs,
    )  # fmt: skip


def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """The product x @ w in x's dtype (`w` is cast to it).

    Plain in float32; in bf16 or float16, accumulated in float32 with fast-path gradients.

    Args:
        x: [..., in] inputs.
        w: [in, out] kernel.

    Returns:
        [..., out] in x's dtype.
    """
    if not is_low_precision(x.dtype):
        return x @ w.astype(x.dtype)
    return matmul_f32_accumulate(x, w.astype(x.dtype)).astype(x.dtype)
