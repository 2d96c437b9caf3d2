"""Adapters in the U-ViT forward: zero init is the identity, gates pick adapters per row."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from adapters.inject import inject_adapter, remove_adapters
from adapters.params import AdapterParam, AdapterSpec
from muse.config import TransformerConfig
from muse.transformer import UVit2D, current_adapter_gate

KINDS = ("r1", "r2", "lora")


def _model() -> UVit2D:
    return UVit2D(TransformerConfig.tiny(), rngs=nnx.Rngs(0))


def _inputs(batch: int = 2, seed: int = 1):
    cfg = TransformerConfig.tiny()
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, (batch, cfg.sample_size, cfg.sample_size))
    ids[:, ::3, ::2] = cfg.mask_token_id
    hidden = rng.standard_normal((batch, 7, cfg.encoder_hidden_size)).astype(np.float32)
    pooled = rng.standard_normal((batch, cfg.cond_embed_dim)).astype(np.float32)
    micro = np.tile(np.array([[256, 256, 0, 0, 6]], np.float32), (batch, 1))
    return jnp.asarray(ids), jnp.asarray(hidden), jnp.asarray(pooled), jnp.asarray(micro)


def _inject(model, kind: str, seed: int = 1) -> int:
    return inject_adapter(
        model, AdapterSpec(kind), rngs=nnx.Rngs(seed), gate_source=current_adapter_gate
    )


def randomise_adapters(model, seed: int = 0, scale: float = 0.2) -> None:
    """Gives every adapter weight a random value (zero init makes adapters invisible)."""
    flat = nnx.to_flat_state(nnx.state(model, AdapterParam))
    keys = jax.random.split(jax.random.key(seed), len(flat))
    for key, (_, variable) in zip(keys, flat, strict=True):
        value = variable.get_value()
        variable.set_value(scale * jax.random.normal(key, value.shape, value.dtype))
    nnx.update(model, nnx.from_flat_state(flat))


@pytest.mark.parametrize("kind", KINDS)
def test_zero_initialised_adapter_leaves_logits_identical(kind):
    model = _model()
    inputs = _inputs()
    base = np.asarray(model(*inputs))
    _inject(model, kind)
    assert nnx.state(model, AdapterParam)  # something was injected
    np.testing.assert_array_equal(np.asarray(model(*inputs)), base)


@pytest.mark.parametrize("kind", KINDS)
def test_gate_rows_switch_between_base_and_adapted(kind):
    model = _model()
    inputs = _inputs()
    base = np.asarray(model(*inputs))  # [B, H, W, V]
    _inject(model, kind)
    randomise_adapters(model)
    adapted = np.asarray(model(*inputs))  # gate None: fully on
    assert np.abs(adapted - base).max() > 1e-2  # the adapter does something
    for gate in ([[1.0], [0.0]], [[0.0], [1.0]]):
        mixed = np.asarray(model(*inputs, adapter_gate=jnp.asarray(gate)))  # gate [B, K]
        for row, (on,) in enumerate(gate):
            expected = adapted[row] if on else base[row]
            np.testing.assert_allclose(mixed[row], expected, atol=1e-5, rtol=0)
    # An all-zero gate is the frozen base.
    off = np.asarray(model(*inputs, adapter_gate=jnp.zeros((2, 1))))
    np.testing.assert_allclose(off, base, atol=1e-5, rtol=0)


def test_two_adapters_gated_apart_equal_each_alone():
    model = _model()
    inputs = _inputs()
    first = _inject(model, "r2")
    second = _inject(model, "lora", seed=2)
    assert (first, second) == (0, 1)
    randomise_adapters(model)
    only_first = nnx.clone(model)
    remove_adapters(only_first, index=second)
    only_second = nnx.clone(model)
    remove_adapters(only_second, index=first)
    gate = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    both = np.asarray(model(*inputs, adapter_gate=gate))
    np.testing.assert_allclose(both[0], np.asarray(only_first(*inputs))[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(both[1], np.asarray(only_second(*inputs))[1], atol=1e-5, rtol=0)
    assert np.abs(both[0] - np.asarray(only_second(*inputs))[0]).max() > 1e-2


def test_gate_without_a_column_for_an_adapter_is_refused():
    model = _model()
    _inject(model, "r2")
    _inject(model, "r1")
    with pytest.raises(ValueError, match="Adapter 1 has no gate column"):
        model(*_inputs(), adapter_gate=jnp.ones((2, 1)))


def test_adapters_run_under_jit_after_split_and_merge():
    """The pipeline's pattern: nnx.split outside, merge inside a jitted function."""
    model = _model()
    _inject(model, "r1")
    _inject(model, "lora")
    randomise_adapters(model)
    inputs = _inputs()
    gate = jnp.asarray([[1.0, 0.0], [0.5, 1.0]])
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, gate):
        return nnx.merge(graphdef, state)(*inputs, adapter_gate=gate)

    np.testing.assert_allclose(
        np.asarray(forward(state, gate)),
        np.asarray(model(*inputs, adapter_gate=gate)),
        atol=1e-4,  # jit fuses differently from eager op-by-op execution
        rtol=0,
    )
