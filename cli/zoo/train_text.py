"""`styledrop zoo train text`: train the embedded CLIP text encoder.

The trainer is `zoo_build.train_text_encoder`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from cli.zoo.options import (
    CLIP_OPTIONS,
    add_config_options,
    add_data_option,
    add_out_option,
    config_from_args,
    progress_bar,
)
from muse.folder_layout import TOKENIZER_DIR
from zoo_build.run_files import TEXT_EVAL_FILE
from zoo_build.train_text_encoder import TextTrainConfig, train_text_encoder


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo train text`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo train text",
        description=(
            "Train the embedded CLIP text encoder contrastively on the emoji world's 'base'"
            " split. Writes OUT/text_encoder/ and OUT/tokenizer/; rerun the same command to"
            " resume from OUT/text_clip_checkpoint.pt."
        ),
    )
    add_data_option(parser)
    add_out_option(parser)
    add_config_options(parser, TextTrainConfig(), CLIP_OPTIONS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo train text --data DIR --out DIR [--steps N]`.

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    config = config_from_args(TextTrainConfig(), args, CLIP_OPTIONS)
    with progress_bar(
        config.steps, "text encoder", {"loss": ("loss", ".3f"), "top1": ("text_top1_eval", ".3f")}
    ) as show:
        folder = train_text_encoder(args.data, args.out, config, progress=show)
    info = json.loads((args.out / TEXT_EVAL_FILE).read_text())
    print(f"Wrote {folder} and {args.out / TOKENIZER_DIR}")
    print(f"image->text top-1 on the eval split: {info['text_top1_eval']:.3f}")
    return 0
