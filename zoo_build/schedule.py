"""The zoo trainers' learning-rate schedule: linear warm-up, then cosine decay to 5 %.

`warmup_cosine_schedule` is the optax form the JAX trainers (VQ, decoder refit, base)
share; `warmup_cosine_lr` is the per-step value the PyTorch trainers (text encoder, judge)
set on their optimizer.

`adamw_with_fed_rate` and `feed_learning_rate` give the base trainer an AdamW whose rate
is part of its state, set from the host before each step, instead of a schedule compiled
into the step: runs that differ only in length or warm-up (a timing probe and the run it
sizes, or a resumed run) then share one compiled step.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import jax
import jax.numpy as jnp
import optax


def warmup_cosine_schedule(learning_rate: float, warmup_steps: int, steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to `learning_rate`, then cosine decay to 5 % of it at `steps`.

    A run shorter than its warm-up (a quick probe) stays in the warm-up instead of failing
    optax's check for a positive decay length.

    Args:
        learning_rate: Peak learning rate.
        warmup_steps: Warm-up length.
        steps: Total optimizer steps of the run.
    """
    return optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup_steps, max(steps, warmup_steps + 1), learning_rate * 0.05
    )


def warmup_cosine_lr(step: int, peak: float, warmup: int, total: int, floor: float = 0.05) -> float:
    """Linear warm-up to `peak`, then cosine decay to `floor * peak` (step counts from 1).

    Args:
        step: The step about to be taken, from 1.
        peak: Peak learning rate.
        warmup: Warm-up length.
        total: Total optimizer steps of the run.
        floor: Final learning rate as a fraction of `peak`.
    """
    if step <= warmup:
        return peak * step / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def scale_updates_by_name(scales: Mapping[str, float]) -> optax.GradientTransformation:
    """Multiplies the updates of parameters whose path holds a name: a larger rate for them.

    Args:
        scales: {name: factor}; a parameter whose pytree path contains `name` has its
            update multiplied by `factor` (others are unchanged).
    """

    def scale(path, update):
        where = jax.tree_util.keystr(path)
        factor = math.prod(f for name, f in scales.items() if name in where)
        return update if factor == 1 else update * factor

    def update_fn(updates, state, params=None):
        del params
        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def adamw_with_fed_rate(
    weight_decay: float,
    clip_norm: float = 1.0,
    rate_scales: Mapping[str, float] | None = None,
    trainable: Collection[str] | None = None,
) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW whose learning rate `feed_learning_rate` sets.

    Args:
        weight_decay: AdamW's decoupled weight decay.
        clip_norm: Gradients are scaled to at most this global norm.
        rate_scales: {parameter name: factor} of parameters that learn at `factor` times
            the fed rate (`scale_updates_by_name`); None or empty: all at the fed rate
            (and the optimizer state has the two stages runs before this option saved).
        trainable: Dotted names of the only parameters that learn (`train_only`); None:
            all of them.
    """
    stages = [
        optax.clip_by_global_norm(clip_norm),
        optax.inject_hyperparams(optax.adamw)(learning_rate=0.0, weight_decay=weight_decay),
    ]
    if rate_scales:
        stages.append(scale_updates_by_name(rate_scales))
    if trainable is not None:
        stages.append(train_only(trainable))
    return optax.chain(*stages)


def feed_learning_rate(opt_state: tuple, value: float | jnp.ndarray) -> tuple:
    """`opt_state` of `adamw_with_fed_rate` with the rate of the next update set to `value`."""
    clip, adamw, *rest = opt_state
    rate = jnp.asarray(value, dtype=jnp.asarray(adamw.hyperparams["learning_rate"]).dtype)
    return (clip, adamw._replace(hyperparams={**adamw.hyperparams, "learning_rate": rate}), *rest)


def dotted_name(path: tuple) -> str:
    """The dotted parameter name of a pytree path into an `nnx.State` ("embed.conv.kernel")."""
    return ".".join(str(key.key) for key in path if isinstance(key, jax.tree_util.DictKey))


def train_only(names: Collection[str]) -> optax.GradientTransformation:
    """Zeroes the updates of every parameter but `names`: the others stay where they are.

    Weight decay is part of AdamW's update, so a parameter outside `names` does not move at
    all. Its gradient still counts in the global norm the first stage clips to.

    Args:
        names: Dotted parameter names ("embed.embeddings.embedding"), as
            `muse.weights.flat_params` gives them.
    """
    keep = frozenset(names)

    def update_fn(updates, state, params=None):
        del params
        zeroed = jax.tree_util.tree_map_with_path(
            lambda path, u: u if dotted_name(path) in keep else jnp.zeros_like(u), updates
        )
        return zeroed, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
