"""The recognisability check's prompts and how the judge's guesses are counted."""

from __future__ import annotations

import numpy as np

from feedback.scorer import ClipScorer
from styledrop.zoo import embedded
from styledrop.zoo.draws import render_draw
from styledrop.zoo.vocabulary import SUBJECTS, get_subject
from zoo_build.recognisability import (
    RECOGNISABILITY_PROMPTS,
    SAMPLE_PROMPTS,
    RecognisabilityPrompt,
    named_by_judge,
)


def test_every_accepted_subject_is_in_the_vocabulary():
    assert len(SAMPLE_PROMPTS) == len(set(SAMPLE_PROMPTS)) == 24
    for check in RECOGNISABILITY_PROMPTS:
        for subject_id in check.accepted:
            get_subject(subject_id)  # raises on an unknown id


def test_a_sample_counts_as_named_only_when_the_guess_is_accepted():
    """The committed judge on plain renders; the counting is checked with checks that
    accept every subject (always named) or none (never named)."""
    rng = np.random.default_rng(0)
    images = np.stack(
        [render_draw(get_subject("penguin"), [], 64, rng) for _ in range(4)]
        + [render_draw(get_subject("banana"), [], 64, rng) for _ in range(4)]
    )  # [8, 64, 64, 3]
    everything = RecognisabilityPrompt("anything", tuple(s.id for s in SUBJECTS))
    nothing = RecognisabilityPrompt("nothing", ())
    scorer = ClipScorer.load(embedded.embedded_judge())
    figures, captions = named_by_judge(scorer, images, [everything, nothing], SUBJECTS, 4)
    assert figures["recognisability_judge_by_prompt"] == {"anything": 4, "nothing": 0}
    assert figures["recognisability_judge_prompts"] == 1
    assert figures["recognisability_judge_top1"] == 0.5
    assert captions[:4] == ["anything"] * 4
    assert all(c.startswith("nothing (judge: ") for c in captions[4:])
