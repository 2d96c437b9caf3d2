"""The world tokenizer: CLIP's byte-level BPE cut down to the merges the emoji world uses.

CLIP's vocabulary has 49408 entries, and at width 128 its embedding table alone would be
25 MB in float32, most of it rows that the world never trains. The zoo's tokenizer keeps
CLIP's byte-level BPE but only the merges that the world's text uses (every caption
phrasing of every subject in every training and held-out style, plus the zero-shot prompts
and a few generic words), in CLIP's merge order, laid out like CLIP's vocabulary (256 byte
symbols, the same with `</w>`, the kept merges, `<|startoftext|>`, `<|endoftext|>`). On the
world's text it splits words exactly as CLIP's tokenizer does (BPE applies the
lowest-ranked merge present, and every merge CLIP applies to those words is kept, in the
same relative order); only the ids differ. Any other text still tokenizes, into shorter
pieces. It is a plain `CLIPTokenizer` (saved with `save_pretrained`, padding with
`<|endoftext|>` like aMUSEd's), about 2,300 entries instead of 49408. Both of the zoo's
CLIPs (the conditioning text encoder and the judge) use it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from muse.tokenizer import CONTEXT_LENGTH
from styledrop.zoo.draws import captions_for
from styledrop.zoo.styles import STYLES
from styledrop.zoo.vocabulary import SUBJECTS

# Generic words of prompts and style descriptors that the world's captions may lack.
EXTRA_TEXTS = (
    "a photo of",
    "a drawing of",
    "an illustration of",
    "a painting of",
    "an emoji of",
    "an icon of",
    "a cartoon of",
    "a 3d render of",
    "in the style of",
    "flat art style",
    "in a sketch style",
)


def world_texts() -> list[str]:
    """Every phrase the world produces: captions of each subject in each style, prompts.

    Returns:
        Distinct texts (subject names and synonyms, zero-shot prompts, captions in every
        training and held-out style, and `EXTRA_TEXTS`).
    """
    texts: list[str] = list(EXTRA_TEXTS)
    for subject in SUBJECTS:
        texts += subject.zero_shot_prompts()
        texts += [subject.phrase(name) for name in subject.names] + list(subject.names)
        texts += captions_for(subject)
        for style in STYLES.values():
            texts += captions_for(subject, [style])
    return list(dict.fromkeys(texts))


def world_merges(texts: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """The CLIP merges that tokenizing `texts` applies, in CLIP's order.

    Every merge CLIP applies to a word builds a symbol that ends up inside one of the word's
    final tokens, and each merged symbol comes from exactly one merge, so the merges are
    found by taking the final tokens apart.

    Args:
        texts: The texts to cover (default: `world_texts()`).

    Returns:
        The kept (first, second) pairs, sorted by their rank in CLIP's merge list.
    """
    if texts is None:
        return list(_default_world_merges())
    return _merges_for(list(texts))


@functools.cache
def _default_world_merges() -> tuple[tuple[str, str], ...]:
    return tuple(_merges_for(world_texts()))


def _merges_for(texts: list[str]) -> list[tuple[str, str]]:
    from muse.tokenizer import (
        _byte_symbols,
        _read_open_clip_merges,
        build_open_clip_tokenizer,
        clean_prompt,
    )
    from muse.tokenizer import tokenize as clip_tokenize

    merges = _read_open_clip_merges()
    rank = {"".join(pair): i for i, pair in reversed(list(enumerate(merges)))}  # first wins
    base = set(_byte_symbols())
    base |= {symbol + "</w>" for symbol in base}
    full = build_open_clip_tokenizer()
    # BPE never crosses whitespace, so the distinct words are enough (and much faster).
    words = sorted({word for text in texts for word in clean_prompt(text).split()})
    ids = clip_tokenize(full, words) if words else np.zeros((0, CONTEXT_LENGTH), np.int64)
    special = {full.bos_token_id, full.eos_token_id, full.pad_token_id}
    used = {int(i) for i in np.unique(ids)} - special
    needed: set[int] = set()
    stack = list(full.convert_ids_to_tokens(sorted(used)))
    while stack:
        token = stack.pop()
        if token in base:
            continue
        r = rank[token]
        if r not in needed:
            needed.add(r)
            stack += list(merges[r])
    return [merges[r] for r in sorted(needed)]


def build_world_tokenizer(texts: Iterable[str] | None = None, max_length: int = CONTEXT_LENGTH):
    """A `CLIPTokenizer` with CLIP's BPE cut down to the merges the world's text uses.

    Args:
        texts: The texts whose tokenization must match CLIP's (default: `world_texts()`).
        max_length: The tokenizer's `model_max_length`.

    Returns:
        The tokenizer; pads with `<|endoftext|>` (the last id), like aMUSEd's.
    """
    from muse.tokenizer import EOS_TOKEN, tokenizer_from_merges

    return tokenizer_from_merges(world_merges(texts), max_length, EOS_TOKEN)
