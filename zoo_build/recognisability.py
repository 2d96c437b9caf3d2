"""The recognisability check: 24 everyday prompts a person should name at a glance.

The zoo's target is that a person names the subject of at least 20 of these prompts in at
least 3 of 4 samples. A person has to look (the grid is saved for that); beside it the
judge names each sample zero-shot over the whole vocabulary, and a sample counts as named
when the judge picks one of the prompt's accepted subjects ("a car" accepts a racing car).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch-heavy; the build imports this module for its prompts alone
    import numpy as np

    from feedback.scorer import ClipScorer
    from styledrop.zoo.vocabulary import Subject


@dataclass(frozen=True)
class RecognisabilityPrompt:
    """One prompt of the check.

    Attributes:
        prompt: What the base is asked to draw.
        accepted: Subject ids that count as the prompt's subject when the judge names them.
    """

    prompt: str
    accepted: tuple[str, ...]


RECOGNISABILITY_PROMPTS = (
    RecognisabilityPrompt("a penguin", ("penguin",)),
    RecognisabilityPrompt("a cat", ("cat",)),
    RecognisabilityPrompt("a dog", ("dog",)),
    RecognisabilityPrompt("a banana", ("banana",)),
    RecognisabilityPrompt("an apple", ("red_apple",)),
    RecognisabilityPrompt("a strawberry", ("strawberry",)),
    RecognisabilityPrompt("a car", ("car", "racing_car", "police_car")),
    RecognisabilityPrompt("a bus", ("bus",)),
    RecognisabilityPrompt("a bicycle", ("bicycle",)),
    RecognisabilityPrompt("a rocket", ("rocket",)),
    RecognisabilityPrompt("a house", ("house", "house_with_garden")),
    RecognisabilityPrompt("a tree", ("tree", "evergreen_tree", "palm_tree", "christmas_tree")),
    RecognisabilityPrompt("a cactus", ("cactus",)),
    RecognisabilityPrompt("a fish", ("fish", "tropical_fish")),
    RecognisabilityPrompt("a bird", ("bird",)),
    RecognisabilityPrompt("a horse", ("horse",)),
    RecognisabilityPrompt("a teapot", ("teapot",)),
    RecognisabilityPrompt("a guitar", ("guitar",)),
    RecognisabilityPrompt("an umbrella", ("umbrella",)),
    RecognisabilityPrompt("a clock", ("alarm_clock", "mantelpiece_clock")),
    RecognisabilityPrompt("a sun", ("sun",)),
    RecognisabilityPrompt("a boat", ("sailboat", "speedboat", "canoe", "ship", "passenger_ship")),
    RecognisabilityPrompt("the letter A", ("letter_a",)),
    RecognisabilityPrompt("the letter R", ("letter_r",)),
)
SAMPLE_PROMPTS = tuple(item.prompt for item in RECOGNISABILITY_PROMPTS)
SAMPLES_PER_PROMPT = 4


def samples_to_name(per_prompt: int) -> int:
    """Samples of a prompt the judge must name for the prompt to count (3 of 4)."""
    return math.ceil(0.75 * per_prompt)


def named_by_judge(
    scorer: ClipScorer,
    images: np.ndarray,
    checks: Sequence[RecognisabilityPrompt],
    subjects: Sequence[Subject],
    per_prompt: int,
) -> tuple[dict, list[str]]:
    """How often the judge names the subject of each prompt's samples.

    Args:
        scorer: The judge.
        images: uint8 [len(checks) * per_prompt, H, W, 3], prompt by prompt.
        checks: The prompts, in the order of `images`.
        subjects: The vocabulary the judge chooses from.
        per_prompt: Samples per prompt.

    Returns:
        The figures (`recognisability_judge_top1` over all samples,
        `recognisability_judge_prompts`: prompts named in at least 3 of 4 samples, and the
        count per prompt) and each image's caption (its prompt, and the judge's guess when
        that is not an accepted subject).
    """
    from styledrop.zoo.naming import judge_guesses

    predicted = judge_guesses(scorer, images, subjects)
    per_check, captions = {}, []
    for index, check in enumerate(checks):
        guesses = predicted[index * per_prompt : (index + 1) * per_prompt]
        per_check[check.prompt] = sum(guess in check.accepted for guess in guesses)
        captions += [
            check.prompt if guess in check.accepted else f"{check.prompt} (judge: {guess})"
            for guess in guesses
        ]
    enough = samples_to_name(per_prompt)
    figures = {
        "recognisability_judge_top1": sum(per_check.values()) / (len(checks) * per_prompt),
        "recognisability_judge_prompts": sum(count >= enough for count in per_check.values()),
        "recognisability_prompts": len(checks),
        "recognisability_judge_by_prompt": per_check,
    }
    return figures, captions
