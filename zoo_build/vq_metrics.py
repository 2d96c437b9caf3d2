"""How well a VQ tokenizer reconstructs images, and how much of its codebook it uses.

`evaluate_vq` (and its two halves, `reconstruct_images` and `reconstruction_scores`)
measures PSNR and codebook use; the VQ trainer, compaction and the zoo report all use it.
`map_batches` runs a jitted function over many images in fixed-shape batches, so a whole
dataset costs one compilation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from muse.vq import VQModel

PSNR_CAP_DB = 100.0  # per-image PSNR cap, so a perfect image does not make the mean infinite


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
