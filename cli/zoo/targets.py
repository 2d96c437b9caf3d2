"""`styledrop zoo targets`: measure a zoo on Zoo v2's targets (`zoo_build.targets`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.decoding_options import content_first_fraction
from cli.errors import UserError
from styledrop.demo import DemoConfig
from styledrop.prompt_sets import world_prompts
from styledrop.zoo.embedded import zoo_dir
from zoo_build.targets import TargetsConfig, load_targets, markdown_table, measure_targets


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo targets`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo targets",
        description=(
            "Measures a zoo on the targets a new default zoo must meet, in one run: `zoo"
            " report` (tokenizer PSNR, t2i_top1, held-out descriptors, the recognisability"
            " check), a timed generation of 16 images, the demo, a round-1 adapter on the"
            " held-out watercolor house, and optionally the feedback-rounds experiment."
            " Writes targets.json, targets.md and every part's outputs into --out, as it"
            " goes. About 10 minutes for the committed zoo on 2 CPU cores (the rounds at"
            " K 64 add about 30)."
        ),
    )
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (default: embedded)")
    parser.add_argument(
        "--data", type=Path, required=True,
        help="emoji-world dataset of the zoo's recipe (`styledrop zoo data --out DIR`)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument(
        "--t2i-subjects", type=int, default=0,
        help="subjects the report's base draws, spread over the vocabulary (0: all, the"
        " targets' setting)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw and fine-tune")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo")
    parser.add_argument(
        "--no-watercolor", action="store_true", help="skip the watercolor round-1 evaluation"
    )
    parser.add_argument(
        "--rounds", type=int, nargs=2, metavar=("K", "N"), default=None,
        help="also run the feedback rounds on the watercolor house: K pool images per round"
        " prompt, N evaluation images per world prompt (the paper's size: 64 16)",
    )  # fmt: skip
    parser.add_argument(
        "--content-first", type=content_first_fraction, metavar="F",
        help="the content first of the demo's, the watercolor's and the rounds' StyleDrop"
        " draws (default: the zoo's own; 0: the paper's rule)",
    )  # fmt: skip
    parser.add_argument(
        "--against", type=Path, action="append", default=[],
        help="another zoo's targets.json to print beside this one (repeatable)",
    )  # fmt: skip
    return parser


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo targets [--zoo DIR] --data DIR --out DIR [--rounds K N]`.

    Prints the targets table (Markdown) on stdout, and the stages on stderr.

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    if not all((args.data / name).is_file() for name in ("manifest.json", "heldout.npz")):
        raise UserError(
            f"--data {args.data} is not an emoji-world dataset with its held-out styles (a"
            f" `zoo build` work folder's world has none); write one with `styledrop zoo data"
            f" --out {args.data}`."
        )
    others = []
    for path in args.against:
        try:
            others.append(load_targets(path))
        except (OSError, ValueError) as error:  # JSONDecodeError is a ValueError
            raise UserError(f"--against {path}: {error}") from error
    zoo = args.zoo or zoo_dir()
    if not (zoo / "model.json").is_file():
        raise UserError(
            f"--zoo {zoo} holds no model.json; give a zoo folder (`zoo unshard` writes one)."
        )
    if args.rounds and min(args.rounds) < 1:
        raise UserError("--rounds K N: both must be at least 1.")
    rounds = args.rounds or (0, 16)
    config = TargetsConfig(
        t2i_subjects=None if args.t2i_subjects <= 0 else args.t2i_subjects,
        seed=args.seed,
        demo=None if args.no_demo else DemoConfig(),
        watercolor_prompts=None if args.no_watercolor else world_prompts(),
        rounds_pool=rounds[0],
        rounds_images_per_prompt=rounds[1],
        content_first=args.content_first,
    )
    record = measure_targets(zoo, args.data, args.out, config, log=_log)
    print("\n".join(markdown_table([record, *others])))
    _log(f"Wrote {args.out / 'targets.json'} and {args.out / 'targets.md'}")
    return 0
