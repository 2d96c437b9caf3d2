"""MaskGIT parallel decoding with guidance branches, as one `lax.fori_loop` with static shapes.

Decoding starts from a grid of mask tokens. At every step the model predicts logits for
all positions; the logits of several *guidance branches* are combined linearly; every
masked token is sampled; then the least confident of the newly sampled tokens are
masked again, fewer at each step, until none is left.

Guidance branches generalise classifier-free guidance. The caller evaluates all
branches in one batched model call: row `i * B + b` of the model input belongs to
branch `i`, example `b`. The combined logits are `sum_i weights[i] * logits_i`:

* no guidance: one branch, weights [1];
* classifier-free guidance with scale s: branches (negative, prompt), weights [1 - s, s];
* StyleDrop guidance (paper Eq. 4) and style + subject mixing (Eqs. 5-6) are other
  linear combinations, supplied by the caller.

Two re-masking rules are supported (`DecodeConfig.style`):

* "amused": the diffusers `AmusedScheduler` step: keep floor(L * mask_ratio) masked,
  temperature schedule from `muse.schedule.temperatures`;
* "maskgit": MaskGIT's rule: keep floor(U0 * mask_ratio) masked where U0 is the number
  of tokens unknown at the start, temperature choice_t * (1 - r).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from muse import schedule

LogitsFn = Callable[[jax.Array, Any], jax.Array]


@dataclass(frozen=True)
class DecodeConfig:
    """Static decoding settings (hashable: a change recompiles, as it must).

    Attributes:
        mask_token_id: Id of the mask token.
        num_steps: Decoding steps K.
        style: "amused" or "maskgit" (see the module docstring).
        schedule: Mask schedule, "cosine" or "linear".
        temperature: aMUSEd: (start, end) or a scalar start; MaskGIT: the choice temperature.
        token_temperature: Softmax temperature of the token draw: the combined logits are
            divided by it before each token is sampled and ranked by confidence. 1 is the
            rule of aMUSEd and MaskGIT; below 1 draws closer to the most likely token.
    """

    mask_token_id: int
    num_steps: int = 12
    style: str = "amused"
    schedule: str = "cosine"
    temperature: float | tuple[float, float] = (2.0, 0.0)
    token_temperature: float = 1.0

    def __post_init__(self):
        if self.style not in ("amused", "maskgit"):
            raise ValueError(f"Unknown decoding style {self.style!r}; use 'amused' or 'maskgit'.")
        if self.schedule not in schedule.SCHEDULES:
            raise ValueError(f"Unknown mask schedule {self.schedule!r}.")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {self.num_steps}.")
        if not self.token_temperature > 0:
            raise ValueError(f"token_temperature must be positive, got {self.token_temperature}.")
        if isinstance(self.temperature, list):
            object.__setattr__(self, "temperature", tuple(self.temperature))

    def step_temperatures(self) -> np.ndarray:
        """[num_steps] Gumbel temperatures for this configuration."""
        if self.style == "maskgit":
            return schedule.maskgit_temperatures(self.num_steps, float(self.temperature))
        return schedule.temperatures(self.num_steps, self.temperature)


def combine_branches(logits: jax.Array, weights: jax.Array, batch: int) -> jax.Array:
    """Weighted sum of branch logits.

    Args:
        logits: [n * B, ..., V] branch-major model outputs.
        weights: [n] branch weights.
        batch: B.

    Returns:
        [B, ..., V] float32 `sum_i weights[i] * logits_i`.
    """
    stacked = logits.reshape(weights.shape[0], batch, *logits.shape[1:]).astype(jnp.float32)
    return jnp.tensordot(weights.astype(jnp.float32), stacked, axes=1)


def decode_step(
    logits: jax.Array,
    ids: jax.Array,
    step: jax.Array,
    x0_draw: jax.Array,
    gumbel: jax.Array,
    temperature: jax.Array,
    base_count: jax.Array,
    cfg: DecodeConfig,
) -> jax.Array:
    """One decoding step with its random draws given (so it can be checked exactly).

    Args:
        logits: [B, L, V] combined logits.
        ids: [B, L] current tokens (mask token where unknown).
        step: Scalar step index k in [0, K).
        x0_draw: [B, L] token ids sampled from softmax(logits).
        gumbel: [B, L] standard Gumbel noise.
        temperature: Scalar Gumbel temperature for this step.
        base_count: [B] count the mask ratio applies to (L for aMUSEd, unknown-at-start
            for MaskGIT).
        cfg: Static settings.

    Returns:
        [B, L] tokens after the step: on the last step, every token is decoded.
    """
    unknown = ids == cfg.mask_token_id  # [B, L]
    x0 = jnp.where(unknown, x0_draw, ids)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    chosen = jnp.take_along_axis(probs, x0[..., None], axis=-1)[..., 0]  # [B, L]
    confidence = jnp.log(jnp.maximum(chosen, 1e-20)) + temperature * gumbel
    # Known tokens are never masked again: each token is decoded exactly once.
    confidence = jnp.where(unknown, confidence, jnp.inf)

    progress = (step + 1).astype(jnp.float32) / cfg.num_steps
    ratio = schedule.mask_ratio(progress, cfg.schedule)
    mask_len = jnp.floor(base_count.astype(jnp.float32) * ratio).astype(jnp.int32)  # [B]
    # Mask no more than were unknown minus one, and at least one, as the reference.
    mask_len = jnp.minimum(unknown.sum(-1).astype(jnp.int32) - 1, mask_len)
    mask_len = jnp.maximum(mask_len, 1)
    cut_off = jnp.take_along_axis(jnp.sort(confidence, axis=-1), mask_len[:, None], axis=-1)
    remask = confidence < cut_off
    masked = jnp.where(remask, cfg.mask_token_id, x0)
    return jnp.where(step == cfg.num_steps - 1, x0, masked)


def initial_base_count(init_ids: jax.Array, cfg: DecodeConfig) -> jax.Array:
    """[B] the count the mask ratio applies to: L (aMUSEd) or the unknown tokens (MaskGIT).

    Args:
        init_ids: [B, H, W] the tokens decoding starts from.
        cfg: Static settings.
    """
    batch = init_ids.shape[0]
    flat = init_ids.reshape(batch, -1)
    if cfg.style == "maskgit":
        return (flat == cfg.mask_token_id).sum(-1).astype(jnp.int32)
    return jnp.full((batch,), flat.shape[1], jnp.int32)


def decode(
    logits_fn: LogitsFn,
    inputs: Any,
    weights: jax.Array,
    init_ids: jax.Array,
    key: jax.Array,
    cfg: DecodeConfig,
    return_history: bool = False,
    steps: tuple[int, int] | None = None,
    base_count: jax.Array | None = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Decodes a batch of token grids. Pure and traceable: jit it with `cfg` static.

    A decode may run in phases with different branches: steps (0, k) from all mask
    tokens, then steps (k, K) from their result, passing the first phase's `base_count`.

    Args:
        logits_fn: `(ids [n * B, H, W], inputs) -> logits [n * B, H, W, V]`, one call
            evaluating every guidance branch.
        inputs: Any pytree the logits function needs (text embeddings, adapter gates),
            laid out branch-major like the ids; passed through untouched.
        weights: [n] branch weights; the combined logits are `sum_i weights[i] * logits_i`.
        init_ids: [B, H, W] starting tokens (all mask tokens for plain generation).
        key: PRNG key; the same key gives the same images.
        cfg: Static decoding settings.
        return_history: Also return the tokens after every step.
        steps: The steps (first, end) to run, 0 <= first <= end <= K (default: all K).
        base_count: [B] the count the mask ratio applies to (default: L for aMUSEd, the
            unknown tokens of `init_ids` for MaskGIT; a later phase passes the first's,
            `initial_base_count`).

    Returns:
        [B, H, W] token ids, and with `return_history` a [K, B, H, W] history (rows of
        steps outside `steps` stay zero).
    """
    weights = jnp.asarray(weights, jnp.float32)
    num_branches = weights.shape[0]
    batch, height, width = init_ids.shape
    length = height * width
    temps = jnp.asarray(cfg.step_temperatures())
    ids0 = init_ids.reshape(batch, length).astype(jnp.int32)
    first, end = (0, cfg.num_steps) if steps is None else steps
    if not 0 <= first <= end <= cfg.num_steps:
        raise ValueError(f"steps must satisfy 0 <= first <= end <= {cfg.num_steps}, got {steps}.")
    if base_count is None:
        base_count = initial_base_count(init_ids, cfg)

    def body(step, carry):
        ids, key, history = carry
        key, sample_key, gumbel_key = jax.random.split(key, 3)
        tiled = jnp.tile(ids, (num_branches, 1)).reshape(num_branches * batch, height, width)
        logits = logits_fn(tiled, inputs)  # [n * B, H, W, V]
        combined = combine_branches(logits, weights, batch).reshape(batch, length, -1)
        combined = combined / cfg.token_temperature  # [B, L, V]
        x0_draw = jax.random.categorical(sample_key, combined, axis=-1)
        gumbel = jax.random.gumbel(gumbel_key, (batch, length), jnp.float32)
        ids = decode_step(combined, ids, step, x0_draw, gumbel, temps[step], base_count, cfg)
        if history is not None:
            history = history.at[step].set(ids)
        return ids, key, history

    history = jnp.zeros((cfg.num_steps, batch, length), jnp.int32) if return_history else None
    ids, _, history = jax.lax.fori_loop(first, end, body, (ids0, key, history))
    ids = ids.reshape(batch, height, width)
    if return_history:
        return ids, history.reshape(cfg.num_steps, batch, height, width)
    return ids
