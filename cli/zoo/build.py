"""`styledrop zoo build`: the zoo's models in one run within a wall-clock budget.

Every field of `zoo_build.build.BuildConfig` is an option (`--vq-codes`, `--base-width`,
...), with its help taken from the field's line in the class docstring.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

# Options named differently from their fields (the issue's and the other zoo steps' names).
RENAMED = {"time_budget_s": "--time-budget", "text_dir": "--text", "judge_dir": "--judge"}


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _draws(text: str) -> dict[str, int]:
    from styledrop.zoo.draws import SPLITS

    try:
        draws = {
            k.strip(): int(v) for k, v in (item.split("=") for item in text.split(",") if item)
        }
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected split=count,...; got {text!r}") from None
    if unknown := set(draws) - set(SPLITS):
        raise argparse.ArgumentTypeError(f"unknown splits {sorted(unknown)}; use {SPLITS}")
    return draws


def _subject_ids(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _field_help(cls: type) -> dict[str, str]:
    """Field name -> its description in the class docstring's Attributes section."""
    doc = (cls.__doc__ or "").split("Attributes:", 1)[-1]
    found: dict[str, str] = {}
    for name, text in re.findall(r"^\s{8}(\w+): (.*(?:\n\s{12}.*)*)", doc, flags=re.M):
        found[name] = " ".join(text.split())
    return found


def build_parser() -> argparse.ArgumentParser:
    """The options of `styledrop zoo build`."""
    from zoo_build.build import BuildConfig

    parser = argparse.ArgumentParser(
        prog="styledrop zoo build",
        description=(
            "Build the zoo's VQ tokenizer and base U-ViT within --time-budget seconds on the JAX"
            " backend present (a GPU, or this CPU): render the world from a data pack, probe each"
            " trainer's step time, size its schedule to the time left, train, assemble the zoo"
            " (float16) and write it as safetensors shards to --results. The log and a summary"
            " are written as it goes. Rerun the same command to resume."
        ),
    )
    parser.add_argument("--data", type=Path, required=True, help="data pack (styledrop zoo pack)")
    parser.add_argument("--out", type=Path, required=True, help="work folder (checkpoints)")
    parser.add_argument(
        "--results", type=Path, help="log, summary and shards (default: OUT/results)"
    )
    helps = _field_help(BuildConfig)
    hints = typing.get_type_hints(BuildConfig)
    for item in dataclasses.fields(BuildConfig):
        flag = RENAMED.get(item.name, "--" + item.name.replace("_", "-"))
        hint = str(hints[item.name])  # "<class 'int'>", "tuple[int, ...]", "str | None", ...
        kind = {float: float, int: int}.get(hints[item.name])
        if kind is None and "tuple[int" in hint:
            kind = _int_tuple
        elif kind is None and "dict" in hint:
            kind = _draws
        elif kind is None and "tuple[str" in hint:
            kind = _subject_ids
        elif kind is None:
            kind = str
        default = item.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            flag, dest=item.name, type=kind, default=default,
            help=f"{helps.get(item.name, '')} (default: {shown})",
        )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the build. Returns the exit code (2: bad options or a missing pack)."""
    from zoo_build.build import BuildConfig, BuildConfigError, build_zoo
    from zoo_build.pack import PackError

    args = build_parser().parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(BuildConfig)}
    try:
        config = BuildConfig(**values)
        zoo = build_zoo(args.data, args.out, config, results_dir=args.results)
    except (BuildConfigError, PackError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {zoo}")
    return 0
