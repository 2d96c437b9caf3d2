"""Zero-shot classification over the emoji world's subjects, for evaluating its CLIPs.

A subject's class embedding is the mean of its prompt embeddings ("a penguin", "penguin",
"an image of a penguin", "a picture of a penguin"; `Subject.zero_shot_prompts`),
renormalised; an image's prediction is the nearest class. The text encoder's sanity check
and the judge's scores (`zero_shot_top1`, on an open_clip model) both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from feedback.scorer import ClipScorer
from styledrop.zoo.naming import judge_guesses
from styledrop.zoo.vocabulary import SUBJECTS, Subject, get_subject
from zoo_build.contrastive import to_pixels
from zoo_build.dataset import load_dataset
from zoo_build.world_tokenizer import build_world_tokenizer


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
    prompts = [s.zero_shot_prompts() for s in subjects]
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


def prompt_tokenizer(tokenizer, context_length: int) -> Callable[[list[str]], torch.Tensor]:
    """Prompts -> int64 token ids [B, context_length], for `zero_shot_features`.

    Args:
        tokenizer: A `transformers` tokenizer (the world tokenizer), or an open_clip one
            (which pads to its own context and ignores `context_length`).
        context_length: Token columns.
    """
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
    tokenize = prompt_tokenizer(tokenizer or build_world_tokenizer(), context)
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


def judge_top1(
    scorer: ClipScorer, images: np.ndarray, truth: Sequence[str], subjects: Sequence[Subject]
) -> tuple[float, list[str]]:
    """Zero-shot top-1 over `subjects`, and each image's predicted subject id."""
    predicted = judge_guesses(scorer, images, subjects)
    correct = [p == t for p, t in zip(predicted, truth, strict=True)]
    return (float(np.mean(correct)) if correct else float("nan")), predicted
