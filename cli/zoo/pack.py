"""`styledrop zoo pack`: the data pack a machine without the fonts builds the zoo from."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    """Writes the pack and prints its size. Returns the exit code (2: a font is missing)."""
    from styledrop.zoo import render
    from zoo_build.pack import write_pack

    parser = argparse.ArgumentParser(
        prog="styledrop zoo pack",
        description=(
            "Draw every subject's base-look glyph from the fonts (Noto Color Emoji, DejaVu Sans)"
            " into one small file. `styledrop zoo build --data FILE` renders the emoji world from"
            " it on a machine without the fonts; the draws are the same images as from the"
            " fonts. The same fonts and software give a byte-identical file."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="the pack file to write (.npz)")
    parser.add_argument("--subjects", help="comma-separated subject ids (default: all of them)")
    args = parser.parse_args(argv)
    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()] if args.subjects else None
    try:
        manifest = write_pack(args.out, subjects)
    except (render.FontNotFoundError, KeyError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 2
    size = args.out.stat().st_size / 2**20
    print(f"Wrote {args.out}: {len(manifest['subjects'])} subjects, {size:.2f} MiB")
    if manifest["skipped_subjects"]:
        left_out = ", ".join(manifest["skipped_subjects"])
        print(f"Left out (no glyph in the installed fonts): {left_out}")
    return 0
