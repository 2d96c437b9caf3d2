"""`styledrop zoo refit-decoder`: train only a tokenizer's decoder (`zoo_build.refit_run`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from cli.zoo.options import (
    Option,
    add_config_options,
    add_data_option,
    add_out_option,
    add_resume_option,
    add_time_limit_option,
    comma_names,
    config_from_args,
    progress_bar,
    refuse,
    refuse_to_overwrite,
)
from styledrop import train_checkpoint
from zoo_build.refit_decoder import RefitConfig
from zoo_build.refit_run import refit_run
from zoo_build.run_files import VQ_INFO_FILE

OPTIONS = (
    Option("--steps", "steps", "Adam steps in all (cosine schedule over them)"),
    Option("--batch-size", "batch_size", "images per step"),
    Option("--lr", "learning_rate", "peak learning rate"),
    Option("--warmup", "warmup_steps", "linear warm-up steps"),
    Option("--hflip", "hflip", "also fit the mirrored images, with their own tokens"),
    Option("--seed", "seed", "seed of the batches"),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo refit-decoder`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo refit-decoder",
        description=(
            "Train only a tokenizer's decoder on the code grids its encoder gives its training"
            " images. No image's tokens change, so a base trained on them stays valid; only"
            " the pictures get sharper. Checkpoints as it goes; --resume continues"
            " bit-identically. The output is a VQ run folder for `zoo assemble --vq`."
        ),
    )
    parser.add_argument(
        "--vq", type=Path, required=True, help="`zoo train vq` run folder or a zoo folder"
    )
    add_data_option(parser)
    add_out_option(parser)
    add_config_options(parser, RefitConfig(), OPTIONS)
    parser.add_argument(
        "--splits",
        type=comma_names,
        default=None,
        help="dataset splits to fit, comma-separated (default: those the tokenizer trained on)",
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=500, help="steps between checkpoints"
    )
    add_time_limit_option(
        parser, "minutes; then checkpoint, write the weights so far and stop (resume later)"
    )
    add_resume_option(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo refit-decoder --vq DIR --data DIR --out DIR [--steps N] [--resume]`.

    Returns:
        The exit code (2, with the reason on stderr, when the folder holds a checkpoint and
        --resume is missing, for bad settings or splits, a missing tokenizer, or when
        --resume meets a refit with other settings).
    """
    args = build_parser().parse_args(argv)
    if (refused := refuse_to_overwrite(args.out, args.resume)) is not None:
        return refused
    try:
        config = config_from_args(RefitConfig(), args, OPTIONS)
        limit = None if args.time_limit is None else 60.0 * args.time_limit
        with progress_bar(config.steps, "decoder refit", {"loss": ("loss", ".4f")}) as show:
            path = refit_run(
                args.vq,
                args.data,
                args.out,
                config,
                splits=args.splits,
                checkpoint_every=args.checkpoint_every,
                progress=show,
                time_limit_s=limit,
            )
    except (ValueError, FileNotFoundError, train_checkpoint.CheckpointMismatchError) as error:
        return refuse(error)
    info = json.loads((args.out / VQ_INFO_FILE).read_text())
    refit = info["decoder_refit"]
    status = "" if refit["complete"] else f" (stopped at step {refit['steps_done']}; --resume)"
    print(
        f"Wrote {path}{status}: eval PSNR {refit['eval_before']['psnr']:.2f} dB before,"
        f" {info['eval']['psnr']:.2f} dB after"
    )
    return 0
