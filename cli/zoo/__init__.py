"""`styledrop zoo`: build the emoji-world dataset and train the embedded model zoo.

Each step keeps its own options (`styledrop zoo data --help`,
`styledrop zoo train base --help`); this module only dispatches to them.
"""

from __future__ import annotations

import argparse
import importlib

from cli.errors import UserError

# step -> (module, entry point taking argv and returning an exit code)
STEPS = {
    "data": ("zoo_build.dataset", "main_data"),
    "train vq": ("zoo_build.train_vq", "main_train_vq"),
    "compact-vq": ("zoo_build.compact_vq", "main_compact_vq"),
    "train text": ("zoo_build.train_text_encoder", "main_train_text"),
    "train judge": ("zoo_build.train_judge", "main_train_judge"),
    "train base": ("zoo_build.train_base", "main_train_base"),
    "assemble": ("zoo_build.assemble", "main_assemble"),
    "report": ("zoo_build.report", "main_report"),
    "pack": ("cli.zoo.pack", "main"),
    "build": ("cli.zoo.build", "main"),
}


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "zoo",
        help="Build the emoji-world dataset and train the embedded models.",
        description=(
            "Steps: `zoo data` renders the dataset; `zoo train vq|text|judge|base` trains one"
            " model (resumable: rerun the same command to continue); `zoo compact-vq` shrinks"
            " a trained tokenizer's codebook by k-means; `zoo assemble` writes"
            " the embedded zoo folder; `zoo report` scores it (HTML + one JSON line)."
            " Each step has --help."
        ),
    )
    parser.add_argument(
        "step",
        choices=["data", "pack", "build", "train", "compact-vq", "assemble", "report"],
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
            raise UserError("`zoo train` needs a model: vq, text, judge or base.")
        name = f"train {rest.pop(0)}"
    module_name, function = STEPS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise UserError(f"`zoo {name}` is not available in this version ({error}).") from error
    code = getattr(module, function)(rest)
    if code:
        raise SystemExit(code)
