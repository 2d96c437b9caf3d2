"""The decoding temperature options that `evaluate` and `rounds` share."""

from __future__ import annotations

import argparse

from cli.errors import UserError


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
