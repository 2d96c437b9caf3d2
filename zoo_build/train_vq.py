"""Training the embedded VQ tokenizer on the emoji world (VQ-VAE with an EMA codebook).

The model is the project's `muse.vq.VQModel` (the aMUSEd VQ-GAN architecture) in a small
size: 64 px images -> an 8 x 8 grid of codebook ids. The training forward is assembled here
from the model's submodules (`encoder`, `quant_conv`, `quantize`, `post_quant_conv`,
`decoder`) because `VQModel.decode` starts from ids and so has no gradient path through
the quantizer:

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
up and cosine decay) updates every other parameter.

Everything random in step s comes from `fold_in(key(seed), s)` and checkpoints hold the
parameters, the codebook, its EMA statistics and the optimizer state, so a resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from muse import weights
from muse.config import VQConfig
from muse.folder_layout import VQ_FILE
from muse.vq import VQModel
from styledrop import train_checkpoint
from styledrop.zoo.draws import SPLITS
from zoo_build.dataset import load_dataset
from zoo_build.schedule import warmup_cosine_schedule

CONFIG_FILE = "vq_config.json"
INFO_FILE = "train_info.json"
LOG_FILE = "train_log.jsonl"
PSNR_CAP_DB = 100.0  # per-image PSNR cap, so a perfect image does not make the mean infinite
_EMA_EPS = 1e-5  # Laplace smoothing of the EMA code counts


@dataclass(frozen=True)
class VQTrainConfig:
    """Model size and hyperparameters of VQ tokenizer training.

    Attributes:
        block_out_channels: Encoder widths per level; n levels give a factor 2^(n-1)
            (4 levels: 64 px -> 8 x 8 tokens).
        layers_per_block: ResNet blocks per encoder level (the decoder has one more).
        latent_channels: Width of the encoder output / decoder input.
        vq_embed_dim: Width of a code vector (None: `latent_channels`).
        num_vq_embeddings: Codebook size.
        norm_num_groups: GroupNorm groups (must divide every width).
        steps: Optimizer steps.
        batch_size: Images per step.
        learning_rate: Peak Adam learning rate (linear warm-up, cosine decay to 5%).
        warmup_steps: Warm-up length.
        recon_loss: "l1" or "l2" reconstruction loss (on unclipped decoder outputs).
        commitment: Weight of the commitment loss |z - sg(e)|^2 (mean over elements).
        ema_decay: Decay of the codebook's moving averages.
        dead_threshold: A code whose EMA count (assignments per step) is below this is dead
            (0.02 with decay 0.99: used less than about once in 50 steps).
        restart_every: Steps between dead-code restarts (0: never).
        restart_until: Fraction of `steps` after which codes are no longer restarted, so
            the decoder can settle on the final codebook.
        restart_count: EMA count a restarted code starts with (a little above the
            threshold, so a restart nothing picks up is restarted again soon).
        splits: Dataset splits trained on (never "eval"; held-out styles are never read).
        hflip: Random horizontal flips.
        seed: Seed of initialisation, batches, flips and restarts.
        checkpoint_every: Steps between checkpoints.
        eval_every: Steps between evaluations on `eval_images` of the "eval" split (0: off).
            Evaluation only reports; it never influences training.
        eval_images: How many "eval" images those periodic evaluations use.
    """

    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)
    layers_per_block: int = 1
    latent_channels: int = 32
    vq_embed_dim: int | None = 16
    num_vq_embeddings: int = 1024
    norm_num_groups: int = 8
    steps: int = 7000
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    recon_loss: str = "l1"
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_threshold: float = 0.02
    restart_every: int = 10
    restart_until: float = 0.9
    restart_count: float = 0.05
    splits: tuple[str, ...] = ("vq", "base", "canonical")
    hflip: bool = True
    seed: int = 0
    checkpoint_every: int = 200
    eval_every: int = 200
    eval_images: int = 256

    def __post_init__(self):
        if self.recon_loss not in ("l1", "l2"):
            raise ValueError(f"recon_loss must be 'l1' or 'l2', got {self.recon_loss!r}.")
        if "eval" in self.splits or not set(self.splits) <= set(SPLITS):
            trainable = tuple(s for s in SPLITS if s != "eval")
            raise ValueError(f"splits must be taken from {trainable}; got {self.splits}.")

    def vq_config(self) -> VQConfig:
        """The model configuration these settings describe."""
        return VQConfig(
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            num_vq_embeddings=self.num_vq_embeddings,
            vq_embed_dim=self.vq_embed_dim,
            norm_num_groups=self.norm_num_groups,
            sample_size=64,
        )

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed (everything but reporting cadence)."""
        values = dataclasses.asdict(self)
        for name in ("checkpoint_every", "eval_every", "eval_images"):
            values.pop(name)
        return json.dumps(values, sort_keys=True)

    @classmethod
    def tiny(cls) -> VQTrainConfig:
        """Test preset: 32 px -> 16 x 16 tokens through one downsampler, 32 codes, 30 steps."""
        return cls(
            block_out_channels=(8, 16),
            layers_per_block=1,
            latent_channels=4,
            num_vq_embeddings=32,
            norm_num_groups=4,
            steps=30,
            batch_size=8,
            learning_rate=3e-3,
            warmup_steps=3,
            restart_every=5,
            dead_threshold=0.05,
            restart_count=0.1,
            splits=("vq",),
            checkpoint_every=0,
            eval_every=0,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VQTrainConfig:
        """Inverse of `dataclasses.asdict` (lists become tuples)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names
        })  # fmt: skip


# --------------------------------------------------------------------------------------------
# Metrics.


def psnr(reference: np.ndarray, reconstruction: np.ndarray, max_value: float = 1.0) -> np.ndarray:
    """Per-image peak signal-to-noise ratio in dB.

    Args:
        reference: [N, H, W, C] (or [H, W, C]) floats.
        reconstruction: Same shape as `reference`.
        max_value: The peak value (1.0 for images in [0, 1]).

    Returns:
        [N] float64 PSNR (a scalar for one image); +inf where the images are identical.
    """
    ref = np.asarray(reference, np.float64)
    rec = np.asarray(reconstruction, np.float64)
    if ref.shape != rec.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {rec.shape}")
    axes = tuple(range(ref.ndim - 3, ref.ndim))
    mse = np.mean((ref - rec) ** 2, axis=axes)  # [N]
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(max_value**2 / mse)


def _as_unit(images: np.ndarray | jax.Array) -> np.ndarray:
    """uint8 [0, 255] or float [0, 1] images -> float32 [0, 1]."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def map_batches(fn: Callable[[jax.Array], Any], images: np.ndarray, batch_size: int = 128) -> Any:
    """`fn` over images [N, H, W, 3] in fixed-shape batches (one compilation).

    Args:
        fn: A jitted function of a batch [B, H, W, 3] (any dtype), returning an array
            [B, ...] or a tuple of them.
        images: The images.
        batch_size: Rows per call; the last batch is padded with zeros and cut back.

    Returns:
        The outputs concatenated along the first axis, [N, ...] (a tuple if `fn` returns one).
    """
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pad = batch_size - len(chunk)  # one compiled shape
        padded = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        out.append(jax.tree.map(np.asarray, fn(jnp.asarray(padded))))
    # Only the last batch is padded: cutting the whole back to N drops exactly its padding.
    return jax.tree.map(lambda *parts: np.concatenate(parts)[: len(images)], *out)


@nnx.jit
def _reconstruct(model: VQModel, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Images [B, H, W, 3] in [0, 1] -> (reconstructions [B, H, W, 3], ids [B, h, w])."""
    ids = model.tokenize(images)
    return model.decode(ids), ids


def reconstruct_images(
    model: VQModel, images: np.ndarray | jax.Array, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Encodes, quantizes and decodes images in fixed-shape batches (one compilation).

    Args:
        model: The tokenizer.
        images: [N, H, W, 3], uint8 or floats in [0, 1].
        batch_size: Images per forward.

    Returns:
        (reconstructions float32 [N, H, W, 3] in [0, 1], code ids [N, h, w]).
    """
    images = _as_unit(images)  # [N, H, W, 3]
    recons, codes = map_batches(lambda x: _reconstruct(model, x), images, batch_size)
    return recons, codes


def reconstruction_scores(
    images: np.ndarray | jax.Array, reconstructions: np.ndarray, ids: np.ndarray, num_codes: int
) -> dict[str, float]:
    """Reconstruction quality and codebook use, from `reconstruct_images`' output.

    Args:
        images: The originals, [N, H, W, 3], uint8 or floats in [0, 1].
        reconstructions: float [N, H, W, 3] in [0, 1].
        ids: Code ids [N, h, w].
        num_codes: Codebook size.

    Returns:
        "psnr": mean over images of the per-image PSNR (dB, each capped at 100 dB);
        "psnr_global": PSNR of the mean squared error over all images (dB, capped);
        "codebook_usage": fraction of the codes used by at least one token;
        "perplexity": exp(entropy) of the code histogram (the effective number of codes).
    """
    images = _as_unit(images)
    per_image = np.minimum(psnr(images, reconstructions), PSNR_CAP_DB)
    mse = float(np.mean((images.astype(np.float64) - reconstructions) ** 2))
    counts = np.bincount(ids.reshape(-1), minlength=num_codes)
    probs = counts / max(counts.sum(), 1)
    entropy = -np.sum(probs[probs > 0] * np.log(probs[probs > 0]))
    return {
        "psnr": float(np.mean(per_image)),
        "psnr_global": PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, -10.0 * math.log10(mse)),
        "codebook_usage": float(np.mean(counts > 0)),
        "perplexity": float(np.exp(entropy)),
    }


def evaluate_vq(
    model: VQModel, images: np.ndarray | jax.Array, batch_size: int = 64
) -> dict[str, float]:
    """Reconstruction quality and codebook use of a VQ model on a set of images.

    Args:
        model: The tokenizer.
        images: [N, H, W, 3], uint8 or floats in [0, 1].
        batch_size: Images per forward.

    Returns:
        See `reconstruction_scores`.
    """
    recon, ids = reconstruct_images(model, images, batch_size)
    return reconstruction_scores(images, recon, ids, int(model.config.num_vq_embeddings))


# --------------------------------------------------------------------------------------------
# The training step.


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


def _augment(images: jax.Array, key: jax.Array, config: VQTrainConfig) -> jax.Array:
    """uint8 [B, H, W, 3] -> float [0, 1], randomly mirrored left-right."""
    x = images.astype(jnp.float32) / 255.0
    if config.hflip:
        flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
        x = jnp.where(flip, x[:, :, ::-1], x)
    return x


def _update_codebook(
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
        x = _augment(data[rows], flip_key, config)  # [B, H, W, 3]
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
        ema, table = _update_codebook(
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


# --------------------------------------------------------------------------------------------
# The training loop.


def load_training_images(data_dir: str | Path, splits: Sequence[str]) -> np.ndarray:
    """uint8 [N, H, W, 3]: the images of `splits` (never "eval", never held-out styles)."""
    if "eval" in splits:
        raise ValueError("The eval split is for measuring the tokenizer, not for training it.")
    return np.concatenate([load_dataset(data_dir, split=s)[0] for s in splits])


def _recipe_version(data_dir: Path) -> str | None:
    manifest = data_dir / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text()).get("recipe_version")
    return None


def _trim_log(path: Path, last_step: int) -> None:
    """Drops log records written after the checkpoint a run resumes from."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short when the run was killed
            continue
        if record.get("step", 0) <= last_step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


def has_checkpoint(out_dir: str | Path) -> bool:
    """Whether `out_dir` holds a training checkpoint."""
    return (Path(out_dir) / train_checkpoint.CHECKPOINT_DIR / "state.json").is_file()


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Normal samples redrawn outside 2 sigma, rescaled so their std is `std` (as flax)."""
    out = rng.standard_normal(shape)
    while (bad := np.abs(out) > 2.0).any():
        out[bad] = rng.standard_normal(int(bad.sum()))
    return (out * std / 0.87962566103423978).astype(np.float32)


def init_model(vq_config: VQConfig, seed: int) -> VQModel:
    """A randomly initialised model, drawn with numpy from `seed`.

    The distributions are flax's defaults (LeCun truncated-normal kernels and code vectors,
    zero biases, unit norm scales); drawing them with numpy avoids compiling one XLA
    program per parameter shape, which eager JAX initialisation costs (seconds on a CPU).
    """
    model = nnx.eval_shape(lambda: VQModel(vq_config, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in sorted(weights.flat_params(model, abstract=True).items()):
        shape = tuple(shape.shape)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "kernel":  # conv [kh, kw, in, out]: fan_in = kh * kw * in
            values[name] = _truncated_normal(rng, shape, math.sqrt(1.0 / np.prod(shape[:-1])))
        elif leaf == "embedding":  # codebook [K, D]
            values[name] = _truncated_normal(rng, shape, math.sqrt(1.0 / shape[-1]))
        elif leaf == "scale":
            values[name] = np.ones(shape, np.float32)
        else:
            values[name] = np.zeros(shape, np.float32)
    weights.assign(model, values, "init")
    return model


@functools.lru_cache(maxsize=8)
def _compiled_step(
    graphdef: nnx.GraphDef, config: VQTrainConfig
) -> tuple[optax.GradientTransformation, Callable[..., Any]]:
    """(optimizer, jitted step) per model graph and settings, so repeated runs compile once."""
    tx = make_optimizer(config)
    return tx, make_vq_train_step(graphdef, tx, config)


def _restore(out_dir: Path, config: VQTrainConfig):
    """A fresh model and training state, or the checkpoint's; and the jitted step.

    Returns:
        (model, codebook, params, rest, ema, opt_state, step reached, step_fn).
    """
    model = init_model(config.vq_config(), config.seed)
    graphdef, codebook, params, rest = split_model(model)
    # Steps do not depend on how often a run checkpoints or evaluates.
    cache_key = dataclasses.replace(config, checkpoint_every=0, eval_every=0, eval_images=0)
    tx, step_fn = _compiled_step(graphdef, cache_key)
    ema = init_ema(codebook)
    opt_state = tx.init(params)
    start = 0
    saved = train_checkpoint.restore(
        out_dir, (params, codebook, ema, opt_state), config.fingerprint()
    )
    if saved is not None:
        (params, codebook, ema, opt_state), start = saved
    return model, codebook, params, rest, ema, opt_state, start, step_fn


def _write_outputs(
    model: VQModel,
    out_dir: Path,
    data_dir: Path,
    config: VQTrainConfig,
    step: int,
    num_train: int,
    eval_images: np.ndarray,
) -> Path:
    """Writes the weights, `vq_config.json` and `train_info.json` (with the eval metrics)."""
    final = evaluate_vq(model, eval_images)
    path = out_dir / VQ_FILE
    weights.save_params(model, path)
    (out_dir / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    num_params = sum(int(np.prod(v.shape)) for v in weights.flat_params(model).values())
    info = {
        "train": dataclasses.asdict(config),
        "steps_done": step,
        "complete": step >= config.steps,
        "data_recipe_version": _recipe_version(data_dir),
        "train_images": num_train,
        "eval_images": len(eval_images),
        "eval": final,
        "parameters": num_params,
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    with (out_dir / LOG_FILE).open("a") as log:
        log.write(json.dumps({"step": step, "final_eval": final}) + "\n")
    return path


def train_vq(
    data_dir: str | Path,
    out_dir: str | Path,
    config: VQTrainConfig,
    progress: Callable[[dict], None] | None = None,
    *,
    images: np.ndarray | None = None,
    eval_images: np.ndarray | None = None,
    stop_after: int | None = None,
    time_limit_s: float | None = None,
) -> Path | None:
    """Trains (or resumes) the VQ tokenizer; writes `vqvae.safetensors` and `vq_config.json`.

    A checkpoint in `out_dir` written by a run with the same settings is resumed from;
    one written with other settings raises `CheckpointMismatchError`. `train_info.json`
    records the settings, the data recipe version, the parameter count and the final
    evaluation on the "eval" split.

    Args:
        data_dir: An emoji-world dataset folder (`styledrop zoo data`).
        out_dir: Run folder: checkpoint/, train_log.jsonl, the final weights and configs.
        config: Model size and hyperparameters.
        progress: Called after each step with a dict: step, steps, loss, recon, commit,
            psnr (batch, dB), usage (fraction of live codes), steps_per_s, eta_s; and after
            each periodic evaluation with step and eval_psnr, eval_usage.
        images: Training images uint8 [N, H, W, 3] instead of the dataset's `config.splits`.
        eval_images: Images for the periodic and final evaluations instead of the dataset's
            "eval" split.
        stop_after: Stop (with a checkpoint, without final weights) once this step is done;
            for interrupting a run on purpose.
        time_limit_s: Stop after this many seconds of this call with a checkpoint, and
            export the weights reached so far (`train_info.json` says "complete": false);
            a later call resumes.

    Returns:
        Path of the weights, or None when stopped by `stop_after`.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if images is None:
        images = load_training_images(data_dir, config.splits)
    if eval_images is None:
        eval_images = load_dataset(data_dir, split="eval")[0]
    began = time.perf_counter()
    model, codebook, params, rest, ema, opt_state, start, step_fn = _restore(out_dir, config)
    log_path = out_dir / LOG_FILE
    _trim_log(log_path, start)
    data = jnp.asarray(images)  # [N, H, W, 3] uint8
    key = jax.random.key(config.seed)
    last = config.steps if stop_after is None else min(stop_after, config.steps)

    def evaluate(subset: np.ndarray) -> dict[str, float]:
        nnx.update(model, codebook, params)
        return evaluate_vq(model, subset)

    done, timed_out = start, False
    with log_path.open("a") as log:
        for step in range(start, last):
            params, codebook, ema, opt_state, metrics = step_fn(
                params, codebook, ema, opt_state, rest, data, jnp.int32(step), key
            )
            record = {"step": step + 1, **{k: float(v) for k, v in metrics.items()}}
            log.write(json.dumps(record) + "\n")
            done = step + 1
            if config.checkpoint_every and done % config.checkpoint_every == 0:
                state = (params, codebook, ema, opt_state)
                train_checkpoint.save(out_dir, state, done, config.fingerprint())
                log.flush()
            elapsed = time.perf_counter() - began
            if progress is not None:
                rate = (done - start) / max(elapsed, 1e-9)
                progress({**record, "steps": config.steps, "steps_per_s": rate,
                          "eta_s": (config.steps - done) / rate})  # fmt: skip
            if config.eval_every and done % config.eval_every == 0 and done < config.steps:
                result = evaluate(eval_images[: config.eval_images])
                event = {"step": done, "eval_psnr": result["psnr"],
                         "eval_usage": result["codebook_usage"]}  # fmt: skip
                log.write(json.dumps(event) + "\n")
                if progress is not None:
                    progress(event)
            if time_limit_s is not None and elapsed >= time_limit_s and done < last:
                timed_out = True
                break
    train_checkpoint.save(out_dir, (params, codebook, ema, opt_state), done, config.fingerprint())
    if done < config.steps and not timed_out:
        return None  # stopped on purpose by `stop_after`
    nnx.update(model, codebook, params)
    return _write_outputs(model, out_dir, data_dir, config, done, len(images), eval_images)


def export_vq(data_dir: str | Path, out_dir: str | Path, config: VQTrainConfig) -> Path:
    """Writes weights, configs and the eval metrics from the run folder's checkpoint.

    For a run that was interrupted (`train_info.json` then records the step reached).

    Raises:
        FileNotFoundError: if the run folder has no checkpoint.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not has_checkpoint(out_dir):
        raise FileNotFoundError(f"No checkpoint in {out_dir}.")
    model, codebook, params, _, _, _, step, _ = _restore(out_dir, config)
    nnx.update(model, codebook, params)
    num_train = len(load_training_images(data_dir, config.splits))
    eval_images = load_dataset(data_dir, split="eval")[0]
    return _write_outputs(model, out_dir, data_dir, config, step, num_train, eval_images)


def load_vq(folder: str | Path) -> VQModel:
    """Loads a trained tokenizer from a folder holding `vq_config.json` and its weights."""
    folder = Path(folder)
    config = VQConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
    model = nnx.eval_shape(lambda: VQModel(config, rngs=nnx.Rngs(0)))
    weights.load_params(model, folder / VQ_FILE)
    return model


# --------------------------------------------------------------------------------------------
# Command line.


def _config_from_args(defaults: VQTrainConfig, args: argparse.Namespace) -> VQTrainConfig:
    """The training settings the command line asks for.

    Raises:
        ValueError: for settings `VQTrainConfig` refuses (e.g. the "eval" split).
    """
    return dataclasses.replace(
        defaults,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        num_vq_embeddings=args.codebook,
        block_out_channels=tuple(int(c) for c in args.channels.split(",")),
        latent_channels=args.latent,
        vq_embed_dim=args.embed_dim,
        norm_num_groups=args.groups,
        warmup_steps=args.warmup,
        splits=tuple(args.splits.split(",")),
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
    )


def main_train_vq(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo train vq --data DIR --out DIR [--steps N] [--resume]`.

    Returns:
        The exit code (2 when the folder holds a checkpoint and --resume is missing).
    """
    from tqdm import tqdm

    defaults = VQTrainConfig()
    parser = argparse.ArgumentParser(
        prog="styledrop zoo train vq",
        description=(
            "Train the embedded VQ tokenizer (64 px -> 8x8 codes) on an emoji-world dataset."
            " Checkpoints every --checkpoint-every steps; --resume continues bit-identically."
        ),
    )
    parser.add_argument("--data", type=Path, required=True, help="emoji-world dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--codebook", type=int, default=defaults.num_vq_embeddings)
    parser.add_argument(
        "--channels",
        default=",".join(map(str, defaults.block_out_channels)),
        help="encoder widths per level, e.g. 32,64,64,128",
    )
    parser.add_argument("--latent", type=int, default=defaults.latent_channels)
    parser.add_argument("--embed-dim", type=int, default=defaults.vq_embed_dim)
    parser.add_argument("--groups", type=int, default=defaults.norm_num_groups)
    parser.add_argument("--warmup", type=int, default=defaults.warmup_steps)
    parser.add_argument(
        "--splits",
        default=",".join(defaults.splits),
        help="dataset splits to train on, comma-separated (never eval)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="minutes; then checkpoint, export the weights so far and stop (resume later)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's checkpoint"
    )
    args = parser.parse_args(argv)
    if has_checkpoint(args.out) and not args.resume:
        print(
            f"error: {args.out} already holds a checkpoint; pass --resume to continue it"
            " or choose another --out.",
            file=sys.stderr,
        )
        return 2
    try:
        config = _config_from_args(defaults, args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bar = tqdm(total=config.steps, unit="step", desc="VQ tokenizer")

    def show(event: dict) -> None:
        if "eval_psnr" in event:
            bar.write(
                f"step {event['step']}: eval PSNR {event['eval_psnr']:.2f} dB,"
                f" usage {event['eval_usage']:.1%}"
            )
            return
        if bar.n == 0 and event["step"] > 1:  # resumed: rate and ETA count from here
            bar.reset()
            bar.initial = bar.n = event["step"] - 1
        bar.update(event["step"] - bar.n)
        bar.set_postfix(
            loss=f"{event['loss']:.4f}", psnr=f"{event['psnr']:.1f}", use=f"{event['usage']:.0%}"
        )

    try:
        limit = None if args.time_limit is None else 60.0 * args.time_limit
        path = train_vq(args.data, args.out, config, progress=show, time_limit_s=limit)
    except train_checkpoint.CheckpointMismatchError as error:
        bar.close()
        print(f"error: {error}", file=sys.stderr)
        return 2
    bar.close()
    info = json.loads((args.out / INFO_FILE).read_text())
    status = "" if info["complete"] else f" (stopped at step {info['steps_done']}; --resume)"
    print(
        f"Wrote {path}{status}: eval PSNR {info['eval']['psnr']:.2f} dB,"
        f" codebook usage {info['eval']['codebook_usage']:.1%}"
    )
    return 0
