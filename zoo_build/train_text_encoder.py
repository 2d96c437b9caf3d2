"""Training the embedded CLIP text encoder on the emoji world (contrastive, transformers).

A small `transformers` CLIP (text tower + a small ViT) is trained contrastively on the
"base" split (`zoo_build.contrastive`): each step takes a batch of images, two draws of
each of B/2 subjects (so a batch always holds the same subject in different styles and the
style words must be read), a random caption phrasing per image and a light geometric
augmentation. Pairs with the same (subject, style) are all positives of each other (soft
targets). Captions are tokenized with the world tokenizer (`zoo_build.world_tokenizer`).
Only the text tower with its projection (`CLIPTextModelWithProjection`) is kept:
`out_dir/text_encoder/` (loadable with `CLIPTextModelWithProjection.from_pretrained` and
`muse.text_encoder.TextEncoder.load`) and its tokenizer in `out_dir/tokenizer/`. The vision
tower stays in the run checkpoint, where `evaluate_text_encoder` uses it as a sanity check
(image -> text top-1 over the vocabulary on the "eval" split).

Training runs on a shortened context: the text tower is causal and pools at the first
`<|endoftext|>`, so the pooled embedding of a caption does not depend on the padding after
it, and the longest world caption is about 20 tokens. The saved model keeps 77 positions.
Resumed runs end bit-identical to uninterrupted ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR
from muse.tokenizer import CONTEXT_LENGTH
from styledrop.fingerprint import settings_fingerprint
from zoo_build.contrastive import (
    CaptionBank,
    SubjectPairSampler,
    augment,
    load_checkpoint,
    train_contrastive,
)
from zoo_build.dataset import load_dataset
from zoo_build.run_files import TEXT_CHECKPOINT_FILE, TEXT_EVAL_FILE, TEXT_LOG_FILE
from zoo_build.world_tokenizer import build_world_tokenizer
from zoo_build.zero_shot import (
    load_vocabulary,
    prompt_tokenizer,
    subject_labels,
    top1_accuracy,
    zero_shot_features,
)

INIT_LOGIT_SCALE = math.log(1 / 0.07)


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
        return settings_fingerprint(self, skip=("checkpoint_every", "eval_every"))


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


def _evaluate_model(model: TextCLIP, tokenizer, data_dir: Path) -> dict:
    """Image -> text top-1 over the dataset's vocabulary on its "eval" split."""
    images, records = load_dataset(data_dir, split="eval")
    subjects = load_vocabulary(data_dir)
    model.eval()
    tokenize = prompt_tokenizer(tokenizer, CONTEXT_LENGTH)
    classes = zero_shot_features(model.encode_text, tokenize, subjects)
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
    pixels = torch.from_numpy(images)  # uint8 [N, H, W, 3]

    def batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = sampler.sample(config.batch_size, g)  # [B]
        text = bank.sample(rows, g)  # [B, context]
        x = augment(pixels[rows], g, shift=config.shift, scale=config.zoom)  # [B, 3, H, W]
        keys = bank.keys[rows]  # [B]: same (subject, style) pair, same key
        return x, text, keys[:, None] == keys[None, :]

    torch.manual_seed(config.seed)
    model = TextCLIP(config, tokenizer, image_size=images.shape[1])
    done = train_contrastive(
        model, config, out_dir / TEXT_CHECKPOINT_FILE, out_dir / TEXT_LOG_FILE, batch,
        lambda x, text: (model.encode_image(x), model.encode_text(text)),
        lambda: _evaluate_model(model, tokenizer, data_dir), progress, should_stop,
    )  # fmt: skip
    if not done:
        return None
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
    (out_dir / TEXT_EVAL_FILE).write_text(json.dumps(info, indent=2) + "\n")
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
        saved = json.loads((out_dir / TEXT_EVAL_FILE).read_text())["train"]
        saved["zoom"] = tuple(saved["zoom"])
        config = TextTrainConfig(**saved)
    tokenizer = build_world_tokenizer()
    model = TextCLIP(config, tokenizer, image_size=load_dataset(data_dir, "eval")[0].shape[1])
    checkpoint = out_dir / TEXT_CHECKPOINT_FILE
    if not load_checkpoint(checkpoint, model, None, config.fingerprint()):
        raise FileNotFoundError(f"No checkpoint at {checkpoint}")
    return _evaluate_model(model, tokenizer, Path(data_dir))
