"""A check for the HTML reports the project writes: every image they show is there.

`assert_report_complete(path)` parses a report and checks that each `<img src>` is a
`data:` image or a file beside the page that opens as an image, and that every other
local `src` / `href` names a file that exists; links to other sites are not followed. It
returns the number of images, so a test can check that too. A report copied without
its `<name>_files/` folder fails here the way it looks broken in a browser.

Use it from any test module (the suite runs with `--import-mode=importlib`, under which
`tests` imports as a namespace package)::

    from tests.html_report import assert_report_complete

    assert assert_report_complete(out / "report.html") == 17
"""

from __future__ import annotations

import base64
import binascii
import io
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image


class _References(HTMLParser):
    """(tag, attribute, value) of every `src` and `href` of a page, in order."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href"):
                self.found.append((tag, name, value or ""))


def references(path: str | Path) -> list[tuple[str, str, str]]:
    """(tag, attribute, value) of every `src` and `href` in the HTML file at `path`."""
    parser = _References()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    parser.close()
    return parser.found


def _check_image(data: bytes, where: str) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as error:  # any decoding failure is a broken image in a browser
        raise AssertionError(f"{where} is not a readable image: {error}") from error


def assert_report_complete(path: str | Path) -> int:
    """Asserts that every image and local file the HTML report at `path` references exists.

    Args:
        path: The report's HTML file.

    Returns:
        The number of `<img>` elements (each checked to open as an image).

    Raises:
        AssertionError: naming each reference that is missing, empty or not an image.
    """
    path = Path(path)
    problems, images = [], 0
    for tag, attribute, value in references(path):
        where = f"<{tag} {attribute}={value[:60]!r}> in {path.name}"
        images += tag == "img"
        parts = urlsplit(value.strip())
        if not value.strip():
            problems.append(f"{where}: empty")
        elif parts.scheme == "data":
            if tag == "img":
                header, _, payload = value.partition(",")
                try:
                    data = base64.b64decode(payload, validate=True)
                except binascii.Error as error:
                    problems.append(f"{where}: not base64 ({error})")
                    continue
                if not header.startswith("data:image/") or not header.endswith(";base64"):
                    problems.append(f"{where}: not a base64 image")
                    continue
                try:
                    _check_image(data, where)
                except AssertionError as error:
                    problems.append(str(error))
        elif parts.scheme or parts.netloc or value.startswith("#"):
            continue  # another site, or an anchor in the page
        else:
            target = path.parent / unquote(parts.path)
            if not target.is_file():
                problems.append(f"{where}: no file {target}")
            elif tag == "img":
                try:
                    _check_image(target.read_bytes(), where)
                except AssertionError as error:
                    problems.append(str(error))
    assert not problems, "\n".join(problems)
    return images
