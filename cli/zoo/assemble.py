"""`styledrop zoo assemble`: copy the trained parts into one zoo folder (`zoo_build.assemble`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from cli.decoding_options import content_first_fraction
from cli.errors import UserError
from styledrop.zoo.embedded import EMBEDDED_ZOO, MANIFEST
from zoo_build.assemble import ZOO_CONTENT_FIRST, ZOO_GUIDANCE_SCALE, assemble_zoo
from zoo_build.dataset import MANIFEST_FILE, recipe_version


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo assemble`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo assemble",
        description=(
            "Copies the trained parts into one native model folder with a manifest (default:"
            " the package's embedded zoo, which then becomes the default --base)."
        ),
    )
    parser.add_argument("--base", type=Path, required=True, help="`zoo train base` run folder")
    zoo = "or a zoo folder (its part and its training record are kept)"
    parser.add_argument(
        "--vq",
        type=Path,
        required=True,
        help=f"`zoo train vq`, `zoo compact-vq` or `zoo refit-decoder` run folder, {zoo}",
    )
    parser.add_argument(
        "--text",
        type=Path,
        required=True,
        help=f"`zoo train text` or `zoo train descriptor-invariance` run folder, {zoo}",
    )
    parser.add_argument(
        "--judge", type=Path, required=True, help=f"`zoo train judge` run folder, {zoo}"
    )
    parser.add_argument("--data", type=Path, help="dataset folder (for its recipe version)")
    parser.add_argument("--out", type=Path, default=EMBEDDED_ZOO, help="destination folder")
    parser.add_argument(
        "--guidance", type=float, default=ZOO_GUIDANCE_SCALE,
        help="the base's default classifier-free guidance scale",
    )  # fmt: skip
    parser.add_argument(
        "--styledrop-lambda-b", type=float,
        help="StyleDrop guidance lambda_B stored with the zoo (default: none, the paper's 5"
        " applies; the 16x16 zoo measured best at 0.5, its own strength --guidance - 1)",
    )  # fmt: skip
    parser.add_argument(
        "--styledrop-content-first", type=content_first_fraction, default=ZOO_CONTENT_FIRST,
        metavar="F",
        help="the fraction of decoding steps StyleDrop draws give the content prompt alone,"
        " stored with the zoo (default: %(default)s; 0: the paper's rule)",
    )  # fmt: skip
    parser.add_argument(
        "--lineage-from", type=Path,
        help="the zoo the base (or its oldest --earlier-base-runs piece) was warm-started"
        " from, when it is not --out; its base record is kept in the manifest",
    )  # fmt: skip
    parser.add_argument(
        "--earlier-base-runs", type=Path, nargs="+", default=[], metavar="RUN",
        help="a base trained in pieces: the base runs --base continued, newest first; each"
        " record is kept in the manifest, checked against where the next piece started",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo assemble --base DIR --vq DIR --text DIR --judge DIR [--out DIR]`.

    Returns:
        The exit code.

    Raises:
        UserError: `--data` names a folder without a dataset manifest, or
            `--earlier-base-runs` are not the pieces the base continued.
    """
    args = build_parser().parse_args(argv)
    recipe = ""
    if args.data is not None:
        if not (args.data / MANIFEST_FILE).is_file():
            raise UserError(f"{args.data} holds no {MANIFEST_FILE}: is it a `zoo data` folder?")
        recipe = recipe_version(args.data) or ""
    try:
        out = assemble_zoo(
            args.base, args.vq, args.text, args.out, judge_dir=args.judge,
            data_recipe_version=recipe, guidance_scale=args.guidance,
            styledrop_lambda_b=args.styledrop_lambda_b,
            styledrop_content_first=args.styledrop_content_first, lineage_from=args.lineage_from,
            earlier_base_runs=args.earlier_base_runs,
        )  # fmt: skip
    except ValueError as error:  # the pieces of a base do not chain
        raise UserError(str(error)) from error
    manifest = json.loads((out / MANIFEST).read_text())
    print(f"Wrote {out} ({manifest['bytes'] / 1e6:.1f} MB in {len(manifest['files'])} files)")
    return 0
