"""Teaching a trained text encoder that an unknown style descriptor leaves the content alone.

The zoo base draws a subject from its prompt's text embeddings: the penultimate layer's
states at all 77 positions (cross-attention) and the projected pooled embedding (the
adaLN conditioning). The text tower is causal, so appending "in watercolor painting
style" to "a penguin" leaves the states of the penguin's own tokens as they were; what
it changes are the descriptor's tokens, the states from the caption's end on (its
`<|endoftext|>` and the padding, which read the whole caption) and the pooled embedding
taken there. Measured on the committed zoo (128 subjects, seed 0, one held-out
descriptor each): `t2i_top1` 0.52 for the plain prompts, 0.09 with the descriptor;
giving the base the plain prompt's pooled embedding brings it back to 0.34, and the plain
prompt's states after the end as well to 0.39 (docs/zoo.md).

So this step fine-tunes the text encoder (a student started from it) against a frozen
copy of itself (the teacher), on every text of the world (`world_texts`) and a made-up
descriptor drawn afresh for each caption at each step (`zoo_build.descriptors`):

- invariance: for "caption + descriptor", the student's pooled embedding and its states
  from the end on match the teacher's for the caption alone (the k-th position after the
  end against the teacher's k-th);
- keeping: for the caption alone, the student's pooled embedding and states at every
  position match the teacher's, so what the base learned from the world's captions,
  style words included, still holds.

Both are mean squared errors relative to the teacher's mean square. With
`subject_weight` > 0 a third term asks the opposite of the world's own styles, which must
keep counting: that they leave the subject readable. The pooled embedding of "a penguin"
plus one of the world's training styles ("in greyscale", "as a pencil sketch"; drawn
afresh) must have the teacher's pooled embedding of "a penguin" as its nearest plain
subject prompt (cross-entropy over all subjects, `subject_retention_loss`). On the
committed zoo the world's style phrases turn the pooled embedding toward the style: for
"in greyscale" the nearest plain prompt is the subject's own for 5% of the subjects, and
the base, conditioned on it in every layer, draws greyscale blobs (docs/zoo.md, "The
world's own styles"). This term changes how the world's styled captions embed, so a base
must be trained (or continued) on the new encoder.

The held-out descriptors (`HELDOUT_DESCRIPTORS`, whose distinctive words no made-up one
uses) measure whether it generalises. The run record is the starting encoder's record with a
`descriptor_invariance` entry added (settings and figures before and after), which `zoo
assemble` keeps in the manifest as the text encoder's record.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR
from muse.text_encoder import TextEncoder
from muse.tokenizer import tokenize
from styledrop.fingerprint import settings_fingerprint
from styledrop.zoo.vocabulary import SUBJECTS, Subject
from zoo_build.contrastive import end_of_step, load_checkpoint, save_checkpoint, step_generator
from zoo_build.descriptors import (
    HELDOUT_DESCRIPTORS,
    check_descriptor_words,
    made_up_descriptor,
    mixed_style_phrase,
    training_styles_for,
    world_style_prompts,
)
from zoo_build.machine import machine_description
from zoo_build.run_files import (
    INVARIANCE_CHECKPOINT_FILE,
    INVARIANCE_LOG_FILE,
    TEXT_EVAL_FILE,
    part_record,
)
from zoo_build.schedule import warmup_cosine_lr
from zoo_build.step_rate import StepRate
from zoo_build.world_tokenizer import world_texts

# What the subject-retention loss appends to the subject prompts (`InvarianceConfig`).
RETENTION_PHRASES = ("world", "mixed")


@dataclass(frozen=True)
class InvarianceConfig:
    """Hyperparameters of the descriptor-invariance fine-tune.

    Attributes:
        steps: Optimizer steps.
        batch_size: World texts per step (each also with a made-up descriptor).
        learning_rate: Peak AdamW learning rate (linear warm-up, cosine decay).
        warmup_steps: Warm-up length.
        keep_weight: Weight of the keeping loss against the invariance loss.
        subject_weight: Weight of the subject-retention loss (0: none, as the first runs).
        subject_temperature: Softmax temperature of that loss's cosine logits.
        retention_phrases: What that loss appends to the subject prompts: "world" (one of
            the world's training styles) or "mixed" (half of them a `mixed_style_phrase`
            instead).
        descriptor_words: Word source of the made-up descriptors, "open" or "curated"
            (`zoo_build.descriptors.made_up_descriptor`; runs recorded without this
            setting used "curated").
        seed: Seed of the texts and descriptors of each step.
        init_from: sha256 of the text encoder's weights file the run starts from.
        checkpoint_every: Steps between checkpoints.
    """

    steps: int = 800
    batch_size: int = 128
    learning_rate: float = 3e-4
    warmup_steps: int = 50
    keep_weight: float = 4.0
    subject_weight: float = 0.0
    subject_temperature: float = 0.05
    retention_phrases: str = "world"
    descriptor_words: str = "open"
    seed: int = 0
    init_from: str = ""
    checkpoint_every: int = 100

    def __post_init__(self):
        check_descriptor_words(self.descriptor_words)
        if self.retention_phrases not in RETENTION_PHRASES:
            raise ValueError(
                f"retention_phrases must be one of {RETENTION_PHRASES},"
                f" got {self.retention_phrases!r}."
            )

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed.

        Runs from before `descriptor_words` existed used "curated", those from before
        the subject-retention loss had none, and those from before `retention_phrases`
        used "world"; their checkpoints still resume.
        """
        return settings_fingerprint(
            self,
            skip=("checkpoint_every",),
            added_later={
                "descriptor_words": "curated",
                "subject_weight": 0.0,
                "subject_temperature": 0.05,
                "retention_phrases": "world",
            },
        )


def eos_positions(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Index of the first `<|endoftext|>` of each row of `ids` [B, L] -> [B]."""
    return (ids == eos_id).int().argmax(dim=-1)


def tail_alignment(
    described_end: torch.Tensor, plain_end: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which teacher position each student position from the caption's end is matched to.

    Args:
        described_end: [B] end (`<|endoftext|>`) of "caption + descriptor".
        plain_end: [B] end of the caption alone (not after `described_end`).
        length: Context length L.

    Returns:
        (index [B, L] into the plain caption's positions, mask [B, L] of the positions at
        or after the described caption's end); position p >= end_d takes p - end_d + end_p.
    """
    positions = torch.arange(length, device=described_end.device)[None, :]  # [1, L]
    mask = positions >= described_end[:, None]  # [B, L]
    index = (positions - described_end[:, None] + plain_end[:, None]).clamp(0, length - 1)
    return index, mask


def _token_ids(model, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Token ids [B, L] of `texts`, on the device `model` runs on."""
    return torch.from_numpy(tokenize(tokenizer, list(texts))).to(model.device)


def _outputs(model, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate states [B, L, H], projected pooled [B, P]) as the base reads them."""
    out = model(input_ids=ids, output_hidden_states=True, return_dict=True)
    return out.hidden_states[-2], out.text_embeds


def _relative_mse(student: torch.Tensor, teacher: torch.Tensor, mask=None) -> torch.Tensor:
    """Mean squared error over the masked rows, relative to the teacher's mean square."""
    error = (student - teacher).pow(2).mean(-1)  # [...]
    scale = teacher.detach().pow(2).mean(-1)
    if mask is None:
        return error.mean() / scale.mean().clamp_min(1e-12)
    weights = mask.float()
    return (error * weights).sum() / (scale * weights).sum().clamp_min(1e-12)


def invariance_losses(
    student, teacher, tokenizer, captions: Sequence[str], descriptors: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The step's losses on a batch of captions and one descriptor for each.

    Args:
        student: The text model being trained (`CLIPTextModelWithProjection`).
        teacher: Its frozen starting copy.
        tokenizer: Their tokenizer.
        captions: B world texts.
        descriptors: B made-up descriptors, one appended to each caption.

    Returns:
        {"invariance_pooled", "invariance_tail", "keep_pooled", "keep_states"}: relative
        mean squared errors (see the module docstring).
    """
    described = [f"{c} {d}" for c, d in zip(captions, descriptors, strict=True)]
    plain_ids = _token_ids(student, tokenizer, captions)  # [B, L]
    described_ids = _token_ids(student, tokenizer, described)  # [B, L]
    with torch.no_grad():
        teacher_states, teacher_pooled = _outputs(teacher, plain_ids)
    plain_states, plain_pooled = _outputs(student, plain_ids)
    described_states, described_pooled = _outputs(student, described_ids)
    eos = tokenizer.eos_token_id
    index, mask = tail_alignment(
        eos_positions(described_ids, eos), eos_positions(plain_ids, eos), plain_ids.shape[1]
    )
    target_tail = torch.gather(
        teacher_states, 1, index[..., None].expand(-1, -1, teacher_states.shape[-1])
    )  # [B, L, H]
    return {
        "invariance_pooled": _relative_mse(described_pooled, teacher_pooled),
        "invariance_tail": _relative_mse(described_states, target_tail, mask),
        "keep_pooled": _relative_mse(plain_pooled, teacher_pooled),
        "keep_states": _relative_mse(plain_states, teacher_states),
    }


def _pooled(model, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Unit pooled embeddings [N, P] of `texts`, in batches of 512."""
    out = [
        _outputs(model, _token_ids(model, tokenizer, texts[i : i + 512]))[1]
        for i in range(0, len(texts), 512)
    ]
    return F.normalize(torch.cat(out), dim=-1)


def subject_anchors(model, tokenizer, subjects: Sequence[Subject] = SUBJECTS) -> torch.Tensor:
    """Each subject's plain prompt ("a penguin") as `model` pools it: unit [S, P], no grad."""
    with torch.no_grad():
        return _pooled(model, tokenizer, [s.phrase() for s in subjects])


def world_style_batch(
    rng: np.random.Generator, subjects: Sequence[Subject], count: int, phrases: str = "world"
) -> tuple[list[str], torch.Tensor]:
    """`count` random subjects, each with one of its training styles appended.

    Args:
        rng: The step's generator.
        subjects: The subjects to draw from (their order gives the labels).
        count: Captions to make.
        phrases: "world" (every caption a training style) or "mixed" (the second half a
            `mixed_style_phrase` instead); see `RETENTION_PHRASES`.

    Returns:
        The captions ("a fox on a blue background") and each one's subject row [count].
    """
    rows = rng.integers(len(subjects), size=count)
    mixed_from = count // 2 if phrases == "mixed" else count
    captions = []
    for index, row in enumerate(rows):
        if index >= mixed_from:
            captions.append(f"{subjects[row].phrase()} {mixed_style_phrase(rng)}")
            continue
        styles = training_styles_for(subjects[row])
        style = styles[rng.integers(len(styles))]
        captions.append(f"{subjects[row].phrase()} {style.suffix}")
    return captions, torch.as_tensor(rows, dtype=torch.long)


def subject_retention_loss(
    student, tokenizer, captions: Sequence[str], labels: torch.Tensor, anchors: torch.Tensor,
    temperature: float,
) -> torch.Tensor:  # fmt: skip
    """Cross-entropy of naming each caption's subject from its pooled embedding.

    Args:
        student: The text model being trained.
        tokenizer: Its tokenizer.
        captions: B subject prompts with a world style appended.
        labels: [B] row of each caption's subject in `anchors`.
        anchors: [S, P] unit pooled embeddings of the plain subject prompts (the teacher's).
        temperature: Softmax temperature of the cosine logits.
    """
    ids = _token_ids(student, tokenizer, captions)  # [B, L]
    pooled = F.normalize(_outputs(student, ids)[1], dim=-1)  # [B, P]
    return F.cross_entropy(pooled @ anchors.T / temperature, labels.to(pooled.device))


def world_style_figures(model, tokenizer, subjects=SUBJECTS) -> dict[str, float]:
    """How much of the subject the pooled embedding keeps under the world's own styles.

    Each subject's plain prompt gets one of its training styles, in turn, as `zoo report`
    draws them (`world_style_prompts`).

    Returns:
        {"world_style_pooled_cosine": mean cosine of each styled prompt's pooled embedding
        with its plain prompt's, "world_style_subject_top1": how often its own plain prompt
        is the nearest of all subjects'}.
    """
    with torch.no_grad():
        plain = subject_anchors(model, tokenizer, subjects)  # [S, P]
        styled = _pooled(model, tokenizer, world_style_prompts(subjects)[0])  # [S, P]
    nearest = (styled @ plain.T).argmax(1).cpu()
    return {
        "world_style_pooled_cosine": float((styled * plain).sum(-1).mean()),
        "world_style_subject_top1": float((nearest == torch.arange(len(subjects))).float().mean()),
    }


def descriptor_figures(model, tokenizer, subjects=SUBJECTS) -> dict[str, float]:
    """How far a held-out descriptor moves each subject's embeddings (no training here).

    Each subject's plain prompt gets one held-out descriptor, in turn, as `zoo report`
    draws them.

    Returns:
        {"heldout_pooled_cosine": mean cosine of the pooled embeddings with and without the
        descriptor, "heldout_pooled_error": their relative squared error, "heldout_tail_error":
        that of the states from the caption's end on, "heldout_subject_top1": how often
        the described prompt's nearest plain prompt of all subjects' is its own (on the
        zoo of docs/zoo.md it follows the base's `t2i_top1` under each descriptor)}, and
        `world_style_figures`.
    """
    plain = [s.phrase() for s in subjects]
    count = len(HELDOUT_DESCRIPTORS)
    described = [f"{p} {HELDOUT_DESCRIPTORS[i % count]}" for i, p in enumerate(plain)]
    plain_ids = _token_ids(model, tokenizer, plain)
    described_ids = _token_ids(model, tokenizer, described)
    with torch.no_grad():
        plain_states, plain_pooled = _outputs(model, plain_ids)
        described_states, described_pooled = _outputs(model, described_ids)
    eos = tokenizer.eos_token_id
    index, mask = tail_alignment(
        eos_positions(described_ids, eos), eos_positions(plain_ids, eos), plain_ids.shape[1]
    )
    tail = torch.gather(plain_states, 1, index[..., None].expand(-1, -1, plain_states.shape[-1]))
    cosine = F.cosine_similarity(described_pooled, plain_pooled, dim=-1).mean()
    unit_plain = F.normalize(plain_pooled, dim=-1)  # [S, P]
    nearest = (F.normalize(described_pooled, dim=-1) @ unit_plain.T).argmax(1).cpu()  # [S]
    return {
        "heldout_pooled_cosine": float(cosine),
        "heldout_subject_top1": float((nearest == torch.arange(len(subjects))).float().mean()),
        "heldout_pooled_error": float(_relative_mse(described_pooled, plain_pooled)),
        "heldout_tail_error": float(_relative_mse(described_states, tail, mask)),
        **world_style_figures(model, tokenizer, subjects),
    }


def keeping_figures(
    student, teacher, tokenizer, texts: Sequence[str], count: int = 2048
) -> dict[str, float]:
    """Relative squared error of the student against the teacher on `count` of `texts`.

    The texts are taken evenly spread over `texts`, alone (no descriptor).
    """
    texts = [texts[int(i)] for i in np.linspace(0, len(texts) - 1, min(count, len(texts)))]
    errors = {"world_pooled_error": [], "world_states_error": []}
    with torch.no_grad():
        for start in range(0, len(texts), 512):
            ids = _token_ids(student, tokenizer, texts[start : start + 512])
            s_states, s_pooled = _outputs(student, ids)
            t_states, t_pooled = _outputs(teacher, ids)
            errors["world_pooled_error"].append(float(_relative_mse(s_pooled, t_pooled)))
            errors["world_states_error"].append(float(_relative_mse(s_states, t_states)))
    return {name: float(np.mean(values)) for name, values in errors.items()}


def train_descriptor_invariance(
    text_dir: str | Path,
    out_dir: str | Path,
    config: InvarianceConfig,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    texts: Sequence[str] | None = None,
    device: str = "cpu",
) -> Path | None:
    """Fine-tunes (or resumes) a text encoder for descriptor invariance.

    Args:
        text_dir: A folder with `text_encoder/` and `tokenizer/`: a `zoo train text` run or
            a zoo folder (the committed one, say).
        out_dir: Run folder: checkpoint, log, record and the new `text_encoder/` and
            `tokenizer/` (the tokenizer is copied unchanged).
        config: Hyperparameters; `config.init_from` must be the sha256 of
            `text_dir/text_encoder/model.safetensors`.
        progress: Called after each step with its losses, steps_per_s and eta_s.
        should_stop: Polled after each step; True checkpoints and returns None.
        texts: The captions (default: `world_texts()`, every text of the world).
        device: Torch device of the student and the teacher ("cuda" on a lent GPU).

    Returns:
        The new `text_encoder/` folder (None when stopped early).

    Raises:
        ValueError: `config.init_from` does not match the starting weights.
    """
    from muse import checkpoint as model_checkpoint

    text_dir, out_dir = Path(text_dir), Path(out_dir)
    weights_file = text_dir / TEXT_ENCODER_DIR / "model.safetensors"
    digest = model_checkpoint.sha256_file(weights_file)
    if digest != config.init_from:
        raise ValueError(
            f"config.init_from is {config.init_from!r} but {weights_file} hashes to "
            f"{digest!r}; set init_from to the sha256 of the encoder you start from."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = TextEncoder.load(
        text_dir / TEXT_ENCODER_DIR, tokenizer=text_dir / TOKENIZER_DIR, device=device
    )
    tokenizer, teacher = loaded.tokenizer, loaded.model  # teacher: eval, no gradients
    student = copy.deepcopy(teacher).requires_grad_(True).train()
    texts = list(world_texts() if texts is None else texts)
    optimizer = torch.optim.AdamW(student.parameters(), lr=0.0, weight_decay=0.0)
    checkpoint = out_dir / INVARIANCE_CHECKPOINT_FILE
    start = load_checkpoint(checkpoint, student, optimizer, config.fingerprint())
    anchors = subject_anchors(teacher, tokenizer) if config.subject_weight > 0 else None
    rate = StepRate(start, config.steps)
    with (out_dir / INVARIANCE_LOG_FILE).open("a") as log:
        for step in range(start + 1, config.steps + 1):
            generator = step_generator(config.seed, step)
            rows = torch.randint(len(texts), (config.batch_size,), generator=generator)
            rng = np.random.default_rng([config.seed, step])
            descriptors = [
                made_up_descriptor(rng, config.descriptor_words) for _ in range(config.batch_size)
            ]
            losses = invariance_losses(
                student, teacher, tokenizer, [texts[int(r)] for r in rows], descriptors
            )
            invariance = losses["invariance_pooled"] + losses["invariance_tail"]
            keep = losses["keep_pooled"] + losses["keep_states"]
            loss = invariance + config.keep_weight * keep
            if anchors is not None:
                styled, labels = world_style_batch(
                    rng, SUBJECTS, config.batch_size, config.retention_phrases
                )
                losses["subject_retention"] = subject_retention_loss(
                    student, tokenizer, styled, labels, anchors, config.subject_temperature
                )
                loss = loss + config.subject_weight * losses["subject_retention"]
            lr = warmup_cosine_lr(step, config.learning_rate, config.warmup_steps, config.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            record = {"step": step, "loss": float(loss.detach()), "lr": lr}
            record |= {name: float(value.detach()) for name, value in losses.items()}
            stop = end_of_step(
                log, record, checkpoint, student, optimizer, config, rate, progress, should_stop
            )
            if stop:
                return None
    if start < config.steps:
        save_checkpoint(checkpoint, student, optimizer, config.steps, config.fingerprint())
    student.eval()
    folder = out_dir / TEXT_ENCODER_DIR
    student.save_pretrained(folder)
    shutil.rmtree(out_dir / TOKENIZER_DIR, ignore_errors=True)
    shutil.copytree(text_dir / TOKENIZER_DIR, out_dir / TOKENIZER_DIR)
    previous = part_record(text_dir, TEXT_EVAL_FILE, "text")
    earlier = previous.get("descriptor_invariance")  # a second fine-tune keeps the first's
    record = {
        **previous,
        "descriptor_invariance": {
            "train": dataclasses.asdict(config),
            "before": descriptor_figures(teacher, tokenizer),
            "after": {
                **descriptor_figures(student, tokenizer),
                **keeping_figures(student, teacher, tokenizer, texts),
            },
            "texts": len(texts),
            "machine": machine_description(),
            **({} if earlier is None else {"init": earlier}),
        },
    }
    (out_dir / TEXT_EVAL_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return folder
