"""Reading user images safely: type, size and decompression-bomb checks, orientation, modes.

Every rejection raises `ImageInputError` with the file, the reason and what to do, and
all images are checked before any work starts (so a bad fifth image does not cost a
model load).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ALLOWED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
MAX_BYTES = 25 * 1024 * 1024  # per file
MAX_PIXELS = 40_000_000  # width * height, checked from the header before decoding
MIN_SIDE = 16
MAX_IMAGES = 20


class ImageInputError(ValueError):
    """A user image cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class LoadedImage:
    """A validated image.

    Attributes:
        name: File name (for messages and captions).
        pixels: [H, W, 3] uint8 RGB, EXIF orientation applied, alpha flattened on white.
        sha256: Hex digest of the file bytes (provenance in adapter files).
    """

    name: str
    pixels: np.ndarray
    sha256: str


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """Any mode (palette, alpha, CMYK, 16-bit, greyscale) -> 8-bit RGB; alpha over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "PA"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def load_image_bytes(data: bytes, name: str) -> LoadedImage:
    """Validates and decodes one image given as bytes.

    Raises:
        ImageInputError: wrong type, too big, too many pixels, too small, or corrupt.
    """
    if len(data) > MAX_BYTES:
        raise ImageInputError(
            f"{name}: {len(data) / 2**20:.1f} MiB is over the {MAX_BYTES // 2**20} MiB limit;"
            " save a smaller PNG, JPEG or WebP."
        )
    if not data:
        raise ImageInputError(f"{name}: the file is empty.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as error:
            raise ImageInputError(f"{name}: too many pixels ({error}).") from error
        except Exception as error:
            raise ImageInputError(
                f"{name}: not a readable image ({error.__class__.__name__}). Use PNG, JPEG or WebP."
            ) from error
        if image.format not in ALLOWED_FORMATS:
            raise ImageInputError(
                f"{name}: {image.format or 'unknown'} images are not accepted; use PNG, JPEG"
                " or WebP."
            )
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageInputError(
                f"{name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the"
                f" {MAX_PIXELS / 1e6:.0f} MP limit; downscale it first."
            )
        if min(width, height) < MIN_SIDE:
            raise ImageInputError(f"{name}: {width}x{height} is too small (min {MIN_SIDE} px).")
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = _flatten_to_rgb(image)
        except Exception as error:
            raise ImageInputError(
                f"{name}: the file is damaged or truncated ({error}); export it again."
            ) from error
    return LoadedImage(name=name, pixels=np.asarray(rgb), sha256=hashlib.sha256(data).hexdigest())


def load_images(paths: list[str | Path], max_images: int = MAX_IMAGES) -> list[LoadedImage]:
    """Validates every path first, then returns the decoded images in order.

    Raises:
        ImageInputError: naming the first bad file (or the count if there are too many).
    """
    if not paths:
        raise ImageInputError("Give at least one style image.")
    if len(paths) > max_images:
        raise ImageInputError(f"{len(paths)} images given; at most {max_images} are accepted.")
    loaded = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            raise ImageInputError(f"{path}: is a folder; give the image files in it.")
        if not path.is_file():
            raise ImageInputError(f"{path}: no such file.")
        loaded.append(load_image_bytes(path.read_bytes(), path.name))
    return loaded


def center_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resizes the shorter side to `size` (Lanczos) and crops the centre square.

    Args:
        pixels: [H, W, 3] uint8.
        size: Output side.

    Returns:
        [size, size, 3] uint8.
    """
    image = Image.fromarray(pixels)
    return np.asarray(ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS))
