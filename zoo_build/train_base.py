"""Training the embedded base U-ViT on the emoji world (Muse masking + caption dropout).

The base is the same `muse.transformer.UVit2D` as the aMUSEd presets, in a small size.
Everything the step needs is prepared once: the images at the canonical framing (each
subject's plain draw, repeated, and the "canonical" split's styled draws; see `build_pool`)
are tokenized with the zoo's VQ and every distinct caption is encoded with the zoo's text
encoder; each (image, caption) pair becomes one row of a token pool, and the jitted step of
`styledrop.train_step` (the same one StyleDrop fine-tuning uses) samples batches from it,
dropping captions to the empty prompt so classifier-free guidance has an unconditional
model. Checkpoints are atomic and resumable bit-identically.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from muse import checkpoint as model_checkpoint
from muse import weights
from muse.config import TransformerConfig
from muse.folder_layout import TRANSFORMER_FILE
from muse.text_encoder import TextEncoder
from muse.transformer import UVit2D
from muse.vq import VQModel
from styledrop import train_checkpoint
from styledrop.dataset import TokenPool, tokenize_images
from styledrop.fingerprint import settings_fingerprint
from styledrop.train_step import make_train_step
from styledrop.zoo.draws import CANONICAL_SPLIT, is_plain_canonical
from zoo_build.dataset import dataset_draws, load_dataset, recipe_version
from zoo_build.descriptors import check_descriptor_words, made_up_descriptor
from zoo_build.grow import load_grown
from zoo_build.machine import machine_description
from zoo_build.run_files import BASE_CONFIG_FILE, TRAIN_LOG_FILE
from zoo_build.run_files import POOL_FILE as POOL_FILE  # re-exported: the token pool
from zoo_build.schedule import adamw_with_fed_rate, feed_learning_rate, warmup_cosine_schedule
from zoo_build.step_rate import StepRate
from zoo_build.transplant import load_transplanted


def zoo_transformer_config(
    codebook_size: int,
    text_hidden: int,
    text_projection: int,
    grid: int = 8,
    width: int = 192,
    layers: int = 6,
    downsample: bool = False,
    position_embedding: bool = False,
) -> TransformerConfig:
    """The small U-ViT of the emoji world: same architecture as aMUSEd, fewer channels/layers.

    Args:
        codebook_size: VQ codebook size (the mask token is appended after it).
        text_hidden: Text encoder hidden width.
        text_projection: Text encoder projection width (the pooled embedding).
        grid: Token grid side.
        width: Transformer hidden width.
        layers: Transformer layers.
        downsample: Halve the grid (2x2 convolution) before the transformer layers and
            restore it after them, as aMUSEd 512 does: a 16 x 16 grid then costs the
            transformer what an 8 x 8 one does.
        position_embedding: Add a learned embedding of each grid position before the
            transformer layers (not in aMUSEd; see `TransformerConfig.position_embedding`).
    """
    return TransformerConfig(
        hidden_size=width,
        cond_embed_dim=text_projection,
        micro_cond_encode_dim=16,
        micro_cond_embed_dim=80,
        encoder_hidden_size=text_hidden,
        vocab_size=codebook_size + 1,
        codebook_size=codebook_size,
        in_channels=width // 2,
        block_out_channels=width // 2,
        num_res_blocks=1,
        downsample=downsample,
        upsample=downsample,
        block_num_heads=4,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * width,
        sample_size=grid,
        position_embedding=position_embedding,
    )


@dataclass(frozen=True)
class BaseTrainConfig:
    """Hyperparameters of base-model training.

    Attributes:
        width: Transformer width (see `zoo_transformer_config`).
        steps: Optimizer steps.
        batch_size: Pairs per step.
        learning_rate: Peak AdamW learning rate (linear warm-up, cosine decay).
        warmup_steps: Warm-up length.
        weight_decay: AdamW weight decay.
        caption_dropout: Probability of training on the empty prompt instead.
        captions_per_image: Caption phrasings kept per image.
        canonical_repeats: Extra copies of each subject's plain canonical draw (base draw 0)
            in the pool, so the plain "a <subject>" prompts meet it more often than the
            styled draws (0: every image once).
        jittered_draws: Also train on the base split's shifted and scaled draws (the
            emoji-world-1 recipe); by default the pool holds the canonical framing only: base
            draw 0 and the "canonical" split's styled draws.
        seed: Seed of init, batches, masks and dropout.
        init_from: sha256 of the weights file the run starts from ("" = random init): a
            warm start continues an earlier base (the committed zoo's, say) with a fresh
            schedule, so training can be added in runs that each fit a time budget.
        checkpoint_every: Steps between checkpoints.
        layers: Transformer layers.
        descriptor_pairs: Extra pairs per image whose caption ends in a made-up style
            descriptor (`zoo_build.descriptors`) while the target stays the same image, so
            that an unknown modifier leaves the content in place (0: none).
        descriptor_words: Word source of those descriptors, "open" or "curated"
            (`zoo_build.descriptors.made_up_descriptor`; runs recorded without this
            setting used "curated").
        dtype: Compute dtype of the U-ViT, "float32" or "bfloat16" (parameters and the
            optimizer stay float32).
        downsample: Run the transformer layers on the token grid halved by a 2x2
            convolution (see `zoo_transformer_config`).
        position_embedding: Give the base a learned embedding of each grid position
            (`TransformerConfig.position_embedding`); a warm start from a base without
            one begins it at zero.
        transplant: The warm start is a base of another tokenizer (codebook or token
            grid) with the same transformer: copy the tensors whose names and shapes
            match and keep the init of the rest (`zoo_build.transplant`).
        train_only_new: With `transplant`, only the tensors that kept their init learn and
            the transplanted ones stay as they are, so that the new ones learn to feed the
            trained transformer before it trains too (a second run, `--init` this one's
            weights, trains all).
    """

    width: int = 192
    steps: int = 5000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    caption_dropout: float = 0.1
    captions_per_image: int = 4
    canonical_repeats: int = 3
    jittered_draws: bool = False
    seed: int = 0
    init_from: str = ""
    checkpoint_every: int = 200
    layers: int = 6
    descriptor_pairs: int = 0
    descriptor_words: str = "open"
    dtype: str = "float32"
    downsample: bool = False
    position_embedding: bool = False
    transplant: bool = False
    train_only_new: bool = False

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}.")
        check_descriptor_words(self.descriptor_words)
        if self.train_only_new and not self.transplant:
            raise ValueError("train_only_new keeps a transplant's tensors: set transplant too.")

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed.

        Settings added after the first runs count only when they differ from the value
        those runs had, so their checkpoints still resume.
        """
        skip = ("checkpoint_every",)
        if self.descriptor_pairs == 0:  # no descriptors: their word source changes nothing
            skip += ("descriptor_words",)
        return settings_fingerprint(self, skip, added_later=_ADDED_LATER)


# How much faster than the rest the position embedding learns (`_rate_scales`).
POSITION_RATE_SCALE = 20.0

# Settings added after the first runs, and the value the runs before them had.
_ADDED_LATER = {
    "layers": 6,
    "descriptor_pairs": 0,
    "dtype": "float32",
    "downsample": False,
    "descriptor_words": "curated",
    "position_embedding": False,
    "transplant": False,
    "train_only_new": False,
}


def build_pool(
    data_dir: Path,
    vq: VQModel,
    text_encoder: TextEncoder,
    captions_per_image: int,
    canonical_repeats: int = 0,
    jittered_draws: bool = False,
    descriptor_pairs: int = 0,
    seed: int = 0,
    descriptor_words: str = "open",
) -> tuple[TokenPool, dict]:
    """Tokenizes the base U-ViT's training images and encodes their captions.

    The images are each subject's plain canonical draw (base split, draw 0) and the
    "canonical" split's styled draws at the same framing, plus, with `jittered_draws`, the
    rest of the base split. Row 0 of the text arrays is the empty prompt.

    Args:
        data_dir: An emoji-world dataset folder.
        vq: The tokenizer.
        text_encoder: The conditioning text encoder.
        captions_per_image: Caption phrasings kept per image.
        canonical_repeats: Extra copies of the (image, caption) pairs of each subject's
            canonical draw (base draw 0).
        jittered_draws: Also take the base split's jittered draws.
        descriptor_pairs: Extra pairs per image: its first caption plus a made-up style
            descriptor, drawn with `seed`.
        seed: Seed of the made-up descriptors.
        descriptor_words: Their word source ("open" or "curated").

    Returns:
        The pool (one row per (image, caption) pair, canonical pairs repeated) and a summary:
        counts of images, pairs and prompts, and the dataset's recipe version and draws per
        split (recorded with the run, so the zoo's manifest says what the base trained on).
    """
    images, records = load_dataset(data_dir)
    chosen = [
        row for row, record in enumerate(records)
        if record["split"] == CANONICAL_SPLIT or is_plain_canonical(record)
        or (jittered_draws and record["split"] == "base")
    ]  # fmt: skip
    if not chosen:
        raise ValueError(f"The dataset in {data_dir} has no base or canonical images.")
    images, records = images[chosen], [records[row] for row in chosen]
    ids = tokenize_images(vq, images, batch_size=64)  # [N, h, w]
    prompts = [""]
    index: dict[str, int] = {"": 0}
    image_rows, prompt_rows = [], []
    rng = np.random.default_rng(seed)

    def add(row: int, caption: str, copies: int) -> None:
        if caption not in index:
            index[caption] = len(prompts)
            prompts.append(caption)
        image_rows.extend([row] * copies)
        prompt_rows.extend([index[caption]] * copies)

    for row, record in enumerate(records):
        copies = 1 + (canonical_repeats if is_plain_canonical(record) else 0)
        for caption in record["captions"][:captions_per_image]:
            add(row, caption, copies)
        for _ in range(descriptor_pairs):
            descriptor = made_up_descriptor(rng, descriptor_words)
            add(row, f"{record['captions'][0]} {descriptor}", 1)
    hidden, pooled = [], []
    for start in range(0, len(prompts), 256):
        emb = text_encoder.encode(prompts[start : start + 256])
        hidden.append(emb.hidden_states.astype(np.float16))
        pooled.append(emb.pooled.astype(np.float16))
    side = ids.shape[1] * (images.shape[1] // ids.shape[1])
    pool = TokenPool(
        ids=jnp.asarray(ids[np.asarray(image_rows)]),
        prompt_index=jnp.asarray(prompt_rows, jnp.int32),
        hidden=jnp.asarray(np.concatenate(hidden)),
        pooled=jnp.asarray(np.concatenate(pooled)),
        micro=jnp.asarray([side, side, 0, 0, 6], jnp.float32),
        prompts=tuple(prompts),
    )
    summary = {
        "images": len(images), "pairs": len(image_rows), "prompts": len(prompts),
        "data_recipe_version": recipe_version(data_dir), "data_draws": dataset_draws(data_dir),
    }  # fmt: skip
    return pool, summary


def train_base(
    data_dir: str | Path,
    vq: VQModel,
    text_encoder: TextEncoder,
    out_dir: str | Path,
    config: BaseTrainConfig,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    init_weights: str | Path | None = None,
    pool: tuple[TokenPool, dict] | None = None,
) -> Path | None:
    """Trains (or resumes) the base U-ViT; writes `transformer.safetensors` and its config.

    Args:
        data_dir: An emoji-world dataset folder (`styledrop zoo data`).
        vq: The zoo's trained VQ tokenizer.
        text_encoder: The zoo's trained text encoder.
        out_dir: Run folder (checkpoint, log, final weights).
        config: Hyperparameters.
        progress: Called after each step with step, loss, accuracy, steps_per_s, eta_s.
        should_stop: Polled after each step; True checkpoints, exports the weights so far
            (marked incomplete in the config) and returns None.
        init_weights: A `transformer.safetensors` of the same architecture to start from
            instead of the random init (float16 files load into float32 parameters); its
            sha256 must be `config.init_from`. A base of fewer layers is deepened by
            identity layers (`zoo_build.grow`; the exported config records it); with
            `config.transplant`, a base of another tokenizer gives the tensors that fit
            (`zoo_build.transplant`).
        pool: `build_pool`'s result for this data, VQ, text encoder and config, when the
            caller already has it (default: built here).

    Returns:
        Path of the final weights (None when stopped early).

    Raises:
        ValueError: `init_weights` and `config.init_from` disagree, or a transplant has
            no `init_weights`.
    """
    if config.transplant and init_weights is None:
        raise ValueError("A transplant starts from another base: pass its init_weights.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pool, summary = pool or build_pool(
        Path(data_dir), vq, text_encoder, config.captions_per_image,
        config.canonical_repeats, config.jittered_draws, config.descriptor_pairs, config.seed,
        config.descriptor_words,
    )  # fmt: skip
    codebook = int(vq.config.num_vq_embeddings)
    model_cfg = zoo_transformer_config(
        codebook,
        int(pool.hidden.shape[-1]),
        int(pool.pooled.shape[-1]),
        grid=int(pool.ids.shape[1]),
        width=config.width,
        layers=config.layers,
        downsample=config.downsample,
        position_embedding=config.position_embedding,
    )
    model = UVit2D(model_cfg, rngs=nnx.Rngs(config.seed), dtype=jnp.dtype(config.dtype))
    digest = "" if init_weights is None else model_checkpoint.sha256_file(init_weights)
    if digest != config.init_from:
        raise ValueError(
            f"config.init_from is {config.init_from!r} but the initial weights hash to"
            f" {digest!r}; set init_from to the sha256 of the file you start from."
        )
    if init_weights is not None:
        load = load_transplanted if config.transplant else load_grown
        summary = {**summary, **load(model, init_weights)}
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    schedule = warmup_cosine_schedule(config.learning_rate, config.warmup_steps, config.steps)
    # The rate is fed per step: one compiled step.
    trainable = summary["kept_init"] if config.train_only_new else None
    tx = adamw_with_fed_rate(
        config.weight_decay, rate_scales=_rate_scales(config), trainable=trainable
    )
    opt_state = tx.init(params)
    start = 0
    saved = train_checkpoint.restore(out_dir, (params, opt_state), config.fingerprint())
    if saved is not None:
        (params, opt_state), start = saved
    step_fn = make_train_step(
        graphdef, tx, config.batch_size, model_cfg.mask_token_id,
        caption_dropout=config.caption_dropout, empty_prompt_index=0,
    )  # fmt: skip
    key = jax.random.key(config.seed)
    arrays = pool.as_tuple()
    rate = StepRate(start, config.steps)
    train_checkpoint.trim_log(out_dir / TRAIN_LOG_FILE, start)  # replayed steps log once
    with (out_dir / TRAIN_LOG_FILE).open("a") as log:
        for step in range(start + 1, config.steps + 1):
            opt_state = feed_learning_rate(opt_state, schedule(step - 1))
            params, opt_state, metrics = step_fn(params, opt_state, rest, arrays, step - 1, key)
            record = {"step": step, "loss": float(metrics["loss"])}
            record["accuracy"] = float(metrics["accuracy"])
            log.write(json.dumps(record) + "\n")
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                train_checkpoint.save(out_dir, (params, opt_state), step, config.fingerprint())
                log.flush()
            if progress is not None:
                progress({**record, **rate(step)})
            if should_stop is not None and should_stop() and step < config.steps:
                train_checkpoint.save(out_dir, (params, opt_state), step, config.fingerprint())
                _export(model, params, out_dir, config, {**summary, "steps_done": step})
                return None
    train_checkpoint.save(out_dir, (params, opt_state), config.steps, config.fingerprint())
    return _export(model, params, out_dir, config, {**summary, "steps_done": config.steps})


def _rate_scales(config: BaseTrainConfig) -> dict[str, float]:
    """Parameters that learn faster than the rest: the position embedding, when there is one.

    A position embedding that starts at zero beside trained weights has to grow to the scale
    of the hidden states before the layers can use it; at the base's rate it barely does. On
    the zoo's base before it had one, 300 steps on the plain draws with every token masked took the
    share of tokens drawn right from the text alone from 0.50 to 0.97 with the embedding
    at a rate of 1e-2, and to 0.50 at 3e-4 (the rest at 3e-4 in both).
    """
    return {"position_embedding": POSITION_RATE_SCALE} if config.position_embedding else {}


def _export(
    model: UVit2D, params: nnx.State, out_dir: Path, config: BaseTrainConfig, summary: dict
) -> Path:
    """Writes the weights and `transformer_config.json` (steps done, complete, the machine)."""
    nnx.update(model, params)
    path = out_dir / TRANSFORMER_FILE
    weights.save_params(model, path)
    info = {
        "transformer": model.cfg.to_dict(),
        "train": dataclasses.asdict(config),
        **summary,
        "complete": summary["steps_done"] >= config.steps,
        "machine": machine_description(),
    }
    (out_dir / BASE_CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return path
