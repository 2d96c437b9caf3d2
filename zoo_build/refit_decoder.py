"""Refitting a tokenizer's decoder, with the encoder and codes kept.

Two uses. `zoo compact-vq` replaces 1024 trained codes by 128 k-means centroids, but the
decoder was trained on the old codes and loses about 1 dB on the centroids. And `zoo
refit-decoder` trains a tokenizer's decoder longer than its own training did, after a base
has been trained on its codes (`zoo_build.refit_run`). Refitting trains only
`post_quant_conv` and `decoder` on the code grids the tokenizer assigns to its training
images:

    ids = tokenize(x)                        [N, h, w]   fixed: computed once, no gradient
    x'  = decoder(post_quant_conv(codebook[ids]))  [N, H, W, 3]
    loss = |x - x'|                          (on unclipped outputs, as `train_vq`)

The encoder, `quant_conv` and the codebook are untouched, so every image keeps its
tokens: a base U-ViT trained on the compacted tokenizer's codes stays valid for the
refitted one, and only its pictures get sharper. Mirrored copies (when `hflip`) are
tokenized too, since a mirror changes the tokens. Batches and flips come from
`fold_in(key(seed), step)`, so a refit is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from muse.vq import VQModel
from zoo_build.vq_metrics import map_batches
from zoo_build.vq_step import make_optimizer


@dataclass(frozen=True)
class RefitConfig:
    """Settings of a decoder refit.

    Attributes:
        steps: Adam steps (0: no refit).
        batch_size: Images per step.
        learning_rate: Peak learning rate (linear warm-up, cosine decay to 5%).
        warmup_steps: Warm-up length.
        hflip: Also fit the mirrored images (with their own tokens).
        seed: Seed of the batches.
    """

    steps: int = 1500
    batch_size: int = 16
    learning_rate: float = 5e-4
    warmup_steps: int = 50
    hflip: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(
                f"refit steps must be >= 0 and batch size >= 1, got {self.steps}, "
                f"{self.batch_size}."
            )


def _is_decoder_param(path: tuple, variable: object) -> bool:
    """The parameters a refit trains: `post_quant_conv.*` and `decoder.*`."""
    return isinstance(variable, nnx.Param) and path[0] in ("post_quant_conv", "decoder")


def tokenize_all(model: VQModel, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Code grids of uint8 images [N, H, W, 3] -> [N, h, w] int32."""
    tokenize = jax.jit(lambda x: model.tokenize(x.astype(jnp.float32) / 255.0))
    return map_batches(tokenize, images, batch_size).astype(np.int32)


def _make_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, config: RefitConfig):
    """The jitted refit step (params, opt_state, rest, images, ids, step, key) -> ..."""

    def loss_fn(params, rest, targets, ids):
        model = nnx.merge(graphdef, params, rest)
        z = model.quantize.lookup(ids)  # [B, h, w, D]
        pixels = model.decoder(model.post_quant_conv(z))  # [B, H, W, 3]
        return jnp.mean(jnp.abs(pixels - targets))

    @jax.jit
    def step(params, opt_state, rest, images, ids, index, key):
        batch_key = jax.random.fold_in(key, index)
        rows = jax.random.randint(batch_key, (config.batch_size,), 0, ids.shape[0])  # [B]
        count = images.shape[0]
        picked = images[rows % count].astype(jnp.float32) / 255.0  # [B, H, W, 3]
        mirrored = (rows >= count)[:, None, None, None]  # rows past N are the mirrored copies
        targets = jnp.where(mirrored, picked[:, :, ::-1], picked)
        loss, grads = jax.value_and_grad(loss_fn)(params, rest, targets, ids[rows])
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


@dataclass
class RefitState:
    """What a refit's steps run on: the trainable and frozen parts, data and the step.

    Attributes:
        graphdef: The tokenizer's structure.
        params: The trained parameters (`post_quant_conv.*`, `decoder.*`).
        rest: Everything else, frozen (encoder, `quant_conv`, codebook).
        opt_state: Adam's state for `params`.
        images: uint8 [N, H, W, 3], on the device.
        grids: int32 [N or 2N, h, w]: the code grids (then those of the mirrored copies).
        step_fn: The jitted step (params, opt_state, rest, images, grids, index, key)
            -> (params, opt_state, loss).
    """

    graphdef: nnx.GraphDef
    params: nnx.State
    rest: nnx.State
    opt_state: optax.OptState
    images: jax.Array
    grids: jax.Array
    step_fn: Callable


def prepare_refit(model: VQModel, images: np.ndarray, config: RefitConfig) -> RefitState:
    """Tokenizes the training images once and builds the optimizer and the step.

    Args:
        model: The tokenizer (its encoder, `quant_conv` and codebook are not changed).
        images: Training images, uint8 [N, H, W, 3].
        config: Settings.
    """
    ids = tokenize_all(model, images)  # [N, h, w]
    if config.hflip:
        ids = np.concatenate([ids, tokenize_all(model, images[:, :, ::-1])])  # [2N, h, w]
    graphdef, params, rest = nnx.split(model, _is_decoder_param, ...)
    tx = make_optimizer(config)  # the VQ trainer's schedule, with this refit's settings
    return RefitState(
        graphdef=graphdef,
        params=params,
        rest=rest,
        opt_state=tx.init(params),
        images=jnp.asarray(images),
        grids=jnp.asarray(ids),
        step_fn=_make_step(graphdef, tx, config),
    )


def refit_decoder(
    model: VQModel,
    images: np.ndarray,
    config: RefitConfig,
    progress: Callable[[int, float], None] | None = None,
) -> None:
    """Trains `model`'s `post_quant_conv` and `decoder` in place on its own code grids.

    In memory, in one go; `zoo_build.refit_run` is the resumable run with checkpoints.

    Args:
        model: The tokenizer (its encoder, `quant_conv` and codebook are not changed).
        images: Training images, uint8 [N, H, W, 3].
        config: Settings.
        progress: Called with (step, loss) after each step.
    """
    if config.steps == 0:
        return
    state = prepare_refit(model, images, config)
    params, opt_state = state.params, state.opt_state
    key = jax.random.key(config.seed)
    for index in range(config.steps):
        params, opt_state, loss = state.step_fn(
            params, opt_state, state.rest, state.images, state.grids, index, key
        )
        if progress is not None:
            progress(index + 1, float(loss))
    nnx.update(model, params)
