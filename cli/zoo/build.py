"""`styledrop zoo build`: the zoo's models in one run within a wall-clock budget.

Every field of `zoo_build.build.BuildConfig` is an option (`--vq-codes`, `--base-width`,
...), its help the field's line in the class docstring (`cli.zoo.options`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cli.zoo.options import (
    add_config_options,
    add_out_option,
    config_from_args,
    documented_options,
    refuse,
    split_counts,
)
from zoo_build.build import BuildConfig, BuildConfigError, build_zoo
from zoo_build.pack import PackError

# Options named otherwise than their fields: the other zoo steps' names.
FLAGS = {
    "time_budget_s": "--time-budget",
    "text_dir": "--text",
    "judge_dir": "--judge",
    "init_dir": "--init",
}
OPTIONS = documented_options(BuildConfig, FLAGS, types={"draws": split_counts})


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo build`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo build",
        description=(
            "Build the zoo's VQ tokenizer and base U-ViT within --time-budget seconds on the JAX"
            " backend present (a GPU, or this CPU): render the world from a data pack, probe each"
            " trainer's step time, size its schedule to the time left, train, assemble the zoo"
            " (float16) and write it as safetensors shards to --results, with a grid of samples."
            " The log and a summary are written as it goes. Rerun the same command to resume."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="data pack (styledrop zoo pack)")
    add_out_option(parser, help="work folder (the world, checkpoints, the zoo)")
    parser.add_argument(
        "--results", type=Path, help="log, summary, shards and samples (default: OUT/results)"
    )
    add_config_options(parser, BuildConfig(), OPTIONS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the build. Returns the exit code (2: bad options or a missing pack)."""
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(BuildConfig(), args, OPTIONS)
        zoo = build_zoo(args.data, args.out, config, results_dir=args.results)
    except (BuildConfigError, PackError, FileNotFoundError) as error:
        return refuse(error)
    print(f"Wrote {zoo}")
    return 0
