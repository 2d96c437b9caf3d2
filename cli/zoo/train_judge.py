"""`styledrop zoo train judge`: train the judge CLIP (`zoo_build.train_judge`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from cli.zoo.options import (
    CLIP_OPTIONS,
    Option,
    add_config_options,
    add_data_option,
    add_out_option,
    config_from_args,
    progress_bar,
)
from zoo_build.run_files import JUDGE_EVAL_FILE
from zoo_build.train_judge import JudgeTrainConfig, train_judge


def resnet_layers(text: str) -> tuple[int, ...]:
    """`--resnet-layers`: four positive block counts, "1,1,1,1" -> (1, 1, 1, 1)."""
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        layers = ()
    if len(layers) != 4 or min(layers) < 1:
        raise argparse.ArgumentTypeError(
            f"expected four positive block counts such as 1,1,1,1, got {text!r}"
        )
    return layers


OPTIONS = (
    *CLIP_OPTIONS,
    Option(
        "--eval-every",
        "eval_every",
        "steps between evaluations on the eval split (0: only at the end)",
    ),
    Option(
        "--vision",
        "vision",
        "image tower: a ViT or open_clip's ModifiedResNet",
        choices=("vit", "resnet"),
    ),
    Option(
        "--resnet-layers",
        "resnet_layers",
        "ResNet blocks per stage, four numbers such as 1,1,1,1",
        type=resnet_layers,
    ),
    Option("--resnet-width", "resnet_width", "ResNet stem width"),
    Option(
        "--content-captions",
        "content_captions",
        "chance that a styled image is captioned with its subject alone",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo train judge`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo train judge",
        description=(
            "Train the judge CLIP (open_clip) on the emoji world's 'judge' split, used only"
            " for scoring. Writes OUT/judge/ (load it with open_clip.create_model("
            "'local-dir:OUT/judge')); rerun the same command to resume from"
            " OUT/judge_checkpoint.pt."
        ),
    )
    add_data_option(parser)
    add_out_option(parser)
    add_config_options(parser, JudgeTrainConfig(), OPTIONS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo train judge --data DIR --out DIR [--steps N]`.

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    config = config_from_args(JudgeTrainConfig(), args, OPTIONS)
    with progress_bar(
        config.steps, "judge CLIP", {"loss": ("loss", ".3f"), "top1": ("judge_top1_real", ".3f")}
    ) as show:
        judge_dir = train_judge(args.data, args.out, config, progress=show)
    info = json.loads((args.out / JUDGE_EVAL_FILE).read_text())
    print(f"Wrote {judge_dir}")
    print(f"judge_top1_real {info['judge_top1_real']:.3f}")
    if "judge_top1_heldout_style" in info:
        print(f"judge_top1_heldout_style {info['judge_top1_heldout_style']:.3f}")
    return 0
