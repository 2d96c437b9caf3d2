"""Decoding: parity of one step with diffusers' AmusedScheduler, and loop invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from muse.sampling import DecodeConfig, decode, decode_step

MASK = 15
VOCAB = 15  # codebook ids 0..14, mask id 15


def _random_logits_fn(ids, inputs):
    """Logits that depend on the ids and on per-row inputs, so branches differ."""
    del ids
    return inputs["table"]


@pytest.mark.parity
@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_step_matches_amused_scheduler_with_injected_draws(monkeypatch, schedule):
    from diffusers import AmusedScheduler
    from diffusers.schedulers import scheduling_amused

    num_steps, batch, height, width = 6, 3, 4, 4
    length = height * width
    rng = np.random.default_rng(0)
    reference = AmusedScheduler(mask_token_id=MASK, masking_schedule=schedule)
    reference.set_timesteps(num_steps, temperature=(2.0, 0.0))
    cfg = DecodeConfig(mask_token_id=MASK, num_steps=num_steps, schedule=schedule)
    temps = cfg.step_temperatures()
    np.testing.assert_allclose(temps, reference.temperatures.numpy(), rtol=1e-6)

    ids = np.full((batch, height, width), MASK, np.int64)
    for step, timestep in enumerate(reference.timesteps):
        logits = rng.standard_normal((batch, VOCAB, height, width)).astype(np.float32) * 3
        gumbel = rng.gumbel(size=(batch, length)).astype(np.float32)
        monkeypatch.setattr(
            scheduling_amused,
            "gumbel_noise",
            lambda t, generator=None, g=gumbel: torch.from_numpy(g),
        )
        out = reference.step(
            torch.from_numpy(logits),
            timestep,
            torch.from_numpy(ids),
            generator=torch.Generator().manual_seed(step),
        )
        x0_draw = out.pred_original_sample.numpy().reshape(batch, length)
        ours = decode_step(
            jnp.asarray(logits.reshape(batch, VOCAB, length).transpose(0, 2, 1)),
            jnp.asarray(ids.reshape(batch, length)),
            jnp.asarray(step),
            jnp.asarray(x0_draw),
            jnp.asarray(gumbel),
            jnp.asarray(temps[step]),
            jnp.full((batch,), length),
            cfg,
        )
        expected = out.prev_sample.numpy().reshape(batch, length)
        np.testing.assert_array_equal(np.asarray(ours), expected)
        ids = expected.reshape(batch, height, width)
    assert (ids != MASK).all()


def _decode_inputs(branches: int, batch: int, side: int, seed: int = 0):
    table = jax.random.normal(jax.random.key(seed), (branches * batch, side, side, VOCAB)) * 2
    return {"table": table}


@pytest.mark.parametrize("style", ["amused", "maskgit"])
def test_every_token_is_decoded_exactly_once(style):
    side, batch, steps = 5, 3, 8
    temperature = (2.0, 0.0) if style == "amused" else 4.5
    cfg = DecodeConfig(mask_token_id=MASK, num_steps=steps, style=style, temperature=temperature)
    init = jnp.full((batch, side, side), MASK)
    ids, history = decode(
        _random_logits_fn,
        _decode_inputs(2, batch, side),
        jnp.array([-1.0, 2.0]),
        init,
        jax.random.key(1),
        cfg,
        return_history=True,
    )
    history = np.asarray(history).reshape(steps, batch, -1)
    assert (history[-1] != MASK).all()
    np.testing.assert_array_equal(history[-1].reshape(ids.shape), np.asarray(ids))
    previous = np.full_like(history[0], MASK)
    for step in range(steps):
        current = history[step]
        known_before = previous != MASK
        # A decoded token never changes and is never masked again.
        np.testing.assert_array_equal(current[known_before], previous[known_before])
        # The number still masked never grows, and shrinks at every step.
        assert ((current == MASK).sum(-1) < (previous == MASK).sum(-1)).all()
        previous = current
    masked_counts = (history == MASK).sum(-1)[:, 0]
    length = side * side
    expected = [
        max(
            1,
            min(
                int(length * np.cos(np.pi / 2 * (k + 1) / steps)),
                (length if k == 0 else masked_counts[k - 1]) - 1,
            ),
        )
        for k in range(steps - 1)
    ]
    np.testing.assert_array_equal(masked_counts[:-1], expected)


def test_same_key_same_result_and_different_key_differs():
    cfg = DecodeConfig(mask_token_id=MASK, num_steps=4)
    init = jnp.full((2, 4, 4), MASK)
    inputs = _decode_inputs(1, 2, 4)
    a = decode(_random_logits_fn, inputs, jnp.array([1.0]), init, jax.random.key(3), cfg)
    b = decode(_random_logits_fn, inputs, jnp.array([1.0]), init, jax.random.key(3), cfg)
    c = decode(_random_logits_fn, inputs, jnp.array([1.0]), init, jax.random.key(4), cfg)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (np.asarray(a) != np.asarray(c)).any()


def test_guidance_weights_combine_branch_logits():
    """Weights [1 - s, s] on (negative, prompt) equal u + s (c - u): branch order is respected."""
    cfg = DecodeConfig(mask_token_id=MASK, num_steps=1)
    # Very peaked logits: a one-step decode then samples the argmax of the guided logits.
    inputs = {"table": _decode_inputs(2, 1, 3, seed=5)["table"] * 50}
    weights = jnp.array([1 - 3.0, 3.0])
    ids = decode(
        _random_logits_fn, inputs, weights, jnp.full((1, 3, 3), MASK), jax.random.key(0), cfg
    )
    u, c = np.asarray(inputs["table"][0]), np.asarray(inputs["table"][1])
    np.testing.assert_array_equal(np.asarray(ids)[0], (u + 3.0 * (c - u)).argmax(-1))


def test_a_low_token_temperature_draws_the_most_likely_token():
    """At token temperature 1e-3 a one-step decode is the argmax for any key; at 1 it is not."""
    inputs = _decode_inputs(1, 4, 4, seed=7)  # logits of spread about 2: draws vary at 1
    weights, init = jnp.array([1.0]), jnp.full((4, 4, 4), MASK)
    argmax = np.asarray(inputs["table"]).argmax(-1)  # [B, H, W]
    for token_temperature, all_argmax in ((1e-3, True), (1.0, False)):
        cfg = DecodeConfig(mask_token_id=MASK, num_steps=1, token_temperature=token_temperature)
        draws = [
            np.asarray(decode(_random_logits_fn, inputs, weights, init, jax.random.key(k), cfg))
            for k in range(3)
        ]
        assert all((d == argmax).all() for d in draws) == all_argmax


def test_decode_does_not_recompile_between_steps_or_calls():
    traces = {"count": 0}

    def fn(ids, inp):
        traces["count"] += 1  # runs once per trace, not per step
        return inp["table"]

    cfg = DecodeConfig(mask_token_id=MASK, num_steps=6)
    run = jax.jit(lambda inputs, w, init, key: decode(fn, inputs, w, init, key, cfg))
    init = jnp.full((2, 4, 4), MASK)
    for seed in range(3):
        run(
            _decode_inputs(2, 2, 4, seed), jnp.array([-2.0, 3.0 + seed]), init, jax.random.key(seed)
        )
    assert traces["count"] == 1
    assert run._cache_size() == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="decoding style"):
        DecodeConfig(mask_token_id=MASK, style="nope")
    with pytest.raises(ValueError, match="num_steps"):
        DecodeConfig(mask_token_id=MASK, num_steps=0)
    with pytest.raises(ValueError, match="token_temperature"):
        DecodeConfig(mask_token_id=MASK, token_temperature=0.0)


@pytest.mark.parametrize("style", ["amused", "maskgit"])
def test_a_decode_in_two_phases_keeps_the_first_phases_tokens_and_finishes(style):
    side, batch, steps, split = 5, 3, 8, 5
    temperature = (2.0, 0.0) if style == "amused" else 4.5
    cfg = DecodeConfig(mask_token_id=MASK, num_steps=steps, style=style, temperature=temperature)
    init = jnp.full((batch, side, side), MASK)
    whole = decode(_random_logits_fn, _decode_inputs(2, batch, side), jnp.array([-1.0, 2.0]),
                   init, jax.random.key(1), cfg)  # fmt: skip
    default_range = decode(
        _random_logits_fn, _decode_inputs(2, batch, side), jnp.array([-1.0, 2.0]), init,
        jax.random.key(1), cfg, steps=(0, steps),
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(whole), np.asarray(default_range))

    first, history = decode(
        _random_logits_fn, _decode_inputs(2, batch, side, seed=5), jnp.array([-1.0, 2.0]), init,
        jax.random.key(2), cfg, return_history=True, steps=(0, split),
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(history[split - 1]), np.asarray(first))
    assert not np.asarray(history[split:]).any()  # steps outside the range stay zero
    # The second phase has other branches (one, other inputs) and the first phase's count.
    from muse.sampling import initial_base_count

    last = decode(
        _random_logits_fn, _decode_inputs(1, batch, side, seed=6), jnp.array([1.0]), first,
        jax.random.key(3), cfg, steps=(split, steps), base_count=initial_base_count(init, cfg),
    )  # fmt: skip
    first, last = np.asarray(first), np.asarray(last)
    known = first != MASK
    assert known.any() and (~known).any()  # the first phase left part of the grid
    np.testing.assert_array_equal(last[known], first[known])
    assert (last != MASK).all()
    # Each phase keeps the schedule of the whole decode: after `split` of `steps` steps,
    # floor(L * cos(pi/2 * split/steps)) tokens are still masked.
    masked = (first == MASK).reshape(batch, -1).sum(-1)
    expected = int(side * side * np.cos(np.pi / 2 * split / steps))
    np.testing.assert_array_equal(masked, expected)


def test_a_step_range_outside_the_schedule_is_refused():
    cfg = DecodeConfig(mask_token_id=MASK, num_steps=4)
    init = jnp.full((1, 2, 2), MASK)
    for steps in ((3, 2), (0, 5), (-1, 2)):
        with pytest.raises(ValueError, match="steps must satisfy"):
            decode(_random_logits_fn, _decode_inputs(1, 1, 2), jnp.array([1.0]), init,
                   jax.random.key(0), cfg, steps=steps)  # fmt: skip
