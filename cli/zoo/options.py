"""What the zoo's steps share on the command line: settings options, errors and progress.

Each trainer's settings are a frozen dataclass (`VQTrainConfig`, `TextTrainConfig`, ...). A
step lists the fields it exposes as `Option`s; `add_config_options` adds them to its
parser with the dataclass's defaults, and `config_from_args` builds the settings back from
the parsed arguments. `progress_bar` shows the trainers' progress events as a tqdm bar.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from styledrop import train_checkpoint
from zoo_build.descriptors import DESCRIPTOR_WORDS


@dataclass(frozen=True)
class Option:
    """One command-line option that sets one field of a settings dataclass.

    Attributes:
        flag: The option, e.g. "--lr"; argparse's dest (`batch_size` for "--batch-size")
            holds the value.
        field: The field it sets; a dotted path reaches into a nested dataclass
            ("vq.num_vq_embeddings").
        help: Help text (None: none).
        type: Parses the text (default: the type of the field's default; a bool field is
            a switch: `--flag` sets True, and where the default is True `--no-flag` sets
            False).
        choices: The values allowed.
    """

    flag: str
    field: str
    help: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments that holds the value."""
        return self.flag.lstrip("-").replace("-", "_")


# The options the two CLIP trainers (`zoo train text`, `zoo train judge`) share.
CLIP_OPTIONS = (
    Option("--steps", "steps", "optimizer steps in all"),
    Option("--batch-size", "batch_size", "images per step"),
    Option("--lr", "learning_rate", "peak AdamW learning rate"),
    Option("--seed", "seed", "seed of init, batches, augmentation"),
    Option("--checkpoint-every", "checkpoint_every", "steps between checkpoints"),
)

# The word source of the made-up descriptors (`zoo train base`, `zoo train
# descriptor-invariance`).
DESCRIPTOR_WORDS_OPTION = Option(
    "--descriptor-words",
    "descriptor_words",
    "word source of the made-up descriptors: 'open' (CLIP vocabulary words outside the"
    " world, generated identifiers) or 'curated' (30 adjectives x 30 media, the first runs)",
    choices=DESCRIPTOR_WORDS,
)


def field_value(settings: Any, path: str) -> Any:
    """The value of a field, or of a nested one for a dotted path ("vq.latent_channels")."""
    for name in path.split("."):
        settings = getattr(settings, name)
    return settings


def add_config_options(
    parser: argparse.ArgumentParser, defaults: Any, options: Sequence[Option]
) -> None:
    """Adds one option per `Option`, its default taken from `defaults`.

    Raises:
        TypeError: an option has neither a `type` nor a default of a plain type to take it
            from.
    """
    for option in options:
        default = field_value(defaults, option.field)
        kwargs: dict[str, Any] = {} if option.help is None else {"help": option.help}
        if isinstance(default, bool) and option.type is None:
            # A switch; one that is on by default also gets its --no- form.
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(option.flag, action=action, default=default, **kwargs)
            continue
        kind = option.type or (type(default) if isinstance(default, (int, float, str)) else None)
        if kind is None:
            raise TypeError(f"{option.flag}: give a type for a default of {default!r}.")
        if option.choices is not None:
            kwargs["choices"] = option.choices
        parser.add_argument(option.flag, type=kind, default=default, **kwargs)


def config_from_args(defaults: Any, args: argparse.Namespace, options: Sequence[Option]) -> Any:
    """`defaults` with every field of `options` set from the parsed arguments.

    Raises:
        ValueError: for settings the dataclass refuses (its `__post_init__`).
    """
    return replace_fields(
        defaults, {option.field: getattr(args, option.dest) for option in options}
    )


def replace_fields(settings: Any, changes: Mapping[str, Any]) -> Any:
    """`dataclasses.replace` that also takes dotted paths into nested dataclasses."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in changes.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, inner in nested.items():
        top[head] = replace_fields(getattr(settings, head), inner)
    return dataclasses.replace(settings, **top)


def comma_ints(text: str) -> tuple[int, ...]:
    """Comma-separated numbers: "16,32,64" -> (16, 32, 64)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers such as 16,32; got {text!r}") from None


def comma_names(text: str) -> tuple[str, ...]:
    """Comma-separated names: "vq,base" -> ("vq", "base")."""
    return tuple(text.split(","))


def split_counts(text: str) -> dict[str, int]:
    """Draws per split: "vq=2,base=8" -> {"vq": 2, "base": 8} (splits of the world)."""
    from styledrop.zoo.draws import SPLITS

    try:
        pairs = [item.split("=") for item in text.split(",") if item]
        counts = {name.strip(): int(count) for name, count in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected split=count,...; got {text!r}") from None
    if unknown := set(counts) - set(SPLITS):
        raise argparse.ArgumentTypeError(f"unknown splits {sorted(unknown)}; use {SPLITS}")
    return counts


def documented_options(
    settings_class: type,
    flags: Mapping[str, str] | None = None,
    types: Mapping[str, Callable[[str], Any]] | None = None,
) -> tuple[Option, ...]:
    """One `Option` per field of a settings dataclass, its help from the class docstring.

    The help is the field's line in the docstring's `Attributes:` section. The flag is the
    field's name with dashes, or `flags[field]`; the type comes from the field's annotation
    (int, float, str, tuples of ints or of names; a bool is a switch), or `types[field]`.

    Raises:
        TypeError: a field whose annotation gives no parser and that `types` does not name.
    """
    import re
    import typing

    flags, types = dict(flags or {}), dict(types or {})
    doc = (settings_class.__doc__ or "").split("Attributes:", 1)[-1]
    helps = {
        name: " ".join(text.split())
        for name, text in re.findall(r"^\s{8}(\w+): (.*(?:\n\s{12}.*)*)", doc, flags=re.M)
    }
    hints = typing.get_type_hints(settings_class)
    options = []
    for item in dataclasses.fields(settings_class):
        hint, text = hints[item.name], str(hints[item.name])
        flag = flags.get(item.name, "--" + item.name.replace("_", "-"))
        if hint is bool and item.name not in types:  # a switch (`add_config_options`)
            options.append(Option(flag, item.name, helps.get(item.name)))
            continue
        kind = types.get(item.name) or {int: int, float: float, str: str}.get(hint)
        if kind is None and text.startswith("tuple[int"):
            kind = comma_ints
        elif kind is None and text.startswith("tuple[str"):
            kind = comma_names
        elif kind is None and text == "str | None":
            kind = str
        if kind is None:
            raise TypeError(f"{settings_class.__name__}.{item.name}: give a parser in `types`.")
        options.append(Option(flag, item.name, helps.get(item.name), type=kind))
    return tuple(options)


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """`--data DIR`, the emoji-world dataset folder (required)."""
    parser.add_argument("--data", type=Path, required=True, help="emoji-world dataset folder")


def add_out_option(parser: argparse.ArgumentParser, help: str = "run folder") -> None:
    """`--out DIR`, the folder the step writes (required)."""
    parser.add_argument("--out", type=Path, required=True, help=help)


def add_time_limit_option(parser: argparse.ArgumentParser, help: str) -> None:
    """`--time-limit MINUTES` (default: none)."""
    parser.add_argument("--time-limit", type=float, default=None, help=help)


def deadline(minutes: float | None) -> Callable[[], bool] | None:
    """A `should_stop` that turns True once `minutes` have passed (None: no limit)."""
    if minutes is None:
        return None
    end = time.monotonic() + 60.0 * minutes
    return lambda: time.monotonic() > end


def add_resume_option(parser: argparse.ArgumentParser) -> None:
    """`--resume`: continue the run folder's checkpoint (without it, such a folder is refused)."""
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's checkpoint"
    )


def refuse_to_overwrite(out_dir: Path, resume: bool) -> int | None:
    """Refuses a run folder that holds a checkpoint unless `resume` (`--resume`) is set.

    Returns:
        2, with the reason on stderr, when `out_dir` holds a checkpoint and `resume` is
        false; else None (go on).
    """
    if resume or not train_checkpoint.has_checkpoint(out_dir):
        return None
    return refuse(
        f"{out_dir} already holds a checkpoint; pass --resume to continue it"
        " or choose another --out."
    )


def refuse(message: object) -> int:
    """Prints `error: message` to stderr; returns the exit code of bad input (2)."""
    print(f"error: {message}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def progress_bar(
    total: int,
    desc: str,
    figures: Mapping[str, tuple[str, str]],
    note: Callable[[dict], str | None] | None = None,
) -> Iterator[Callable[[dict], None]]:
    """A tqdm bar over a trainer's steps, fed by the `progress` events it yields to.

    A resumed run's first event starts the bar at its step, so the rate and the time left
    count from there. The bar closes on leaving the block.

    Args:
        total: The run's steps.
        desc: The bar's label.
        figures: What is shown after the bar: label -> (a step event's key, its format
            spec), each while the events have that key.
        note: An event -> a line printed above the bar instead of a bar update (None: a
            step event).
    """
    from tqdm import tqdm

    bar = tqdm(total=total, unit="step", desc=desc)

    def show(event: dict) -> None:
        line = None if note is None else note(event)
        if line is not None:
            bar.write(line)
            return
        if bar.n == 0 and event["step"] > 1:  # resumed: rate and ETA count from here
            bar.reset()
            bar.initial = bar.n = event["step"] - 1
        bar.update(event["step"] - bar.n)
        shown = {label: format(event[key], spec) for label, (key, spec) in figures.items()
                 if key in event}  # fmt: skip
        bar.set_postfix(shown)

    try:
        yield show
    finally:
        bar.close()
