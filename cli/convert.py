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
            " scheduler/; .safetensors, fp16 variants too) from a local path or a Hub repo id,"
            " checks every tensor name and shape, and writes the native folder used by every"
            " other command. A repo id is read from the Hugging Face cache ($HF_HUB_CACHE);"
            " what conversion needs and the cache lacks is downloaded into it first, unless"
            " --offline or HF_HUB_OFFLINE=1."
        ),
    )
    parser.add_argument("source", help="diffusers folder, or a Hub repo id (amused/amused-256)")
    parser.add_argument("destination", type=Path, help="output folder for the converted model")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never download: a repo id must be in the Hugging Face cache (as HF_HUB_OFFLINE=1)",
    )
    parser.set_defaults(run=run)


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    from muse.convert import convert_diffusers

    out = convert_diffusers(
        args.source, args.destination, overwrite=args.overwrite, offline=args.offline
    )
    print(f"Converted {args.source} -> {out}")
