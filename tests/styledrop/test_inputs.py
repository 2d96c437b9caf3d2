"""User images: every kind of bad input is refused with a reason; good ones are normalised."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from styledrop.inputs import ImageInputError, center_square, load_image_bytes, load_images


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepted_formats_decode_to_rgb(fmt):
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    loaded = load_image_bytes(_encode(image, fmt), f"x.{fmt.lower()}")
    assert loaded.pixels.shape == (30, 40, 3) and loaded.pixels.dtype == np.uint8
    assert abs(int(loaded.pixels[15, 20, 0]) - 200) < 8
    assert len(loaded.sha256) == 64


def test_modes_are_converted():
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red -> white
    assert load_image_bytes(_encode(rgba, "PNG"), "a.png").pixels[0, 0].tolist() == [255, 255, 255]
    palette = Image.new("P", (20, 20), 3)
    palette.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 756)
    assert load_image_bytes(_encode(palette, "PNG"), "p.png").pixels[0, 0].tolist() == [70, 80, 90]
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # red in CMYK
    red = load_image_bytes(_encode(cmyk, "JPEG"), "c.jpg").pixels[5, 5]
    assert red[0] > 200 and red[1] < 60
    deep = Image.fromarray(np.full((20, 20), 65535, np.uint16))  # 16-bit white
    assert load_image_bytes(_encode(deep, "PNG"), "d.png").pixels[0, 0].tolist() == [255] * 3
    grey_alpha = Image.new("LA", (20, 20), (0, 255))
    assert load_image_bytes(_encode(grey_alpha, "PNG"), "g.png").pixels[0, 0].tolist() == [0] * 3


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    loaded = load_image_bytes(_encode(image, "JPEG", exif=exif.tobytes()), "r.jpg")
    assert loaded.pixels.shape == (40, 20, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"not an image at all", "not a readable image"),
        (_encode(Image.new("RGB", (20, 20)), "GIF"), "GIF images are not accepted"),
        (_encode(Image.new("RGB", (20, 20)), "BMP"), "BMP images are not accepted"),
        (_encode(Image.new("RGB", (8, 8)), "PNG"), "too small"),
        (_huge_png_header(65536, 65536), "pixels"),  # 4.3 gigapixels
        (_huge_png_header(8000, 6000), "megapixels"),  # 48 MP: over our own limit
        (_encode(Image.new("RGB", (64, 64), (9, 9, 9)), "PNG")[:60], "damaged or truncated"),
    ],
)
def test_bad_inputs_say_why(data, message):
    with pytest.raises(ImageInputError, match=message):
        load_image_bytes(data, "upload")


def test_too_many_and_missing_files(tmp_path):
    path = tmp_path / "ok.png"
    Image.new("RGB", (20, 20)).save(path)
    with pytest.raises(ImageInputError, match="at most 2"):
        load_images([path] * 3, max_images=2)
    with pytest.raises(ImageInputError, match="no such file"):
        load_images([path, tmp_path / "missing.png"])
    with pytest.raises(ImageInputError, match="at least one"):
        load_images([])


def test_center_square():
    pixels = np.zeros((30, 60, 3), np.uint8)
    pixels[:, 15:45] = 255
    out = center_square(pixels, 16)
    assert out.shape == (16, 16, 3)
    assert out.mean() > 250  # the white middle square is what remains
