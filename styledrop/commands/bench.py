"""`styledrop bench`: our JAX port against diffusers + peft on the same weights.

The random-weight configurations are made in diffusers and converted to ours; `zoo` is
the embedded model zoo, exported to diffusers. The benchmark code lives in the source
checkout's `bench/` package (it needs the `reference` extra: diffusers and peft); this
command finds it next to the installed sources.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from styledrop.commands.errors import UserError

CONFIG_CHOICES = ("tiny", "amused_256", "amused_512", "zoo")
DEFAULT_CONFIGS = ("zoo", "amused_256", "amused_512")
DEFAULT_ZOO_STEPS = 1000  # the issue's "1000 fine-tune steps" (`styledrop finetune`'s default)


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


def add_arguments(parser) -> None:
    """Adds the benchmark options to `parser` (shared with `python -m bench.run`)."""
    parser.add_argument(
        "--config",
        action="append",
        choices=CONFIG_CHOICES,
        help="configuration to measure, repeatable (default: zoo, amused_256 and amused_512)",
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("runs/bench/fixtures"),
        help="where the random checkpoints are built and kept (default: runs/bench/fixtures)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for both sides (default: all)"
    )
    parser.add_argument(
        "--isolation",
        choices=["process", "fork"],
        default="process",
        help="a fresh interpreter per measurement, or a fork of a per-side server (faster)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="measurements at once (> 1 only for smoke runs: times then interfere)",
    )
    parser.add_argument(
        "--matmul-size", type=int, default=4096, help="side of the fp32 peak matmul"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="run only measurements whose time-figure key contains TEXT (repeatable),"
        " e.g. sampling_12step_b1 or matmul",
    )
    parser.add_argument(
        "--skip",
        action="append",
        metavar="TEXT",
        help="leave out measurements whose time-figure key contains TEXT (repeatable),"
        " e.g. bf16 (torch's bf16 is very slow on CPUs without AVX-512 BF16)",
    )
    parser.add_argument(
        "--zoo-steps",
        type=int,
        default=DEFAULT_ZOO_STEPS,
        help=f"fine-tuning steps per zoo run (default: {DEFAULT_ZOO_STEPS})",
    )
    parser.add_argument(
        "--zoo-runs",
        type=int,
        default=1,
        help="timed zoo fine-tuning runs per side and adapter, without warm-up (default: 1;"
        " --repeats and --warmup apply to the other measurements)",
    )
    parser.add_argument("--timeout", type=float, help="seconds allowed per measurement")


def _bench_run():
    """Imports `bench.run`, from the source checkout when it is not importable as is."""
    try:
        import bench.run as module
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[2]
        if not (root / "bench" / "run.py").is_file():
            raise UserError(
                "The benchmark (bench/) is part of the source checkout; run this command from"
                " an editable install of the repository."
            ) from None
        sys.path.insert(0, str(root))
        import bench.run as module
    return module


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    if args.repeats < 1 or args.warmup < 0 or args.jobs < 1 or args.threads < 0:
        raise UserError("--repeats and --jobs must be >= 1, --warmup and --threads >= 0.")
    if args.zoo_steps < 1 or args.zoo_runs < 1:
        raise UserError("--zoo-steps and --zoo-runs must be >= 1.")
    missing = [name for name in ("diffusers", "peft") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"The benchmark needs the reference extra ({', '.join(missing)} missing):"
            ' pip install -e ".[reference]".'
        )
    result = _bench_run().run_benchmark(args)
    if result["failures"]:
        raise UserError(f"{len(result['failures'])} measurement(s) failed; see above.")
