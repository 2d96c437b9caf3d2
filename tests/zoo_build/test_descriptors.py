"""The held-out descriptors stay out of training; the made-up ones vary and stay apart."""

from __future__ import annotations

import re

import numpy as np
import pytest

from muse.tokenizer import clean_prompt
from styledrop.zoo.draws import captions_for
from styledrop.zoo.styles import HELDOUT_STYLES, LINE_ART, TRAIN_STYLES
from styledrop.zoo.vocabulary import SUBJECTS
from zoo_build.descriptors import (
    HELDOUT_DESCRIPTORS,
    held_out_distinctive_words,
    made_up_descriptor,
    made_up_words,
    mixed_style_phrase,
    open_words,
    world_style_words,
)
from zoo_build.world_tokenizer import world_texts

# A generated identifier of an open descriptor: "[Q*]", "[T3]", "<word>" or "zqv".
IDENTIFIER = re.compile(r"^(\[[A-Z][*0-9]\]|<[a-z]+>|[a-z]{3})$")


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
    distinctive = held_out_distinctive_words()
    assert {"risograph", "watercolor", "[V*]", "sticker"} <= distinctive
    assert not distinctive & {"in", "style", "the", "of", "a"}
    assert made_up_words() & distinctive == set()
    rng = np.random.default_rng(0)
    made = [made_up_descriptor(rng) for _ in range(500)]
    assert len(set(made)) > 300
    assert not set(made) & set(HELDOUT_DESCRIPTORS)
    assert all(set(d.split()) <= made_up_words() for d in made)


def test_open_descriptors_vary_widely_and_stay_outside_the_world_and_the_held_out_list():
    vocabulary = open_words()
    assert len(vocabulary) > 5000
    world = {word for text in world_texts() for word in clean_prompt(text).split()}
    distinctive = held_out_distinctive_words()
    assert not set(vocabulary) & world  # no subject, style or caption word
    assert not any(w.startswith(d) for w in vocabulary for d in distinctive)  # "prints" too
    rng = np.random.default_rng(0)
    made = [made_up_descriptor(rng, "open") for _ in range(500)]
    assert len(set(made)) > 480
    allowed = made_up_words("open")
    for descriptor in made:
        words = descriptor.replace(",", "").split()
        assert all(w in allowed or IDENTIFIER.match(w) for w in words), descriptor
        assert not set(words) & distinctive, descriptor
        assert not set(words) & world - made_up_words("open"), descriptor  # no "cat", "red"
    used = {w for d in made for w in d.replace(",", "").split() if w in set(vocabulary)}
    assert len(used) > 400  # hundreds of distinct words, where "curated" has 60
    assert any("[" in d for d in made) and any("<" in d for d in made)


def test_generated_identifiers_never_spell_a_world_or_held_out_word():
    world = {word for text in world_texts() for word in clean_prompt(text).split()}
    rng = np.random.default_rng(1)
    made = [made_up_descriptor(rng, "open") for _ in range(30_000)]
    allowed = made_up_words("open")
    three_letters = {
        w for d in made for w in d.replace(",", "").split()
        if re.fullmatch("[a-z]{3}", w) and w not in allowed
    }  # fmt: skip
    assert len(three_letters) > 500  # about 1,800 drawn: "cat" or "ink" would turn up
    assert not three_letters & (world | held_out_distinctive_words())
    assert "[V*]" not in {w for d in made for w in d.split()}


def test_an_unknown_word_source_is_refused():
    with pytest.raises(ValueError, match="descriptor_words"):
        made_up_descriptor(np.random.default_rng(0), "closed")


def test_mixed_phrases_mix_world_style_words_with_open_words_and_no_held_out_mark():
    styles = set(world_style_words())
    suffix_words = {w for style in TRAIN_STYLES for w in style.suffix.split()}
    assert {"greyscale", "pencil", "outline", "line", "drawing"} <= styles
    assert styles <= suffix_words | {"line", "drawing"}
    assert not styles & held_out_distinctive_words()  # "sketch", "sticker", "paper" stay out
    rng = np.random.default_rng(0)
    phrases = [mixed_style_phrase(rng) for _ in range(500)]
    assert len(set(phrases)) > 480
    vocabulary, templates = (
        set(open_words()),
        {"in", "style", "as", "a", "with", "look", "the", "of", "on", "background", "texture"},
    )
    for phrase in phrases:
        words = phrase.split()
        assert set(words) <= styles | vocabulary | templates, phrase
        assert words[0] in {"in", "as", "with", "on"} or words[-1] == "style", phrase
        assert set(words) & styles and set(words) & vocabulary, phrase  # both kinds
        assert not set(words) & held_out_distinctive_words(), phrase
    again = np.random.default_rng(0)
    assert [mixed_style_phrase(again) for _ in range(500)] == phrases
