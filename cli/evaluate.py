"""`styledrop evaluate`: CLIP text / style / leakage scores of adapters against the base."""

from __future__ import annotations

from pathlib import Path

from cli.clip_options import add_clip_options, load_scorer
from cli.decoding_options import (
    add_content_first_option,
    add_temperature_options,
    checked_temperatures,
)
from cli.errors import UserError
from cli.text_table import print_table
from cli.training_options import add_dtype_option, compute_dtype
from styledrop.terms import DEFAULT_LAMBDA_A, without_descriptor


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Score adapters with CLIP (text, style, leakage) on a prompt set.",
        description=(
            "Draws n images per prompt with each adapter (StyleDrop guidance) and with the base"
            " given the style descriptor only, scores them with CLIP, and writes the mean and"
            " standard error of each score per method as JSON and an HTML report with grids."
        ),
    )
    parser.add_argument(
        "--adapter", action="append", required=True, metavar="[NAME=]FILE",
        help="adapter file to evaluate (repeat to compare several)",
    )  # fmt: skip
    parser.add_argument(
        "--reference", nargs="+", type=Path, required=True, help="the style reference image(s)"
    )
    parser.add_argument(
        "--reference-caption",
        help="content caption of the reference, for leakage (default: from the first adapter)",
    )
    parser.add_argument(
        "--prompts", default=None,
        help="parti190, world, rounds, or a file with one prompt per line (default: parti190)",
    )  # fmt: skip
    parser.add_argument("-n", "--images-per-prompt", type=int, default=8, help="paper: 8")
    parser.add_argument("--base", type=Path, help="model folder (default: the embedded zoo)")
    add_dtype_option(parser)
    add_clip_options(parser)
    parser.add_argument("--no-base-method", action="store_true", help="skip the base row")
    parser.add_argument(
        "--heldout-style", help="emoji-world held-out style: also score against ground truth"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (same per method)")
    parser.add_argument(
        "--lambda-a", type=float, default=DEFAULT_LAMBDA_A, help="StyleDrop guidance"
    )
    parser.add_argument(
        "--lambda-b",
        type=float,
        help="classifier-free guidance (default: the base's, else the paper's 5)",
    )
    add_temperature_options(parser, "", "every method's draws")
    add_content_first_option(parser)
    parser.add_argument("--json", type=Path, required=True, help="figures and provenance")
    parser.add_argument("--html", type=Path, required=True, help="report with image grids")
    parser.set_defaults(run=run)


def parse_adapters(values: list[str]) -> list[tuple[str, Path]]:
    """`[NAME=]FILE` arguments -> (name, path); the default name is the file's folder/stem."""
    out = []
    for value in values:
        name, _, path = value.rpartition("=") if "=" in value else ("", "", value)
        path = Path(path)
        if not path.is_file():
            raise UserError(f"--adapter {value!r}: no such file.")
        out.append((name or f"{path.parent.name}/{path.stem}", path))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise UserError("Two --adapter entries have the same name; name them NAME=FILE.")
    return out


def reference_caption_from(metadata: dict, descriptor: str) -> str | None:
    """The round-1 content caption recorded in an adapter file, without the descriptor."""
    prompts = metadata.get("training_prompts") or []
    if str(metadata.get("round", 1)) != "1" or not prompts:
        return None
    return without_descriptor(str(prompts[0]), descriptor) or None


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    import numpy as np

    from adapters.files import read_adapter_file
    from styledrop.evaluation import BASE_METHOD, Method, evaluate, write_html, write_json
    from styledrop.inputs import load_images
    from styledrop.prompt_sets import load_prompt_set
    from styledrop.zoo.embedded import embedded_base, is_emoji_world

    if args.images_per_prompt < 1:
        raise UserError("-n must be at least 1.")
    temperature, token_temperature = checked_temperatures(args, "")
    base = args.base or embedded_base()
    adapters = parse_adapters(args.adapter)
    references = np.stack([image.pixels for image in load_images(args.reference)])
    first = read_adapter_file(adapters[0][1])
    descriptor = str(first.metadata.get("descriptor", ""))
    caption = args.reference_caption or reference_caption_from(first.metadata, descriptor)
    if not caption:
        raise UserError("Give --reference-caption: the content of the reference ('a house').")
    world_only = is_emoji_world(base)
    try:
        prompt_set = load_prompt_set(args.prompts or "parti190", world_only)
    except ValueError as error:
        raise UserError(str(error)) from error
    scorer = load_scorer(args, base)
    methods = [] if args.no_base_method else [Method(BASE_METHOD)]
    methods += [Method(name, path) for name, path in adapters]
    print(f"Prompt set {prompt_set.name}: {prompt_set.note}.")
    evaluation = evaluate(
        base, methods, prompt_set, descriptor, references, caption, scorer,
        images_per_prompt=args.images_per_prompt, seed=args.seed, lambda_a=args.lambda_a,
        lambda_b=args.lambda_b, content_first=args.content_first,
        heldout_style=args.heldout_style,
        dtype=compute_dtype(args.dtype), temperature=temperature,
        token_temperature=token_temperature, log=print,
    )  # fmt: skip
    write_json(evaluation, args.json)
    write_html(evaluation, args.html, references)
    print_table([evaluation.headers(), *evaluation.table()])
    if evaluation.comparisons:
        print("Paired by prompt (mean of per-prompt differences ± its standard error):")
        print_table(evaluation.comparison_table())
    print(f"Wrote {args.json} and {args.html}")
