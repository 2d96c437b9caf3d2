"""Training pairs for StyleDrop: (style image tokens, "content caption + style descriptor").

Each reference image has its own content caption ("A house") and all share the style
descriptor ("in watercolor painting style"). Images are augmented a few times (random
square crops) and tokenized once, up front, into a pool the jitted train step samples
batches from; the prompts are encoded once as well. Nothing is re-encoded per step.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from muse.pipeline import Pipeline
from muse.vq import VQModel
from styledrop.inputs import center_square
from styledrop.terms import DEFAULT_CAPTION, add_descriptor


@dataclass(frozen=True)
class StyleExample:
    """One reference image with its content caption.

    Attributes:
        pixels: [H, W, 3] uint8 RGB.
        caption: What the image shows, without the style ("A house").
        name: File name or label, for provenance.
        sha256: Hex digest of the source file (empty if not from a file).
    """

    pixels: np.ndarray
    caption: str = DEFAULT_CAPTION
    name: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class TokenPool:
    """Everything the train step samples from, already on the device.

    Attributes:
        ids: [P, h, w] int32 token grids (augmented variants of the examples).
        prompt_index: [P] int32 row of each variant's prompt.
        hidden: [Q, T, D] text-encoder states of the Q distinct prompts.
        pooled: [Q, E] pooled text embeddings.
        micro: [5] float32 micro-conditions used for training.
        prompts: The Q prompt strings.
    """

    ids: jax.Array
    prompt_index: jax.Array
    hidden: jax.Array
    pooled: jax.Array
    micro: jax.Array
    prompts: tuple[str, ...]

    def as_tuple(self) -> tuple[jax.Array, ...]:
        """The arrays, for passing to a jitted function."""
        return self.ids, self.prompt_index, self.hidden, self.pooled, self.micro


def augmented_crops(
    pixels: np.ndarray, size: int, count: int, rng: np.random.Generator, min_scale: float = 0.8
) -> np.ndarray:
    """The centre square plus `count - 1` random square crops covering >= min_scale of it.

    Args:
        pixels: [H, W, 3] uint8.
        size: Output side in pixels.
        count: Number of variants (the first is the plain centre crop).
        rng: Randomness for the crops.
        min_scale: Smallest crop side relative to the centre square.

    Returns:
        [count, size, size, 3] uint8.
    """
    base = center_square(pixels, max(size, min(pixels.shape[:2])))
    side = base.shape[0]
    out = [np.asarray(Image.fromarray(base).resize((size, size), Image.Resampling.LANCZOS))]
    for _ in range(count - 1):
        crop = round(side * rng.uniform(min_scale, 1.0))
        top, left = rng.integers(0, side - crop + 1, size=2)
        patch = Image.fromarray(base[top : top + crop, left : left + crop])
        out.append(np.asarray(patch.resize((size, size), Image.Resampling.LANCZOS)))
    return np.stack(out)


@functools.partial(jax.jit, static_argnums=0)
def _tokenize(graphdef, state, images):
    return nnx.merge(graphdef, state).tokenize(images)


def tokenize_images(vq: VQModel, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """[N, S, S, 3] uint8 -> [N, h, w] int32 VQ token ids."""
    graphdef, state = nnx.split(vq)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = jnp.asarray(images[start : start + batch_size], jnp.float32) / 255.0
        out.append(np.asarray(_tokenize(graphdef, state, chunk)))
    return np.concatenate(out).astype(np.int32)


def build_token_pool(
    pipe: Pipeline,
    examples: Sequence[StyleExample],
    descriptor: str,
    *,
    variants_per_image: int = 8,
    seed: int = 0,
) -> TokenPool:
    """Augments, tokenizes and encodes the training pairs once.

    Args:
        pipe: The base model (its VQ and text encoder are used).
        examples: Reference images with captions.
        descriptor: Style descriptor appended to every caption.
        variants_per_image: Augmented crops per image (the first is the plain crop).
        seed: Randomness of the crops.
    """
    if not examples:
        raise ValueError("Give at least one style example.")
    rng = np.random.default_rng(seed)
    size = pipe.image_size
    images, prompt_rows, prompts = [], [], []
    for example in examples:
        prompt = add_descriptor(example.caption, descriptor)
        if prompt not in prompts:
            prompts.append(prompt)
        crops = augmented_crops(example.pixels, size, variants_per_image, rng)
        images.append(crops)
        prompt_rows += [prompts.index(prompt)] * len(crops)
    ids = tokenize_images(pipe.vq, np.concatenate(images))
    embeddings = pipe.text_encoder.encode(prompts)
    return TokenPool(
        ids=jnp.asarray(ids),
        prompt_index=jnp.asarray(prompt_rows, jnp.int32),
        hidden=jnp.asarray(embeddings.hidden_states),
        pooled=jnp.asarray(embeddings.pooled),
        micro=jnp.asarray(pipe.micro_conds(1)[0]),
        prompts=tuple(prompts),
    )
