"""The emoji world's draws: captions, seeded styled renders of a subject, held-out references.

A draw is one image of one subject in one split: its styles, framing and texture noise
come from a seed derived from (split seed, subject id, split, draw), so the same arguments
give the same pixels on the same fonts and software versions. `zoo_build.dataset` writes
whole datasets of draws for training; `heldout_references` draws the ground truth of
held-out styles that evaluation compares style transfer with (never used for training).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from styledrop.zoo import render
from styledrop.zoo.styles import (
    INCOMPATIBLE,
    LINE_ART,
    NOT_FOR_LETTERS,
    TRAIN_STYLES,
    Style,
    get_style,
    stylize,
)
from styledrop.zoo.vocabulary import SUBJECTS, Subject, get_subject

SPLITS = ("vq", "base", "judge", "eval", "canonical")
DEFAULT_DRAWS = {"vq": 2, "base": 8, "judge": 16, "eval": 2, "canonical": 8}
# The split whose draws keep the canonical framing and always carry a style (the plain
# canonical look is base draw 0). A shift of a few pixels changes every token of an
# 8-pixel-patch tokenizer, so jittered draws give the base U-ViT unrelated token grids of one
# subject; at one framing the styled draws share the plain draw's layout.
CANONICAL_SPLIT = "canonical"
P_PLAIN = 0.2  # chance that a draw has no style at all
P_BACKGROUND = 0.35  # chance that a foreground style also gets a background style
SCALE_RANGE = (0.72, 0.92)  # jittered glyph size (fraction of the side); canonical 0.875
LINE_ART_INK = (30, 50, 115)  # Symbola line art: dark blue ink...
LINE_ART_PAPER = (250, 245, 230)  # ...on cream paper

# --------------------------------------------------------------------------------------------
# Captions.


def captions_for(subject: Subject, styles: Sequence[Style] = ()) -> list[str]:
    """Caption variants for a subject drawn in some styles (best first, no duplicates).

    Args:
        subject: The subject.
        styles: Its styles in pipeline order ([] for the plain look).

    Returns:
        Phrasings such as "a penguin in greyscale on a blue background", "penguin in
        greyscale on a blue background", "an image of a penguin in greyscale on a blue
        background", "a greyscale image of a penguin on a blue background".
    """
    main = subject.phrase()
    image_of = subject.phrase(subject.synonyms[0]) if subject.kind == "letter" else main
    nouns = [subject.phrase(name) for name in subject.names[:3]]
    if not styles:
        variants = [*nouns, subject.name, f"an image of {image_of}", f"a picture of {image_of}"]
    else:
        suffix = " ".join(style.suffix for style in styles)
        variants = [f"{noun} {suffix}" for noun in nouns]
        variants += [f"{subject.name} {suffix}", f"an image of {image_of} {suffix}"]
        lead = next((style for style in styles if style.lead), None)
        if lead is not None:
            rest = " ".join(style.suffix for style in styles if style is not lead)
            variants.append(f"{lead.lead} {image_of} {rest}".strip())
    return list(dict.fromkeys(variants))


# --------------------------------------------------------------------------------------------
# Draws.


def _allowed(subject: Subject, styles: Iterable[Style]) -> bool:
    names = {style.name for style in styles}
    if subject.kind == "letter" and names & NOT_FOR_LETTERS:
        return False
    return frozenset(names) not in INCOMPATIBLE


def draw_styles(subject: Subject, rng: np.random.Generator, plain: bool = True) -> list[Style]:
    """Picks the training styles of one draw: none, one, or a foreground plus a background.

    Args:
        subject: The subject (letters skip styles that would hide a black glyph).
        rng: The draw's generator.
        plain: Whether the draw may have no style (chance `P_PLAIN`).

    Returns:
        Styles in pipeline order.
    """
    if plain and rng.random() < P_PLAIN:
        return []
    candidates = [s for s in TRAIN_STYLES if _allowed(subject, [s])]
    primary = candidates[int(rng.integers(len(candidates)))]
    styles = [primary]
    if primary.kind == "fg" and rng.random() < P_BACKGROUND:
        backgrounds = [
            s for s in TRAIN_STYLES if s.kind == "bg" and _allowed(subject, [primary, s])
        ]
        styles.append(backgrounds[int(rng.integers(len(backgrounds)))])
    return styles


def draw_framing(size: int, rng: np.random.Generator) -> tuple[float, tuple[int, int]]:
    """A jittered glyph scale and an integer offset that keeps the glyph inside the image."""
    scale = float(rng.uniform(*SCALE_RANGE))
    margin = (size - round(scale * size)) // 2
    reach = max(0, margin - max(1, size // 32))
    offset = rng.integers(-reach, reach + 1, 2) if reach else np.zeros(2, int)
    return scale, (int(offset[0]), int(offset[1]))


def is_plain_canonical(record: Mapping) -> bool:
    """Whether a `captions.jsonl` record is a subject's plain canonical draw (base draw 0)."""
    return record["split"] == "base" and record["draw"] == 0


def _seed(split_seed: int, subject_id: str, split: str, draw: int, attempt: int) -> list[int]:
    return [split_seed, zlib.crc32(subject_id.encode()), SPLITS.index(split), draw, attempt]


def render_draw(
    subject: Subject,
    styles: Sequence[Style],
    size: int,
    rng: np.random.Generator,
    scale: float = render.DEFAULT_SCALE,
    offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Renders one styled image of a subject.

    Args:
        subject: The subject.
        styles: Styles in pipeline order (training or procedural held-out; not line art).
        size: Image side.
        rng: Generator for the styles' randomness.
        scale: Glyph size as a fraction of the side.
        offset: Glyph shift in pixels.

    Returns:
        uint8 [size, size, 3].
    """
    rgba = np.asarray(render.render_subject(subject, size, scale, offset), np.float32) / 255.0
    rgb = stylize(rgba, styles, rng)  # [S, S, 3] floats
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def subject_draws(
    subject: Subject, size: int, split_seed: int, draws: Mapping[str, int]
) -> Iterable[tuple[str, int, list[Style], list[int], np.ndarray]]:
    """Yields (split, draw, styles, seed, image) for every draw of one subject, all distinct."""
    seen: set[bytes] = set()
    order = [(split, draw) for split in SPLITS for draw in range(draws.get(split, 0))]
    order.sort(key=lambda item: item != ("base", 0))  # the canonical look claims its image first
    for split, draw in order:
        for attempt in range(100):
            seed = _seed(split_seed, subject.id, split, draw, attempt)
            rng = np.random.default_rng(np.random.SeedSequence(seed))
            if split == "base" and draw == 0 and attempt == 0:
                styles, scale, offset = [], render.DEFAULT_SCALE, (0, 0)  # the canonical look
            elif split == CANONICAL_SPLIT:
                styles = draw_styles(subject, rng, plain=False)
                scale, offset = render.DEFAULT_SCALE, (0, 0)
            else:
                styles = draw_styles(subject, rng)
                scale, offset = draw_framing(size, rng)
            image = render_draw(subject, styles, size, rng, scale, offset)
            key = hashlib.sha256(image.tobytes()).digest()
            if key not in seen:
                seen.add(key)
                break
        else:
            raise RuntimeError(f"Could not draw a new image of {subject.id} ({split} {draw}).")
        yield split, draw, styles, seed, image


# --------------------------------------------------------------------------------------------
# Held-out references.


def heldout_references(
    style: Style | str,
    subjects: Sequence[Subject | str] | None = None,
    size: int = 64,
    seed: int = 0,
    colour: tuple[int, int, int] = LINE_ART_INK,
    background: tuple[int, int, int] = LINE_ART_PAPER,
) -> tuple[np.ndarray, list[dict]]:
    """Ground-truth images of subjects in a held-out style (canonical framing).

    Args:
        style: A held-out style or its name ("line_art", "watercolor", "neon", ...).
        subjects: Subjects or ids (default: the whole vocabulary).
        size: Image side.
        seed: Seed of the styles' texture noise.
        colour: Ink colour of the line art style (Symbola glyphs are recolourable).
        background: Paper colour of the line art style.

    Returns:
        (images uint8 [N, size, size, 3], records with "subject", "style" and "captions").
        Subjects that Symbola cannot draw are left out of the line art style.

    Raises:
        ValueError: `style` is a training style.
    """
    style = get_style(style) if isinstance(style, str) else style
    if not style.heldout:
        raise ValueError(f"{style.name!r} is a training style, not a held-out one.")
    chosen = SUBJECTS if subjects is None else [as_subject(s) for s in subjects]
    images, records = [], []
    for subject in chosen:
        if style is LINE_ART:
            rgba = render.render_symbola(subject, size, colour=colour)
            if rgba is None:
                continue
            image = np.asarray(render.composite(rgba, background))
        else:
            entropy = [seed, zlib.crc32(subject.id.encode()), zlib.crc32(style.name.encode())]
            rng = np.random.default_rng(np.random.SeedSequence(entropy))
            image = render_draw(subject, [style], size, rng)
        images.append(image)
        records.append(
            {"subject": subject.id, "style": style.name, "captions": captions_for(subject, [style])}
        )
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return stacked, records


def as_subject(subject: Subject | str) -> Subject:
    """The subject itself, or the vocabulary's subject of that id."""
    return subject if isinstance(subject, Subject) else get_subject(subject)
