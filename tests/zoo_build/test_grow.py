"""Deepening a base: the old layers' weights in place, new identity layers between them."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from muse import weights
from muse.transformer import UVit2D
from zoo_build.grow import layer_count, layer_order, load_grown
from zoo_build.train_base import zoo_transformer_config


def _model(layers: int, seed: int, width: int = 32, position_embedding: bool = False) -> UVit2D:
    cfg = zoo_transformer_config(
        16, 24, 20, grid=4, width=width, layers=layers, position_embedding=position_embedding
    )
    return UVit2D(cfg, rngs=nnx.Rngs(seed))


def _logits(model: UVit2D) -> np.ndarray:
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, 17, (2, 4, 4)), jnp.int32)  # 16 codes + the mask token
    hidden = jnp.asarray(rng.normal(size=(2, 5, 24)), jnp.float32)
    pooled = jnp.asarray(rng.normal(size=(2, 20)), jnp.float32)
    micro = jnp.asarray([[64, 64, 0, 0, 6]] * 2, jnp.float32)
    return np.asarray(model(ids, hidden, pooled, micro))  # [2, 4, 4, 16]


def test_layer_order_spreads_the_new_layers_between_the_old():
    assert layer_order(6, 9) == [0, 1, None, 2, 3, None, 4, 5, None]
    assert layer_order(2, 3) == [0, 1, None]
    assert layer_order(3, 6) == [0, None, 1, None, 2, None]
    assert layer_order(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="only be deepened"):
        layer_order(6, 4)


def test_a_deepened_base_computes_what_the_shallow_one_did(tmp_path):
    shallow = _model(layers=2, seed=0)
    path = tmp_path / "transformer.safetensors"
    weights.save_params(shallow, path)
    deep = _model(layers=5, seed=1)
    assert not np.allclose(_logits(shallow), _logits(deep))

    record = load_grown(deep, path)

    assert record == {"deepened_from_layers": 2, "inserted_layers": [1, 3, 4]}
    np.testing.assert_allclose(_logits(deep), _logits(shallow), atol=1e-5)
    saved, now = weights.flat_params(shallow), weights.flat_params(deep)
    assert layer_count(now) == 5
    # Old layer 1 sits at index 2; the new layers' residual outputs are zero and the rest
    # of them keep the deep model's own init (not a copy of a neighbour).
    name = "transformer_layers.{}.attn1.to_q.kernel"
    np.testing.assert_array_equal(now[name.format(2)], saved[name.format(1)])
    assert not np.allclose(now[name.format(1)], saved[name.format(0)])
    for layer in (1, 3, 4):
        for branch in ("attn1.to_out.0", "attn2.to_out.0", "ff.out"):
            assert not now[f"transformer_layers.{layer}.{branch}.kernel"].any()


def test_the_same_layer_count_is_a_plain_load(tmp_path):
    source = _model(layers=2, seed=0)
    path = tmp_path / "transformer.safetensors"
    weights.save_params(source, path)
    target = _model(layers=2, seed=1)
    assert load_grown(target, path) == {}
    np.testing.assert_array_equal(_logits(target), _logits(source))


def test_a_deeper_file_or_another_width_is_refused(tmp_path):
    path = tmp_path / "transformer.safetensors"
    weights.save_params(_model(layers=3, seed=0), path)
    with pytest.raises(weights.WeightsError, match="--layers 3 or more"):
        load_grown(_model(layers=2, seed=0), path)
    with pytest.raises(weights.WeightsError, match="wrong shape"):
        load_grown(_model(layers=4, seed=0, width=48), path)


def test_a_base_gains_a_position_embedding_at_zero(tmp_path):
    source = _model(layers=2, seed=0)
    path = tmp_path / "transformer.safetensors"
    weights.save_params(source, path)
    same_depth = _model(layers=2, seed=1, position_embedding=True)
    deeper = _model(layers=3, seed=1, position_embedding=True)

    assert load_grown(same_depth, path) == {"added_params": ["position_embedding"]}
    assert load_grown(deeper, path) == {
        "added_params": ["position_embedding"],
        "deepened_from_layers": 2,
        "inserted_layers": [2],
    }

    for model in (same_depth, deeper):
        assert not weights.flat_params(model)["position_embedding"].any()  # [16, 32] zeros
        np.testing.assert_allclose(_logits(model), _logits(source), atol=1e-5)


def test_a_file_with_a_position_embedding_needs_a_model_with_one(tmp_path):
    path = tmp_path / "transformer.safetensors"
    weights.save_params(_model(layers=2, seed=0, position_embedding=True), path)
    with pytest.raises(weights.WeightsError, match="position_embedding"):
        load_grown(_model(layers=2, seed=0), path)
