"""The base trainer's optimizer: a fed learning rate, and faster rates for named parameters."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from zoo_build.schedule import adamw_with_fed_rate, feed_learning_rate


def _one_update(rate_scales):
    params = {"position_embedding": jnp.ones((3,)), "layer": {"kernel": jnp.ones((2, 2))}}
    grads = {"position_embedding": jnp.full((3,), 0.1), "layer": {"kernel": jnp.full((2, 2), 0.1)}}
    tx = adamw_with_fed_rate(0.0, rate_scales=rate_scales)
    state = feed_learning_rate(tx.init(params), 1e-2)
    updates, _ = tx.update(grads, state, params)
    return updates


def test_named_parameters_move_by_their_factor_and_the_rest_as_before():
    plain = _one_update(None)
    scaled = _one_update({"position_embedding": 20.0})
    np.testing.assert_allclose(scaled["position_embedding"], 20 * plain["position_embedding"])
    np.testing.assert_array_equal(scaled["layer"]["kernel"], plain["layer"]["kernel"])
    np.testing.assert_allclose(plain["layer"]["kernel"], -1e-2, rtol=1e-3)  # Adam's first step


def test_without_scales_the_state_keeps_its_two_stages():
    params = {"w": jnp.ones((2,))}
    assert len(adamw_with_fed_rate(0.0).init(params)) == 2  # checkpoints of earlier runs resume
    state = adamw_with_fed_rate(0.0, rate_scales={"w": 2.0}).init(params)
    assert isinstance(state[2], optax.EmptyState)
    assert float(feed_learning_rate(state, 0.5)[1].hyperparams["learning_rate"]) == 0.5
