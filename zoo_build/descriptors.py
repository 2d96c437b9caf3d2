"""Style descriptors from outside the world: held out for scoring, made up for training.

StyleDrop prompts are "content + style descriptor", and users write any descriptor. A base
that has never seen a descriptor's words may lose the content when they are appended
("a red apple in flat outlined sticker style" drawing a red square). Two lists fix and
measure that:

- `HELDOUT_DESCRIPTORS`: 20 descriptors a user might type, none of them in any training
  caption and none of their distinctive words in the made-up ones. `styledrop zoo report`
  scores `t2i_top1` with one of them appended (target: at least 0.9x without).
- `made_up_descriptor(rng, words)`: a random descriptor built from other words and rare
  tokens, appended to training captions of the base (`BaseTrainConfig.descriptor_pairs`)
  and of the text encoder's invariance fine-tune while the target stays the same, so that
  an unknown modifier leaves the content in place. Two word sources (`DESCRIPTOR_WORDS`):
  "curated", 30 adjectives x 30 media in 7 templates (the first runs), and "open", one to
  three words from CLIP's vocabulary (about 11,600 English words from its 20,000 most
  frequent entries, none of the world's or the held-out descriptors' words) in more
  templates, with generated identifiers like "[Q*]". A base trained on the curated list
  keeps 0.91 of its top-1 under curated descriptors and 0.17 under the held-out ones: it
  learns to ignore those 60 words, not descriptors (docs/zoo.md).
- `world_style_prompts(subjects)`: the other side, each subject's prompt with one of the
  world's own training styles appended ("a penguin in greyscale"), which the encoder must
  read as a style and the base must draw: `zoo report`'s `t2i_top1_world_style`.
- `mixed_style_phrase(rng)`: between the two, a made-up phrase that mixes the world's style
  words with open words ("in pencil rustic outline style"), as a user's descriptor mixes
  words the world has ("blue", "line drawing") with words it has not ("ink"). The text
  encoder's subject-retention step asks that such phrases leave the subject readable
  (`zoo_build.descriptor_invariance`, `retention_phrases="mixed"`).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence

import numpy as np

from styledrop.zoo.styles import NOT_FOR_LETTERS, TRAIN_STYLES, Style
from styledrop.zoo.vocabulary import Subject

# Word sources of `made_up_descriptor`.
DESCRIPTOR_WORDS = ("curated", "open")

HELDOUT_DESCRIPTORS = (
    "in flat outlined sticker style",
    "in blue ink line drawing style",
    "in [V*] style",
    "in watercolor painting style",
    "in the style of a vintage travel poster",
    "as an oil painting on canvas",
    "in melting golden 3d rendering style",
    "in kid crayon drawing style",
    "in art deco style",
    "in ukiyo-e woodblock print style",
    "in low poly style",
    "in cyberpunk neon style",
    "in stained glass window style",
    "as an embroidered patch",
    "in isometric 3d icon style",
    "in charcoal sketch style",
    "in paper cutout collage style",
    "in glossy vinyl toy style",
    "in minimalist flat vector style",
    "in risograph print style",
)

# Words of the made-up descriptors: none is a distinctive word of a held-out descriptor
# (tests/zoo_build/test_descriptors.py checks it).
_ADJECTIVES = (
    "bold", "soft", "dreamy", "rustic", "gothic", "baroque", "retro", "futuristic",
    "whimsical", "gritty", "elegant", "chunky", "delicate", "moody", "playful", "surreal",
    "ornate", "rough", "smooth", "shiny", "matte", "handmade", "psychedelic", "noir",
    "nordic", "victorian", "tropical", "cosmic", "mechanical", "antique",
)  # fmt: skip
_MEDIA = (
    "comic", "cartoon", "engraving", "etching", "mural", "tapestry", "clay", "origami",
    "graffiti", "marker", "gouache", "fresco", "linocut", "lithograph", "airbrush", "anime",
    "manga", "claymation", "bead", "felt", "quilt", "ceramic", "bronze", "marble",
    "woodcarving", "photograph", "illustration", "doodle", "blueprint", "hologram",
)  # fmt: skip
_RARE_TOKENS = ("[S*]", "[X]", "sks", "zwx", "[T1]", "<new1>", "qzv", "[style]")
_TEMPLATES = (
    "in {adjective} {medium} style",
    "in the style of a {adjective} {medium}",
    "as a {adjective} {medium}",
    "{adjective} {medium} style",
    "with a {adjective} {medium} look",
    "in {rare} style",
    "in {rare} {medium} style",
)


# Words a held-out descriptor shares with ordinary English or the world's captions: they
# may occur in training text; the others mark a held-out descriptor and must not.
COMMON_WORDS = frozenset(
    {"in", "style", "the", "of", "a", "an", "as", "on", "blue", "line", "drawing", "3d"}
)

_OPEN_TEMPLATES = (
    "in {w} style",
    "in {w} {w} style",
    "in {w} {w} {w} style",
    "in the style of {w} {w}",
    "in the style of a {w} {w}",
    "as a {w} {w}",
    "as {w}",
    "{w} {w} style",
    "{w}, {w}, {w}",
    "with a {w} {w} look",
    "made of {w}",
    "rendered as {w} {w}",
    "by {w} {w}",
    "in {id} style",
    "in {id} {w} style",
    "in the style of {id}",
    "{id} style",
)
# Open words are taken from the most frequent part of CLIP's vocabulary (its merge order).
_OPEN_VOCABULARY_RANKS = 20_000

# Templates of `mixed_style_phrase`: {s} a world style word, {w} an open word.
_MIXED_TEMPLATES = (
    "in {s} {w} style",
    "in {w} {s} style",
    "in {s} {s} {w} style",
    "in {s} {w} {s} style",
    "in {w} {s} {s} style",
    "in {s} {w} {w} style",
    "as a {s} {w}",
    "as a {w} {s} {s}",
    "{s} {w} style",
    "with a {s} {w} look",
    "in the style of a {w} {s}",
    "on a {s} {w} background",
    "with a {w} {s} texture",
)
# Function words of the world's style suffixes: not style words.
_STYLE_FUNCTION_WORDS = frozenset({"in", "on", "as", "a", "with", "style"})


def made_up_descriptor(rng: np.random.Generator, words: str = "curated") -> str:
    """A random style descriptor from words outside the world and the held-out list.

    Args:
        rng: Where the choices come from.
        words: "curated" (the fixed adjective and medium lists) or "open" (CLIP vocabulary
            words and generated identifiers); see the module docstring.

    Raises:
        ValueError: `words` is not one of `DESCRIPTOR_WORDS`.
    """
    check_descriptor_words(words)
    if words == "open":
        return _open_descriptor(rng)
    template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    return template.format(
        adjective=_ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))],
        medium=_MEDIA[int(rng.integers(len(_MEDIA)))],
        rare=_RARE_TOKENS[int(rng.integers(len(_RARE_TOKENS)))],
    )


def check_descriptor_words(words: str) -> None:
    """Refuses a word source other than those of `DESCRIPTOR_WORDS`.

    Raises:
        ValueError: `words` is not a word source; the message lists them.
    """
    if words not in DESCRIPTOR_WORDS:
        raise ValueError(f"descriptor_words must be one of {DESCRIPTOR_WORDS}, got {words!r}.")


def made_up_words(words: str = "curated") -> set[str]:
    """Every word a made-up descriptor can contain (to check the lists stay apart).

    Args:
        words: The word source; for "open", the generated identifiers ("[Q*]", "[T3]",
            "<word>", three random letters) are not listed.
    """
    if words == "open":
        templates = {w.strip(",") for t in _OPEN_TEMPLATES for w in t.split() if "{" not in w}
        return {*open_words(), *templates}
    templates = {w for t in _TEMPLATES for w in t.split() if "{" not in w}
    return {*_ADJECTIVES, *_MEDIA, *_RARE_TOKENS, *templates}


def _open_descriptor(rng: np.random.Generator) -> str:
    template = _OPEN_TEMPLATES[int(rng.integers(len(_OPEN_TEMPLATES)))]
    return _fill(template, "{w}", open_words(), rng).replace("{id}", _identifier(rng))


def _fill(template: str, slot: str, words: Sequence[str], rng: np.random.Generator) -> str:
    """`template` with each `slot`, left to right, replaced by a word drawn from `words`."""
    while slot in template:
        template = template.replace(slot, words[int(rng.integers(len(words)))], 1)
    return template


def _identifier(rng: np.random.Generator) -> str:
    """A made-up identifier: "[Q*]", "[T3]", "<word>" or three random letters ("zqv").

    Never a held-out one ("[V*]"), and three letters are drawn again while they spell a
    world word or a distinctive held-out word ("cat", "ink").
    """
    letters = [
        c for c in string.ascii_uppercase
        if not any(f"[{c}*]" in descriptor for descriptor in HELDOUT_DESCRIPTORS)
    ]  # fmt: skip
    kind = int(rng.integers(4))
    if kind == 0:
        return f"[{letters[int(rng.integers(len(letters)))]}*]"
    if kind == 1:
        return f"[{letters[int(rng.integers(len(letters)))]}{int(rng.integers(10))}]"
    if kind == 2:
        return f"<{open_words()[int(rng.integers(len(open_words())))]}>"
    while True:
        word = "".join(string.ascii_lowercase[int(i)] for i in rng.integers(26, size=3))
        if word not in _excluded_words():
            return word


@functools.cache
def open_words() -> tuple[str, ...]:
    """The words of "open" descriptors, in CLIP's merge order (most frequent first).

    Whole-word entries of CLIP's vocabulary (ASCII letters, 3 to 12 of them) among its
    `_OPEN_VOCABULARY_RANKS` first merges, less every word of the world's texts (subjects,
    styles, captions, prompts: a descriptor must not name a subject or a world style) and
    every word that starts with a distinctive word of a held-out descriptor ("prints",
    "artistic").
    """
    from muse.tokenizer import _read_open_clip_merges

    excluded = _excluded_words()
    distinctive = held_out_distinctive_words()
    found = []
    for first, second in _read_open_clip_merges()[:_OPEN_VOCABULARY_RANKS]:
        token = first + second
        if not token.endswith("</w>"):
            continue
        word = token[: -len("</w>")]
        if not (word.isascii() and word.isalpha() and 3 <= len(word) <= 12):
            continue
        if word in excluded or any(word.startswith(d) for d in distinctive):
            continue
        found.append(word)
    return tuple(dict.fromkeys(found))


@functools.cache
def _excluded_words() -> frozenset[str]:
    """Words no open descriptor may hold: the world's and the held-out descriptors' marks."""
    from muse.tokenizer import clean_prompt
    from zoo_build.world_tokenizer import world_texts

    world = {word for text in world_texts() for word in clean_prompt(text).split()}
    return frozenset(world | held_out_distinctive_words())


def held_out_distinctive_words() -> set[str]:
    """The words of the held-out descriptors that mark them (all but `COMMON_WORDS`)."""
    return {w for d in HELDOUT_DESCRIPTORS for w in d.split()} - COMMON_WORDS


@functools.cache
def world_style_words() -> tuple[str, ...]:
    """The style words of `mixed_style_phrase`: the world's, none that marks a held-out one.

    The words of the world's training style suffixes ("greyscale", "pencil", "outline",
    "background") and the held-out descriptors' common words the world also uses ("line",
    "drawing"), less function words and every distinctive word of a held-out descriptor
    ("sketch", "sticker", "paper"): a phrase made of them never spells a held-out
    descriptor's mark, so the held-out measure stays held out.
    """
    words = {w for style in TRAIN_STYLES for w in style.suffix.split()}
    words |= {"line", "drawing"}
    words -= _STYLE_FUNCTION_WORDS | held_out_distinctive_words()
    return tuple(sorted(words))


def mixed_style_phrase(rng: np.random.Generator) -> str:
    """A made-up style phrase mixing world style words with open words.

    "in pencil rustic outline style", "as a striped lantern", "on a grey tribal background":
    one to two of `world_style_words` and one to two `open_words` in one of
    `_MIXED_TEMPLATES`.

    Args:
        rng: Where the choices come from.
    """
    template = _MIXED_TEMPLATES[int(rng.integers(len(_MIXED_TEMPLATES)))]
    return _fill(_fill(template, "{s}", world_style_words(), rng), "{w}", open_words(), rng)


def training_styles_for(subject: Subject) -> list[Style]:
    """The world's training styles a draw of `subject` can have.

    Letters skip the styles that would hide a black glyph (`NOT_FOR_LETTERS`).
    """
    return [
        style for style in TRAIN_STYLES
        if not (subject.kind == "letter" and style.name in NOT_FOR_LETTERS)
    ]  # fmt: skip


def world_style_prompts(subjects: Sequence[Subject]) -> tuple[list[str], list[Style]]:
    """Each subject's prompt with one of the world's training styles appended, in turn.

    Subject i takes the i-th (cycling) of its `training_styles_for`.

    Args:
        subjects: The subjects to draw.

    Returns:
        The prompts ("a penguin in greyscale") and the style of each.
    """
    prompts, styles = [], []
    for i, subject in enumerate(subjects):
        allowed = training_styles_for(subject)
        style = allowed[i % len(allowed)]
        prompts.append(f"{subject.phrase()} {style.suffix}")
        styles.append(style)
    return prompts, styles
