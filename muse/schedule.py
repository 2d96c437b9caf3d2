"""Mask schedules and temperature schedules for Muse training and MaskGIT decoding.

A mask schedule maps progress r in [0, 1] to the fraction of tokens still masked:
cosine (Muse, aMUSEd: cos(pi/2 * r)) or linear (1 - r). Training draws the mask ratio
per example as cos(pi/2 * u), u ~ U(0, 1).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("cosine", "linear")


def mask_ratio(progress: jax.Array | float, schedule: str = "cosine") -> jax.Array:
    """Fraction of tokens that stay masked after `progress` of the decoding.

    Args:
        progress: r in [0, 1] (0: nothing decoded, 1: everything decoded).
        schedule: "cosine" or "linear".

    Returns:
        The mask ratio, same shape as `progress`.
    """
    progress = jnp.asarray(progress, jnp.float32)
    if schedule == "cosine":
        return jnp.cos(progress * (math.pi / 2))
    if schedule == "linear":
        return 1.0 - progress
    raise ValueError(f"Unknown mask schedule {schedule!r}; use one of {SCHEDULES}.")


def training_mask_ratio(key: jax.Array, batch: int, schedule: str = "cosine") -> jax.Array:
    """Draws a per-example mask ratio for Muse training: mask_ratio(u), u ~ U(0, 1).

    Returns:
        [batch] ratios in (0, 1]; the cosine schedule has mean 2 / pi (about 0.64).
    """
    return mask_ratio(jax.random.uniform(key, (batch,)), schedule)


def temperatures(num_steps: int, temperature: float | tuple[float, float]) -> np.ndarray:
    """Gumbel-noise temperature per decoding step, annealed linearly.

    Follows the aMUSEd scheduler: a pair (start, end) gives linspace(start, end, N);
    a scalar t gives linspace(t, 0.01, N).

    Returns:
        [num_steps] float32 temperatures.
    """
    if isinstance(temperature, tuple | list):
        start, end = temperature
    else:
        start, end = float(temperature), 0.01
    return np.linspace(start, end, num_steps, dtype=np.float32)


def maskgit_temperatures(num_steps: int, choice_temperature: float = 4.5) -> np.ndarray:
    """MaskGIT's annealing: t_k = choice_temperature * (1 - (k + 1) / K).

    Returns:
        [num_steps] float32 temperatures (the last one is 0).
    """
    progress = (np.arange(num_steps, dtype=np.float32) + 1) / num_steps
    return (choice_temperature * (1.0 - progress)).astype(np.float32)
