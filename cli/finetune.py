"""`styledrop finetune`: fit a StyleDrop adapter to one or a few style images."""

from __future__ import annotations

from pathlib import Path

from cli.errors import UserError
from cli.training_options import (
    add_dtype_option,
    add_optimizer_options,
    add_preview_options,
    add_style_image_options,
    compute_dtype,
)
from styledrop.terms import ADAPTER_KINDS, DEFAULT_CAPTION


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "finetune",
        help="Fit a style adapter to one or a few images.",
        description=(
            "Trains a StyleDrop adapter on (image, 'caption + descriptor') pairs and writes"
            " OUT/adapter.safetensors. Rerunning with the same OUT resumes from its last"
            " checkpoint."
        ),
    )
    add_style_image_options(parser)
    parser.add_argument(
        "--base", type=Path, help="model folder (default: the embedded emoji-world zoo)"
    )
    parser.add_argument(
        "--adapter", choices=ADAPTER_KINDS, default="r1",
        help="r1: paper round 1 (bottleneck 4, shared); r2: bottleneck 32 per layer; lora",
    )  # fmt: skip
    parser.add_argument("--bottleneck", type=int, help="adapter bottleneck (r1: 4, r2: 32)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    add_optimizer_options(parser)
    parser.add_argument("--round", type=int, default=1, choices=[1, 2], help="training round")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps per checkpoint")
    add_dtype_option(parser)
    add_preview_options(parser)
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.set_defaults(run=run)


def parse_captions(pairs: list[str], images: list[Path]) -> dict[Path, str]:
    """Maps `IMAGE=TEXT` arguments to the given image paths (by path or by file name)."""
    captions: dict[Path, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--caption takes IMAGE=TEXT, got {pair!r}.")
        key, text = pair.split("=", 1)
        matches = [p for p in images if str(p) == key or p.name == key]
        if not matches:
            raise UserError(f"--caption names {key!r}, which is not one of the images.")
        for path in matches:
            captions[path] = text.strip()
    return captions


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    from styledrop.inputs import load_images

    if args.steps < 1:
        raise UserError("--steps must be at least 1.")
    captions = parse_captions(args.caption, args.images)
    loaded = load_images(args.images)  # every image checked before JAX loads (seconds)

    from tqdm import tqdm

    import muse
    from adapters import AdapterSpec
    from muse.checkpoint import read_model_json
    from styledrop.dataset import StyleExample
    from styledrop.finetune import FinetuneConfig, finetune
    from styledrop.images import make_grid, save_image
    from styledrop.zoo.embedded import embedded_base

    args.base = args.base or embedded_base()
    read_model_json(args.base)
    config = FinetuneConfig(
        adapter=AdapterSpec.from_options(args.adapter, args.bottleneck, args.rank),
        steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        preview_every=args.preview_every,
        preview_prompts=tuple(args.preview_prompt),
        round=args.round,
    )
    examples = [
        StyleExample(image.pixels, captions.get(path, DEFAULT_CAPTION), image.name, image.sha256)
        for path, image in zip(args.images, loaded, strict=True)
    ]
    pipe = muse.load(args.base, dtype=compute_dtype(args.dtype))
    bar = tqdm(total=config.steps, unit="step", desc="fine-tuning")

    def progress(event) -> None:
        bar.n = event.step
        bar.set_postfix(loss=f"{event.loss:.3f}", tok_s=f"{event.tokens_per_second:.0f}")
        bar.refresh()
        if event.previews is not None and len(event.previews):
            save_image(make_grid(event.previews), args.out / f"preview-{event.step:06d}.png")

    result = finetune(pipe, examples, args.descriptor, config, args.out, progress=progress)
    bar.close()
    print(f"Wrote {result.adapter_path} (final loss {result.final_loss:.4f})")
