"""Style descriptors from outside the world: held out for scoring, made up for training.

StyleDrop prompts are "content + style descriptor", and users write any descriptor. A base
that has never seen a descriptor's words may lose the content when they are appended
("a red apple in flat outlined sticker style" drawing a red square). Two lists fix and
measure that:

- `HELDOUT_DESCRIPTORS`: 20 descriptors a user might type, none of them in any training
  caption and none of their distinctive words in the made-up ones. `styledrop zoo report`
  scores `t2i_top1` with one of them appended (target: at least 0.9x without).
- `made_up_descriptor(rng)`: a random descriptor built from other words and rare tokens,
  appended to training captions of the base (`BaseTrainConfig.descriptor_pairs`) while
  the target image stays the same, so that an unknown modifier leaves the content in place.
"""

from __future__ import annotations

import numpy as np

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


def made_up_descriptor(rng: np.random.Generator) -> str:
    """A random style descriptor from words outside the world and the held-out list."""
    template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    return template.format(
        adjective=_ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))],
        medium=_MEDIA[int(rng.integers(len(_MEDIA)))],
        rare=_RARE_TOKENS[int(rng.integers(len(_RARE_TOKENS)))],
    )


def made_up_words() -> set[str]:
    """Every word a made-up descriptor can contain (for checking the lists stay apart)."""
    templates = {w for t in _TEMPLATES for w in t.split() if "{" not in w}
    return {*_ADJECTIVES, *_MEDIA, *_RARE_TOKENS, *templates}
