"""A small self-contained HTML report: headings, text, tables and image grids.

Images are written as PNG files in a `<name>_files/` folder beside `<name>.html` and
linked relatively, so a report folder can be zipped, served or opened from disk as it is.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 75em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.4em; text-align: center; vertical-align: top; }
figure img { image-rendering: pixelated; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; max-width: 12em; overflow-wrap: anywhere; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
"""
# Stands for the images folder until the page's file name is known.
FOLDER_MARK = "\x00files\x00"


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] from uint8 or floats in [0, 1]."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return image


class HtmlReport:
    """Builds one HTML page; `write` puts it and its images in a folder.

    Args:
        title: Page title and first heading.
        image_scale: Display magnification of images (small renders are upscaled).
    """

    def __init__(self, title: str, image_scale: int = 2):
        self.title = title
        self.image_scale = image_scale
        self._parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        self._images: list[np.ndarray] = []

    def heading(self, text: str, level: int = 2) -> None:
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self._parts.append(f"<p>{html.escape(text)}</p>")

    def code(self, text: str) -> None:
        self._parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """A table; floats are shown with 4 significant digits."""

        def cell(value: object) -> str:
            if isinstance(value, float):
                return f"{value:.4g}"
            return html.escape(str(value))

        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows
        )
        self._parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def figures(self, images: Sequence[np.ndarray], captions: Sequence[str] | None = None) -> None:
        """A row of captioned images (each [H, W, 3], uint8 or floats in [0, 1])."""
        captions = list(captions) if captions is not None else [""] * len(images)
        if len(captions) != len(images):
            raise ValueError(f"{len(images)} images but {len(captions)} captions.")
        items = []
        for image, caption in zip(images, captions, strict=True):
            image = _to_uint8(image)
            name = f"{FOLDER_MARK}/{len(self._images):05d}.png"
            self._images.append(image)
            height, width = image.shape[:2]
            items.append(
                f'<figure><img src="{name}" width="{width * self.image_scale}"'
                f' height="{height * self.image_scale}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        self._parts.append("<div>" + "".join(items) + "</div>")

    def render(self, files_folder: str = "images") -> str:
        """The page's HTML text, linking images under `files_folder`."""
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(self._parts)
            + "</body></html>\n"
        )
        return page.replace(FOLDER_MARK, html.escape(files_folder))

    def write(self, path: str | Path) -> Path:
        """Writes the page to `path` and its images to `<stem>_files/` beside it."""
        path = Path(path)
        folder = path.parent / f"{path.stem}_files"
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(self._images):
            Image.fromarray(image).save(folder / f"{index:05d}.png")
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".html.tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(self.render(folder.name))
        os.replace(tmp, path)
        return path
