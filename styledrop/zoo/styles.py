"""Procedural, describable styles of the emoji world, and the held-out styles.

A style is a small named function whose words enter the captions ("a penguin in greyscale",
"a pencil sketch of a penguin"). Images are float32 numpy arrays in [0, 1]; a style acts at
one stage of the pipeline that `stylize` runs:

- "fg": the subject before compositing, RGBA [S, S, 4] -> RGBA [S, S, 4] (straight alpha);
- "bg": makes the background, (size, rng) -> RGB [S, S, 3] (white when none is chosen);
- "post": the composited picture, RGB [S, S, 3] -> RGB [S, S, 3];
- "whole": replaces compositing, RGBA [S, S, 4] -> RGB [S, S, 3] (held-out looks);
- "glyph": a different renderer (Symbola line art), applied by `dataset.heldout_references`.

Every style is deterministic given its `numpy.random.Generator`; the randomness is small
parameter jitter (a tint's exact colour, an outline's width) and texture noise. Training
styles (`TRAIN_STYLES`) and held-out styles (`HELDOUT_STYLES`) are disjoint, and held-out
styles keep fixed colours so that their ground-truth references share one look.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image

Array = np.ndarray

PAPER = (0.98, 0.96, 0.90)  # off-white paper of the held-out looks


@dataclass(frozen=True)
class Style:
    """One describable style.

    Attributes:
        name: Identifier, also written in the captions file ("greyscale").
        kind: Pipeline stage: "fg", "bg", "post", "whole" or "glyph".
        suffix: Words after the subject ("in greyscale", "on a blue background").
        lead: Optional words before the subject ("a greyscale image of").
        fn: The transform (see the module docstring for each kind's signature).
        heldout: Never used for training.
        exclusive: Must be the only style of a draw.
    """

    name: str
    kind: str
    suffix: str
    lead: str | None
    fn: Callable | None
    heldout: bool = False
    exclusive: bool = False


# --------------------------------------------------------------------------------------------
# Small image helpers (float32 arrays, edge padding).


def _luma(rgb: Array) -> Array:
    """[..., 3] -> [..., 1] Rec. 601 luma."""
    return rgb @ np.array([[0.299], [0.587], [0.114]], np.float32)


def _gaussian_kernel(sigma: float) -> Array:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _blur(x: Array, sigma: float) -> Array:
    """Separable Gaussian blur of [H, W] or [H, W, C] with edge padding."""
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    out = x.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        length = out.shape[axis]
        out = sum(
            weight * np.take(padded, np.arange(i, i + length), axis=axis)
            for i, weight in enumerate(kernel)
        )
    return out.astype(np.float32)


def _dilate(mask: Array, radius: int) -> Array:
    """Grey dilation of [H, W] by a disk of `radius` pixels."""
    height, width = mask.shape
    padded = np.pad(mask, radius)
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius + radius:
                top, left = radius + dy, radius + dx
                out = np.maximum(out, padded[top : top + height, left : left + width])
    return out


def _shift(x: Array, dx: int, dy: int) -> Array:
    """Shifts [H, W, ...] by (dx, dy) pixels, filling with zeros."""
    out = np.zeros_like(x)
    height, width = x.shape[:2]
    out[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = x[
        max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def _over(top: Array, bottom: Array) -> Array:
    """Porter-Duff "over" of two straight-alpha RGBA [H, W, 4] images."""
    a_top, a_bottom = top[..., 3:], bottom[..., 3:]
    alpha = a_top + a_bottom * (1.0 - a_top)
    rgb = top[..., :3] * a_top + bottom[..., :3] * a_bottom * (1.0 - a_top)
    return np.concatenate([rgb / np.maximum(alpha, 1e-6), alpha], axis=-1)


def _composite(rgba: Array, background: Array) -> Array:
    """RGBA [H, W, 4] over RGB [H, W, 3] -> RGB [H, W, 3]."""
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


def _noise(size: int, rng: np.random.Generator, cells: int) -> Array:
    """Smooth value noise [size, size] in [0, 1] from a random `cells` x `cells` grid."""
    grid = rng.random((cells, cells), dtype=np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.Resampling.BICUBIC))


def _jitter(colour: Sequence[float], rng: np.random.Generator, amount: float = 0.04) -> Array:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 1)


def _grid(size: int) -> tuple[Array, Array]:
    """Pixel coordinates (ys, xs), each [size, size] float32."""
    ys, xs = np.mgrid[0:size, 0:size]
    return ys.astype(np.float32), xs.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Foreground styles: RGBA [S, S, 4] -> RGBA [S, S, 4].


def greyscale(rgba: Array, rng: np.random.Generator) -> Array:
    """Replaces colour by luma."""
    return np.concatenate([np.repeat(_luma(rgba[..., :3]), 3, -1), rgba[..., 3:]], -1)


def tint(rgba: Array, rng: np.random.Generator, colour: Sequence[float]) -> Array:
    """Maps luma onto a ramp dark shade -> colour -> pale tint of one colour."""
    colour = _jitter(colour, rng)
    luma = _luma(rgba[..., :3])  # [S, S, 1]
    dark, light = colour * 0.4, colour + (1.0 - colour) * 0.75
    rgb = np.where(
        luma < 0.5,
        dark + (colour - dark) * (luma / 0.5),
        colour + (light - colour) * ((luma - 0.5) / 0.5),
    )
    return np.concatenate([rgb, rgba[..., 3:]], -1)


def posterize(rgba: Array, rng: np.random.Generator) -> Array:
    """Quantises each channel to 2-3 levels."""
    levels = int(rng.choice([2, 3]))
    rgb = np.round(rgba[..., :3] * (levels - 1)) / (levels - 1)
    return np.concatenate([rgb, rgba[..., 3:]], -1)


def invert(rgba: Array, rng: np.random.Generator) -> Array:
    """Inverts the colours (not the alpha)."""
    return np.concatenate([1.0 - rgba[..., :3], rgba[..., 3:]], -1)


def silhouette(rgba: Array, rng: np.random.Generator) -> Array:
    """Fills the subject with near-black."""
    rgb = np.broadcast_to(_jitter((0.05, 0.05, 0.05), rng, 0.03), (*rgba.shape[:2], 3))
    return np.concatenate([rgb, rgba[..., 3:]], -1)


def outline(rgba: Array, rng: np.random.Generator) -> Array:
    """Adds a thick black outline (2-3 px) around the subject."""
    radius = int(rng.choice([2, 3]))
    ring = _dilate(rgba[..., 3], radius)[..., None]  # [S, S, 1]
    back = np.concatenate([np.zeros_like(rgba[..., :3]), ring], -1)
    return _over(rgba, back)


def sticker(rgba: Array, rng: np.random.Generator) -> Array:
    """A white die-cut border with a soft grey drop shadow."""
    border = _dilate(rgba[..., 3], 3)
    offset = int(rng.choice([1, 2]))
    shadow = _blur(_shift(border, offset, offset), 1.2)[..., None] * 0.5
    back = _over(
        np.concatenate([np.ones_like(rgba[..., :3]), border[..., None]], -1),
        np.concatenate([np.full_like(rgba[..., :3], 0.25), shadow], -1),
    )
    return _over(rgba, back)


def pixelate(rgba: Array, rng: np.random.Generator) -> Array:
    """Blocky pixel art: 4-5 px cells, hard alpha, 4 levels per channel."""
    size = rgba.shape[0]
    cells = size // int(rng.choice([4, 5]))
    premultiplied = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
    small = np.stack(
        [
            np.asarray(
                Image.fromarray(premultiplied[..., c], "F").resize(
                    (cells, cells), Image.Resampling.BOX
                )
            )
            for c in range(4)
        ],
        -1,
    )  # [cells, cells, 4]
    alpha = (small[..., 3:] > 0.45).astype(np.float32)
    rgb = np.round(np.clip(small[..., :3] / np.maximum(small[..., 3:], 1e-6), 0, 1) * 3) / 3
    index = (np.arange(size) * cells) // size
    big = np.concatenate([rgb, alpha], -1)[index][:, index]  # [S, S, 4]
    return big.astype(np.float32)


def dotted(rgba: Array, rng: np.random.Generator) -> Array:
    """A halftone dot texture over the subject (colour dots on a pale version of itself)."""
    size = rgba.shape[0]
    spacing = int(rng.choice([3, 4]))
    ys, xs = _grid(size)
    phase = rng.integers(0, spacing, 2)
    dy = (ys + phase[0]) % spacing - (spacing - 1) / 2
    dx = (xs + phase[1]) % spacing - (spacing - 1) / 2
    dots = (dx * dx + dy * dy <= (spacing / 2.6) ** 2)[..., None]
    rgb = np.where(dots, rgba[..., :3] * 0.85, rgba[..., :3] + (1.0 - rgba[..., :3]) * 0.7)
    return np.concatenate([rgb, rgba[..., 3:]], -1)


def striped(rgba: Array, rng: np.random.Generator) -> Array:
    """Diagonal stripes over the subject (alternately darker)."""
    size = rgba.shape[0]
    period = int(rng.choice([4, 6]))
    ys, xs = _grid(size)
    direction = 1 if rng.random() < 0.5 else -1
    stripes = (((xs + direction * ys) % period) < period / 2)[..., None]
    rgb = np.where(stripes, rgba[..., :3] * 0.55, rgba[..., :3])
    return np.concatenate([rgb, rgba[..., 3:]], -1)


def blurred(rgba: Array, rng: np.random.Generator) -> Array:
    """A Gaussian blur (sigma 1.0-1.5 px at 64 px, scaled with the size)."""
    sigma = rng.uniform(1.0, 1.5) * rgba.shape[0] / 64
    premultiplied = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
    out = _blur(premultiplied, sigma)
    rgb = out[..., :3] / np.maximum(out[..., 3:], 1e-6)
    return np.concatenate([np.clip(rgb, 0, 1), out[..., 3:]], -1)


# --------------------------------------------------------------------------------------------
# Background styles: (size, rng) -> RGB [S, S, 3].

_PASTELS = (
    (1.0, 0.85, 0.85),
    (0.85, 0.92, 1.0),
    (0.88, 1.0, 0.85),
    (1.0, 0.97, 0.8),
    (0.93, 0.87, 1.0),
)


def solid(size: int, rng: np.random.Generator, colour: Sequence[float]) -> Array:
    """A plain background of one colour (slightly jittered)."""
    return np.broadcast_to(_jitter(colour, rng, 0.03), (size, size, 3)).astype(np.float32)


def _two_pastels(rng: np.random.Generator) -> tuple[Array, Array]:
    first, second = rng.choice(len(_PASTELS), 2, replace=False)
    return np.asarray(_PASTELS[first], np.float32), np.asarray(_PASTELS[second], np.float32) * 0.8


def polka_dots(size: int, rng: np.random.Generator) -> Array:
    """Round dots on a pastel background."""
    base, dot = _two_pastels(rng)
    spacing = size / int(rng.choice([6, 8]))
    ys, xs = _grid(size)
    row = np.floor(ys / spacing)
    dx = (xs + (row % 2) * spacing / 2) % spacing - spacing / 2
    dy = ys % spacing - spacing / 2
    mask = (dx * dx + dy * dy <= (spacing * 0.28) ** 2)[..., None]
    return np.where(mask, dot, base).astype(np.float32)


def stripes(size: int, rng: np.random.Generator) -> Array:
    """Two-colour stripes, horizontal or vertical."""
    base, stripe = _two_pastels(rng)
    period = size / int(rng.choice([6, 8]))
    ys, xs = _grid(size)
    coordinate = ys if rng.random() < 0.5 else xs
    mask = ((coordinate % period) < period / 2)[..., None]
    return np.where(mask, stripe, base).astype(np.float32)


def checkerboard(size: int, rng: np.random.Generator) -> Array:
    """A two-colour checkerboard."""
    base, square = _two_pastels(rng)
    cell = size / int(rng.choice([4, 8]))
    ys, xs = _grid(size)
    mask = ((np.floor(ys / cell) + np.floor(xs / cell)) % 2 == 1)[..., None]
    return np.where(mask, square, base).astype(np.float32)


def grid_paper(size: int, rng: np.random.Generator) -> Array:
    """White paper with light blue grid lines."""
    period = size / int(rng.choice([6, 8]))
    ys, xs = _grid(size)
    line = ((ys % period) < 1) | ((xs % period) < 1)
    return np.where(line[..., None], (0.62, 0.78, 0.95), (0.99, 0.99, 0.99)).astype(np.float32)


def gradient(size: int, rng: np.random.Generator) -> Array:
    """A vertical gradient between two saturated colours."""
    palette = np.asarray(
        [(0.98, 0.55, 0.3), (0.95, 0.35, 0.6), (0.35, 0.45, 0.95), (0.3, 0.8, 0.85)], np.float32
    )
    first, second = rng.choice(len(palette), 2, replace=False)
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]  # [S, 1, 1]
    return np.broadcast_to(palette[first] * (1 - t) + palette[second] * t, (size, size, 3))


# --------------------------------------------------------------------------------------------
# Post styles: RGB [S, S, 3] -> RGB [S, S, 3].


def _dodge_sketch(rgb: Array, sigma: float) -> Array:
    """Colour-dodge pencil sketch: [S, S, 3] -> grey lines on white [S, S, 1] in [0, 1]."""
    grey = _luma(rgb)[..., 0]
    inverted_blur = _blur(1.0 - grey, sigma)
    sketch = np.clip(grey / np.maximum(1.0 - inverted_blur, 1e-3), 0, 1)
    return (sketch**2.2)[..., None]


def pencil_sketch(rgb: Array, rng: np.random.Generator) -> Array:
    """Grey pencil lines on white paper with faint grain."""
    size = rgb.shape[0]
    sketch = _dodge_sketch(rgb, rng.uniform(1.5, 2.2) * size / 64)
    grain = (_noise(size, rng, size // 2)[..., None] - 0.5) * 0.06
    return np.clip(np.repeat(sketch + grain * (1 - sketch), 3, -1), 0, 1).astype(np.float32)


def framed(rgb: Array, rng: np.random.Generator) -> Array:
    """A black frame around the picture."""
    width = int(rng.choice([2, 3])) * max(1, rgb.shape[0] // 64)
    out = rgb.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = 0.0, 0.0, 0.0, 0.0
    return out


# --------------------------------------------------------------------------------------------
# Held-out looks ("whole": RGBA [S, S, 4] -> RGB [S, S, 3]); fixed colours, noisy textures.


def watercolor(rgba: Array, rng: np.random.Generator) -> Array:
    """Soft washed pigment with ragged edges, darker rims and paper texture."""
    size = rgba.shape[0]
    k = size / 64
    wobble = (_noise(size, rng, 10) - 0.5) * 0.5
    alpha = np.clip(_blur(rgba[..., 3], 1.4 * k) + wobble * (1 - rgba[..., 3]) - 0.1, 0, 1)
    alpha = np.clip(alpha * 1.4, 0, 1)
    premultiplied = _blur(rgba[..., :3] * rgba[..., 3:], 1.2 * k)
    colour = premultiplied / np.maximum(_blur(rgba[..., 3], 1.2 * k)[..., None], 1e-3)
    colour = np.clip(colour, 0, 1)
    colour = colour + (1.0 - colour) * 0.12  # washed out
    rim = np.clip(alpha - _blur(alpha, 2.0 * k), 0, 1)[..., None]
    pigment = 1.0 - (1.0 - colour) * (1.0 + 1.5 * rim)  # darker where the wash dried
    granulation = 1.0 - 0.12 * (_noise(size, rng, size // 3) - 0.5)[..., None]
    paper = np.asarray(PAPER, np.float32) * (1.0 - 0.05 * _noise(size, rng, size // 2))[..., None]
    cover = alpha[..., None] * 0.95
    out = paper * (1 - cover) + np.clip(pigment * granulation, 0, 1) * cover
    return np.clip(out, 0, 1).astype(np.float32)


def neon(rgba: Array, rng: np.random.Generator) -> Array:
    """Glowing magenta tubes along the subject's edges on a dark night background."""
    size = rgba.shape[0]
    k = size / 64
    colour = np.asarray((1.0, 0.25, 0.85), np.float32)
    alpha = rgba[..., 3]
    luma = _luma(rgba[..., :3])[..., 0] * alpha
    edges = np.abs(alpha - _blur(alpha, 0.8 * k)) * 2.5
    edges = edges + np.abs(luma - _blur(luma, 0.8 * k)) * 1.5
    edges = np.clip(edges, 0, 1)
    glow = _blur(edges, 2.0 * k)[..., None]
    flicker = 1.0 - 0.15 * _noise(size, rng, 6)[..., None]
    night = np.asarray((0.04, 0.02, 0.1), np.float32)
    core = edges[..., None] * (colour + (1.0 - colour) * 0.6)
    return np.clip(night + glow * colour * 1.8 * flicker + core, 0, 1).astype(np.float32)


def mosaic(rgba: Array, rng: np.random.Generator) -> Array:
    """Irregular tiles (jittered Voronoi cells) with light grout, on a sandstone floor."""
    size = rgba.shape[0]
    floor = np.asarray((0.86, 0.8, 0.68), np.float32)
    picture = _composite(rgba, floor)  # [S, S, 3]
    spacing = 5.0 * size / 64
    count = int(np.ceil(size / spacing)) + 1
    centres = (np.stack(np.mgrid[0:count, 0:count], -1).reshape(-1, 2) + 0.5) * spacing
    centres = centres + rng.uniform(-0.35, 0.35, centres.shape) * spacing  # [T, 2] (y, x)
    ys, xs = _grid(size)
    distance = (ys[..., None] - centres[:, 0]) ** 2 + (xs[..., None] - centres[:, 1]) ** 2
    nearest = np.argsort(distance, axis=-1)[..., :2]  # [S, S, 2]
    d = np.sqrt(np.take_along_axis(distance, nearest, -1))
    tile = nearest[..., 0].reshape(-1)
    sums = np.zeros((len(centres), 3), np.float32)
    np.add.at(sums, tile, picture.reshape(-1, 3))
    counts = np.bincount(tile, minlength=len(centres))[:, None]
    means = sums / np.maximum(counts, 1)
    means = np.clip(means * rng.uniform(0.92, 1.06, (len(centres), 1)), 0, 1)
    out = means[nearest[..., 0]]  # [S, S, 3]
    grout = (d[..., 1] - d[..., 0] < 0.9 * size / 64)[..., None]
    return np.where(grout, (0.93, 0.91, 0.86), out).astype(np.float32)


def chalkboard(rgba: Array, rng: np.random.Generator) -> Array:
    """White chalk lines (an inverted sketch, broken by grain) on a dark green board."""
    size = rgba.shape[0]
    board = np.asarray((0.13, 0.22, 0.17), np.float32)
    lines = 1.0 - _dodge_sketch(_composite(rgba, np.ones(3, np.float32)), 1.8 * size / 64)
    chalk = np.clip(lines * 1.6, 0, 1) * (0.55 + 0.45 * rng.random(lines.shape, np.float32))
    smudge = 0.05 * _noise(size, rng, 5)[..., None]
    return np.clip(board + smudge + chalk * (0.95 - board), 0, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Registry.

_TINTS = {
    "red": (0.85, 0.12, 0.12),
    "blue": (0.15, 0.35, 0.9),
    "green": (0.12, 0.62, 0.22),
    "purple": (0.55, 0.2, 0.78),
}
_BACKGROUNDS = {
    "blue": (0.35, 0.55, 0.95),
    "yellow": (1.0, 0.86, 0.3),
    "pink": (1.0, 0.68, 0.8),
    "green": (0.45, 0.8, 0.45),
    "grey": (0.6, 0.6, 0.6),
    "black": (0.05, 0.05, 0.05),
}

TRAIN_STYLES: tuple[Style, ...] = (
    Style("greyscale", "fg", "in greyscale", "a greyscale image of", greyscale),
    *(
        Style(f"{name}_tones", "fg", f"in {name} tones", f"a {name}-toned image of",
              partial(tint, colour=colour))
        for name, colour in _TINTS.items()
    ),
    Style("sepia", "fg", "in sepia", "a sepia image of", partial(tint, colour=(0.62, 0.45, 0.26))),
    Style("posterized", "fg", "with posterized colors", "a posterized image of", posterize),
    Style("inverted", "fg", "in inverted colors", "a color-inverted image of", invert),
    Style("silhouette", "fg", "as a black silhouette", "a black silhouette of", silhouette),
    Style("outline", "fg", "with a thick black outline", "an outlined drawing of", outline),
    Style("sticker", "fg", "as a sticker", "a sticker of", sticker),
    Style("pixel_art", "fg", "in pixel art style", "a pixel art image of", pixelate),
    Style("dotted", "fg", "with a dotted texture", "a dotted image of", dotted),
    Style("striped", "fg", "with a striped texture", "a striped image of", striped),
    Style("blurry", "fg", "blurred", "a blurry image of", blurred),
    *(
        Style(f"{name}_background", "bg", f"on a {name} background", None,
              partial(solid, colour=colour))
        for name, colour in _BACKGROUNDS.items()
    ),
    Style("polka_dot_background", "bg", "on a polka dot background", None, polka_dots),
    Style("striped_background", "bg", "on a striped background", None, stripes),
    Style("checkered_background", "bg", "on a checkered background", None, checkerboard),
    Style("grid_paper", "bg", "on grid paper", None, grid_paper),
    Style("gradient_background", "bg", "on a gradient background", None, gradient),
    Style("pencil_sketch", "post", "as a pencil sketch", "a pencil sketch of", pencil_sketch,
          exclusive=True),
    Style("black_frame", "post", "with a black frame", "a framed picture of", framed,
          exclusive=True),
)  # fmt: skip

LINE_ART = Style("line_art", "glyph", "in line art style", "a line art drawing of", None, True)

HELDOUT_STYLES: tuple[Style, ...] = (
    Style("watercolor", "whole", "in watercolor style", "a watercolor painting of", watercolor,
          heldout=True, exclusive=True),
    Style("neon", "whole", "as a neon sign", "a neon sign of", neon, heldout=True,
          exclusive=True),
    Style("mosaic", "whole", "as a mosaic", "a mosaic of", mosaic, heldout=True, exclusive=True),
    Style("chalkboard", "whole", "as a chalk drawing on a blackboard", "a chalk drawing of",
          chalkboard, heldout=True, exclusive=True),
    LINE_ART,
)  # fmt: skip

STYLES: dict[str, Style] = {style.name: style for style in TRAIN_STYLES + HELDOUT_STYLES}

# Styles that would make a black letter invisible.
NOT_FOR_LETTERS = frozenset({"inverted", "black_background"})

# Pairs that would make the subject invisible or the caption false.
INCOMPATIBLE = frozenset(
    {
        frozenset({"silhouette", "black_background"}),
        frozenset({"outline", "black_background"}),
        frozenset({"inverted", "black_background"}),
    }
)

_STAGES = ("fg", "bg", "whole", "post")


def get_style(name: str) -> Style:
    """The style with this name (training or held-out).

    Raises:
        KeyError: Unknown name (the message lists the known ones).
    """
    try:
        return STYLES[name]
    except KeyError:
        raise KeyError(f"Unknown style {name!r}; known: {sorted(STYLES)}") from None


def check_combination(styles: Sequence[Style]) -> None:
    """Raises ValueError unless the styles can be applied together by `stylize`."""
    kinds = [style.kind for style in styles]
    if "glyph" in kinds:
        raise ValueError("The line art style is a renderer: use dataset.heldout_references.")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"At most one style per stage: {[s.name for s in styles]}")
    if len(styles) > 1 and any(style.exclusive for style in styles):
        raise ValueError(f"An exclusive style must be alone: {[s.name for s in styles]}")
    if frozenset(style.name for style in styles) in INCOMPATIBLE:
        raise ValueError(f"Incompatible styles: {[s.name for s in styles]}")


def stylize(rgba: Array, styles: Sequence[Style], rng: np.random.Generator) -> Array:
    """Applies styles in pipeline order (fg, then bg or whole, then post).

    Args:
        rgba: Subject [S, S, 4], float32 in [0, 1], straight alpha.
        styles: Up to one style per stage (see `check_combination`).
        rng: Source of the styles' randomness; each style gets its own child generator, in
            stage order, so a draw is reproducible from one seed.

    Returns:
        RGB [S, S, 3] float32 in [0, 1].
    """
    check_combination(styles)
    by_kind = {style.kind: style for style in styles}
    children = dict(zip(_STAGES, rng.spawn(len(_STAGES)), strict=True))
    size = rgba.shape[0]
    image = rgba.astype(np.float32)
    if "fg" in by_kind:
        image = np.clip(by_kind["fg"].fn(image, children["fg"]), 0, 1).astype(np.float32)
    if "whole" in by_kind:
        out = by_kind["whole"].fn(image, children["whole"])
    else:
        if "bg" in by_kind:
            background = by_kind["bg"].fn(size, children["bg"])
        else:
            background = np.ones((size, size, 3), np.float32)
        out = _composite(image, background)
    if "post" in by_kind:
        out = by_kind["post"].fn(out, children["post"])
    return np.clip(out, 0, 1).astype(np.float32)
