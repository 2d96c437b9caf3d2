"""`styledrop zoo unshard`: the zoo folder back from the shards a GPU build returned."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuilds the folder and checks every file. Returns the exit code (2: bad shards)."""
    from zoo_build.shards import ShardError, read_shards

    parser = argparse.ArgumentParser(
        prog="styledrop zoo unshard",
        description=(
            "Rebuild a folder from the safetensors shards `styledrop zoo build` wrote (zoo-*"
            " for the zoo, vq-* for the VQ run), checking every file's sha256. Point"
            " STYLEDROP_ZOO at the result to use it, or pass it as --base."
        ),
    )
    parser.add_argument("--shards", type=Path, required=True, help="folder with the shards")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--prefix", default="zoo", help="shard name prefix (zoo or vq)")
    args = parser.parse_args(argv)
    try:
        read_shards(args.shards, args.out, prefix=args.prefix)
    except ShardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {args.out}")
    return 0
