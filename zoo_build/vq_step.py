"""One step of VQ tokenizer training: the forward, the Adam update, the EMA codebook.

The step quantizes with a straight-through estimator, updates every parameter but the
codebook with Adam, and moves the codebook by moving averages with dead-code restarts.

The training forward is assembled from the model's submodules (`encoder`, `quant_conv`,
`quantize`, `post_quant_conv`, `decoder`) because `VQModel.decode` starts from ids and so
has no gradient path through the quantizer:

    z  = quant_conv(encoder(x))                     [B, h, w, D]
    id = quantize(sg(z))                            [B, h, w]   nearest code
    zq = z + sg(codebook[id] - z)                   straight-through estimator
    x' = decoder(post_quant_conv(zq))               [B, H, W, 3]
    loss = |x - x'| (or squared) + beta |z - sg(codebook[id])|^2

The codebook is not trained by gradients: it is the exponential moving average of the
encoder outputs assigned to each code (VQ-VAE-2 / SoundStream style), and every
`restart_every` steps each code whose usage has decayed below `dead_threshold` is moved
onto an encoder output of the current batch, drawn with probability proportional to its
quantization error, so codes go where reconstruction needs them. The optimizer (Adam, warm
up and cosine decay) updates every other parameter. Everything random in step s comes from
`fold_in(key(seed), s)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from muse.vq import VQModel
from zoo_build.schedule import warmup_cosine_schedule
from zoo_build.vq_train_config import VQTrainConfig

_EMA_EPS = 1e-5  # Laplace smoothing of the EMA code counts


def split_model(model: VQModel) -> tuple[nnx.GraphDef, nnx.State, nnx.State, nnx.State]:
    """(graphdef, codebook state, trainable parameters, rest) of a VQ model."""
    return nnx.split(model, nnx.PathContains("quantize"), nnx.Param, ...)


def _codebook_array(codebook: nnx.State) -> jax.Array:
    return codebook["quantize"]["embedding"]["embedding"][...]


def _with_codebook(codebook: nnx.State, value: jax.Array) -> nnx.State:
    return jax.tree.map(lambda _: value, codebook)


def init_ema(codebook: nnx.State) -> dict[str, jax.Array]:
    """EMA statistics: zero counts, so step 0 restarts every code from encoder outputs."""
    table = _codebook_array(codebook)  # [K, D]
    return {"count": jnp.zeros(table.shape[:1], jnp.float32), "sum": jnp.zeros_like(table)}


def make_optimizer(config: VQTrainConfig | Any) -> optax.GradientTransformation:
    """Adam with warm-up, cosine decay to 5% and global-norm clipping at 1.

    Args:
        config: Any settings with `learning_rate`, `warmup_steps` and `steps` (the VQ's,
            or a decoder refit's).
    """
    schedule = warmup_cosine_schedule(config.learning_rate, config.warmup_steps, config.steps)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


def augment(images: jax.Array, key: jax.Array, config: VQTrainConfig) -> jax.Array:
    """uint8 [B, H, W, 3] -> float [0, 1], randomly mirrored left-right."""
    x = images.astype(jnp.float32) / 255.0
    if config.hflip:
        flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
        x = jnp.where(flip, x[:, :, ::-1], x)
    return x


def update_codebook(
    ema: dict[str, jax.Array],
    z: jax.Array,
    ids: jax.Array,
    errors: jax.Array,
    restart: jax.Array,
    key: jax.Array,
    config: VQTrainConfig,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """EMA codebook update, then dead-code restarts when `restart` is true.

    Args:
        ema: {"count": [K], "sum": [K, D]}.
        z: [T, D] encoder outputs of the batch (float32, no gradient).
        ids: [T] their nearest codes.
        errors: [T] their squared quantization errors.
        restart: Scalar bool, whether this step restarts dead codes.
        key: PRNG key of the restarts.
        config: Settings.

    Returns:
        (new EMA statistics, new codebook [K, D]).
    """
    num_codes = ema["count"].shape[0]
    decay = config.ema_decay
    hits = jnp.zeros((num_codes,), jnp.float32).at[ids].add(1.0)  # [K]
    sums = jax.ops.segment_sum(z, ids, num_segments=num_codes)  # [K, D]
    count = decay * ema["count"] + (1.0 - decay) * hits
    total = decay * ema["sum"] + (1.0 - decay) * sums
    n = jnp.sum(count)
    smoothed = (count + _EMA_EPS) / (n + num_codes * _EMA_EPS) * n  # [K]
    codebook = total / jnp.maximum(smoothed, 1e-12)[:, None]
    # Restarts: dead codes jump to encoder outputs of the batch, the worst-quantized first
    # (Gumbel top-k on the log error: drawn in proportion to the error, without replacement).
    dead = restart & (count < config.dead_threshold)  # [K]
    gumbel_key, noise_key = jax.random.split(key)
    scores = jnp.log(errors + 1e-12) + jax.random.gumbel(gumbel_key, errors.shape)  # [T]
    order = jnp.argsort(-scores)  # [T] token indices, best candidates first
    rank = jnp.cumsum(dead) - 1  # [K] the i-th dead code takes the i-th candidate
    tokens = z.shape[0]
    fresh = z[order[rank % tokens]]  # [K, D]
    # More dead codes than tokens: the second round gets jittered copies.
    scale = jnp.std(z) * 0.01
    jitter = scale * jax.random.normal(noise_key, fresh.shape)
    fresh = fresh + jnp.where((rank >= tokens)[:, None], jitter, 0.0)
    codebook = jnp.where(dead[:, None], fresh, codebook)
    count = jnp.where(dead, config.restart_count, count)
    total = jnp.where(dead[:, None], fresh * config.restart_count, total)
    return {"count": count, "sum": total}, codebook


def make_vq_train_step(
    graphdef: nnx.GraphDef, tx: optax.GradientTransformation, config: VQTrainConfig
) -> Callable[..., Any]:
    """Builds the jitted step.

    `step_fn(params, codebook, ema, opt_state, rest, data, step, seed_key)` ->
    `(params, codebook, ema, opt_state, metrics)`, where `data` is the uint8 training set
    [N, H, W, 3] and `step` the 0-based step number. The four states are donated.
    """
    restart_stop = int(config.restart_until * config.steps)

    def step_fn(params, codebook, ema, opt_state, rest, data, step, seed_key):
        key = jax.random.fold_in(seed_key, step)
        pick_key, flip_key, restart_key = jax.random.split(key, 3)
        rows = jax.random.randint(pick_key, (config.batch_size,), 0, data.shape[0])  # [B]
        x = augment(data[rows], flip_key, config)  # [B, H, W, 3]
        table = _codebook_array(codebook)  # [K, D]

        def loss_fn(trainable):
            model = nnx.merge(graphdef, codebook, trainable, rest)
            z = model.encode(x)  # [B, h, w, D] float32
            ids = model.quantize(jax.lax.stop_gradient(z))  # [B, h, w]
            e = jnp.take(table, ids, axis=0)  # [B, h, w, D]
            commit = jnp.mean((z - e) ** 2)
            z_st = z + jax.lax.stop_gradient(e - z)  # straight-through
            h = model.post_quant_conv(z_st.astype(model.dtype))  # [B, h, w, latent]
            recon = model.decoder(h).astype(jnp.float32)  # [B, H, W, 3]
            diff = recon - x
            rec = jnp.mean(jnp.abs(diff)) if config.recon_loss == "l1" else jnp.mean(diff**2)
            loss = rec + config.commitment * commit
            return loss, (z, ids, e, recon, rec, commit)

        grads, aux = jax.grad(loss_fn, has_aux=True)(params)
        z, ids, e, recon, rec, commit = aux
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        dim = z.shape[-1]
        flat_z = jax.lax.stop_gradient(z).reshape(-1, dim)  # [T, D]
        errors = jnp.sum((flat_z - e.reshape(-1, dim)) ** 2, axis=-1)  # [T]
        restart = (config.restart_every > 0) & (step % max(config.restart_every, 1) == 0)
        restart = restart & (step < max(restart_stop, 1))
        ema, table = update_codebook(
            ema, flat_z, ids.reshape(-1), errors, restart, restart_key, config
        )
        codebook = _with_codebook(codebook, table)
        mse = jnp.mean((jnp.clip(recon, 0.0, 1.0) - x) ** 2, axis=(1, 2, 3))  # [B]
        metrics = {
            "loss": rec + config.commitment * commit,
            "recon": rec,
            "commit": commit,
            "psnr": jnp.mean(-10.0 * jnp.log10(jnp.maximum(mse, 1e-10))),
            "usage": jnp.mean(ema["count"] >= config.dead_threshold),
        }
        return params, codebook, ema, opt_state, metrics

    return jax.jit(step_fn, donate_argnums=(0, 1, 2, 3))


@functools.lru_cache(maxsize=8)
def compiled_vq_step(
    graphdef: nnx.GraphDef, config: VQTrainConfig
) -> tuple[optax.GradientTransformation, Callable[..., Any]]:
    """(optimizer, jitted step) per model graph and settings, so repeated runs compile once.

    Pass settings whose reporting cadence is zeroed (`checkpoint_every`, `eval_every`,
    `eval_images`): steps do not depend on it, and the cache then hits across runs that
    differ only in it.
    """
    tx = make_optimizer(config)
    return tx, make_vq_train_step(graphdef, tx, config)
