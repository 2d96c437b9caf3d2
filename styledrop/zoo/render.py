"""Rendering emoji world subjects: Noto Color Emoji, sans-serif capitals and Symbola line art.

Fonts are found with fontconfig (`fc-match`), never by hard-coded paths; a missing font raises
`FontNotFoundError` naming the Debian package that provides it. Every renderer crops the glyph
to its alpha bounding box, pads it to a square, resizes it (LANCZOS, premultiplied alpha) to
`round(scale * size)` pixels and places it on a transparent `size` x `size` canvas, centred
plus an optional integer offset, so all subjects share one framing.

On a machine without the fonts (a lent GPU), the subjects' base-look glyphs come from a
`GlyphAtlas` (written by `styledrop zoo pack`): inside `using_glyph_atlas(atlas)`,
`render_subject`, `can_render_emoji` and `font_info` read the atlas instead of the fonts,
and every draw is the same image as from the fonts.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from string import ascii_uppercase

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from styledrop.zoo.vocabulary import Subject

DEFAULT_SCALE = 0.875  # the glyph's longer side, as a fraction of the image side
NOTO_PIXEL_SIZE = 109  # the only strike of Noto Color Emoji (a CBDT bitmap font)
OUTLINE_PIXEL_SIZE = 160  # rendering size for the outline fonts before resizing

# fontconfig pattern -> (family it must resolve to, Debian package that provides it).
FONTS = {
    "emoji": ("Noto Color Emoji", "Noto Color Emoji", "fonts-noto-color-emoji"),
    "symbola": ("Symbola", "Symbola", "fonts-symbola"),
    "sans": ("DejaVu Sans:style=Bold", "DejaVu Sans", "fonts-dejavu-core"),
}


class FontNotFoundError(RuntimeError):
    """A font the emoji world needs is not installed (the message names the package)."""


@dataclass(frozen=True)
class GlyphAtlas:
    """The base-look glyph of every subject, drawn from the fonts once (see `base_glyph`).

    Attributes:
        glyphs: Subject characters -> cropped RGBA glyph, uint8 [h, w, 4].
        fonts: `font_info()` of the fonts the glyphs were drawn with.
        software: Versions that drew them (Pillow, its layout engine).
    """

    glyphs: Mapping[str, np.ndarray]
    fonts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    software: Mapping[str, str] = field(default_factory=dict)


_atlas: GlyphAtlas | None = None  # set by `using_glyph_atlas`


def set_glyph_atlas(atlas: GlyphAtlas | None) -> GlyphAtlas | None:
    """Draws subjects from `atlas` from now on (None: from the fonts); returns the previous."""
    global _atlas
    previous, _atlas = _atlas, atlas
    return previous


def current_glyph_atlas() -> GlyphAtlas | None:
    """The atlas subjects are drawn from (None: the fonts)."""
    return _atlas


@contextlib.contextmanager
def using_glyph_atlas(atlas: GlyphAtlas) -> Iterator[GlyphAtlas]:
    """Draws subjects from `atlas` instead of the fonts while the context is open."""
    previous = set_glyph_atlas(atlas)
    try:
        yield atlas
    finally:
        set_glyph_atlas(previous)


@cache
def find_font(role: str) -> Path:
    """Finds the font file for a role ("emoji", "symbola" or "sans") with fontconfig.

    Args:
        role: A key of `FONTS`.

    Returns:
        The font file's path.

    Raises:
        FontNotFoundError: fontconfig is missing, or the font resolves to another family.
    """
    pattern, family, package = FONTS[role]
    if shutil.which("fc-match") is None:
        raise FontNotFoundError(
            "fc-match not found: install fontconfig (Debian: apt-get install fontconfig "
            f"{package})."
        )
    result = subprocess.run(
        ["fc-match", "-f", "%{file}\t%{family}", pattern],
        capture_output=True,
        text=True,
        check=False,
    )
    file, _, families = result.stdout.partition("\t")
    found = [name.strip().lower() for name in families.split(",")]
    if result.returncode != 0 or family.lower() not in found or not Path(file).is_file():
        raise FontNotFoundError(
            f"Font {family!r} is not installed (fc-match gave {families or 'nothing'!r}): "
            f"install the Debian package {package} (apt-get install {package})."
        )
    return Path(file)


@cache
def _font(role: str, pixel_size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(find_font(role)), pixel_size)


def font_info() -> dict[str, dict[str, str]]:
    """The fonts the emoji world uses: file name, family, Debian package and sha256.

    Inside `using_glyph_atlas`, the fonts the atlas was drawn with.
    """
    if _atlas is not None:
        return {role: dict(info) for role, info in _atlas.fonts.items()}
    info = {}
    for role, (_, family, package) in FONTS.items():
        path = find_font(role)
        info[role] = {
            "family": family,
            "file": path.name,
            "package": package,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    return info


def layout_engine() -> str:
    """The Pillow text layout engine in use ("raqm" or "basic"); recorded in manifests."""
    return "raqm" if features.check("raqm") else "basic"


def _draw_glyph(
    font: ImageFont.FreeTypeFont,
    text: str,
    fill: tuple[int, int, int] = (0, 0, 0),
    embedded_color: bool = False,
) -> Image.Image | None:
    """Draws text on a transparent canvas and crops it to the alpha box (None when empty)."""
    left, top, right, bottom = font.getbbox(text)
    pad = font.size // 4
    canvas = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text(
        (pad - left, pad - top), text, font=font, fill=(*fill, 255), embedded_color=embedded_color
    )
    box = canvas.getchannel("A").getbbox()
    return None if box is None else canvas.crop(box)


def fit(glyph: Image.Image, size: int, scale: float, offset: tuple[int, int] = (0, 0)):
    """Frames a cropped RGBA glyph on a transparent square canvas.

    Args:
        glyph: Cropped RGBA image.
        size: Side of the output image in pixels.
        scale: The glyph's longer side as a fraction of `size`.
        offset: (dx, dy) integer shift of the glyph's centre, in output pixels.

    Returns:
        A `size` x `size` RGBA PIL image.
    """
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    box = max(1, round(scale * size))
    resized = square.resize((box, box), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.paste(resized, ((size - box) // 2 + offset[0], (size - box) // 2 + offset[1]))
    return canvas


@cache
def _emoji_glyph(chars: str) -> Image.Image | None:
    glyph = _draw_glyph(_font("emoji", NOTO_PIXEL_SIZE), chars, embedded_color=True)
    # Tofu and missing glyphs draw nothing in Noto Color Emoji; a few stray pixels neither.
    if glyph is None or np.count_nonzero(np.asarray(glyph.getchannel("A")) > 32) < 64:
        return None
    return glyph


def can_render_emoji(chars: str) -> bool:
    """Whether Noto Color Emoji draws these characters as a visible glyph (or the atlas has it)."""
    if _atlas is not None:
        return chars in _atlas.glyphs
    return _emoji_glyph(chars) is not None


def _chars(subject: Subject | str) -> str:
    return subject if isinstance(subject, str) else subject.chars


def render_emoji(
    subject: Subject | str,
    size: int = 64,
    scale: float = DEFAULT_SCALE,
    offset: tuple[int, int] = (0, 0),
) -> Image.Image:
    """Renders an emoji subject from Noto Color Emoji.

    Args:
        subject: A vocabulary subject, or the emoji text itself.
        size: Side of the output image.
        scale: The glyph's longer side as a fraction of `size`.
        offset: (dx, dy) shift of the glyph in pixels.

    Returns:
        A `size` x `size` RGBA image with a transparent background.

    Raises:
        ValueError: The font has no visible glyph for these characters.
    """
    glyph = _emoji_glyph(_chars(subject))
    if glyph is None:
        raise ValueError(f"Noto Color Emoji cannot render {_chars(subject)!r}.")
    return fit(glyph, size, scale, offset)


def _letter_canvas(chars: str, fill: tuple[int, int, int]) -> Image.Image:
    """Draws text centred on one baseline of a fixed canvas (the same spot for every letter)."""
    side = 2 * OUTLINE_PIXEL_SIZE
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    font = _font("sans", OUTLINE_PIXEL_SIZE)
    origin = (side // 2, side * 2 // 3)
    ImageDraw.Draw(canvas).text(origin, chars, font=font, fill=(*fill, 255), anchor="ms")
    return canvas


@cache
def _letters_box() -> tuple[int, int, int, int]:
    """The union of the capitals' boxes on the shared canvas: one scale, one baseline."""
    boxes = [_letter_canvas(ch, (0, 0, 0)).getchannel("A").getbbox() for ch in ascii_uppercase]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


@cache
def _letter_glyph(chars: str, fill: tuple[int, int, int]) -> Image.Image | None:
    canvas = _letter_canvas(chars, fill)
    own = canvas.getchannel("A").getbbox()
    if own is None:
        return None
    union = _letters_box()
    box = (
        min(own[0], union[0]),
        min(own[1], union[1]),
        max(own[2], union[2]),
        max(own[3], union[3]),
    )
    return canvas.crop(box)


def render_letter(
    ch: Subject | str,
    size: int = 64,
    scale: float = DEFAULT_SCALE,
    offset: tuple[int, int] = (0, 0),
    colour: tuple[int, int, int] = (0, 0, 0),
) -> Image.Image:
    """Renders a capital letter in DejaVu Sans Bold, every letter at the same scale.

    Args:
        ch: A letter subject, or the character itself.
        size: Side of the output image.
        scale: The glyph's longer side as a fraction of `size`.
        offset: (dx, dy) shift of the glyph in pixels.
        colour: RGB fill.

    Returns:
        A `size` x `size` RGBA image with a transparent background.
    """
    glyph = _letter_glyph(_chars(ch), tuple(colour))
    if glyph is None:
        raise ValueError(f"DejaVu Sans draws nothing for {_chars(ch)!r}.")
    return fit(glyph, size, scale, offset)


def _alpha_key(glyph: Image.Image | None) -> tuple | None:
    return None if glyph is None else (glyph.size, glyph.getchannel("A").tobytes())


@cache
def _symbola_notdef() -> tuple | None:
    font = _font("symbola", OUTLINE_PIXEL_SIZE)
    return _alpha_key(_draw_glyph(font, "\ue000"))  # a private-use code point: the tofu box


@cache
def _symbola_glyph(chars: str, fill: tuple[int, int, int]) -> Image.Image | None:
    glyph = _draw_glyph(_font("symbola", OUTLINE_PIXEL_SIZE), chars.replace("\ufe0f", ""), fill)
    if glyph is None or _alpha_key(glyph) == _symbola_notdef():
        return None
    return glyph


def has_symbola_glyph(subject: Subject | str) -> bool:
    """Whether Symbola has a glyph for the subject (it covers emoji up to Unicode 9-10)."""
    return _symbola_glyph(_chars(subject), (0, 0, 0)) is not None


def render_symbola(
    subject: Subject | str,
    size: int = 64,
    colour: tuple[int, int, int] = (0, 0, 0),
    scale: float = DEFAULT_SCALE,
    offset: tuple[int, int] = (0, 0),
) -> Image.Image | None:
    """Renders a subject as Symbola line art (a monochrome outline font) in one colour.

    Args:
        subject: A vocabulary subject (emoji or letter), or the text itself.
        size: Side of the output image.
        colour: RGB fill of the lines.
        scale: The glyph's longer side as a fraction of `size`.
        offset: (dx, dy) shift of the glyph in pixels.

    Returns:
        A `size` x `size` RGBA image with a transparent background, or None when Symbola has
        no glyph for the subject.
    """
    glyph = _symbola_glyph(_chars(subject), tuple(colour))
    return None if glyph is None else fit(glyph, size, scale, offset)


def base_glyph(subject: Subject) -> Image.Image | None:
    """The cropped RGBA glyph of a subject's base look (None when the font has none).

    Noto Color Emoji for emoji, black DejaVu Sans Bold for capitals (on the shared letter
    box); inside `using_glyph_atlas`, the atlas's copy of that glyph.
    """
    if _atlas is not None:
        glyph = _atlas.glyphs.get(subject.chars)
        return None if glyph is None else Image.fromarray(np.asarray(glyph, np.uint8), "RGBA")
    if subject.kind == "letter":
        return _letter_glyph(subject.chars, (0, 0, 0))
    return _emoji_glyph(subject.chars)


def render_subject(
    subject: Subject, size: int = 64, scale: float = DEFAULT_SCALE, offset=(0, 0)
) -> Image.Image:
    """Renders a subject in the base look: Noto Color Emoji, or black DejaVu Sans capitals.

    Raises:
        ValueError: The font (or the atlas in use) has no glyph for the subject.
    """
    glyph = base_glyph(subject)
    if glyph is None:
        source = "The glyph atlas in use" if _atlas is not None else "The font"
        raise ValueError(f"{source} has no glyph for {subject.id!r} ({subject.chars!r}).")
    return fit(glyph, size, scale, offset)


def composite(
    rgba: Image.Image | np.ndarray,
    background: tuple[int, int, int] | np.ndarray = (255, 255, 255),
) -> Image.Image:
    """Alpha-composites an RGBA image over a background.

    Args:
        rgba: RGBA PIL image or uint8 array [H, W, 4].
        background: RGB colour (0-255), or a uint8 / float [H, W, 3] image.

    Returns:
        An RGB PIL image.
    """
    rgba = np.asarray(rgba, dtype=np.float32) / 255.0  # [H, W, 4]
    if isinstance(background, np.ndarray):
        back = background.astype(np.float32)
        back = back / 255.0 if background.dtype == np.uint8 else back  # [H, W, 3]
    else:
        back = np.broadcast_to(np.asarray(background, np.float32) / 255.0, (*rgba.shape[:2], 3))
    alpha = rgba[..., 3:]
    out = rgba[..., :3] * alpha + back * (1.0 - alpha)  # [H, W, 3]
    return Image.fromarray(np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8), "RGB")
