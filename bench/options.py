"""The options of the benchmark, shared by `styledrop bench` and `python -m bench.run`."""

from __future__ import annotations

from pathlib import Path

from bench.fixtures import CONFIGS

CONFIG_CHOICES = CONFIGS
DEFAULT_CONFIGS = ("zoo", "amused_256", "amused_512")
DEFAULT_ZOO_STEPS = 1000  # the issue's "1000 fine-tune steps" (`styledrop finetune`'s default)


class OptionError(ValueError):
    """Benchmark options that cannot run together; the message says what to change."""


def add_arguments(parser) -> None:
    """Adds the benchmark options to `parser` (`styledrop bench`, `python -m bench.run`)."""
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


def validate(args) -> None:
    """Raises `OptionError` when parsed options are out of range."""
    if args.repeats < 1 or args.warmup < 0 or args.jobs < 1 or args.threads < 0:
        raise OptionError("--repeats and --jobs must be >= 1, --warmup and --threads >= 0.")
    if args.zoo_steps < 1 or args.zoo_runs < 1:
        raise OptionError("--zoo-steps and --zoo-runs must be >= 1.")
