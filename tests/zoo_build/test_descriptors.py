"""The held-out descriptors stay out of training; the made-up ones vary and stay apart."""

from __future__ import annotations

import numpy as np

from styledrop.zoo.draws import captions_for
from styledrop.zoo.styles import HELDOUT_STYLES, LINE_ART, TRAIN_STYLES
from styledrop.zoo.vocabulary import SUBJECTS
from zoo_build.descriptors import HELDOUT_DESCRIPTORS, made_up_descriptor, made_up_words

# Words a held-out descriptor shares with ordinary English or the world's captions: they
# may occur elsewhere; the others mark the descriptor and must not.
SHARED = {"in", "style", "the", "of", "a", "an", "as", "on", "blue", "line", "drawing", "3d"}


def _training_captions() -> set[str]:
    captions = set()
    for subject in SUBJECTS:
        captions.update(captions_for(subject))
        for style in TRAIN_STYLES:
            captions.update(captions_for(subject, [style]))
    return captions


def test_twenty_held_out_descriptors_that_no_training_caption_contains():
    assert len(HELDOUT_DESCRIPTORS) == len(set(HELDOUT_DESCRIPTORS)) == 20
    captions = _training_captions()
    assert len(captions) > 10_000
    for descriptor in HELDOUT_DESCRIPTORS:
        assert not any(descriptor in caption for caption in captions), descriptor
    held_out_style_words = {w for s in (*HELDOUT_STYLES, LINE_ART) for w in s.suffix.split()}
    assert "watercolor" in held_out_style_words  # only in held-out references, never trained


def test_made_up_descriptors_share_no_distinctive_word_with_the_held_out_ones():
    distinctive = {w for d in HELDOUT_DESCRIPTORS for w in d.split()} - SHARED
    assert made_up_words() & distinctive == set()
    rng = np.random.default_rng(0)
    made = [made_up_descriptor(rng) for _ in range(500)]
    assert len(set(made)) > 300
    assert not set(made) & set(HELDOUT_DESCRIPTORS)
    assert all(set(d.split()) <= made_up_words() for d in made)
