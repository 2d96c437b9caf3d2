"""The decoding options that the sampling commands share: temperatures, content first."""

from __future__ import annotations

import argparse

from cli.errors import UserError
from styledrop.terms import content_first_problem


def add_temperature_options(parser: argparse.ArgumentParser, prefix: str, what: str) -> None:
    """`--{prefix}temperature` and `--{prefix}token-temperature` (None: the base's).

    Args:
        parser: The command's parser.
        prefix: Option name prefix ("" or "pool-").
        what: What the options sample, for the help ("every method's draws").
    """
    parser.add_argument(
        f"--{prefix}temperature", type=float,
        help=f"MaskGIT choice temperature of {what} (default: the base's; the zoo 1, the"
        " paper 4.5)",
    )  # fmt: skip
    parser.add_argument(
        f"--{prefix}token-temperature", type=float,
        help=f"softmax temperature of the token draws of {what} (default: the base's; the"
        " zoo 0.5, the paper 1)",
    )  # fmt: skip


def checked_temperatures(
    args: argparse.Namespace, prefix: str
) -> tuple[float | None, float | None]:
    """(choice temperature, token temperature) as given, each positive or None.

    Raises:
        UserError: a temperature that is not positive.
    """
    values = []
    for name in ("temperature", "token-temperature"):
        value = getattr(args, f"{prefix}{name}".replace("-", "_"))
        if value is not None and value <= 0:
            raise UserError(f"--{prefix}{name} must be positive, got {value}.")
        values.append(value)
    return values[0], values[1]


def content_first_fraction(text: str) -> float:
    """The argparse type of `--content-first`: a fraction of the decoding steps in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    problem = content_first_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def add_content_first_option(parser: argparse.ArgumentParser) -> None:
    """`--content-first F` (None: the base's stored value, else 0, the paper's rule)."""
    parser.add_argument(
        "--content-first", type=content_first_fraction, metavar="F",
        help="draw the first F of the decoding steps from the content prompt alone (no"
        " descriptor, no adapter), then StyleDrop guidance; keeps subjects a one-image"
        " adapter would lose (default: the base's; the zoo 0.75, else 0, the paper's rule)",
    )  # fmt: skip
