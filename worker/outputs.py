"""Copying a job's outputs out of the store, an HTML report together with what it shows.

An HTML report links its images as files beside it (`feedback.html_report` writes them
to `<name>_files/`), so copying the page alone leaves every image a broken link.
`copy_out` copies one stored file and, for an HTML page, every local file the page
references (`src` and `href` values that are relative paths), at the same relative
paths. Links to other sites, `data:` URIs and anchors are left alone; a reference that
leaves the page's folder is refused, so a page cannot pull other files out of the store.
"""

from __future__ import annotations

import posixpath
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from worker.store import Store, StoreKeyError, validate_key

HTML_SUFFIXES = (".html", ".htm")


class _Links(HTMLParser):
    """Collects the `src` and `href` values of a page, in order."""

    def __init__(self):
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.values += [value for name, value in attrs if name in ("src", "href") and value]


def local_references(page: str) -> list[str]:
    """The local files an HTML page references, as relative paths, each once, in order.

    Args:
        page: The page's HTML text.

    Returns:
        Normalised '/'-separated paths relative to the page's folder
        ("report_files/00000.png"); URLs with a scheme or host, `data:` URIs, absolute
        paths and anchors are not local files and are left out.
    """
    links = _Links()
    links.feed(page)
    links.close()
    found = []
    for value in links.values:
        parts = urlsplit(value.strip())
        if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
            continue
        found.append(posixpath.normpath(unquote(parts.path)))
    return list(dict.fromkeys(found))


def copy_out(store: Store, key: str, target: str | Path) -> list[Path]:
    """Copies the stored file `key` to `target`; an HTML page brings the files it shows.

    Args:
        store: The store.
        key: A file in it (a job's artifact).
        target: Where the copy goes (its folder is created).

    Returns:
        The files written, `target` first.

    Raises:
        StoreKeyError: a page references a file outside its own folder.
        FileNotFoundError: the file, or a file its page references, is not in the store.
    """
    target = Path(target)
    data = store.read_bytes(key)
    written = [_write(target, data)]
    if not key.lower().endswith(HTML_SUFFIXES):
        return written
    folder = posixpath.dirname(key)
    for relative in local_references(data.decode("utf-8", errors="replace")):
        if relative == ".." or relative.startswith("../"):
            raise StoreKeyError(f"{key} references {relative!r}, outside its own folder.")
        source = validate_key(posixpath.join(folder, relative))
        written.append(_write(target.parent / relative, store.read_bytes(source)))
    return written


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
