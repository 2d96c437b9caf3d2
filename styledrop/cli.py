"""The `styledrop` command line.

Each subcommand lives in `styledrop/commands/`; heavy libraries (JAX, PyTorch) are
imported inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import sys

from styledrop.commands import bench, convert, demo, evaluate, finetune, generate, rounds, zoo
from styledrop.commands.errors import UserError

COMMANDS = (convert, generate, finetune, demo, rounds, evaluate, zoo, bench)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="styledrop",
        description="StyleDrop on Muse / aMUSEd in JAX: convert models, generate, fine-tune.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `styledrop` console script. Returns the exit code."""
    args = build_parser().parse_args(argv)
    from muse.checkpoint import CheckpointError
    from muse.convert import ConversionError
    from muse.tokenizer import TokenizerNotFoundError
    from muse.weights import WeightsError
    from styledrop.inputs import ImageInputError
    from styledrop.zoo.embedded import ZooMissingError

    user_errors = (
        UserError,
        CheckpointError,
        ConversionError,
        TokenizerNotFoundError,
        WeightsError,
        ImageInputError,
        ZooMissingError,
    )
    try:
        args.run(args)
    except user_errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
