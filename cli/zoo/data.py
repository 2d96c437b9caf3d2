"""`styledrop zoo data`: render the emoji-world dataset (`zoo_build.dataset`)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from cli.zoo.options import add_out_option, refuse, split_counts
from styledrop.zoo import render
from styledrop.zoo.vocabulary import get_subject
from zoo_build.dataset import build_dataset


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo data`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo data",
        description=(
            "Render the emoji world dataset (Noto Color Emoji subjects and A-Z in procedural"
            " styles, with captions) for the embedded model zoo: images.npz, captions.jsonl,"
            " held-out style references and manifest.json. Deterministic: the same seed gives"
            " byte-identical files."
        ),
    )
    add_out_option(parser, help="output folder")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw and split")
    parser.add_argument(
        "--draws",
        type=split_counts,
        default=None,
        help="draws per subject per split (default vq=2,base=8,judge=16,eval=2,canonical=8)",
    )
    parser.add_argument(
        "--subjects", help="comma-separated subject ids to build (default: all of them)"
    )
    parser.add_argument(
        "--no-heldout", action="store_true", help="skip the held-out style references"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo data`: builds the dataset and prints counts and the time taken.

    Returns:
        The exit code (2 when a font is missing or an argument is wrong).
    """
    args = build_parser().parse_args(argv)
    if args.size < 16:
        return refuse("--size must be at least 16.")
    subjects = None
    if args.subjects:
        try:
            subjects = [get_subject(s.strip()) for s in args.subjects.split(",") if s.strip()]
        except KeyError as error:
            return refuse(error.args[0])
    start = time.perf_counter()
    try:
        manifest = build_dataset(
            args.out,
            size=args.size,
            split_seed=args.seed,
            draws=args.draws,
            subjects=subjects,
            heldout=not args.no_heldout,
            progress=True,
        )
    except render.FontNotFoundError as error:
        return refuse(error)
    elapsed = time.perf_counter() - start
    counts = ", ".join(f"{split} {count}" for split, count in manifest["counts"].items())
    held = sum(manifest["heldout_counts"].values())
    megabytes = sum((args.out / name).stat().st_size for name in manifest["files"]) / 2**20
    print(f"{manifest['subjects']} subjects at {args.size}px: {counts}; held-out references {held}")
    if manifest["skipped_subjects"]:
        skipped = ", ".join(manifest["skipped_subjects"])
        print(f"Skipped (the installed Noto Color Emoji cannot draw them): {skipped}")
    print(f"Wrote {args.out} ({megabytes:.1f} MiB) in {elapsed:.1f} s")
    return 0
