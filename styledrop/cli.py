"""The `styledrop` command line.

Heavy libraries (JAX, PyTorch) are imported inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UserError(Exception):
    """An error caused by the user's input: printed without a traceback."""


def _add_convert(subparsers) -> None:
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
    parser.set_defaults(run=_run_convert)


def _run_convert(args) -> None:
    from muse.convert import convert_diffusers

    out = convert_diffusers(args.source, args.destination, overwrite=args.overwrite)
    print(f"Converted {args.source} -> {out}")


def _add_generate(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="Generate images from text prompts.",
        description="Generates N images per prompt and writes them as one grid image.",
    )
    parser.add_argument("--base", type=Path, required=True, help="converted model folder")
    parser.add_argument(
        "--prompt", action="append", required=True, help="text prompt (repeat for several)"
    )
    parser.add_argument("-n", "--num-images", type=int, default=4, help="images per prompt")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    parser.add_argument("--out", type=Path, required=True, help="output grid (.png/.jpg/.webp)")
    parser.add_argument(
        "--individual", action="store_true", help="also save each image next to the grid"
    )
    parser.add_argument("--negative-prompt", default="", help="prompt to steer away from")
    parser.add_argument("--guidance-scale", type=float, help="CFG scale (model default: 10)")
    parser.add_argument("--steps", type=int, help="decoding steps (model default: 12)")
    parser.add_argument(
        "--temperature", type=float, nargs="+", help="start [end] of the Gumbel temperature"
    )
    parser.add_argument(
        "--decoding", choices=["amused", "maskgit"], help="re-masking rule (default: amused)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="images per compiled batch")
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="compute precision"
    )
    parser.set_defaults(run=_run_generate)


def _run_generate(args) -> None:
    from tqdm import tqdm

    import muse
    from muse.checkpoint import read_model_json
    from styledrop.images import IMAGE_SUFFIXES, make_grid, save_image

    if args.out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"--out must end in one of {', '.join(IMAGE_SUFFIXES)}: {args.out}")
    if args.num_images < 1:
        raise UserError("-n must be at least 1.")
    read_model_json(args.base)  # fail fast, before loading anything heavy
    temperature = None
    if args.temperature:
        if len(args.temperature) > 2:
            raise UserError("--temperature takes one value (start) or two (start end).")
        temperature = args.temperature[0] if len(args.temperature) == 1 else tuple(args.temperature)
    pipe = muse.load(args.base, dtype=args.dtype)
    total = len(args.prompt) * args.num_images
    with tqdm(total=total, unit="img", desc="generating") as bar:

        def progress(done: int, _total: int) -> None:
            bar.update(done - bar.n)

        images = pipe.generate(
            args.prompt,
            num_images_per_prompt=args.num_images,
            seed=args.seed,
            negative_prompt=args.negative_prompt,
            guidance_scale=args.guidance_scale,
            num_steps=args.steps,
            temperature=temperature,
            style=args.decoding,
            batch_size=args.batch_size,
            progress=progress,
        )
    save_image(make_grid(images, columns=args.num_images), args.out)
    if args.individual:
        for index, image in enumerate(images):
            save_image(image, args.out.with_name(f"{args.out.stem}-{index:03d}{args.out.suffix}"))
    print(f"Wrote {total} images to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="styledrop",
        description="StyleDrop on Muse / aMUSEd in JAX: convert models, generate, fine-tune.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_convert(subparsers)
    _add_generate(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `styledrop` console script. Returns the exit code."""
    args = build_parser().parse_args(argv)
    from muse.checkpoint import CheckpointError
    from muse.convert import ConversionError
    from muse.tokenizer import TokenizerNotFoundError
    from muse.weights import WeightsError

    user_errors = (
        UserError,
        CheckpointError,
        ConversionError,
        TokenizerNotFoundError,
        WeightsError,
    )
    try:
        args.run(args)
    except user_errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
