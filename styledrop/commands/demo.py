"""`styledrop demo`: round 1 of StyleDrop on the embedded zoo, with a report."""

from __future__ import annotations

from pathlib import Path

from styledrop.commands.errors import UserError


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "demo",
        help="Fit a style adapter to the shipped style image and draw other subjects in it.",
        description=(
            "Draws the demo subjects with the base (descriptor only), fits a round-1 adapter"
            " to one style image (default: the line-art house shipped with the package), draws"
            " them again with StyleDrop guidance, scores both with the judge CLIP and writes"
            " OUT/report.html. Offline, a few minutes on a CPU."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--base", type=Path, help="model folder with judge/ (default: the zoo)")
    parser.add_argument("--style-image", type=Path, help="style image (default: shipped one)")
    parser.add_argument("--caption", help='content caption of the style image ("a house")')
    parser.add_argument("--descriptor", help="style descriptor appended to prompts")
    parser.add_argument("--steps", type=int, help="fine-tuning steps")
    parser.add_argument("-n", "--images-per-prompt", type=int, help="samples per prompt")
    parser.add_argument("--seed", type=int, help="seed of fine-tuning and sampling")
    parser.set_defaults(run=run)


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    import dataclasses

    from tqdm import tqdm

    from styledrop.demo import DemoConfig, run_demo

    if args.style_image is not None and args.caption is None:
        raise UserError("--style-image needs --caption: what the image shows ('a teapot').")
    overrides = {
        "caption": args.caption,
        "descriptor": args.descriptor,
        "steps": args.steps,
        "images_per_prompt": args.images_per_prompt,
        "seed": args.seed,
    }
    given = {key: value for key, value in overrides.items() if value is not None}
    config = dataclasses.replace(DemoConfig(), **given)
    if config.steps < 1 or config.images_per_prompt < 1:
        raise UserError("--steps and -n must be at least 1.")
    bar = tqdm(total=config.steps, unit="step", desc="demo")

    def on_stage(line: str) -> None:
        bar.set_description_str(line[:40])
        bar.refresh()

    def on_step(event) -> None:
        bar.n = event.step
        bar.set_postfix(loss=f"{event.loss:.3f}", eta=f"{event.eta_seconds:.0f}s")
        bar.refresh()

    summary = run_demo(
        args.out, config, base=args.base, style_image=args.style_image,
        on_step=on_step, on_stage=on_stage,
    )  # fmt: skip
    bar.close()
    for name, scores in summary.get("scores", {}).items():
        print(f"{name:24s} style {scores['style']:.3f}  text {scores['text']:.3f}")
    print(f"Wrote {args.out / 'report.html'}")
