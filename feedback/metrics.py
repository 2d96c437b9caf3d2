"""Evaluation statistics: means, paired differences, content leakage, preference rates.

The paper reports mean +- standard error of raw CLIP cosines. Style score alone rewards
copying the reference's content, so round 1's known failure (the reference's subject
showing up in other prompts) gets its own measure here: an image *leaks* when the CLIP
text score against the reference image's own content caption is higher than against the
prompt it was drawn for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mean_stderr(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(mean, standard error of the mean); the error is NaN below two values."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        return float("nan"), float("nan")
    if array.size == 1:
        return float(array[0]), float("nan")
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(array.size))


def prompt_means(values: np.ndarray, images_per_prompt: int) -> np.ndarray:
    """[P]: the mean of each prompt's n scores, NaN scores left out (NaN if all are).

    Args:
        values: [P * n] scores grouped by prompt.
        images_per_prompt: n.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    if images_per_prompt < 1 or values.size % images_per_prompt:
        raise ValueError(
            f"Expected P * {images_per_prompt} scores grouped by prompt; got {values.size}."
        )
    rows = values.reshape(-1, images_per_prompt)  # [P, n]
    counts = np.sum(~np.isnan(rows), axis=1)
    return np.where(counts > 0, np.nansum(rows, axis=1) / np.maximum(counts, 1), np.nan)


def paired_difference(a: np.ndarray, b: np.ndarray, images_per_prompt: int) -> tuple[float, float]:
    """Mean difference a - b and its standard error, paired by prompt.

    Two methods evaluated on the same prompts (and seeds) are compared prompt by prompt:
    each prompt's mean score under `a` minus its mean under `b`, then the mean and standard
    error of those P differences. Pairing removes how hard each prompt is from the error,
    and treating a prompt's n images as one unit keeps their correlation out of it, so the
    error is honest where the per-image one of `mean_stderr` is not.

    Args:
        a: [P * n] scores of one method, grouped by prompt (NaN: no score; such images are
            left out of their prompt's mean, and a prompt with none under either method is
            left out).
        b: [P * n] the other method's scores on the same prompts.
        images_per_prompt: n.

    Returns:
        (mean difference, standard error over prompts).
    """
    if np.shape(a) != np.shape(b):
        raise ValueError(f"The two methods' scores differ in shape: {np.shape(a)}, {np.shape(b)}.")
    differences = prompt_means(a, images_per_prompt) - prompt_means(b, images_per_prompt)
    return mean_stderr(differences[~np.isnan(differences)])


def leakage_flags(prompt_scores: np.ndarray, reference_caption_scores: np.ndarray) -> np.ndarray:
    """Bool [N]: images closer to the reference's content caption than to their prompt.

    Args:
        prompt_scores: [N] text scores against each image's own (content) prompt.
        reference_caption_scores: [N] text scores against the reference image's caption.
    """
    prompt_scores = np.asarray(prompt_scores)
    reference_caption_scores = np.asarray(reference_caption_scores)
    if prompt_scores.shape != reference_caption_scores.shape:
        raise ValueError(
            f"Shapes differ: {prompt_scores.shape} vs {reference_caption_scores.shape}."
        )
    return reference_caption_scores > prompt_scores


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default); (nan, nan) for no trials."""
    if trials <= 0:
        return float("nan"), float("nan")
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def preference_rates(votes: Sequence[str], a: str, b: str) -> dict[str, dict[str, float]]:
    """Preference rates with 95% Wilson intervals from blind A/B votes.

    Args:
        votes: One entry per judged pair: the winner's name, or "tie".
        a: Name of the first method.
        b: Name of the second method.

    Returns:
        {name: {"rate", "low", "high", "votes"}} for a, b and "tie", over all votes.
    """
    unknown = set(votes) - {a, b, "tie"}
    if unknown:
        raise ValueError(f"Votes name {sorted(unknown)}; expected {a!r}, {b!r} or 'tie'.")
    total = len(votes)
    out = {}
    for name in (a, b, "tie"):
        count = sum(1 for vote in votes if vote == name)
        low, high = wilson_interval(count, total)
        rate = count / total if total else float("nan")
        out[name] = {"rate": rate, "low": low, "high": high, "votes": float(count)}
    return out
