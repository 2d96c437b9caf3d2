"""`styledrop zoo`: build the emoji-world dataset and train the embedded model zoo.

Each step is a module of this package with its own options (`styledrop zoo data --help`,
`styledrop zoo train base --help`) and a `main(argv) -> exit code`; the trainers' options
come from their settings dataclasses through `cli.zoo.options`. This module only
dispatches to them.
"""

from __future__ import annotations

import argparse
import importlib

from cli.errors import UserError

# step -> (module, entry point taking argv and returning an exit code)
STEPS = {
    "data": ("cli.zoo.data", "main"),
    "train vq": ("cli.zoo.train_vq", "main"),
    "compact-vq": ("cli.zoo.compact_vq", "main"),
    "refit-decoder": ("cli.zoo.refit_decoder", "main"),
    "train text": ("cli.zoo.train_text", "main"),
    "train descriptor-invariance": ("cli.zoo.train_descriptor_invariance", "main"),
    "train judge": ("cli.zoo.train_judge", "main"),
    "train base": ("cli.zoo.train_base", "main"),
    "assemble": ("cli.zoo.assemble", "main"),
    "report": ("cli.zoo.report", "main"),
    "compare": ("cli.zoo.compare", "main"),
    "targets": ("cli.zoo.targets", "main"),
    "pack": ("cli.zoo.pack", "main"),
    "build": ("cli.zoo.build", "main"),
    "unshard": ("cli.zoo.unshard", "main"),
}


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "zoo",
        help="Build the emoji-world dataset and train the embedded models.",
        description=(
            "Steps: `zoo data` renders the dataset; `zoo train vq|text|judge|base` trains one"
            " model (resumable: rerun the same command to continue); `zoo train"
            " descriptor-invariance` fine-tunes a trained text encoder; `zoo compact-vq` shrinks"
            " a trained tokenizer's codebook by k-means; `zoo refit-decoder` trains only a"
            " tokenizer's decoder, keeping every token; `zoo assemble` writes the embedded zoo"
            " folder; `zoo report` scores it (HTML + one JSON line); `zoo"
            " compare` pairs two zoos' reports subject by subject; `zoo targets` measures a"
            " zoo on the targets a new default must meet (report, demo, watercolor, rounds)."
            " `zoo pack` writes the data pack a machine without the fonts builds from;"
            " `zoo build` trains the tokenizer and the base from it within a time budget (a"
            " GPU's minutes) and writes the zoo as shards; `zoo unshard` puts it back together."
            " Each step has --help."
        ),
    )
    parser.add_argument(
        "step",
        choices=list(dict.fromkeys(name.split()[0] for name in STEPS)),
        help="what to do",
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="the step's own arguments")
    parser.set_defaults(run=run)


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    rest = list(args.rest)
    name = args.step
    if name == "train":
        if not rest or f"train {rest[0]}" not in STEPS:
            raise UserError(
                "`zoo train` needs a model: vq, text, descriptor-invariance, judge or base."
            )
        name = f"train {rest.pop(0)}"
    module_name, function = STEPS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise UserError(f"`zoo {name}` is not available in this version ({error}).") from error
    code = getattr(module, function)(rest)
    if code:
        raise SystemExit(code)
