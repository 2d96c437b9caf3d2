"""The `styledrop` command line.

Each subcommand lives in its own module of `cli/`; heavy libraries (JAX, PyTorch) are
imported inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import sys

from cli import (
    bench,
    convert,
    demo,
    doctor,
    evaluate,
    finetune,
    generate,
    jobs,
    rounds,
    serve,
    worker,
    zoo,
)
from cli.errors import UserError

COMMANDS = (
    convert, generate, finetune, demo, rounds, evaluate, jobs, worker, serve, zoo, bench, doctor,
)  # fmt: skip
# Exceptions that mean bad input, as (module, class). They are looked up only in modules
# already imported (an exception of a class can only exist once its module is loaded), so
# commands that never touch JAX (`jobs`, `worker`) do not import it to report an error.
USER_ERRORS = (
    ("muse.checkpoint", "CheckpointError"),
    ("muse.convert", "ConversionError"),
    ("muse.tokenizer", "TokenizerNotFoundError"),
    ("muse.weights", "WeightsError"),
    ("styledrop.inputs", "ImageInputError"),
    ("styledrop.zoo.embedded", "ZooMissingError"),
)


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
    """Entry point of the `styledrop` console script. Returns the exit code.

    A command's `run` may return an exit code (`styledrop jobs wait`); None means 0.
    """
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
    except Exception as error:
        if not isinstance(error, _user_errors()):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0


def _user_errors() -> tuple[type[BaseException], ...]:
    """UserError and the library errors of `USER_ERRORS` whose modules are loaded."""
    found: list[type[BaseException]] = [UserError]
    for module_name, name in USER_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, name):
            found.append(getattr(module, name))
    return tuple(found)
