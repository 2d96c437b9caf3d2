"""The learning-rate schedule the zoo's JAX trainers (VQ, decoder refit, base) share."""

from __future__ import annotations

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
