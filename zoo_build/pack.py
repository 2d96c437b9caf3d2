"""The data pack: everything font-dependent the zoo build needs, in one small file.

A machine without the fonts (a lent GPU: no Debian packages, no network) renders the
emoji world from a pack instead. The world's draws are procedural (numpy and Pillow on
the subjects' glyphs, seeded by subject, split and draw), so the only font-dependent
input is each subject's base-look glyph (`styledrop.zoo.render.base_glyph`). The pack
holds those glyphs, the fonts' sha256 and the software that drew them; captions come
from the vocabulary in the code. Rendered through `using_pack`, every draw is the same
image as from the fonts, at any size and with any number of draws.

File format: a deterministic `.npz` (fixed zip timestamps, so the same glyphs give the
same bytes) with `glyphs` (uint8, every glyph's RGBA bytes concatenated), `shapes`
(int32 [N, 3]: h, w, 4) and `manifest` (UTF-8 JSON bytes: format, recipe version,
subject ids and characters, fonts, software).
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import PIL

from styledrop.zoo import render
from styledrop.zoo.draws import as_subject
from styledrop.zoo.vocabulary import RECIPE_VERSION, SUBJECTS, Subject
from zoo_build.dataset import write_npz

PACK_FORMAT = "emoji-world-glyphs-1"


class PackError(ValueError):
    """A file is not a data pack, or one of another format; the message says what to do."""


def write_pack(out: str | Path, subjects: Sequence[Subject | str] | None = None) -> dict:
    """Draws every subject's base-look glyph from the fonts and writes the pack.

    Args:
        out: Destination file (`.npz`).
        subjects: Subjects or ids (default: the whole vocabulary). Subjects the installed
            fonts cannot draw are left out and listed in the manifest.

    Returns:
        The manifest (also stored in the file).

    Raises:
        render.FontNotFoundError: A font is not installed.
    """
    fonts = render.font_info()  # fails early, naming the package, when a font is missing
    chosen = list(SUBJECTS) if subjects is None else [as_subject(s) for s in subjects]
    kept, glyphs, skipped = [], [], []
    for subject in chosen:
        glyph = render.base_glyph(subject)
        if glyph is None:
            skipped.append(subject.id)
            continue
        kept.append(subject)
        glyphs.append(np.asarray(glyph.convert("RGBA"), np.uint8))  # [h, w, 4]
    manifest = {
        "format": PACK_FORMAT,
        "recipe_version": RECIPE_VERSION,
        "subjects": [s.id for s in kept],
        "chars": [s.chars for s in kept],
        "skipped_subjects": skipped,
        "fonts": fonts,
        "software": {"pillow": PIL.__version__, "layout_engine": render.layout_engine()},
    }
    flat = np.concatenate([g.reshape(-1) for g in glyphs]) if glyphs else np.zeros(0, np.uint8)
    shapes = np.asarray([g.shape for g in glyphs], np.int32).reshape(-1, 3)  # [N, 3]
    text = json.dumps(manifest, ensure_ascii=False, sort_keys=True).encode("utf-8")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_npz(out, {"glyphs": flat, "shapes": shapes, "manifest": np.frombuffer(text, np.uint8)})
    return manifest


def read_pack(path: str | Path) -> tuple[render.GlyphAtlas, dict]:
    """Reads a pack back.

    Args:
        path: A file written by `write_pack`.

    Returns:
        (the glyph atlas, the manifest).

    Raises:
        PackError: Not a pack, or a pack of another format or recipe.
    """
    path = Path(path)
    if not path.is_file():
        raise PackError(f"No data pack at {path}: write one with `styledrop zoo pack --out FILE`.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            flat, shapes = archive["glyphs"], archive["shapes"]
            manifest = json.loads(archive["manifest"].tobytes().decode("utf-8"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise PackError(
            f"{path} is not a data pack ({error}); write one with `styledrop zoo pack`."
        ) from error
    if manifest.get("format") != PACK_FORMAT:
        raise PackError(
            f"{path} is a pack of format {manifest.get('format')!r}; this version reads"
            f" {PACK_FORMAT!r}: rewrite it with `styledrop zoo pack`."
        )
    if manifest.get("recipe_version") != RECIPE_VERSION:
        raise PackError(
            f"{path} was packed for the world recipe {manifest.get('recipe_version')!r}, the"
            f" code draws {RECIPE_VERSION!r}: rewrite it with `styledrop zoo pack`."
        )
    glyphs, start = {}, 0
    for chars, shape in zip(manifest["chars"], shapes, strict=True):
        count = int(np.prod(shape))
        glyphs[chars] = flat[start : start + count].reshape(tuple(int(n) for n in shape))
        start += count
    atlas = render.GlyphAtlas(glyphs, manifest["fonts"], manifest["software"])
    return atlas, manifest


@contextlib.contextmanager
def using_pack(path: str | Path) -> Iterator[dict]:
    """Renders the world from the pack at `path` while the context is open; yields its manifest."""
    atlas, manifest = read_pack(path)
    with render.using_glyph_atlas(atlas):
        yield manifest


def pack_subjects(manifest: Mapping) -> list[Subject]:
    """The vocabulary's subjects that a pack holds, in vocabulary order."""
    held = set(manifest["subjects"])
    return [subject for subject in SUBJECTS if subject.id in held]
