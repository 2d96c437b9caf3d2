"""`styledrop rounds`: the paper's feedback experiment, round 1 to the evaluation table."""

from __future__ import annotations

from pathlib import Path

from cli.clip_options import add_clip_options, load_scorer
from cli.decoding_options import (
    add_content_first_option,
    add_temperature_options,
    checked_temperatures,
)
from cli.errors import UserError
from cli.finetune import parse_captions
from cli.text_table import print_table
from cli.training_options import add_dtype_option, compute_dtype
from styledrop.terms import ADAPTER_KINDS, DEFAULT_CAPTION, DEFAULT_LAMBDA_A, DEFAULT_STEPS


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "rounds",
        help="Round 1, candidate pool, CLIP/random selection, round 2, evaluation table.",
        description=(
            "Fits a round-1 adapter to the style image(s), draws K images for each of 30 fixed"
            " prompts, selects with CLIP feedback (best text score per prompt) and at random"
            " (same count), fits a round-2 adapter on each selection, and evaluates the base"
            " with the descriptor, round 1 and both round-2 adapters. Rerunning with the same"
            " --out skips finished stages."
        ),
    )
    parser.add_argument("images", nargs="+", type=Path, help="style image(s)")
    parser.add_argument("--descriptor", required=True, help="style descriptor")
    parser.add_argument(
        "--caption", action="append", default=[], metavar="IMAGE=TEXT",
        help="content caption of a style image (default 'an image')",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="experiment folder")
    parser.add_argument("--base", type=Path, help="model folder (default: the embedded zoo)")
    parser.add_argument(
        "--prompts", default="parti190", help="evaluation prompts: parti190, world or a file"
    )
    parser.add_argument("--pool-k", type=int, default=8, help="pool images per prompt (paper 64)")
    parser.add_argument(
        "--picks-per-prompt", type=int, default=1,
        help="images CLIP feedback keeps per round prompt, best first (paper 1; the random"
        " control takes as many)",
    )  # fmt: skip
    parser.add_argument("-n", "--images-per-prompt", type=int, default=8, help="eval images")
    parser.add_argument("--round1-steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--round2-steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--round1-lr", type=float, help="default: the adapter kind's")
    parser.add_argument("--round2-lr", type=float, help="default: the adapter kind's")
    parser.add_argument(
        "--round2-adapter", choices=ADAPTER_KINDS, default="r2",
        help="round-2 adapter kind (paper r2: bottleneck 32, not shared)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lambda-a", type=float, default=DEFAULT_LAMBDA_A, help="StyleDrop guidance"
    )
    parser.add_argument(
        "--lambda-b",
        type=float,
        help="classifier-free guidance (default: the base's, else the paper's 5)",
    )
    add_dtype_option(parser)
    add_clip_options(parser)
    add_temperature_options(parser, "pool-", "the pool's draws")
    add_content_first_option(parser)
    parser.add_argument(
        "--heldout-style", help="emoji-world held-out style: also score against ground truth"
    )
    parser.set_defaults(run=run)


def paper_table(evaluation) -> list[list[str]]:
    """The paper's table: a row per score (text, style, leakage, ...), a column per method."""
    summaries = [(m.name, m.summary()) for m in evaluation.methods]
    rows = [["", *[name for name, _ in summaries]]]
    for key in evaluation.score_keys():
        rows.append([key, *[f"{s[key]:.3f} ± {s[key + '_stderr']:.3f}" for _, s in summaries]])
    return rows


def selection_table(figures: dict[str, dict[str, float]]) -> list[list[str]]:
    """A header row, then one row per image set (pool, each selection) with its means."""
    present = next(iter(figures.values()))
    keys = [k for k in ("text", "style", "leakage", "subject_named") if k in present]
    rows = [["images", "count", *keys]]
    for name, values in figures.items():
        rows.append([name, str(int(values["images"])), *[f"{values[k]:.3f}" for k in keys]])
    return rows


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    from tqdm import tqdm

    from styledrop.dataset import StyleExample
    from styledrop.inputs import load_images
    from styledrop.prompt_sets import load_prompt_set
    from styledrop.rounds import RoundsConfig, check_stage_settings, run_rounds, stage_settings
    from styledrop.zoo.embedded import embedded_base, is_emoji_world

    for name in ("pool_k", "picks_per_prompt", "images_per_prompt", "round1_steps",
                 "round2_steps"):  # fmt: skip
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1.")
    pool_temperature, pool_token_temperature = checked_temperatures(args, "pool-")
    base = args.base or embedded_base()
    captions = parse_captions(args.caption, args.images)
    loaded = load_images(args.images)
    examples = [
        StyleExample(image.pixels, captions.get(path, DEFAULT_CAPTION), image.name, image.sha256)
        for path, image in zip(args.images, loaded, strict=True)
    ]
    world_only = is_emoji_world(base)
    try:
        prompts = load_prompt_set(args.prompts, world_only)
    except ValueError as error:
        raise UserError(str(error)) from error
    scorer = load_scorer(args, base)
    try:
        config = RoundsConfig(
            round1_steps=args.round1_steps, round1_lr=args.round1_lr,
            round2_steps=args.round2_steps, round2_lr=args.round2_lr,
            round2_adapter=args.round2_adapter, pool_images_per_prompt=args.pool_k,
            eval_images_per_prompt=args.images_per_prompt, seed=args.seed,
            lambda_a=args.lambda_a, lambda_b=args.lambda_b, content_first=args.content_first,
            dtype=compute_dtype(args.dtype),
            pool_temperature=pool_temperature, pool_token_temperature=pool_token_temperature,
            picks_per_prompt=args.picks_per_prompt,
        )  # fmt: skip
        check_stage_settings(
            args.out, stage_settings(Path(base), examples, args.descriptor, config)
        )
    except ValueError as error:
        raise UserError(str(error)) from error
    bar = tqdm(unit="step", desc="rounds")

    def on_step(event) -> None:
        bar.total = event.total
        bar.n = event.step
        bar.set_postfix(loss=f"{event.loss:.3f}")
        bar.refresh()

    def log(line: str) -> None:
        bar.set_description_str(line[:48])
        bar.write(line)

    evaluation = run_rounds(
        base, examples, args.descriptor, args.out, scorer, prompts, config,
        reference_caption=examples[0].caption, heldout_style=args.heldout_style,
        log=log, on_step=on_step,
    )  # fmt: skip
    bar.close()
    print(f"Prompt set {prompts.name}: {prompts.note}; CLIP {scorer.name}.")
    print_table(paper_table(evaluation))
    print("Paired by prompt (mean of per-prompt differences ± its standard error):")
    print_table(evaluation.comparison_table())
    print("What feedback picked from the pool (means over the images):")
    print_table(selection_table(evaluation.provenance["feedback_selection"]))
    print(f"Wrote {args.out / 'evaluation.json'} and {args.out / 'evaluation.html'}")
