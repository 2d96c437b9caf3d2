"""`styledrop zoo train vq`: train the embedded VQ tokenizer (`zoo_build.train_vq`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from cli.zoo.options import (
    Option,
    add_config_options,
    add_data_option,
    add_out_option,
    add_resume_option,
    add_time_limit_option,
    comma_ints,
    comma_names,
    config_from_args,
    progress_bar,
    refuse,
    refuse_to_overwrite,
)
from styledrop import train_checkpoint
from zoo_build.run_files import VQ_INFO_FILE
from zoo_build.train_vq import VQTrainConfig, train_vq

OPTIONS = (
    Option("--steps", "steps"),
    Option("--batch-size", "batch_size"),
    Option("--lr", "learning_rate"),
    Option("--codebook", "vq.num_vq_embeddings"),
    Option(
        "--channels",
        "vq.block_out_channels",
        "encoder widths per level, e.g. 32,64,64,128",
        type=comma_ints,
    ),
    Option("--latent", "vq.latent_channels"),
    Option("--embed-dim", "vq.vq_embed_dim", type=int),
    Option("--groups", "vq.norm_num_groups"),
    Option("--warmup", "warmup_steps"),
    Option(
        "--splits",
        "splits",
        "dataset splits to train on, comma-separated (never eval)",
        type=comma_names,
    ),
    Option("--seed", "seed"),
    Option("--checkpoint-every", "checkpoint_every"),
    Option("--eval-every", "eval_every"),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo train vq`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo train vq",
        description=(
            "Train a zoo VQ tokenizer on an emoji-world dataset: 64 px images to a grid of"
            " 64 / 2^(n-1) tokens a side for n --channels levels (16,32,64: the embedded zoo's"
            " 16x16; the default: 8x8)."
            " Checkpoints every --checkpoint-every steps; --resume continues bit-identically."
        ),
    )
    add_data_option(parser)
    add_out_option(parser)
    add_config_options(parser, VQTrainConfig(), OPTIONS)
    add_time_limit_option(
        parser, "minutes; then checkpoint, export the weights so far and stop (resume later)"
    )
    add_resume_option(parser)
    return parser


def _note(event: dict) -> str | None:
    """The line a periodic evaluation prints (None for a step)."""
    if "eval_psnr" not in event:
        return None
    return (
        f"step {event['step']}: eval PSNR {event['eval_psnr']:.2f} dB,"
        f" usage {event['eval_usage']:.1%}"
    )


# The bar's figures: label -> (step event key, format spec).
VQ_FIGURES = {"loss": ("loss", ".4f"), "psnr": ("psnr", ".1f"), "use": ("usage", ".0%")}


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo train vq --data DIR --out DIR [--steps N] [--resume]`.

    Returns:
        The exit code (2 when the folder holds a checkpoint and --resume is missing, for
        settings the trainer refuses, or when --resume meets a run with other settings).
    """
    args = build_parser().parse_args(argv)
    if (refused := refuse_to_overwrite(args.out, args.resume)) is not None:
        return refused
    try:
        config = config_from_args(VQTrainConfig(), args, OPTIONS)
    except ValueError as error:
        return refuse(error)
    limit = None if args.time_limit is None else 60.0 * args.time_limit
    try:
        with progress_bar(config.steps, "VQ tokenizer", VQ_FIGURES, _note) as show:
            path = train_vq(args.data, args.out, config, progress=show, time_limit_s=limit)
    except train_checkpoint.CheckpointMismatchError as error:
        return refuse(error)
    info = json.loads((args.out / VQ_INFO_FILE).read_text())
    status = "" if info["complete"] else f" (stopped at step {info['steps_done']}; --resume)"
    print(
        f"Wrote {path}{status}: eval PSNR {info['eval']['psnr']:.2f} dB,"
        f" codebook usage {info['eval']['codebook_usage']:.1%}"
    )
    return 0
