"""`styledrop zoo compact-vq`: shrink a trained tokenizer's codebook (`zoo_build.compact_vq`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cli.zoo.options import (
    Option,
    add_config_options,
    add_data_option,
    add_out_option,
    config_from_args,
    refuse,
)
from zoo_build.compact_vq import DEFAULT_CODES, DEFAULT_ITERATIONS, compact_vq
from zoo_build.refit_decoder import RefitConfig

REFIT_OPTIONS = (
    Option(
        "--refit-steps",
        "steps",
        "then train only the decoder on the new codes for this many steps (0: keep it);"
        " tokens do not change, so a base trained on them stays valid",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo compact-vq`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo compact-vq",
        description=(
            "Replace a trained tokenizer's codebook by K k-means centroids of its encoder"
            " outputs on its training images (fewer near-duplicate codes for the base to"
            " predict); the encoder and decoder are unchanged."
        ),
    )
    parser.add_argument("--vq", type=Path, required=True, help="`zoo train vq` run folder")
    add_data_option(parser)
    add_out_option(parser, help="folder to write")
    parser.add_argument("--codes", type=int, default=DEFAULT_CODES, help="new codebook size")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    add_config_options(parser, RefitConfig(), REFIT_OPTIONS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo compact-vq --vq DIR --data DIR --out DIR [--codes K]`.

    Returns:
        The exit code (2, with the reason on stderr, for a bad --codes or a missing file).
    """
    args = build_parser().parse_args(argv)
    try:
        refit = config_from_args(RefitConfig(), args, REFIT_OPTIONS)
        path = compact_vq(args.vq, args.data, args.out, args.codes, args.iterations, refit=refit)
    except (ValueError, FileNotFoundError) as error:
        return refuse(error)
    print(f"Wrote {path}")
    return 0
