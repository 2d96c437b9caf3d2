"""Training the judge CLIP of the emoji world (open_clip), used only for scoring.

The judge is a small open_clip `CLIP`: an image tower (by default open_clip's
`ModifiedResNet`, the CLIP RN50 design, on 64 px images; at the parameter count of the
ViT option it takes 1.2 s a step against 2.4 s here, and was ahead on eval-split top-1 for
the same training time) and a causal text tower, trained contrastively on the "judge"
split, which shares no image with the "base" split that trains the conditioning text
encoder, and with another seed, so scores do not come from the model that conditions
generation. Training is as for the text encoder (`zoo_build.train_text_encoder`: two
draws per subject per batch, random caption phrasings, (subject, style) soft positives)
with two changes: half the styled images are captioned with their subject alone, which
matches every image of that subject (`ContentCaptions`), so that "a penguin" finds a
penguin in any style; and a stronger augmentation (zoom, shift, small rotations,
brightness and contrast).

The judge folder is open_clip's own local format, loadable offline by open_clip alone:

    model = open_clip.create_model("local-dir:/path/to/judge")    # eval mode, fp32
    tokenizer = open_clip.get_tokenizer("local-dir:/path/to/judge")
    # or: model, _, preprocess = open_clip.create_model_and_transforms("local-dir:...")

It holds `open_clip_config.json` (`model_cfg` and `preprocess_cfg`: 64 px, mean and std
0.5), `open_clip_model.safetensors` (the weights, stored in float16 to save space; open_clip
copies them into the float32 model) and the world tokenizer's files (a `CLIPTokenizer`,
see `train_text_encoder.build_world_tokenizer`), which open_clip loads through its
`HFTokenizer` because the text config names one. Images go in as [-1, 1] pixels
(`train_text_encoder.to_pixels`).

`evaluate_judge` reports zero-shot top-1 over the vocabulary (class embedding = mean of
the subject's prompt embeddings: "a penguin", "penguin", "an image of a penguin", ...) on
the "eval" split (`judge_top1_real`: unseen draws of the training styles) and on the
held-out Symbola line art references (`judge_top1_heldout_style`), plus each other held-out
style for information.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from styledrop.zoo.draws import captions_for
from styledrop.zoo.embedded import JUDGE_DIR
from styledrop.zoo.styles import LINE_ART
from styledrop.zoo.vocabulary import Subject, get_subject
from zoo_build.dataset import load_dataset
from zoo_build.train_text_encoder import (
    CaptionBank,
    SubjectPairSampler,
    augment,
    build_world_tokenizer,
    contrastive_loss_with_positives,
    learning_rate,
    load_checkpoint,
    load_vocabulary,
    make_optimizer,
    save_checkpoint,
    step_generator,
    subject_labels,
    top1_accuracy,
    zero_shot_features,
)

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
CHECKPOINT_FILE = "judge_checkpoint.pt"
LOG_FILE = "judge_train_log.jsonl"
EVAL_FILE = "judge_eval.json"
TOKENIZER_NAME = "emoji-world-clip-bpe"  # a label: open_clip reads the files in the folder
PIXEL_MEAN = (0.5, 0.5, 0.5)
PIXEL_STD = (0.5, 0.5, 0.5)


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
        values = dataclasses.asdict(self)
        for name in ("checkpoint_every", "eval_every"):
            values.pop(name)
        return json.dumps(values, sort_keys=True)

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


def build_judge(model_cfg: dict):
    """An open_clip `CLIP` from a `model_cfg` (what `create_model` builds from it)."""
    import open_clip

    return open_clip.CLIP(**model_cfg)


def load_judge(judge_dir: str | Path):
    """Loads the judge and its tokenizer offline (open_clip's local-dir format).

    Args:
        judge_dir: The judge folder.

    Returns:
        (model in eval mode, open_clip tokenizer: prompts -> int64 [B, context]).
    """
    import open_clip

    spec = f"local-dir:{Path(judge_dir).resolve()}"
    model = open_clip.create_model(spec)
    model.eval()
    return model, open_clip.get_tokenizer(spec)


def _tokenize_fn(tokenizer, context_length: int) -> Callable[[list[str]], torch.Tensor]:
    from transformers import PreTrainedTokenizerBase

    from muse.tokenizer import tokenize

    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        return lambda prompts: tokenizer(prompts)  # an open_clip tokenizer

    return lambda prompts: torch.from_numpy(tokenize(tokenizer, prompts, context_length))


def zero_shot_top1(
    model,
    images: np.ndarray,
    subject_names: Sequence[str],
    tokenizer=None,
    candidates: Sequence[Subject | str] | None = None,
) -> float:
    """Zero-shot top-1 accuracy of an open_clip model over a set of subjects.

    Each candidate's class embedding is the mean of its prompt embeddings ("a penguin",
    "penguin", "an image of a penguin", "a picture of a penguin").

    Args:
        model: An open_clip CLIP (eval mode).
        images: uint8 [N, H, W, 3].
        subject_names: The true subject id of each image.
        tokenizer: open_clip tokenizer or `CLIPTokenizer` (default: the world tokenizer).
        candidates: Subjects or ids to choose from (default: those in `subject_names`).

    Returns:
        The fraction of images whose best-scoring subject is theirs.
    """
    if candidates is None:
        candidates = list(dict.fromkeys(subject_names))
    subjects = [c if isinstance(c, Subject) else get_subject(c) for c in candidates]
    context = int(model.positional_embedding.shape[0])
    tokenize = _tokenize_fn(tokenizer or build_world_tokenizer(), context)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        classes = zero_shot_features(
            lambda ids: model.encode_text(ids, normalize=True).float(), tokenize, subjects
        )
        labels = subject_labels([{"subject": s} for s in subject_names], subjects)
        top1 = top1_accuracy(
            lambda x: model.encode_image(x, normalize=True).float(), classes, images, labels
        )
    model.train(was_training)
    return top1


def _scores(model, tokenizer, data_dir: Path, heldout: bool = True) -> dict[str, Any]:
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


def save_judge(model, model_cfg: dict, tokenizer, judge_dir: Path) -> Path:
    """Writes the judge folder (config, float16 weights, tokenizer files)."""
    from safetensors.torch import save_file

    judge_dir.mkdir(parents=True, exist_ok=True)
    image_size = model_cfg["vision_cfg"]["image_size"]
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "size": image_size,
            "mean": list(PIXEL_MEAN),
            "std": list(PIXEL_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }
    (judge_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    state = {
        name: (value.to(torch.float16) if value.is_floating_point() else value).contiguous()
        for name, value in model.state_dict().items()
    }  # float16 weights; integer buffers (BatchNorm's step counts) keep their type
    save_file(state, str(judge_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    tokenizer.save_pretrained(judge_dir)
    return judge_dir


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
        train_text_encoder.CheckpointMismatchError: `out_dir` holds a checkpoint of a run
            with other settings.
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
    pixels = torch.from_numpy(images)
    model_cfg = config.model_cfg(len(tokenizer), image_size=images.shape[1])

    torch.manual_seed(config.seed)
    model = build_judge(model_cfg)
    optimizer = make_optimizer(model, config.weight_decay)
    checkpoint = out_dir / CHECKPOINT_FILE
    start = load_checkpoint(checkpoint, model, optimizer, config.fingerprint())
    model.train()
    began, done_at_start = time.perf_counter(), start
    with (out_dir / LOG_FILE).open("a") as log:
        for step in range(start + 1, config.steps + 1):
            g = step_generator(config.seed, step)
            rows = sampler.sample(config.batch_size, g)
            text, positives = content.mix(rows, bank, config.content_captions, g)
            x = augment(
                pixels[rows], g, shift=config.shift, scale=config.zoom,
                rotate_deg=config.rotate_deg, brightness=config.brightness,
                contrast=config.contrast,
            )  # fmt: skip
            lr = learning_rate(step, config.learning_rate, config.warmup_steps, config.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                image_features = model.encode_image(x, normalize=True).float()
                text_features = model.encode_text(text, normalize=True).float()
            loss = contrastive_loss_with_positives(
                image_features, text_features, model.logit_scale, positives
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, np.log(100.0))
            record: dict[str, Any] = {"step": step, "loss": float(loss.detach()), "lr": lr}
            if config.eval_every and step % config.eval_every == 0 and step < config.steps:
                record.update(_scores(model, tokenizer, data_dir, heldout=False))
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
    judge_dir = save_judge(model.eval(), model_cfg, tokenizer, out_dir / JUDGE_DIR)
    info = {
        **evaluate_judge(data_dir, judge_dir),
        "train": dataclasses.asdict(config),
        "vocab_size": len(tokenizer),
        "images": len(images),
    }
    (out_dir / EVAL_FILE).write_text(json.dumps(info, indent=2) + "\n")
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


def _parse_layers(text: str) -> tuple[int, ...]:
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        layers = ()
    if len(layers) != 4 or min(layers) < 1:
        raise argparse.ArgumentTypeError(
            f"expected four positive block counts such as 1,1,1,1, got {text!r}"
        )
    return layers


def main_train_judge(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo train judge --data DIR --out DIR [--steps N]`."""
    from tqdm import tqdm

    defaults = JudgeTrainConfig()
    parser = argparse.ArgumentParser(
        prog="styledrop zoo train judge",
        description=(
            "Train the judge CLIP (open_clip) on the emoji world's 'judge' split, used only"
            " for scoring. Writes OUT/judge/ (load it with open_clip.create_model("
            "'local-dir:OUT/judge')); rerun the same command to resume from"
            " OUT/judge_checkpoint.pt."
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
    parser.add_argument(
        "--eval-every",
        type=int,
        default=defaults.eval_every,
        help="steps between evaluations on the eval split (0: only at the end)",
    )
    parser.add_argument(
        "--vision",
        choices=("vit", "resnet"),
        default=defaults.vision,
        help="image tower: a ViT or open_clip's ModifiedResNet",
    )
    parser.add_argument(
        "--resnet-layers",
        type=_parse_layers,
        default=defaults.resnet_layers,
        help="ResNet blocks per stage, four numbers such as 1,1,1,1",
    )
    parser.add_argument(
        "--resnet-width",
        type=int,
        default=defaults.resnet_width,
        help="ResNet stem width",
    )
    parser.add_argument(
        "--content-captions",
        type=float,
        default=defaults.content_captions,
        help="chance that a styled image is captioned with its subject alone",
    )
    args = parser.parse_args(argv)
    config = dataclasses.replace(
        defaults,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        vision=args.vision,
        resnet_layers=args.resnet_layers,
        resnet_width=args.resnet_width,
        content_captions=args.content_captions,
    )
    bar = tqdm(total=config.steps, unit="step", desc="judge CLIP")

    def show(event: dict) -> None:
        bar.n = event["step"]
        postfix = {"loss": f"{event['loss']:.3f}"}
        if "judge_top1_real" in event:
            postfix["top1"] = f"{event['judge_top1_real']:.3f}"
        bar.set_postfix(postfix)
        bar.refresh()

    judge_dir = train_judge(args.data, args.out, config, progress=show)
    bar.close()
    info = json.loads((args.out / EVAL_FILE).read_text())
    print(f"Wrote {judge_dir}")
    print(f"judge_top1_real {info['judge_top1_real']:.3f}")
    if "judge_top1_heldout_style" in info:
        print(f"judge_top1_heldout_style {info['judge_top1_heldout_style']:.3f}")
    return 0
