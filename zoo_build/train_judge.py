"""Training the judge CLIP of the emoji world (open_clip), used only for scoring.

The judge is a small open_clip `CLIP`: an image tower (by default open_clip's
`ModifiedResNet`, the CLIP RN50 design, on 64 px images; at the parameter count of the
ViT option it takes 1.2 s a step against 2.4 s here, and was ahead on eval-split top-1 for
the same training time) and a causal text tower, trained contrastively on the "judge"
split, which shares no image with the "base" split that trains the conditioning text
encoder, and with another seed, so scores do not come from the model that conditions
generation. Training is as for the text encoder (`zoo_build.contrastive`: two draws per
subject per batch, random caption phrasings, (subject, style) soft positives) with two
changes: half the styled images are captioned with their subject alone, which matches
every image of that subject (`ContentCaptions`), so that "a penguin" finds a penguin in any
style; and a stronger augmentation (zoom, shift, small rotations, brightness and contrast).
The trained judge is written as an open_clip `local-dir` folder (`zoo_build.judge_folder`).

`evaluate_judge` reports zero-shot top-1 over the vocabulary (class embedding = mean of
the subject's prompt embeddings: "a penguin", "penguin", "an image of a penguin", ...) on
the "eval" split (`judge_top1_real`: unseen draws of the training styles) and on the
held-out Symbola line art references (`judge_top1_heldout_style`), plus each other held-out
style for information.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from styledrop.fingerprint import settings_fingerprint
from styledrop.zoo.draws import captions_for
from styledrop.zoo.embedded import JUDGE_DIR
from styledrop.zoo.styles import LINE_ART
from styledrop.zoo.vocabulary import get_subject
from zoo_build.contrastive import CaptionBank, SubjectPairSampler, augment, train_contrastive
from zoo_build.dataset import load_dataset
from zoo_build.judge_folder import TOKENIZER_NAME, build_judge, load_judge, save_judge
from zoo_build.run_files import JUDGE_CHECKPOINT_FILE, JUDGE_EVAL_FILE, JUDGE_LOG_FILE
from zoo_build.world_tokenizer import build_world_tokenizer
from zoo_build.zero_shot import load_vocabulary, zero_shot_top1


@dataclass(frozen=True)
class JudgeTrainConfig:
    """Hyperparameters of judge training.

    Attributes:
        embed_dim: Joint embedding width.
        vision: Image tower: "vit" (a ViT) or "resnet" (open_clip's `ModifiedResNet`, the
            CLIP RN50 design with an attention pool; half the step time of the ViT at
            the same parameter count on this CPU).
        vision_width: ViT width.
        vision_layers: ViT layers.
        vision_head_width: ViT attention head width.
        patch_size: ViT patch side in pixels.
        resnet_layers: ResNet bottleneck blocks per stage (four stages, 32x downsampling:
            a 64 px image ends as 2x2 features).
        resnet_width: ResNet stem width (the last stage has 32x as many channels).
        resnet_head_width: Attention-pool head width of the ResNet.
        text_width: Text tower width.
        text_layers: Text tower layers.
        text_heads: Text tower heads.
        context_length: Text context (world prompts need about 20 tokens).
        steps: Optimizer steps.
        batch_size: Images per step.
        per_subject: Images of one subject per batch.
        learning_rate: Peak AdamW learning rate (linear warm-up, cosine decay).
        warmup_steps: Warm-up length.
        weight_decay: AdamW weight decay (matrices only).
        shift: Augmentation: largest shift as a fraction of the side.
        zoom: Augmentation: zoom range.
        rotate_deg: Augmentation: largest rotation in degrees.
        brightness: Augmentation: largest brightness change.
        contrast: Augmentation: largest relative contrast change.
        content_captions: Chance that a styled image's caption is one of its subject's plain
            captions ("a penguin", "an image of a penguin"), which then matches every image
            of that subject in the batch (plain images always get such captions). Without
            these, captions that name the style make (subject, style) the positive, styled
            images drift away from "a penguin", and zero-shot top-1 over subjects on styled
            images stays near a third even on the training images.
        bf16: Forward pass under bfloat16 autocast (off by default; see
            `TextTrainConfig.bf16`).
        seed: Seed of the initialisation, batches and augmentation (not the text encoder's).
        checkpoint_every: Steps between checkpoints.
        eval_every: Steps between evaluations (0: only at the end).
    """

    embed_dim: int = 128
    vision: str = "resnet"
    vision_width: int = 192
    vision_layers: int = 4
    vision_head_width: int = 48
    patch_size: int = 8
    resnet_layers: tuple[int, ...] = (2, 2, 2, 2)
    resnet_width: int = 16
    resnet_head_width: int = 64
    text_width: int = 128
    text_layers: int = 4
    text_heads: int = 4
    context_length: int = 32
    steps: int = 2500
    batch_size: int = 128
    per_subject: int = 2
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    shift: float = 0.08
    zoom: tuple[float, float] = (0.85, 1.15)
    rotate_deg: float = 10.0
    brightness: float = 0.1
    contrast: float = 0.2
    content_captions: float = 0.5
    bf16: bool = False
    seed: int = 1
    checkpoint_every: int = 100
    eval_every: int = 500

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed."""
        return settings_fingerprint(self, skip=("checkpoint_every", "eval_every"))

    def model_cfg(self, vocab_size: int, image_size: int = 64) -> dict:
        """The open_clip `model_cfg` (as in `open_clip_config.json`).

        Raises:
            ValueError: `vision` is neither "vit" nor "resnet".
        """
        if self.vision == "vit":
            vision_cfg = {
                "image_size": image_size,
                "layers": self.vision_layers,
                "width": self.vision_width,
                "head_width": self.vision_head_width,
                "patch_size": self.patch_size,
            }
        elif self.vision == "resnet":  # open_clip builds a ModifiedResNet for a list of layers
            vision_cfg = {
                "image_size": image_size,
                "layers": list(self.resnet_layers),
                "width": self.resnet_width,
                "head_width": self.resnet_head_width,
            }
        else:
            raise ValueError(f"Unknown judge vision tower {self.vision!r}: use 'vit' or 'resnet'.")
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": vision_cfg,
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": vocab_size,
                "width": self.text_width,
                "heads": self.text_heads,
                "layers": self.text_layers,
                "hf_tokenizer_name": TOKENIZER_NAME,
                "tokenizer_kwargs": {"clean": "lower"},
                "pool_type": "argmax",
            },
        }


class ContentCaptions:
    """Each image's subject-only captions, and the mix of them with the styled ones.

    Attributes:
        bank: A `CaptionBank` with one row per image: the plain captions of its subject.
        subject_keys: int64 [images] subject id of each image.
        plain: bool [images] True for images drawn without a style.
    """

    def __init__(self, tokenizer, records: Sequence[dict], context: int):
        """Tokenizes the plain captions of every subject in `records`.

        Args:
            tokenizer: The CLIP tokenizer.
            records: The split's records ("subject", "style", "captions").
            context: Token columns kept (the styled bank's, so the two can be mixed).
        """
        plain_captions = {
            name: captions_for(get_subject(name), ())
            for name in dict.fromkeys(r["subject"] for r in records)
        }
        self.bank = CaptionBank(
            tokenizer,
            [{**r, "captions": plain_captions[r["subject"]]} for r in records],
            context=context,
        )
        index = {name: i for i, name in enumerate(plain_captions)}
        self.subject_keys = torch.tensor([index[r["subject"]] for r in records])
        self.plain = torch.tensor([r["style"] == "plain" for r in records])

    def mix(
        self, rows: torch.Tensor, styled: CaptionBank, rate: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions of a batch and which (image, caption) pairs match.

        Args:
            rows: int64 [B] image rows.
            styled: The split's own captions (they name the style).
            rate: Chance that a styled image gets a subject-only caption.
            generator: The step's generator.

        Returns:
            (token ids int64 [B, context], positives bool [B, B]): image i matches a
            subject-only caption j when their subjects agree, and a styled caption j when
            their (subject, style) keys agree.
        """
        content = (torch.rand(len(rows), generator=generator) < rate) | self.plain[rows]
        text = torch.where(
            content[:, None], self.bank.sample(rows, generator), styled.sample(rows, generator)
        )
        subjects, keys = self.subject_keys[rows], styled.keys[rows]
        positives = torch.where(
            content[None, :],
            subjects[:, None] == subjects[None, :],
            keys[:, None] == keys[None, :],
        )
        return text, positives


def _scores(model, tokenizer, data_dir: Path, heldout: bool = True) -> dict[str, Any]:
    """Zero-shot top-1 on the "eval" split and, with `heldout`, on each held-out style."""
    subjects = load_vocabulary(data_dir)
    images, records = load_dataset(data_dir, split="eval")
    result: dict[str, Any] = {
        "judge_top1_real": zero_shot_top1(
            model, images, [r["subject"] for r in records], tokenizer, subjects
        )
    }
    if heldout and (data_dir / "heldout.jsonl").is_file():
        held, held_records = load_dataset(data_dir, heldout=True)
        by_style = {}
        for style in dict.fromkeys(r["style"] for r in held_records):
            rows = [i for i, r in enumerate(held_records) if r["style"] == style]
            names = [held_records[i]["subject"] for i in rows]
            by_style[style] = zero_shot_top1(model, held[rows], names, tokenizer, subjects)
        result["judge_top1_heldout_style"] = by_style.get(LINE_ART.name, float("nan"))
        result["judge_top1_by_heldout_style"] = by_style
    return result


def train_judge(
    data_dir: str | Path,
    out_dir: str | Path,
    config: JudgeTrainConfig = JudgeTrainConfig(),
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path | None:
    """Trains (or resumes) the judge on the "judge" split; writes `out_dir/judge/`.

    Args:
        data_dir: An emoji-world dataset folder (`styledrop zoo data`).
        out_dir: Run folder: checkpoint, log, evaluation and the judge folder.
        config: Hyperparameters.
        progress: Called after each step with step, loss, lr, steps_per_s, eta_s (and
            judge_top1_real on evaluation steps).
        should_stop: Polled after each step; True checkpoints and returns None.

    Returns:
        The judge folder (None when stopped early).

    Raises:
        contrastive.CheckpointMismatchError: `out_dir` holds a checkpoint of a run with
            other settings.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_world_tokenizer()
    images, records = load_dataset(data_dir, split="judge")
    if len(images) == 0:
        raise ValueError(f"The dataset in {data_dir} has no 'judge' images.")
    bank = CaptionBank(tokenizer, records, context=config.context_length)
    content = ContentCaptions(tokenizer, records, context=config.context_length)
    sampler = SubjectPairSampler(bank.subjects, config.per_subject)
    pixels = torch.from_numpy(images)  # uint8 [N, H, W, 3]
    model_cfg = config.model_cfg(len(tokenizer), image_size=images.shape[1])

    def batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = sampler.sample(config.batch_size, g)  # [B]
        text, positives = content.mix(rows, bank, config.content_captions, g)  # [B, L], [B, B]
        x = augment(
            pixels[rows], g, shift=config.shift, scale=config.zoom,
            rotate_deg=config.rotate_deg, brightness=config.brightness,
            contrast=config.contrast,
        )  # [B, 3, H, W]  # fmt: skip
        return x, text, positives

    def encode(x: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_features = model.encode_image(x, normalize=True).float()  # [B, D]
        return image_features, model.encode_text(text, normalize=True).float()

    torch.manual_seed(config.seed)
    model = build_judge(model_cfg)
    done = train_contrastive(
        model, config, out_dir / JUDGE_CHECKPOINT_FILE, out_dir / JUDGE_LOG_FILE, batch, encode,
        lambda: _scores(model, tokenizer, data_dir, heldout=False), progress, should_stop,
    )  # fmt: skip
    if not done:
        return None
    judge_dir = save_judge(model.eval(), model_cfg, tokenizer, out_dir / JUDGE_DIR)
    info = {
        **evaluate_judge(data_dir, judge_dir),
        "train": dataclasses.asdict(config),
        "vocab_size": len(tokenizer),
        "images": len(images),
    }
    (out_dir / JUDGE_EVAL_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return judge_dir


def evaluate_judge(data_dir: str | Path, judge_dir: str | Path) -> dict[str, Any]:
    """Zero-shot top-1 of a saved judge, loaded offline as a user would.

    Args:
        data_dir: The dataset folder.
        judge_dir: The judge folder.

    Returns:
        {"judge_top1_real": top-1 on the "eval" split, "judge_top1_heldout_style": top-1 on
        the Symbola line art references, "judge_top1_by_heldout_style": {style: top-1}}
        (the held-out keys only when the dataset has its held-out references).
    """
    model, tokenizer = load_judge(judge_dir)
    return _scores(model, tokenizer, Path(data_dir))
