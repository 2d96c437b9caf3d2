"""`styledrop bench`: our JAX port against diffusers + peft on the same weights.

The random-weight configurations are made in diffusers and converted to ours; `zoo` is
the embedded model zoo, exported to diffusers. The benchmark itself is the `bench`
package (it needs the `reference` extra: diffusers and peft); its options live in
`bench.options`.
"""

from __future__ import annotations

import importlib.util

from bench.options import OptionError, add_arguments, validate
from cli.errors import UserError


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "bench",
        help="Benchmark against diffusers + peft (same weights).",
        description=(
            "For each aMUSEd configuration, creates random weights in diffusers, converts them,"
            " and times a guided forward, 12-step sampling (batch 1 and 4), StyleDrop sampling"
            " and adapter train steps (fp32 and bf16); for the embedded zoo (exported to"
            " diffusers), a guided forward, whole fine-tuning runs (LoRA and r1 against peft"
            " LoRA) and an 8-image grid. Both implementations run each measurement in its own"
            " process pinned to the same thread count; reports median times, peak memory,"
            " achieved FLOP/s against a matmul peak, and ratios ours / diffusers."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    try:
        validate(args)
    except OptionError as error:
        raise UserError(str(error)) from None
    missing = [name for name in ("diffusers", "peft") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"The benchmark needs the reference extra ({', '.join(missing)} missing):"
            ' pip install -e ".[reference]".'
        )
    from bench.run import run_benchmark

    result = run_benchmark(args)
    if result["failures"]:
        raise UserError(f"{len(result['failures'])} measurement(s) failed; see above.")
