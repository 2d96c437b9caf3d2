"""The pure, jitted StyleDrop train step: Muse masking, masked-token loss, adapter-only update.

The model is split once into (graphdef, adapter state, frozen base state). The step takes
the base state as an argument (never closed over, never copied, never donated) and
differentiates with respect to the adapter state only. All randomness of step s comes
from `fold_in(seed_key, s)`, so a resumed run draws exactly what an uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from muse import schedule


def mask_tokens(
    key: jax.Array, ids: jax.Array, mask_token_id: int, schedule_name: str = "cosine"
) -> tuple[jax.Array, jax.Array]:
    """Muse masking: per example, mask round(L * cos(pi/2 * u)) (>= 1) random positions.

    Args:
        key: PRNG key.
        ids: [B, h, w] token ids.
        mask_token_id: Id written at masked positions.
        schedule_name: Mask schedule ("cosine" as Muse).

    Returns:
        (masked ids [B, h, w], mask [B, h, w] bool).
    """
    batch = ids.shape[0]
    flat = ids.reshape(batch, -1)
    length = flat.shape[1]
    ratio_key, order_key = jax.random.split(key)
    ratio = schedule.training_mask_ratio(ratio_key, batch, schedule_name)  # [B]
    count = jnp.clip(jnp.round(length * ratio), 1, length).astype(jnp.int32)  # [B]
    noise = jax.random.uniform(order_key, flat.shape)
    rank = jnp.argsort(jnp.argsort(noise, axis=-1), axis=-1)  # [B, L] position's rank
    mask = rank < count[:, None]
    masked = jnp.where(mask, mask_token_id, flat)
    return masked.reshape(ids.shape), mask.reshape(ids.shape)


def masked_cross_entropy(
    logits: jax.Array, targets: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy over masked positions.

    Args:
        logits: [B, h, w, V].
        targets: [B, h, w] true ids.
        mask: [B, h, w] bool, where the loss counts.

    Returns:
        (loss, accuracy) scalars.
    """
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # [B, h, w]
    weight = mask.astype(jnp.float32)
    count = jnp.maximum(weight.sum(), 1.0)
    loss = (losses * weight).sum() / count
    accuracy = ((logits.argmax(-1) == targets) * weight).sum() / count
    return loss, accuracy


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    batch_size: int,
    mask_token_id: int,
    *,
    caption_dropout: float = 0.0,
    empty_prompt_index: int = 0,
) -> Callable[..., Any]:
    """Builds the jitted step (adapter, opt, base, pool, step, key) -> (adapter, opt, metrics).

    Args:
        graphdef: Graph of the model with adapters injected.
        tx: The optimizer (over the adapter state only).
        batch_size: Examples per step, drawn from the token pool.
        mask_token_id: The model's mask id.
        caption_dropout: Probability of replacing an example's prompt by the empty prompt
            (base-model training, so classifier-free guidance has an unconditional model).
        empty_prompt_index: Row of the empty prompt in the pool's text arrays.

    The trainable state is whatever the caller split out first (adapters for StyleDrop,
    every parameter for base training); the third argument holds the rest, frozen.

    Returns:
        A jitted function; the adapter and optimizer states are donated (updated in place).
    """

    def step_fn(adapter_state, opt_state, base_state, pool, step, seed_key):
        ids_pool, prompt_index, hidden, pooled, micro = pool
        key = jax.random.fold_in(seed_key, step)
        pick_key, mask_key, drop_key = jax.random.split(key, 3)
        # A shuffled pass over the pool, repeated when the pool is smaller than a batch.
        size = ids_pool.shape[0]
        order = jax.random.permutation(pick_key, size)
        rows = jnp.tile(order, -(-batch_size // size))[:batch_size]  # [B]
        targets = ids_pool[rows]  # [B, h, w]
        masked, mask = mask_tokens(mask_key, targets, mask_token_id)
        text_rows = prompt_index[rows]
        if caption_dropout > 0:
            dropped = jax.random.uniform(drop_key, (batch_size,)) < caption_dropout
            text_rows = jnp.where(dropped, empty_prompt_index, text_rows)
        micro_b = jnp.broadcast_to(micro, (batch_size, micro.shape[-1]))

        def loss_fn(adapter):
            model = nnx.merge(graphdef, adapter, base_state)
            text_hidden = hidden[text_rows].astype(jnp.float32)
            logits = model(masked, text_hidden, pooled[text_rows].astype(jnp.float32), micro_b)
            return masked_cross_entropy(logits, targets, mask)

        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(adapter_state)
        updates, opt_state = tx.update(grads, opt_state, adapter_state)
        adapter_state = optax.apply_updates(adapter_state, updates)
        metrics = {"loss": loss, "accuracy": accuracy, "masked": mask.sum()}
        return adapter_state, opt_state, metrics

    return jax.jit(step_fn, donate_argnums=(0, 1))
