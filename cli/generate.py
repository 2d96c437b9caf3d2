"""`styledrop generate`: text-to-image with the base, or in a style with adapters."""

from __future__ import annotations

from pathlib import Path

from cli.decoding_options import add_content_first_option
from cli.errors import UserError
from styledrop.terms import DEFAULT_GAMMA, DEFAULT_LAMBDA_A


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "generate",
        help="Generate images from text prompts.",
        description="Generates N images per prompt and writes them as one grid image.",
    )
    parser.add_argument(
        "--base", type=Path, help="model folder (default: the embedded emoji-world zoo)"
    )
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
    parser.add_argument(
        "--guidance-scale",
        type=float,
        help="CFG scale of the base alone (default: the model's; 10 for aMUSEd, 1.5 for the"
        " zoo); with --adapter, --lambda-b sets it",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help="decoding steps (default: the model's; 12 for aMUSEd, 36 for the zoo)",
    )
    parser.add_argument(
        "--temperature", type=float, nargs="+", help="start [end] of the Gumbel temperature"
    )
    parser.add_argument(
        "--token-temperature",
        type=float,
        help="softmax temperature of each token draw; below 1 is closer to the most likely"
        " token (model default: 1 for aMUSEd; the zoo's model.json sets its own)",
    )
    parser.add_argument(
        "--decoding", choices=["amused", "maskgit"], help="re-masking rule (default: the model's)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="images per compiled batch")
    parser.add_argument("--adapter", type=Path, help="style adapter file (StyleDrop guidance)")
    parser.add_argument(
        "--subject-adapter", type=Path, help="subject adapter to compose with the style"
    )
    parser.add_argument(
        "--gamma", type=float, default=DEFAULT_GAMMA, help="subject weight (0.5-0.7)"
    )
    parser.add_argument(
        "--lambda-a",
        type=float,
        default=DEFAULT_LAMBDA_A,
        help="StyleDrop guidance towards the style",
    )
    parser.add_argument(
        "--lambda-b",
        type=float,
        help="StyleDrop classifier-free guidance (default: the base's, else the paper's 5)",
    )
    add_content_first_option(parser)
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="compute precision"
    )
    parser.set_defaults(run=run)


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    from tqdm import tqdm

    import muse
    from muse.checkpoint import read_model_json
    from styledrop.images import IMAGE_SUFFIXES, make_grid, save_image
    from styledrop.zoo.embedded import embedded_base

    if args.out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"--out must end in one of {', '.join(IMAGE_SUFFIXES)}: {args.out}")
    if args.num_images < 1:
        raise UserError("-n must be at least 1.")
    if args.token_temperature is not None and args.token_temperature <= 0:
        raise UserError(f"--token-temperature must be positive, got {args.token_temperature}.")
    if args.adapter and args.guidance_scale is not None:
        raise UserError(
            "--guidance-scale is the base's own guidance; with --adapter, StyleDrop guidance"
            " takes --lambda-a and --lambda-b (lambda_B = guidance scale - 1)."
        )
    args.base = args.base or embedded_base()
    read_model_json(args.base)  # fail fast, before loading anything heavy
    temperature = None
    if args.temperature:
        if len(args.temperature) > 2:
            raise UserError("--temperature takes one value (start) or two (start end).")
        temperature = args.temperature[0] if len(args.temperature) == 1 else tuple(args.temperature)
    if args.subject_adapter and not args.adapter:
        raise UserError("--subject-adapter needs a style --adapter to compose with.")
    pipe = muse.load(args.base, dtype=args.dtype)
    total = len(args.prompt) * args.num_images
    with tqdm(total=total, unit="img", desc="generating") as bar:

        def progress(done: int, _total: int) -> None:
            bar.update(done - bar.n)

        if args.adapter:
            images = _generate_styled(pipe, args, temperature, progress)
        else:
            images = pipe.generate(
                args.prompt,
                num_images_per_prompt=args.num_images,
                seed=args.seed,
                negative_prompt=args.negative_prompt,
                guidance_scale=args.guidance_scale,
                num_steps=args.steps,
                temperature=temperature,
                token_temperature=args.token_temperature,
                style=args.decoding,
                batch_size=args.batch_size,
                progress=progress,
            )
    save_image(make_grid(images, columns=args.num_images), args.out)
    if args.individual:
        for index, image in enumerate(images):
            save_image(image, args.out.with_name(f"{args.out.stem}-{index:03d}{args.out.suffix}"))
    print(f"Wrote {total} images to {args.out}")


def _generate_styled(pipe, args, temperature, progress):
    from styledrop.adapted import attach_adapter, generate_styled
    from styledrop.guidance import model_guidance

    style = attach_adapter(pipe, args.adapter)
    subject = attach_adapter(pipe, args.subject_adapter) if args.subject_adapter else None
    return generate_styled(
        pipe,
        style,
        args.prompt,
        num_images_per_prompt=args.num_images,
        seed=args.seed,
        scales=model_guidance(
            pipe.config.sampling, args.lambda_a, args.lambda_b, args.content_first
        ),
        negative_prompt=args.negative_prompt,
        subject=subject,
        gamma=args.gamma,
        batch_size=args.batch_size,
        progress=progress,
        temperature=temperature,
        token_temperature=args.token_temperature,
        num_steps=args.steps,
        decoding=args.decoding,
    )
