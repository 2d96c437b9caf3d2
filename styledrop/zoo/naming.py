"""Naming the subject of an image zero-shot over the emoji world's vocabulary.

A CLIP (the zoo's judge, or any open_clip scorer) names an image's subject as the nearest
class embedding, each class the mean of its subject's zero-shot prompts
(`Subject.zero_shot_prompts`). The zoo report's `t2i_top1`, the recognisability check and
the evaluation's "subject named" score all count these guesses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from feedback.scorer import ClipScorer
from styledrop.zoo.vocabulary import SUBJECTS, Subject


def judge_guesses(
    scorer: ClipScorer, images: np.ndarray, subjects: Sequence[Subject] = SUBJECTS
) -> list[str]:
    """The subject id the scorer names for each image, zero-shot over `subjects`.

    Args:
        scorer: The CLIP that names (the zoo's judge in the zoo's figures).
        images: uint8 [N, H, W, 3].
        subjects: The candidates (default: the whole vocabulary).

    Returns:
        N subject ids.
    """
    best, _ = scorer.classify(images, [s.zero_shot_prompts() for s in subjects])
    return [subjects[i].id for i in best]


def named_flags(
    scorer: ClipScorer,
    images: np.ndarray,
    truth: Sequence[str | None],
    subjects: Sequence[Subject] = SUBJECTS,
) -> np.ndarray:
    """Per image: 1 where the scorer names its true subject, 0 where not, NaN where unknown.

    Args:
        scorer: The CLIP that names.
        images: uint8 [N, H, W, 3].
        truth: The subject id each image should show (None: not a world subject).
        subjects: The candidates (default: the whole vocabulary).

    Returns:
        float32 [N]; the mean over the known rows is the zero-shot top-1.
    """
    flags = np.full(len(images), np.nan, np.float32)
    rows = [row for row, subject in enumerate(truth) if subject is not None]
    if rows:
        guesses = judge_guesses(scorer, np.asarray(images)[rows], subjects)
        flags[rows] = [guess == truth[row] for guess, row in zip(guesses, rows, strict=True)]
    return flags
