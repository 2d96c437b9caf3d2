"""The optional learned position embedding of the U-ViT (`TransformerConfig.position_embedding`).

aMUSEd has none: position reaches it only through depthwise 3x3 convolutions, which on a
fully masked grid tell apart only the cells near the border. These tests show that limit
and that the embedding lifts it.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

from muse import weights
from muse.config import TransformerConfig
from muse.transformer import UVit2D
from zoo_build.train_base import zoo_transformer_config


def _config(position_embedding: bool, downsample: bool = False) -> TransformerConfig:
    return zoo_transformer_config(
        16, 24, 20, grid=8, width=32, layers=1, downsample=downsample,
        position_embedding=position_embedding,
    )  # fmt: skip


def _fully_masked_logits(model: UVit2D) -> np.ndarray:
    """[8, 8, 16] logits of one fully masked grid, for a fixed random prompt."""
    rng = np.random.default_rng(0)
    ids = jnp.full((1, 8, 8), model.cfg.mask_token_id, jnp.int32)
    hidden = jnp.asarray(rng.normal(size=(1, 5, 24)), jnp.float32)
    pooled = jnp.asarray(rng.normal(size=(1, 20)), jnp.float32)
    micro = jnp.asarray([[64, 64, 0, 0, 6]], jnp.float32)
    return np.asarray(model(ids, hidden, pooled, micro))[0]


def test_without_it_the_interior_of_a_masked_grid_is_one_prediction():
    logits = _fully_masked_logits(UVit2D(_config(False), rngs=nnx.Rngs(0)))
    interior = logits[2:6, 2:6].reshape(16, -1)  # the cells two or more from every border
    np.testing.assert_allclose(interior, np.broadcast_to(interior[0], interior.shape), atol=1e-5)
    assert not np.allclose(logits[0, 0], logits[3, 3], atol=1e-3)  # a corner differs


def test_it_starts_at_zero_and_then_tells_every_cell_apart():
    plain = UVit2D(_config(False), rngs=nnx.Rngs(0))
    model = UVit2D(_config(True), rngs=nnx.Rngs(0))
    params = weights.flat_params(model)
    assert params["position_embedding"].shape == (64, 32)  # [8 * 8 cells, width]
    assert not params["position_embedding"].any()
    np.testing.assert_allclose(_fully_masked_logits(model), _fully_masked_logits(plain), atol=1e-5)

    rng = np.random.default_rng(1)
    params["position_embedding"] = rng.normal(size=(64, 32)).astype(np.float32)
    weights.assign(model, params)
    cells = _fully_masked_logits(model).reshape(64, -1)  # [64 cells, 16 codes]
    distances = np.abs(cells[:, None] - cells[None]).max(-1)  # [64, 64]
    assert (distances + np.eye(64) > 1e-3).all()


def test_a_downsampled_base_embeds_the_halved_grid():
    model = UVit2D(_config(True, downsample=True), rngs=nnx.Rngs(0))
    assert weights.flat_params(model)["position_embedding"].shape == (16, 32)  # [4 * 4, width]


def test_configs_written_before_it_read_as_without_it():
    with_it = _config(True)
    assert TransformerConfig.from_dict(with_it.to_dict()) == with_it
    older = {k: v for k, v in with_it.to_dict().items() if k != "position_embedding"}
    without = dataclasses.replace(with_it, position_embedding=False)
    assert TransformerConfig.from_dict(older) == without
