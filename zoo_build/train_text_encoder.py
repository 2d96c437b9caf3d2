"""Training the embedded CLIP text encoder on the emoji world (contrastive, transformers).

A small `transformers` CLIP (text tower + a small ViT) is trained contrastively on the
"base" split: each step takes a batch of images, two draws of each of B/2 subjects (so a
batch always holds the same subject in different styles and the style words must be read),
a random caption phrasing per image and a light geometric augmentation. Pairs with the same
(subject, style) are all positives of each other (soft targets). Only the text tower with
its projection (`CLIPTextModelWithProjection`) is kept: `out_dir/text_encoder/` (loadable
with `CLIPTextModelWithProjection.from_pretrained` and `muse.text_encoder.TextEncoder.load`)
and its tokenizer in `out_dir/tokenizer/`. The vision tower stays in the run checkpoint,
where `evaluate_text_encoder` uses it as a sanity check (image -> text top-1 over the
vocabulary on the "eval" split).

The world tokenizer. CLIP's vocabulary has 49408 entries, and at width 128 its embedding
table alone would be 25 MB in float32, most of it rows that the world never trains. The
zoo's tokenizer keeps CLIP's byte-level BPE but only the merges that the world's text
uses (every caption phrasing of every subject in every training and held-out style, plus
the zero-shot prompts and a few generic words), in CLIP's merge order, laid out like CLIP's
vocabulary (256 byte symbols, the same with `</w>`, the kept merges, `<|startoftext|>`,
`<|endoftext|>`). On the world's text it splits words exactly as CLIP's tokenizer does
(BPE applies the lowest-ranked merge present, and every merge CLIP applies to those words
is kept, in the same relative order); only the ids differ. Any other text still tokenizes,
into shorter pieces. It is a plain `CLIPTokenizer` (saved with `save_pretrained`, padding
with `<|endoftext|>` like aMUSEd's), about 2,300 entries instead of 49408.

Training runs on a shortened context: the text tower is causal and pools at the first
`<|endoftext|>`, so the pooled embedding of a caption does not depend on the padding after
it, and the longest world caption is about 20 tokens. The saved model keeps 77 positions.

Everything random in step s comes from a generator seeded with (seed, s); checkpoints hold
the model, the optimizer, the step and the global torch RNG state, written to a temporary
file and renamed into place, so a resumed run ends bit-identical to an uninterrupted one.
Helpers shared with the judge CLIP (`zoo_build.train_judge`) live here too.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR
from muse.tokenizer import CONTEXT_LENGTH
from styledrop.zoo.draws import captions_for
from styledrop.zoo.styles import STYLES
from styledrop.zoo.vocabulary import SUBJECTS, Subject, get_subject
from zoo_build.dataset import load_dataset

CHECKPOINT_FILE = "text_clip_checkpoint.pt"
LOG_FILE = "text_train_log.jsonl"
EVAL_FILE = "text_eval.json"
INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100.0)

# Generic words of prompts and style descriptors that the world's captions may lack.
EXTRA_TEXTS = (
    "a photo of",
    "a drawing of",
    "an illustration of",
    "a painting of",
    "an emoji of",
    "an icon of",
    "a cartoon of",
    "a 3d render of",
    "in the style of",
    "flat art style",
    "in a sketch style",
)


class CheckpointMismatchError(ValueError):
    """A checkpoint exists but belongs to a run with other settings."""


# --------------------------------------------------------------------------------------------
# The world tokenizer.


def subject_prompts(subject: Subject) -> list[str]:
    """Zero-shot prompts of a subject ("a penguin", "penguin", "an image of a penguin", ...).

    The phrasings are those of the plain captions, on the canonical name.
    """
    main = subject.phrase()
    image_of = subject.phrase(subject.synonyms[0]) if subject.kind == "letter" else main
    prompts = [main, subject.name, f"an image of {image_of}", f"a picture of {image_of}"]
    return list(dict.fromkeys(prompts))


def world_texts() -> list[str]:
    """Every phrase the world produces: captions of each subject in each style, prompts.

    Returns:
        Distinct texts (subject names and synonyms, zero-shot prompts, captions in every
        training and held-out style, and `EXTRA_TEXTS`).
    """
    texts: list[str] = list(EXTRA_TEXTS)
    for subject in SUBJECTS:
        texts += subject_prompts(subject)
        texts += [subject.phrase(name) for name in subject.names] + list(subject.names)
        texts += captions_for(subject)
        for style in STYLES.values():
            texts += captions_for(subject, [style])
    return list(dict.fromkeys(texts))


def world_merges(texts: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """The CLIP merges that tokenizing `texts` applies, in CLIP's order.

    Every merge CLIP applies to a word builds a symbol that ends up inside one of the word's
    final tokens, and each merged symbol comes from exactly one merge, so the merges are
    found by taking the final tokens apart.

    Args:
        texts: The texts to cover (default: `world_texts()`).

    Returns:
        The kept (first, second) pairs, sorted by their rank in CLIP's merge list.
    """
    if texts is None:
        return list(_default_world_merges())
    return _merges_for(list(texts))


@functools.cache
def _default_world_merges() -> tuple[tuple[str, str], ...]:
    return tuple(_merges_for(world_texts()))


def _merges_for(texts: list[str]) -> list[tuple[str, str]]:
    from muse.tokenizer import (
        _byte_symbols,
        _read_open_clip_merges,
        build_open_clip_tokenizer,
        clean_prompt,
    )
    from muse.tokenizer import tokenize as clip_tokenize

    merges = _read_open_clip_merges()
    rank = {"".join(pair): i for i, pair in reversed(list(enumerate(merges)))}  # first wins
    base = set(_byte_symbols())
    base |= {symbol + "</w>" for symbol in base}
    full = build_open_clip_tokenizer()
    # BPE never crosses whitespace, so the distinct words are enough (and much faster).
    words = sorted({word for text in texts for word in clean_prompt(text).split()})
    ids = clip_tokenize(full, words) if words else np.zeros((0, CONTEXT_LENGTH), np.int64)
    special = {full.bos_token_id, full.eos_token_id, full.pad_token_id}
    used = {int(i) for i in np.unique(ids)} - special
    needed: set[int] = set()
    stack = list(full.convert_ids_to_tokens(sorted(used)))
    while stack:
        token = stack.pop()
        if token in base:
            continue
        r = rank[token]
        if r not in needed:
            needed.add(r)
            stack += list(merges[r])
    return [merges[r] for r in sorted(needed)]


def build_world_tokenizer(texts: Iterable[str] | None = None, max_length: int = CONTEXT_LENGTH):
    """A `CLIPTokenizer` with CLIP's BPE cut down to the merges the world's text uses.

    Args:
        texts: The texts whose tokenization must match CLIP's (default: `world_texts()`).
        max_length: The tokenizer's `model_max_length`.

    Returns:
        The tokenizer; pads with `<|endoftext|>` (the last id), like aMUSEd's.
    """
    from transformers import CLIPTokenizer

    from muse.tokenizer import BOS_TOKEN, EOS_TOKEN, _byte_symbols

    merges = world_merges(texts)
    symbols = _byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += [BOS_TOKEN, EOS_TOKEN]
    ids = {token: i for i, token in enumerate(vocab)}
    with tempfile.TemporaryDirectory(prefix="world-tokenizer-") as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps(ids, ensure_ascii=False), "utf-8")
        merges_text = "\n".join(f"{a} {b}" for a, b in merges)
        (folder / "merges.txt").write_text(f"#version: 0.2\n{merges_text}\n", "utf-8")
        tokenizer = CLIPTokenizer.from_pretrained(
            folder, local_files_only=True, model_max_length=max_length
        )
    tokenizer.pad_token = EOS_TOKEN
    return tokenizer


# --------------------------------------------------------------------------------------------
# Shared training pieces (also used by the judge).


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


def learning_rate(step: int, peak: float, warmup: int, total: int, floor: float = 0.05) -> float:
    """Linear warm-up to `peak`, then cosine decay to `floor * peak` (step counts from 1)."""
    if step <= warmup:
        return peak * step / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


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


@torch.no_grad()
def zero_shot_features(
    encode_text: Callable[[torch.Tensor], torch.Tensor],
    tokenize: Callable[[list[str]], torch.Tensor],
    subjects: Sequence[Subject],
) -> torch.Tensor:
    """Class embeddings: the mean of each subject's prompt embeddings, renormalised.

    Args:
        encode_text: Token ids -> unit text embeddings.
        tokenize: Prompts -> token ids.
        subjects: The candidate subjects.

    Returns:
        float32 [len(subjects), D] unit vectors.
    """
    prompts = [subject_prompts(s) for s in subjects]
    flat = [p for group in prompts for p in group]
    features = torch.cat(
        [encode_text(tokenize(flat[i : i + 512])) for i in range(0, len(flat), 512)]
    )
    out, start = [], 0
    for group in prompts:
        out.append(F.normalize(features[start : start + len(group)].mean(0), dim=-1))
        start += len(group)
    return torch.stack(out)


@torch.no_grad()
def top1_accuracy(
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    class_features: torch.Tensor,
    images: np.ndarray,
    labels: Sequence[int],
    batch_size: int = 256,
) -> float:
    """Fraction of images whose nearest class embedding is their label.

    Args:
        encode_image: Pixels (see `to_pixels`) -> unit image embeddings.
        class_features: [classes, D] unit vectors.
        images: uint8 [N, H, W, 3].
        labels: The class row of each image.
        batch_size: Images per forward pass.
    """
    if len(images) == 0:
        return float("nan")
    predictions = []
    for start in range(0, len(images), batch_size):
        features = encode_image(to_pixels(images[start : start + batch_size]))
        predictions.append((features @ class_features.T).argmax(1))
    correct = torch.cat(predictions) == torch.as_tensor(list(labels))
    return float(correct.float().mean())


def subject_labels(records: Sequence[dict], subjects: Sequence[Subject]) -> list[int]:
    """The row of each record's subject in `subjects`."""
    index = {subject.id: i for i, subject in enumerate(subjects)}
    return [index[record["subject"]] for record in records]


def dataset_subjects(records: Iterable[dict]) -> list[Subject]:
    """The subjects of the vocabulary that appear in `records`, in vocabulary order."""
    present = {record["subject"] for record in records}
    return [s for s in SUBJECTS if s.id in present]


def load_vocabulary(data_dir: Path) -> list[Subject]:
    """The subjects a built dataset covers (its zero-shot vocabulary)."""
    _, records = load_dataset(data_dir, split="eval")
    if not records:
        _, records = load_dataset(data_dir)
    return dataset_subjects(records) or [get_subject(r["subject"]) for r in records]


# --------------------------------------------------------------------------------------------
# The text encoder's CLIP.


@dataclass(frozen=True)
class TextTrainConfig:
    """Hyperparameters of text-encoder training.

    Attributes:
        hidden_size: Text tower width (the U-ViT's `encoder_hidden_size`).
        num_layers: Text tower layers.
        num_heads: Text tower attention heads.
        projection_dim: Width of the projected pooled embedding (`text_embeds`).
        vision_width: Width of the (discarded) ViT.
        vision_layers: ViT layers.
        vision_heads: ViT attention heads.
        patch_size: ViT patch side in pixels.
        steps: Optimizer steps.
        batch_size: Images (and captions) per step.
        per_subject: Images of one subject per batch (different draws, so different styles).
        learning_rate: Peak AdamW learning rate (linear warm-up, cosine decay).
        warmup_steps: Warm-up length.
        weight_decay: AdamW weight decay (matrices only).
        shift: Augmentation: largest shift as a fraction of the side.
        zoom: Augmentation: zoom range.
        bf16: Run the forward pass under bfloat16 autocast. Off by default: it is faster
            only on CPUs with native bf16 (AVX-512 BF16 / AMX); on an AVX2-only CPU torch
            emulates it and a step is about 7x slower than in float32.
        seed: Seed of the initialisation, the batches and the augmentation.
        checkpoint_every: Steps between checkpoints.
        eval_every: Steps between evaluations on the "eval" split (0: only at the end).
    """

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    projection_dim: int = 128
    vision_width: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    patch_size: int = 8
    steps: int = 1000
    batch_size: int = 256
    per_subject: int = 2
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    shift: float = 0.06
    zoom: tuple[float, float] = (0.9, 1.1)
    bf16: bool = False
    seed: int = 0
    checkpoint_every: int = 100
    eval_every: int = 250

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed."""
        values = dataclasses.asdict(self)
        for name in ("checkpoint_every", "eval_every"):
            values.pop(name)
        return json.dumps(values, sort_keys=True)


class TextCLIP(nn.Module):
    """A transformers CLIP made of a text tower with projection and a vision tower."""

    def __init__(self, config: TextTrainConfig, tokenizer, image_size: int = 64):
        """Builds both towers (random init from torch's global RNG).

        Args:
            config: Sizes.
            tokenizer: The tokenizer (its vocabulary size and special ids go in the config).
            image_size: Image side in pixels.
        """
        from transformers import (
            CLIPTextConfig,
            CLIPTextModelWithProjection,
            CLIPVisionConfig,
            CLIPVisionModelWithProjection,
        )

        super().__init__()
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=4 * config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            projection_dim=config.projection_dim,
            max_position_embeddings=CONTEXT_LENGTH,
            hidden_act="gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        vision_config = CLIPVisionConfig(
            hidden_size=config.vision_width,
            intermediate_size=4 * config.vision_width,
            num_hidden_layers=config.vision_layers,
            num_attention_heads=config.vision_heads,
            projection_dim=config.projection_dim,
            image_size=image_size,
            patch_size=config.patch_size,
            hidden_act="gelu",
        )
        self.text = CLIPTextModelWithProjection(text_config)
        self.vision = CLIPVisionModelWithProjection(vision_config)
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids [B, L] -> unit projected pooled embeddings [B, D]."""
        return F.normalize(self.text(input_ids=input_ids).text_embeds.float(), dim=-1)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, H, W] in [-1, 1] -> unit image embeddings [B, D]."""
        return F.normalize(self.vision(pixel_values=pixels).image_embeds.float(), dim=-1)


def _tokenize_fn(tokenizer) -> Callable[[list[str]], torch.Tensor]:
    from muse.tokenizer import tokenize

    return lambda prompts: torch.from_numpy(tokenize(tokenizer, prompts, CONTEXT_LENGTH))


def _evaluate_model(model: TextCLIP, tokenizer, data_dir: Path) -> dict:
    images, records = load_dataset(data_dir, split="eval")
    subjects = load_vocabulary(data_dir)
    model.eval()
    classes = zero_shot_features(model.encode_text, _tokenize_fn(tokenizer), subjects)
    top1 = top1_accuracy(model.encode_image, classes, images, subject_labels(records, subjects))
    model.train()
    return {"text_top1_eval": top1, "eval_images": len(images), "classes": len(subjects)}


def train_text_encoder(
    data_dir: str | Path,
    out_dir: str | Path,
    config: TextTrainConfig = TextTrainConfig(),
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path | None:
    """Trains (or resumes) the text encoder's CLIP; writes `text_encoder/` and `tokenizer/`.

    Args:
        data_dir: An emoji-world dataset folder (`styledrop zoo data`).
        out_dir: Run folder: checkpoint, log, evaluation and the two output folders.
        config: Hyperparameters.
        progress: Called after each step with step, loss, lr, steps_per_s, eta_s (and
            text_top1_eval on evaluation steps).
        should_stop: Polled after each step; True checkpoints and returns None.

    Returns:
        The `text_encoder/` folder (None when stopped early).

    Raises:
        CheckpointMismatchError: `out_dir` holds a checkpoint of a run with other settings.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_world_tokenizer()
    images, records = load_dataset(data_dir, split="base")
    if len(images) == 0:
        raise ValueError(f"The dataset in {data_dir} has no 'base' images.")
    bank = CaptionBank(tokenizer, records)
    sampler = SubjectPairSampler(bank.subjects, config.per_subject)
    pixels = torch.from_numpy(images)

    torch.manual_seed(config.seed)
    model = TextCLIP(config, tokenizer, image_size=images.shape[1])
    optimizer = make_optimizer(model, config.weight_decay)
    checkpoint = out_dir / CHECKPOINT_FILE
    start = load_checkpoint(checkpoint, model, optimizer, config.fingerprint())
    model.train()
    began, done_at_start = time.perf_counter(), start
    with (out_dir / LOG_FILE).open("a") as log:
        for step in range(start + 1, config.steps + 1):
            g = step_generator(config.seed, step)
            rows = sampler.sample(config.batch_size, g)
            text = bank.sample(rows, g)
            x = augment(pixels[rows], g, shift=config.shift, scale=config.zoom)
            lr = learning_rate(step, config.learning_rate, config.warmup_steps, config.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                image_features, text_features = model.encode_image(x), model.encode_text(text)
            # The similarities stay in float32: bfloat16 logits at temperature 100 are coarse.
            loss = contrastive_loss(
                image_features, text_features, model.logit_scale, bank.keys[rows]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            record: dict[str, Any] = {"step": step, "loss": float(loss.detach()), "lr": lr}
            if config.eval_every and step % config.eval_every == 0 and step < config.steps:
                record.update(_evaluate_model(model, tokenizer, data_dir))
            log.write(json.dumps(record) + "\n")
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save_checkpoint(checkpoint, model, optimizer, step, config.fingerprint())
                log.flush()
            if progress is not None:
                rate = (step - done_at_start) / max(time.perf_counter() - began, 1e-9)
                progress({**record, "steps_per_s": rate, "eta_s": (config.steps - step) / rate})
            if should_stop is not None and should_stop() and step < config.steps:
                save_checkpoint(checkpoint, model, optimizer, step, config.fingerprint())
                return None
    if start < config.steps:
        save_checkpoint(checkpoint, model, optimizer, config.steps, config.fingerprint())
    folder = out_dir / TEXT_ENCODER_DIR
    model.text.save_pretrained(folder)
    tokenizer.save_pretrained(out_dir / TOKENIZER_DIR)
    info = {
        **_evaluate_model(model, tokenizer, data_dir),
        "train": dataclasses.asdict(config),
        "vocab_size": len(tokenizer),
        "context": int(bank.ids.shape[1]),
        "images": len(images),
    }
    (out_dir / EVAL_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return folder


def evaluate_text_encoder(
    data_dir: str | Path, out_dir: str | Path, config: TextTrainConfig | None = None
) -> dict:
    """Image -> text top-1 over the vocabulary on the "eval" split, with the trained ViT.

    The vision tower is not part of the saved text encoder, so this reads the run's
    checkpoint (`out_dir/text_clip_checkpoint.pt`).

    Args:
        data_dir: The dataset folder.
        out_dir: The training run folder.
        config: The run's settings (default: those recorded in `text_eval.json`).

    Returns:
        {"text_top1_eval": accuracy, "eval_images": n, "classes": k}.
    """
    out_dir = Path(out_dir)
    if config is None:
        saved = json.loads((out_dir / EVAL_FILE).read_text())["train"]
        saved["zoom"] = tuple(saved["zoom"])
        config = TextTrainConfig(**saved)
    tokenizer = build_world_tokenizer()
    model = TextCLIP(config, tokenizer, image_size=load_dataset(data_dir, "eval")[0].shape[1])
    if not load_checkpoint(out_dir / CHECKPOINT_FILE, model, None, config.fingerprint()):
        raise FileNotFoundError(f"No checkpoint at {out_dir / CHECKPOINT_FILE}")
    return _evaluate_model(model, tokenizer, Path(data_dir))


def main_train_text(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo train text --data DIR --out DIR [--steps N]`."""
    from tqdm import tqdm

    defaults = TextTrainConfig()
    parser = argparse.ArgumentParser(
        prog="styledrop zoo train text",
        description=(
            "Train the embedded CLIP text encoder contrastively on the emoji world's 'base'"
            " split. Writes OUT/text_encoder/ and OUT/tokenizer/; rerun the same command to"
            " resume from OUT/text_clip_checkpoint.pt."
        ),
    )
    parser.add_argument("--data", type=Path, required=True, help="emoji-world dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps in all")
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="images per step"
    )
    parser.add_argument(
        "--lr", type=float, default=defaults.learning_rate, help="peak AdamW learning rate"
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of init, batches, augmentation"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=defaults.checkpoint_every,
        help="steps between checkpoints",
    )
    args = parser.parse_args(argv)
    config = dataclasses.replace(
        defaults,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    bar = tqdm(total=config.steps, unit="step", desc="text encoder")

    def show(event: dict) -> None:
        bar.n = event["step"]
        postfix = {"loss": f"{event['loss']:.3f}"}
        if "text_top1_eval" in event:
            postfix["top1"] = f"{event['text_top1_eval']:.3f}"
        bar.set_postfix(postfix)
        bar.refresh()

    folder = train_text_encoder(args.data, args.out, config, progress=show)
    bar.close()
    info = json.loads((args.out / EVAL_FILE).read_text())
    print(f"Wrote {folder} and {args.out / TOKENIZER_DIR}")
    print(f"image->text top-1 on the eval split: {info['text_top1_eval']:.3f}")
    return 0
