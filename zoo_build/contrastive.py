"""Contrastive training of the zoo's two CLIPs (the text encoder and the judge), in PyTorch.

What both trainers share: batches that hold two draws of each of B/2 subjects (so the same
subject appears in different styles and the style words must be read), a random caption
phrasing per image (`CaptionBank`), a geometric and photometric augmentation without
flips, the symmetric CLIP loss with soft targets (every (image, caption) pair that matches
is a positive), AdamW with CLIP's betas, atomic checkpoints, and the step loop itself
(`train_contrastive`). Everything random in step s comes from a generator seeded with
(seed, s), and checkpoints hold the model, the optimizer, the step and the global torch
RNG state, so a resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from muse.tokenizer import CONTEXT_LENGTH
from zoo_build.schedule import warmup_cosine_lr
from zoo_build.step_rate import StepRate

MAX_LOGIT_SCALE = math.log(100.0)  # the temperature is clamped to at most 100, as CLIP's


class CheckpointMismatchError(ValueError):
    """A checkpoint exists but belongs to a run with other settings."""


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of everything random in one step: a function of (seed, step) only."""
    state = np.random.SeedSequence([seed, step]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


class CaptionBank:
    """The captions of a split, tokenized once, with a (subject, style) key per image.

    Attributes:
        ids: int64 [captions, context] token ids, cut to the longest caption.
        choices: int64 [images, most captions] caption rows per image (padded by repeats).
        counts: int64 [images] number of captions of each image.
        keys: int64 [images] id of the image's (subject, style) pair.
        subjects: subject id of each image.
    """

    def __init__(self, tokenizer, records: Sequence[dict], context: int | None = None):
        """Tokenizes every caption of `records`.

        Args:
            tokenizer: The CLIP tokenizer.
            records: The split's records ("subject", "style", "captions").
            context: Token columns kept (default: the longest caption, with its end token).
        """
        from muse.tokenizer import tokenize

        texts: dict[str, int] = {}
        rows = []
        for record in records:
            rows.append([texts.setdefault(c, len(texts)) for c in record["captions"]])
        ids = tokenize(tokenizer, list(texts), CONTEXT_LENGTH)
        if context is None:
            context = int((ids != tokenizer.pad_token_id).sum(1).max()) + 1
        self.ids = torch.from_numpy(ids[:, :context].copy())
        width = max(len(row) for row in rows)
        self.choices = torch.tensor([(row * width)[:width] for row in rows])
        self.counts = torch.tensor([len(row) for row in rows])
        pairs: dict[tuple[str, str], int] = {}
        keys = [pairs.setdefault((r["subject"], r["style"]), len(pairs)) for r in records]
        self.keys = torch.tensor(keys)
        self.subjects = [record["subject"] for record in records]

    def sample(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random caption of each image in `rows`: int64 [len(rows), context]."""
        u = torch.rand(len(rows), generator=generator)
        pick = (u * self.counts[rows]).long().clamp_max(self.choices.shape[1] - 1)
        return self.ids[self.choices[rows, pick]]


class SubjectPairSampler:
    """Draws batches of `per_subject` images of each of batch/per_subject random subjects."""

    def __init__(self, subjects: Sequence[str], per_subject: int = 2):
        """Groups image rows by subject.

        Args:
            subjects: The subject id of each image.
            per_subject: Images of one subject in a batch.
        """
        groups: dict[str, list[int]] = {}
        for row, subject in enumerate(subjects):
            groups.setdefault(subject, []).append(row)
        self.groups = [torch.tensor(rows) for rows in groups.values()]
        self.per_subject = per_subject

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Image rows of one batch, int64 [batch]."""
        wanted = -(-batch // self.per_subject)
        order = torch.cat(
            [torch.randperm(len(self.groups), generator=generator)
             for _ in range(-(-wanted // len(self.groups)))]
        )[:wanted]  # fmt: skip
        rows = []
        for g in order.tolist():
            group = self.groups[g]
            perm = torch.randperm(len(group), generator=generator)
            rows.append(group[perm.repeat(-(-self.per_subject // len(group)))[: self.per_subject]])
        return torch.cat(rows)[:batch]


def to_pixels(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W] normalised to [-1, 1] (mean/std 0.5)."""
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5


def augment(
    images: torch.Tensor,
    generator: torch.Generator,
    shift: float = 0.06,
    scale: tuple[float, float] = (0.9, 1.1),
    rotate_deg: float = 0.0,
    brightness: float = 0.0,
    contrast: float = 0.0,
) -> torch.Tensor:
    """Random affine (zoom, shift, rotation) and brightness/contrast jitter; no flips.

    Flips are left out: they change letters and directional emoji. Colours keep their hue,
    since captions name tones and backgrounds.

    Args:
        images: uint8 [N, H, W, 3].
        generator: The step's generator.
        shift: Largest shift, as a fraction of the side.
        scale: Zoom range (>1 enlarges the subject).
        rotate_deg: Largest rotation in degrees.
        brightness: Largest additive brightness change (on [0, 1] pixels).
        contrast: Largest relative contrast change.

    Returns:
        float32 [N, 3, H, W] in [-1, 1] (see `to_pixels`).
    """
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
    n = x.shape[0]
    u = torch.rand(n, 6, generator=generator)
    zoom = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    angle = math.radians(rotate_deg) * (2 * u[:, 1] - 1)
    tx, ty = shift * 2 * (2 * u[:, 2] - 1), shift * 2 * (2 * u[:, 3] - 1)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
    )  # [N, 2, 3]: output coords -> input coords
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if brightness or contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        c = 1 + contrast * (2 * u[:, 4] - 1)
        b = brightness * (2 * u[:, 5] - 1)
        x = ((x - mean) * c.view(n, 1, 1, 1) + mean + b.view(n, 1, 1, 1)).clamp(0, 1)
    return (x - 0.5) / 0.5


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    keys: torch.Tensor,
) -> torch.Tensor:
    """Symmetric CLIP loss where every pair with the same key is a positive.

    Args:
        image_features: [B, D] unit vectors.
        text_features: [B, D] unit vectors.
        logit_scale: Log temperature (scalar).
        keys: [B] ids; image i and caption j match when keys[i] == keys[j].

    Returns:
        Scalar loss.
    """
    positives = keys[:, None] == keys[None, :]
    return contrastive_loss_with_positives(image_features, text_features, logit_scale, positives)


def contrastive_loss_with_positives(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    positives: torch.Tensor,
) -> torch.Tensor:
    """Symmetric CLIP loss with an explicit (image, caption) match matrix.

    Each direction's target spreads evenly over its positives.

    Args:
        image_features: [B, D] unit vectors.
        text_features: [B, D] unit vectors.
        logit_scale: Log temperature (scalar).
        positives: bool [B, B]; [i, j] when caption j describes image i (the diagonal
            must be True, so every row and column has a positive).

    Returns:
        Scalar loss.
    """
    logits = logit_scale.exp() * image_features @ text_features.T  # [B, B]
    positives = positives.float()
    image_targets = positives / positives.sum(1, keepdim=True)
    text_targets = positives.T / positives.T.sum(1, keepdim=True)
    return (F.cross_entropy(logits, image_targets) + F.cross_entropy(logits.T, text_targets)) / 2


def make_optimizer(model: nn.Module, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (CLIP's betas) with no decay on gains, biases, embeddings and the temperature."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        skip = param.ndim < 2 or "norm" in name or "ln_" in name or "logit_scale" in name
        skip = skip or "embedding" in name
        (no_decay if skip else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.98), eps=1e-6)


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, fingerprint: str
) -> None:
    """Writes model, optimizer, step and torch RNG state to `path` atomically."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng": torch.get_rng_state(),
        "fingerprint": fingerprint,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, fingerprint: str
) -> int:
    """Restores a checkpoint written by `save_checkpoint` in place.

    Args:
        path: The checkpoint file.
        model: Receives the weights.
        optimizer: Receives the optimizer state (None: weights only).
        fingerprint: What the run's settings must match.

    Returns:
        The step it was saved at (0 when there is no checkpoint).

    Raises:
        CheckpointMismatchError: The checkpoint belongs to a run with other settings.
    """
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["fingerprint"] != fingerprint:
        raise CheckpointMismatchError(
            f"{path} was written by a run with other settings; use another output folder "
            f"or delete it to start over.\n  saved: {state['fingerprint']}\n  now:   {fingerprint}"
        )
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return int(state["step"])


def end_of_step(
    log: IO[str],
    record: dict[str, Any],
    checkpoint: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: Any,
    rate: StepRate,
    progress: Callable[[dict], None] | None,
    should_stop: Callable[[], bool] | None,
) -> bool:
    """A torch trainer's bookkeeping after a step: log, checkpoint, progress, stop.

    Args:
        log: The open JSON-lines log; gets `record`.
        record: The step's record ("step" and its figures).
        checkpoint: The checkpoint file (`save_checkpoint`).
        model: The model being trained.
        optimizer: Its optimizer.
        config: The run's settings: `steps`, `checkpoint_every` and `fingerprint()`.
        rate: The run's step-rate meter.
        progress: Called with the record and steps_per_s, eta_s.
        should_stop: Polled once; True before the last step checkpoints.

    Returns:
        True when the run should stop here (the checkpoint is written).
    """
    step = record["step"]
    log.write(json.dumps(record) + "\n")
    if config.checkpoint_every and step % config.checkpoint_every == 0:
        save_checkpoint(checkpoint, model, optimizer, step, config.fingerprint())
        log.flush()
    if progress is not None:
        progress({**record, **rate(step)})
    if should_stop is not None and should_stop() and step < config.steps:
        save_checkpoint(checkpoint, model, optimizer, step, config.fingerprint())
        return True
    return False


def train_contrastive(
    model: nn.Module,
    config: Any,
    checkpoint: Path,
    log_path: Path,
    batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    encode: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    evaluate: Callable[[], dict[str, Any]],
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> bool:
    """Trains (or resumes) a CLIP contrastively; the loop both zoo CLIPs run.

    Each step draws its batch from `step_generator(config.seed, step)`, sets the learning
    rate of `warmup_cosine_lr`, takes one AdamW step on the symmetric loss with clipping at
    norm 1, and clamps the temperature. A checkpoint at `checkpoint` written with the same
    `config.fingerprint()` is resumed from.

    Args:
        model: The CLIP, freshly initialised; it has a `logit_scale` parameter.
        config: The run's settings: `steps`, `seed`, `learning_rate`, `warmup_steps`,
            `weight_decay`, `bf16`, `checkpoint_every`, `eval_every` and `fingerprint()`.
        checkpoint: The checkpoint file.
        log_path: The log; one JSON line per step (step, loss, lr and evaluations).
        batch: The step's generator -> (pixels float32 [B, 3, H, W] in [-1, 1], token ids
            int64 [B, L], positives bool [B, B]: [i, j] when caption j describes image i).
        encode: (pixels, token ids) -> (unit image features [B, D], unit text features
            [B, D]), in float32; it runs under bfloat16 autocast when `config.bf16`.
        evaluate: The figures logged every `config.eval_every` steps (not at the last).
        progress: Called after each step with the log record and steps_per_s, eta_s.
        should_stop: Polled after each step; True checkpoints and stops.

    Returns:
        True when every step is done, False when `should_stop` stopped the run.

    Raises:
        CheckpointMismatchError: `checkpoint` belongs to a run with other settings.
    """
    optimizer = make_optimizer(model, config.weight_decay)
    start = load_checkpoint(checkpoint, model, optimizer, config.fingerprint())
    model.train()
    rate = StepRate(start, config.steps)
    with log_path.open("a") as log:
        for step in range(start + 1, config.steps + 1):
            pixels, ids, positives = batch(step_generator(config.seed, step))
            lr = warmup_cosine_lr(step, config.learning_rate, config.warmup_steps, config.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                image_features, text_features = encode(pixels, ids)  # [B, D] each
            # The similarities stay in float32: bfloat16 logits at temperature 100 are coarse.
            loss = contrastive_loss_with_positives(
                image_features, text_features, model.logit_scale, positives
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            record: dict[str, Any] = {"step": step, "loss": float(loss.detach()), "lr": lr}
            if config.eval_every and step % config.eval_every == 0 and step < config.steps:
                record.update(evaluate())
            stop = end_of_step(
                log, record, checkpoint, model, optimizer, config, rate, progress, should_stop
            )
            if stop:
                return False
    if start < config.steps:
        save_checkpoint(checkpoint, model, optimizer, config.steps, config.fingerprint())
    return True
