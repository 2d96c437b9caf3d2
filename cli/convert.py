"""`styledrop convert`: convert a diffusers aMUSEd checkpoint into the native folder."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "convert",
        help="Convert a diffusers aMUSEd checkpoint into the native model folder.",
        description=(
            "Reads a diffusers-layout folder (transformer/, vqvae/, text_encoder/, tokenizer/,"
            " scheduler/; .safetensors, fp16 variants too) from a local path or a repo id in"
            " the Hugging Face cache (nothing is downloaded), checks every tensor name and"
            " shape, and writes the native folder used by every other command."
        ),
    )
    parser.add_argument("source", help="diffusers folder, or a cached repo id (amused/amused-256)")
    parser.add_argument("destination", type=Path, help="output folder for the converted model")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(run=run)


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    from muse.convert import convert_diffusers

    out = convert_diffusers(args.source, args.destination, overwrite=args.overwrite)
    print(f"Converted {args.source} -> {out}")
