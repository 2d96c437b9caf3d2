"""Adapter weights as state: filters, a train step, sharing, counts, names, load, removal."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from adapters.inject import (
    AdapterStateError,
    adapter_indices,
    adapter_state_dict,
    count_parameters,
    inject_adapter,
    load_adapter_state,
    remove_adapters,
)
from adapters.layers import LoRALinear
from adapters.params import AdapterParam, AdapterSpec
from muse.config import TransformerConfig
from muse.transformer import TransformerLayer, UVit2D, current_adapter_gate

KINDS = ("r1", "r2", "lora")


def _model(seed: int = 0) -> UVit2D:
    return UVit2D(TransformerConfig.tiny(), rngs=nnx.Rngs(seed))


def _inputs(batch: int = 2, seed: int = 1):
    cfg = TransformerConfig.tiny()
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, (batch, cfg.sample_size, cfg.sample_size))
    hidden = rng.standard_normal((batch, 7, cfg.encoder_hidden_size)).astype(np.float32)
    pooled = rng.standard_normal((batch, cfg.cond_embed_dim)).astype(np.float32)
    micro = np.tile(np.array([[256, 256, 0, 0, 6]], np.float32), (batch, 1))
    return jnp.asarray(ids), jnp.asarray(hidden), jnp.asarray(pooled), jnp.asarray(micro)


def _inject(model, spec, seed: int = 1) -> int:
    spec = AdapterSpec(spec) if isinstance(spec, str) else spec
    return inject_adapter(model, spec, rngs=nnx.Rngs(seed), gate_source=current_adapter_gate)


def _flat(model, filter_) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(model, filter_))
    return {".".join(map(str, path)): np.asarray(v.get_value()) for path, v in flat}


def _randomise(model, seed: int = 0) -> None:
    flat = nnx.to_flat_state(nnx.state(model, AdapterParam))
    keys = jax.random.split(jax.random.key(seed), len(flat))
    for key, (_, variable) in zip(keys, flat, strict=True):
        value = variable.get_value()
        variable.set_value(0.2 * jax.random.normal(key, value.shape, value.dtype))
    nnx.update(model, nnx.from_flat_state(flat))


def _loss(model, inputs):
    return jnp.mean(jnp.square(model(*inputs)))


@pytest.mark.parametrize("kind", KINDS)
def test_adapter_filter_picks_exactly_the_adapter_weights(kind):
    model = _model()
    base = _flat(model, nnx.Param)
    _inject(model, kind)
    adapter = _flat(model, AdapterParam)
    frozen = _flat(model, nnx.Not(AdapterParam))
    assert sum(v.size for v in adapter.values()) == count_parameters(model, AdapterSpec(kind))
    assert all(("adapter_" in name) or (".loras." in name) for name in adapter)
    # The frozen part is the base, value for value (LoRA moves kernels under base_layer).
    assert [name.replace(".base_layer", "") for name in frozen] == list(base)
    for (name, value), expected in zip(frozen.items(), base.values(), strict=True):
        np.testing.assert_array_equal(value, expected, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_train_step_changes_only_adapter_weights(kind):
    model = _model()
    _inject(model, kind)
    inputs = _inputs()
    frozen_before = _flat(model, nnx.Not(AdapterParam))
    adapter_before = _flat(model, AdapterParam)
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=AdapterParam)

    @nnx.jit
    def step(model, optimizer, inputs):
        grads = nnx.grad(_loss, argnums=nnx.DiffState(0, AdapterParam))(model, inputs)
        optimizer.update(model, grads)

    step(model, optimizer, inputs)
    frozen_after = _flat(model, nnx.Not(AdapterParam))
    assert list(frozen_after) == list(frozen_before)
    for name, value in frozen_after.items():
        np.testing.assert_array_equal(value, frozen_before[name], err_msg=name)
    adapter_after = _flat(model, AdapterParam)
    changed = [n for n, v in adapter_after.items() if not np.array_equal(v, adapter_before[n])]
    assert changed  # Wu / LoRA B move on the first step (their partners' gradients are 0)


def test_round1_matrices_are_shared_and_sum_the_layers_gradients():
    model = _model()
    _inject(model, "r1")
    layers = model.transformer_layers
    for slot in ("adapter_attn", "adapter_ff"):
        assert getattr(layers[0], slot)[0].shared is getattr(layers[1], slot)[0].shared
    leaves = nnx.to_flat_state(nnx.state(model, AdapterParam))
    # 2 positions x (shared Wd, Wu) once, plus 2 offsets per layer and position.
    assert len(leaves) == 2 * 2 + len(layers) * 2 * 2
    _randomise(model)
    grads = nnx.jit(nnx.grad(_loss, argnums=nnx.DiffState(0, AdapterParam)))(model, _inputs())
    # W_l = W + 1 o_l^T, so the column sums of dL/dW equal the sum over layers of dL/do_l:
    # this holds only if the shared matrix gets every layer's gradient.
    for slot in ("adapter_attn", "adapter_ff"):
        shared = getattr(grads.transformer_layers[0], slot)[0].shared
        for matrix, offset in (("down", "down_offset"), ("up", "up_offset")):
            per_layer = sum(
                np.asarray(getattr(getattr(grads.transformer_layers[i], slot)[0], offset)[...])
                for i in range(len(layers))
            )
            total = np.asarray(getattr(shared, matrix)[...]).sum(axis=0)
            assert np.abs(total).max() > 0
            np.testing.assert_allclose(total, per_layer, rtol=1e-4, atol=1e-7)


class _LayerStack(nnx.Module):
    """The transformer layers of a U-ViT alone: enough structure to count adapters."""

    def __init__(self, cfg: TransformerConfig):
        # One eval_shape per layer: tracing all 48 layers at once is quadratic in JAX.
        self.transformer_layers = nnx.List(
            [
                nnx.eval_shape(lambda: TransformerLayer(cfg, dtype=jnp.float32, rngs=nnx.Rngs(0)))
                for _ in range(cfg.num_hidden_layers)
            ]
        )


def test_parameter_counts_on_muse_3b_shapes():
    cfg = dataclasses.replace(
        TransformerConfig(), hidden_size=2048, num_hidden_layers=48, num_attention_heads=32
    )
    stack = _LayerStack(cfg)  # abstract: nothing of the 3B model is allocated
    r1, r2 = AdapterSpec("r1"), AdapterSpec("r2")
    assert (r1.bottleneck, r2.bottleneck) == (4, 32)
    assert count_parameters(stack, r1) == r1.parameter_count(48, 2048) == 229_760
    assert count_parameters(stack, r2) == r2.parameter_count(48, 2048) == 12_582_912


def test_lora_count_on_amused_256_shapes():
    model = nnx.eval_shape(lambda: UVit2D(TransformerConfig.amused_256(), rngs=nnx.Rngs(0)))
    attentions = [m for _, m in nnx.iter_modules(model) if hasattr(m, "to_q")]
    assert len(attentions) == 22 * 2 + 2 * 3 * 2  # transformer layers + conv-stage blocks
    shapes = [
        (getattr(a, name).in_features, getattr(a, name).out_features)
        for a in attentions
        for name in ("to_q", "to_k", "to_v")
    ]
    spec = AdapterSpec("lora", rank=16, alpha=32)
    # 44 attentions of width 1024 and 12 of width 768: 16 * 2 * (44 * 3 * 1024 + 12 * 3 * 768).
    assert count_parameters(model, spec) == spec.parameter_count(lora_shapes=shapes) == 5_210_112


def test_names_do_not_depend_on_the_adapter_index():
    first, second = _model(), _model()
    _inject(first, "r2")
    _inject(second, "lora")
    _inject(second, "r2")
    assert set(adapter_state_dict(first, 0)) == set(adapter_state_dict(second, 1))
    names = set(adapter_state_dict(second, 0))
    assert "transformer.transformer_layers.0.attn1.to_q.lora_A.weight" in names
    assert "transformer.down_block.attention_blocks.0.attn1.to_k.lora_B.weight" in names
    assert "transformer.transformer_layers.1.adapter_ff.up" in adapter_state_dict(first, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip_is_exact(kind):
    source = _model()
    _inject(source, kind)
    _randomise(source)
    tensors = adapter_state_dict(source, 0)
    target = _model()
    _inject(target, "r2")  # another adapter first: the loaded one becomes index 1
    index = _inject(target, kind, seed=5)
    load_adapter_state(target, index, tensors)
    loaded = adapter_state_dict(target, index)
    assert list(loaded) == list(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)
    if kind == "lora":
        a = tensors["transformer.transformer_layers.0.attn2.to_v.lora_A.weight"]
        b = tensors["transformer.transformer_layers.0.attn2.to_v.lora_B.weight"]
        assert a.shape == (16, 32) and b.shape == (32, 16)  # PEFT layout [r, in], [out, r]


def test_loading_names_every_mismatch():
    model = _model()
    _inject(model, "r2")
    tensors = adapter_state_dict(model, 0)
    del tensors["transformer.transformer_layers.0.adapter_attn.down"]
    tensors["transformer.transformer_layers.1.adapter_ff.up"] = np.zeros((3, 3), np.float32)
    tensors["transformer.extra"] = np.zeros(1, np.float32)
    with pytest.raises(AdapterStateError) as info:
        load_adapter_state(model, 0, tensors)
    message = str(info.value)
    for name in ("layers.0.adapter_attn.down", "layers.1.adapter_ff.up", "transformer.extra"):
        assert name in message
    with pytest.raises(KeyError, match="no adapter 3"):
        adapter_state_dict(model, 3)


def test_remove_adapters_restores_the_base_modules():
    model = _model()
    inputs = _inputs()
    base_logits = np.asarray(model(*inputs))
    graphdef = nnx.graphdef(model)
    to_q = model.transformer_layers[0].attn1.to_q
    _inject(model, "r1")
    _inject(model, AdapterSpec("lora", lora_targets=("to_q", "to_out.0", "ff.net.0.proj")))
    _randomise(model)
    assert isinstance(model.transformer_layers[0].attn1.to_q, LoRALinear)
    assert isinstance(model.transformer_layers[0].ff.geglu.proj, LoRALinear)
    assert isinstance(model.up_block.attention_blocks[1].attn2.to_out[0], LoRALinear)
    remove_adapters(model, index=0)
    assert adapter_indices(model) == [1]
    assert _inject(model, "r2") == 2  # indices are never reused while others remain
    remove_adapters(model)
    assert adapter_indices(model) == []
    assert model.transformer_layers[0].attn1.to_q is to_q
    assert nnx.graphdef(model) == graphdef
    np.testing.assert_array_equal(np.asarray(model(*inputs)), base_logits)


def test_bad_lora_targets_are_refused():
    model = _model()
    with pytest.raises(ValueError, match="match no linear layer"):
        _inject(model, AdapterSpec("lora", lora_targets=("to_qq",)))
    with pytest.raises(ValueError, match="must be linear layers"):
        _inject(model, AdapterSpec("lora", lora_targets=("to_out",)))
