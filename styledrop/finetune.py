"""StyleDrop fine-tuning: fit an adapter to one or a few style images.

`finetune(pipe, examples, descriptor, config, out_dir)` injects a fresh adapter into the
base transformer, trains it with the pure jitted step of `styledrop.train_step`, reports
progress (step, loss, tokens/s, ETA, preview images), checkpoints so an interrupted run
resumes bit-identically, honours a cooperative stop flag, and writes
`out_dir/adapter.safetensors` with its provenance. A run whose loss or adapter stops
being finite raises `TrainingDivergedError` and keeps its last good checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from adapters import AdapterParam, AdapterSpec, adapter_state_dict, inject_adapter
from adapters.files import save_adapter_file
from muse import checkpoint as model_checkpoint
from muse.pipeline import Pipeline
from muse.transformer import current_adapter_gate
from styledrop import train_checkpoint
from styledrop.adapted import styled_tokens
from styledrop.dataset import StyleExample, build_token_pool
from styledrop.fingerprint import settings_fingerprint
from styledrop.guidance import model_guidance, styledrop_branches
from styledrop.terms import add_descriptor
from styledrop.train_step import make_train_step

ADAPTER_FILE = "adapter.safetensors"
LOG_FILE = "train_log.jsonl"
# Paper: Adam, lr 3e-5, for the StyleDrop adapters; diffusers' aMUSEd recipe: 4e-4 for LoRA.
DEFAULT_LEARNING_RATES = {"r1": 3e-5, "r2": 3e-5, "lora": 4e-4}


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyperparameters of one fine-tuning run (paper defaults).

    Attributes:
        adapter: Adapter kind and sizes.
        steps: Optimizer steps.
        learning_rate: Adam learning rate (None: the kind's default).
        batch_size: Examples per step (the pool is repeated when smaller).
        seed: Seed of the adapter init, augmentations, batches and masks.
        variants_per_image: Augmented crops tokenized per reference image.
        checkpoint_every: Steps between resumable checkpoints (0: only at the end).
        preview_every: Steps between preview grids (0: none).
        preview_prompts: Content prompts for previews (the descriptor is appended).
        preview_seed: Seed of the preview samples (fixed across the run).
        round: 1 for the first round, 2 for training on feedback-selected samples.
    """

    adapter: AdapterSpec = field(default_factory=lambda: AdapterSpec(kind="r1"))
    steps: int = 1000
    learning_rate: float | None = None
    batch_size: int = 8
    seed: int = 0
    variants_per_image: int = 8
    checkpoint_every: int = 100
    preview_every: int = 0
    preview_prompts: tuple[str, ...] = ()
    preview_seed: int = 0
    round: int = 1

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}.")
        lr = self.learning_rate
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"The learning rate must be a finite number > 0, got {lr}.")

    @property
    def lr(self) -> float:
        """The learning rate in effect."""
        return self.learning_rate or DEFAULT_LEARNING_RATES[self.adapter.kind]

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed (not previews or checkpoint cadence)."""
        skip = ("preview_every", "preview_prompts", "preview_seed", "checkpoint_every")
        return settings_fingerprint(self, skip, learning_rate=self.lr)


@dataclass(frozen=True)
class Progress:
    """What the progress callback receives after each step.

    Attributes:
        step: Steps done.
        total: Steps in the run.
        loss: Masked-token cross-entropy of this step.
        accuracy: Masked-token accuracy of this step.
        tokens_per_second: Image tokens processed per second (recent average).
        eta_seconds: Estimated time to the end.
        previews: [N, H, W, 3] float32 preview images when made at this step, else None.
    """

    step: int
    total: int
    loss: float
    accuracy: float
    tokens_per_second: float
    eta_seconds: float
    previews: np.ndarray | None = None


class TrainingDivergedError(RuntimeError):
    """The loss or the adapter's weights stopped being finite; the run cannot go on."""


def _all_finite(tree: object) -> bool:
    """Whether every floating-point leaf of `tree` is finite (NaN or infinity: False)."""
    leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    finite = [jnp.isfinite(leaf).all() for leaf in leaves]
    return bool(jnp.stack(finite).all()) if finite else True  # one transfer from the device


def _diverged(
    step: int, what: str, config: FinetuneConfig, good_step: int
) -> TrainingDivergedError:
    kept = f"its checkpoint of step {good_step} is kept" if good_step else "it has no checkpoint"
    return TrainingDivergedError(
        f"Training diverged at step {step}: {what} is not finite (learning rate {config.lr:g})."
        f" Lower the learning rate and run again; {kept}."
    )


@dataclass(frozen=True)
class FinetuneResult:
    """How a run ended: status "succeeded" or "cancelled", the step reached, file paths."""

    status: str
    step: int
    adapter_path: Path | None
    final_loss: float | None


def finetune(
    pipe: Pipeline,
    examples: Sequence[StyleExample],
    descriptor: str,
    config: FinetuneConfig,
    out_dir: str | Path,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FinetuneResult:
    """Trains an adapter on the style examples; resumes from `out_dir` if it has a checkpoint.

    Args:
        pipe: The base model. A new adapter is injected into `pipe.transformer` (and stays
            there, so `pipe` samples with it afterwards).
        examples: Style images with content captions.
        descriptor: Style descriptor ("in watercolor painting style").
        config: Hyperparameters.
        out_dir: Folder for the checkpoint, the log and `adapter.safetensors`.
        progress: Called after every step.
        should_stop: Polled after every step; when it returns True the run checkpoints
            and ends with status "cancelled".

    Returns:
        The outcome.

    Raises:
        TrainingDivergedError: the loss or the adapter became NaN or infinite; the last
            checkpoint written before (all finite) is left as it was.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pool = build_token_pool(
        pipe, examples, descriptor, variants_per_image=config.variants_per_image, seed=config.seed
    )
    index = inject_adapter(
        pipe.transformer,
        config.adapter,
        rngs=nnx.Rngs(config.seed),
        gate_source=current_adapter_gate,
    )
    graphdef, adapter_state, base_state = nnx.split(pipe.transformer, AdapterParam, ...)
    tx = optax.adam(config.lr)
    opt_state = tx.init(adapter_state)
    start = 0
    saved = train_checkpoint.restore(out_dir, (adapter_state, opt_state), config.fingerprint())
    if saved is not None:
        (adapter_state, opt_state), start = saved
    train_step = make_train_step(
        graphdef, tx, config.batch_size, pipe.config.sampling.mask_token_id
    )
    seed_key = jax.random.key(config.seed)
    tokens_per_step = config.batch_size * int(np.prod(pool.ids.shape[1:]))
    arrays = pool.as_tuple()
    train_checkpoint.trim_log(
        out_dir / LOG_FILE, start
    )  # a resumed run logs its replayed steps once
    log = (out_dir / LOG_FILE).open("a", buffering=1)  # line by line: survives a kill
    status, step, loss, good_step = "succeeded", start, None, start
    timer = _StepTimer()
    try:
        for step in range(start + 1, config.steps + 1):
            adapter_state, opt_state, metrics = train_step(
                adapter_state, opt_state, base_state, arrays, step - 1, seed_key
            )
            loss, accuracy = float(metrics["loss"]), float(metrics["accuracy"])
            if not math.isfinite(loss):
                raise _diverged(step, "the loss", config, good_step)
            rate = timer.tick(tokens_per_step)
            log.write(json.dumps({"step": step, "loss": loss, "accuracy": accuracy}) + "\n")
            previews = None
            if config.preview_every and (step % config.preview_every == 0 or step == 1):
                nnx.update(pipe.transformer, adapter_state)
                previews = preview_images(pipe, config, descriptor, index)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                if not _all_finite(adapter_state):
                    raise _diverged(step, "the adapter", config, good_step)
                train_checkpoint.save(
                    out_dir, (adapter_state, opt_state), step, config.fingerprint()
                )
                good_step = step
            if progress is not None:
                remaining = (config.steps - step) * tokens_per_step / max(rate, 1e-9)
                progress(Progress(step, config.steps, loss, accuracy, rate, remaining, previews))
            if should_stop is not None and should_stop() and step < config.steps:
                status = "cancelled"
                break
    finally:
        log.close()
    if not _all_finite(adapter_state):
        raise _diverged(step, "the adapter", config, good_step)
    train_checkpoint.save(out_dir, (adapter_state, opt_state), step, config.fingerprint())
    nnx.update(pipe.transformer, adapter_state)
    if status == "cancelled":
        return FinetuneResult(status, step, None, loss)
    path = write_adapter(pipe, index, config, descriptor, examples, pool.prompts, out_dir)
    return FinetuneResult(status, step, path, loss)


def preview_images(
    pipe: Pipeline, config: FinetuneConfig, descriptor: str, index: int
) -> np.ndarray:
    """Samples the preview prompts as the finished adapter draws them, at the preview seed.

    That is StyleDrop guidance at the base's own settings, content first included.
    """
    prompts = [add_descriptor(p, descriptor) for p in config.preview_prompts]
    if not prompts:
        return np.zeros((0, pipe.image_size, pipe.image_size, 3), np.float32)
    negatives = [""] * len(prompts)
    scales = model_guidance(pipe.config.sampling)
    branches = styledrop_branches(
        prompts, negatives, scales, adapter_index=index, num_adapters=index + 1
    )
    ids = styled_tokens(
        pipe, branches, prompts, descriptor, negatives, scales, num_adapters=index + 1,
        seed=config.preview_seed,
    )  # fmt: skip
    return pipe.decode_tokens(ids)


def write_adapter(
    pipe: Pipeline,
    index: int,
    config: FinetuneConfig,
    descriptor: str,
    examples: Sequence[StyleExample],
    prompts: Sequence[str],
    out_dir: Path,
) -> Path:
    """Saves adapter `index` of `pipe.transformer` with the run's provenance."""
    base_hash = ""
    if pipe.path is not None:
        base_hash = model_checkpoint.base_model_hash(pipe.path)
    metadata = {
        "base_model": pipe.config.source or (str(pipe.path) if pipe.path else ""),
        "base_model_sha256": base_hash,
        "descriptor": descriptor,
        "training_prompts": list(prompts),
        "source_images": [{"name": e.name, "sha256": e.sha256} for e in examples],
        "round": config.round,
        "steps": config.steps,
        "learning_rate": config.lr,
        "batch_size": config.batch_size,
        "seed": config.seed,
    }
    path = out_dir / ADAPTER_FILE
    save_adapter_file(path, adapter_state_dict(pipe.transformer, index), config.adapter, metadata)
    return path


class _StepTimer:
    """Tokens per second over recent steps (the first, compiling step is not counted)."""

    def __init__(self, window: int = 20):
        self.window = window
        self.times: list[float] = []
        self.last = time.perf_counter()

    def tick(self, tokens: int) -> float:
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now
        recent = self.times[1:][-self.window :] or self.times
        return tokens / (sum(recent) / len(recent))
