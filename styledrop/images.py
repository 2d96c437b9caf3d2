"""Saving generated images: single files and labelled-free grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[..., 3] floats in [0, 1] -> uint8, rounded."""
    return np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tiles [N, H, W, 3] images into one [rows * H', columns * W', 3] uint8 image.

    Args:
        images: Floats in [0, 1] or uint8.
        columns: Images per row (default: ceil(sqrt(N))).
        padding: White pixels between images.
    """
    images = images if images.dtype == np.uint8 else to_uint8(images)
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.full(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        255,
        np.uint8,
    )
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def save_image(array: np.ndarray, path: str | Path) -> Path:
    """Saves one [H, W, 3] image (floats in [0, 1] or uint8); the suffix picks the format."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"Unsupported image file type {path.suffix!r}; use {IMAGE_SUFFIXES}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    array = array if array.dtype == np.uint8 else to_uint8(array)
    Image.fromarray(array).save(path)
    return path
