"""Naming an image's subject zero-shot with the committed zoo's judge."""

import numpy as np

from feedback.scorer import ClipScorer
from styledrop.zoo.draws import heldout_references
from styledrop.zoo.embedded import embedded_judge
from styledrop.zoo.naming import judge_guesses, named_flags
from styledrop.zoo.vocabulary import get_subject, subject_of_phrase


def test_zero_shot_prompts_name_the_subject_once_each():
    assert get_subject("penguin").zero_shot_prompts() == [
        "a penguin", "penguin", "an image of a penguin", "a picture of a penguin",
    ]  # fmt: skip
    letter = get_subject("letter_a").zero_shot_prompts()
    assert len(letter) == len(set(letter)) and all(letter)


def test_the_judge_names_watercolor_renders_and_unknown_subjects_stay_unscored():
    # Watercolor renders: a held-out style the judge names at about 0.99 top-1 (docs/zoo.md).
    images, records = heldout_references("watercolor", ["red_apple", "car", "penguin"])
    assert [r["subject"] for r in records] == ["red_apple", "car", "penguin"]
    scorer = ClipScorer.load(embedded_judge())
    assert judge_guesses(scorer, images) == ["red_apple", "car", "penguin"]
    # The truth of row 1 is wrong on purpose, row 2 has none (not a world subject).
    flags = named_flags(scorer, images, ["red_apple", "penguin", None])
    assert flags[0] == 1 and flags[1] == 0 and np.isnan(flags[2])
    # Fewer candidates can only name from them.
    few = [get_subject("car"), get_subject("bus")]
    assert set(judge_guesses(scorer, images, few)) <= {"car", "bus"}


def test_a_prompt_names_a_subject_only_when_it_is_its_phrase():
    assert subject_of_phrase("a penguin") == "penguin"
    assert subject_of_phrase("An owl.") == "owl"
    assert subject_of_phrase("letter 'A'") == "letter_a"
    assert subject_of_phrase("a boat") == "sailboat"  # a synonym no other subject has
    assert subject_of_phrase("a penguin on a boat") is None
    assert subject_of_phrase("the letter A") is None  # not how the world spells it
