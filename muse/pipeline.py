"""Text-to-image generation with a converted model: `muse.load(path).generate(prompts)`.

The pipeline encodes prompts once (the text encoder caches them), decodes token grids
with the jitted MaskGIT loop of `muse.sampling`, and turns tokens into pixels with the
VQ decoder. Work is split into fixed-size chunks so every chunk reuses one compiled
program; the last chunk is padded rather than compiled again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from muse import checkpoint
from muse.config import ModelConfig
from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR
from muse.sampling import DecodeConfig, combine_branches, decode, initial_base_count
from muse.text_encoder import TextEncoder, default_device
from muse.transformer import UVit2D
from muse.vq import VQModel


@dataclass(frozen=True)
class Branch:
    """One guidance branch: a prompt per image, a weight, and which adapters are on.

    Attributes:
        prompts: One prompt per image of the batch.
        weight: Its weight in the combined logits (see `muse.sampling`).
        adapter_gate: Weight of each injected adapter's output in these rows, one entry
            per adapter (see `muse.transformer`); () means every adapter fully on, and an
            all-zero gate runs the frozen base.
    """

    prompts: tuple[str, ...]
    weight: float
    adapter_gate: tuple[float, ...] = ()


def cfg_branches(prompts: Sequence[str], negative: Sequence[str], scale: float) -> list[Branch]:
    """Classifier-free guidance as branches: u + s (c - u) = (1 - s) u + s c."""
    if scale == 1.0:
        return [Branch(tuple(prompts), 1.0)]
    return [Branch(tuple(negative), 1.0 - scale), Branch(tuple(prompts), scale)]


def layout_key(key: jax.Array) -> jax.Array:
    """The layout phase's key, derived from a chunk's key (which the main phase keeps)."""
    return jax.random.fold_in(key, 0x1A7)


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg", "steps"))
def _sample_tokens(
    graphdef, state, init_ids, hidden, pooled, micro, gates, weights, key, cfg, steps, base_count
):
    """Jitted decode of one chunk's steps. Rows of hidden/pooled/micro/gates are branch-major."""
    model = nnx.merge(graphdef, state)

    def logits_fn(ids, inputs):
        return model(ids, *inputs)

    inputs = (hidden, pooled, micro, gates)
    return decode(
        logits_fn, inputs, weights, init_ids, key, cfg, steps=steps, base_count=base_count
    )


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _guided_logits(graphdef, state, ids, hidden, pooled, micro, gates, weights):
    """One guided forward: the combined logits a decoding step would see for `ids`."""
    model = nnx.merge(graphdef, state)
    tiled = jnp.tile(ids, (weights.shape[0], 1, 1))
    logits = model(tiled, hidden, pooled, micro, gates)
    return combine_branches(logits, weights, ids.shape[0])


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _decode_pixels(graphdef, state, ids):
    return nnx.merge(graphdef, state).decode(ids)


class Pipeline:
    """A loaded model: transformer, VQ tokenizer, text encoder and sampling defaults."""

    def __init__(
        self,
        config: ModelConfig,
        transformer: UVit2D,
        vq: VQModel,
        text_encoder: TextEncoder,
        path: Path | None = None,
    ):
        self.config = config
        self.transformer = transformer
        self.vq = vq
        self.text_encoder = text_encoder
        self.path = path

    @property
    def image_size(self) -> int:
        """Side in pixels of generated images."""
        return self.config.transformer.sample_size * self.config.vq.downscale_factor

    def decode_config(self, **overrides) -> DecodeConfig:
        """Decoding settings: the model's defaults with `overrides` (None values ignored)."""
        sampling = self.config.sampling
        values = {
            "mask_token_id": sampling.mask_token_id,
            "num_steps": sampling.num_steps,
            "style": sampling.decoding,
            "schedule": sampling.masking_schedule,
            "temperature": sampling.temperature,
            "token_temperature": sampling.token_temperature,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return DecodeConfig(**values)

    def micro_conds(self, batch: int, aesthetic_score: float | None = None) -> np.ndarray:
        """[batch, 5] micro-conditions: width, height, crop top, crop left, aesthetic score."""
        sampling = self.config.sampling
        score = sampling.aesthetic_score if aesthetic_score is None else aesthetic_score
        size = self.image_size
        row = [size, size, *sampling.crop_coords, score]
        return np.tile(np.asarray([row], np.float32), (batch, 1))

    def sample_tokens(
        self,
        branches: Sequence[Branch],
        *,
        seed: int = 0,
        decode_config: DecodeConfig | None = None,
        batch_size: int = 8,
        aesthetic_score: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        layout: Sequence[Branch] = (),
        layout_steps: int = 0,
    ) -> np.ndarray:
        """Decodes one token grid per image with the given guidance branches.

        The first `layout_steps` decoding steps may use other branches (`layout`): the
        early steps lay the image out, the later ones draw its detail.

        Args:
            branches: Guidance branches, all with the same number of prompts N.
            seed: Randomness; the same seed and batch size give the same tokens.
            decode_config: Decoding settings (default: the model's).
            batch_size: Images per compiled chunk.
            aesthetic_score: Micro-conditioning score (default: the model's).
            progress: Called with (images done, total) after each chunk.
            layout: The branches of the first `layout_steps` steps, N prompts each.
            layout_steps: How many of the K decoding steps use `layout` (0 to K).

        Returns:
            [N, h, w] int32 token ids.
        """
        total = len(branches[0].prompts)
        if any(len(b.prompts) != total for b in (*branches, *layout)):
            raise ValueError("Every guidance branch needs one prompt per image.")
        cfg = decode_config or self.decode_config()
        if not 0 <= layout_steps <= cfg.num_steps or (layout_steps and not layout):
            raise ValueError(
                f"layout_steps must be in [0, {cfg.num_steps}], with layout branches when "
                f"above 0; got {layout_steps}."
            )
        phases = [(branches, (layout_steps, cfg.num_steps))]
        if layout_steps:
            phases.insert(0, (layout, (0, layout_steps)))
        side = self.config.transformer.sample_size
        chunk = min(batch_size, total)
        graphdef, state = nnx.split(self.transformer)
        key = jax.random.key(seed)
        out = []
        for index, start in enumerate(range(0, total, chunk)):
            rows = _padded_rows(start, chunk, total)  # [chunk]
            ids = jnp.full((chunk, side, side), cfg.mask_token_id, jnp.int32)
            base_count = initial_base_count(ids, cfg)  # [chunk]
            chunk_key = jax.random.fold_in(key, index)
            for phase_branches, steps in phases:
                inputs = self.branch_inputs(phase_branches, rows, aesthetic_score)
                weights = jnp.asarray([b.weight for b in phase_branches], jnp.float32)
                # The main phase keeps the chunk's key, so no layout draws what it drew before.
                phase_key = chunk_key if steps[1] == cfg.num_steps else layout_key(chunk_key)
                ids = _sample_tokens(
                    graphdef, state, ids, *inputs, weights, phase_key, cfg, steps, base_count
                )
            out.append(np.asarray(ids)[: min(chunk, total - start)])
            if progress is not None:
                progress(min(start + chunk, total), total)
        return np.concatenate(out)

    def branch_inputs(
        self, branches: Sequence[Branch], rows: np.ndarray, aesthetic_score: float | None = None
    ) -> tuple[np.ndarray, ...]:
        """Branch-major model inputs for the given example rows: hidden, pooled, micro, gates."""
        embeddings = [self.text_encoder.encode([b.prompts[r] for r in rows]) for b in branches]
        hidden = np.concatenate([e.hidden_states for e in embeddings])  # [n * B, T, D]
        pooled = np.concatenate([e.pooled for e in embeddings])  # [n * B, E]
        micro = self.micro_conds(len(branches) * len(rows), aesthetic_score)  # [n * B, 5]
        gates = np.repeat(_gate_matrix(branches), len(rows), axis=0)  # [n * B, K]
        return hidden, pooled, micro, gates

    def guided_logits(self, branches: Sequence[Branch], ids: np.ndarray) -> np.ndarray:
        """Combined logits of all branches for token grids `ids` [B, h, w], in one forward.

        This is exactly what a decoding step computes (same batching, same combination).

        Returns:
            [B, h, w, V] float32.
        """
        inputs = self.branch_inputs(branches, np.arange(len(ids)))
        weights = jnp.asarray([b.weight for b in branches], jnp.float32)
        graphdef, state = nnx.split(self.transformer)
        return np.asarray(
            _guided_logits(graphdef, state, jnp.asarray(ids, jnp.int32), *inputs, weights)
        )

    def decode_tokens(self, ids: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """Token grids [N, h, w] -> images [N, H, W, 3] float32 in [0, 1]."""
        graphdef, state = nnx.split(self.vq)
        chunk = min(batch_size, len(ids))
        images = []
        for start in range(0, len(ids), chunk):
            rows = _padded_rows(start, chunk, len(ids))
            pixels = _decode_pixels(graphdef, state, jnp.asarray(ids[rows]))
            images.append(np.asarray(pixels)[: min(chunk, len(ids) - start)])
        return np.concatenate(images)

    def generate(
        self,
        prompts: str | Sequence[str],
        *,
        num_images_per_prompt: int = 1,
        seed: int = 0,
        negative_prompt: str | Sequence[str] = "",
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        temperature: float | tuple[float, float] | None = None,
        token_temperature: float | None = None,
        style: str | None = None,
        aesthetic_score: float | None = None,
        batch_size: int = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Generates images from prompts with classifier-free guidance.

        Args:
            prompts: A prompt or a list of prompts.
            num_images_per_prompt: Images per prompt (grouped by prompt in the output).
            seed: Randomness: the same arguments and seed give the same images.
            negative_prompt: The unconditional branch's prompt ("" as aMUSEd), or one per prompt.
            guidance_scale: Logit guidance scale (default: the model's, 10 for aMUSEd).
            num_steps: Decoding steps (default: the model's, 12 for aMUSEd).
            temperature: Gumbel temperature schedule (see `muse.schedule.temperatures`).
            token_temperature: Softmax temperature of the token draw (default: the
                model's; 1 for aMUSEd).
            style: "amused" or "maskgit" re-masking rule.
            aesthetic_score: Micro-conditioning aesthetic score (default 6).
            batch_size: Images per compiled chunk.
            progress: Called with (images done, total).

        Returns:
            [len(prompts) * num_images_per_prompt, H, W, 3] float32 images in [0, 1].
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("Give at least one prompt.")
        if num_images_per_prompt < 1:
            raise ValueError("num_images_per_prompt must be at least 1.")
        negatives = (
            [negative_prompt] * len(prompts)
            if isinstance(negative_prompt, str)
            else list(negative_prompt)
        )
        if len(negatives) != len(prompts):
            raise ValueError("Give one negative prompt, or one per prompt.")
        repeat = num_images_per_prompt
        scale = self.config.sampling.guidance_scale if guidance_scale is None else guidance_scale
        branches = cfg_branches(
            [p for p in prompts for _ in range(repeat)],
            [n for n in negatives for _ in range(repeat)],
            scale,
        )
        cfg = self.decode_config(
            num_steps=num_steps, temperature=temperature, token_temperature=token_temperature,
            style=style,
        )  # fmt: skip
        ids = self.sample_tokens(
            branches, seed=seed, decode_config=cfg, batch_size=batch_size,
            aesthetic_score=aesthetic_score, progress=progress,
        )  # fmt: skip
        return self.decode_tokens(ids, batch_size=batch_size)


def _gate_matrix(branches: Sequence[Branch]) -> np.ndarray:
    """[n_branches, K] adapter gates; branches without a gate get all ones."""
    width = max((len(b.adapter_gate) for b in branches), default=0)
    if any(b.adapter_gate and len(b.adapter_gate) != width for b in branches):
        raise ValueError("Every branch must gate the same number of adapters.")
    rows = [b.adapter_gate or (1.0,) * width for b in branches]
    return np.asarray(rows, np.float32).reshape(len(branches), width)


def _padded_rows(start: int, chunk: int, total: int) -> np.ndarray:
    """Row indices of one chunk; past the end, the last row repeats (keeps shapes static)."""
    return np.minimum(np.arange(start, start + chunk), total - 1)


def load(path: str | Path, dtype: str = "float32") -> Pipeline:
    """Loads a native model folder (written by `styledrop convert` or the model zoo).

    Args:
        path: The model folder.
        dtype: Compute dtype of the transformer: "float32" or "bfloat16".

    Returns:
        A ready `Pipeline`.
    """
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}.")
    path = Path(path)
    config, transformer = checkpoint.load_transformer(path, dtype=jnp.dtype(dtype))
    vq = checkpoint.load_vq(path)
    text_encoder = TextEncoder.load(
        path / TEXT_ENCODER_DIR, tokenizer=path / TOKENIZER_DIR, device=default_device()
    )
    return Pipeline(config, transformer, vq, text_encoder, path=path)
