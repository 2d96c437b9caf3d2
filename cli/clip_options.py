"""The CLIP scorer options that `evaluate` and `rounds` share, and the scorer they load."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.errors import UserError


def add_clip_options(parser: argparse.ArgumentParser) -> None:
    """`--clip`, `--clip-weights` and `--offline`."""
    parser.add_argument(
        "--clip",
        help="open_clip folder, or architecture such as ViT-B-32 (default: the base folder's"
        " judge/)",
    )
    parser.add_argument(
        "--clip-weights",
        help="with --clip ARCH: a checkpoint file, or a pretrained tag such as openai"
        " (downloaded into the Hugging Face cache the first time)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never download: --clip-weights tags must be cached already (as HF_HUB_OFFLINE=1)",
    )


def load_scorer(args: argparse.Namespace, base: Path):
    """The `ClipScorer` the options name: `--clip`, or else the base folder's judge.

    Raises:
        UserError: the model or its weights cannot be had (the message says what to do).
    """
    from feedback.scorer import ClipScorer, ScorerLoadError
    from styledrop.zoo.embedded import JUDGE_DIR

    try:
        return ClipScorer.load(
            args.clip or Path(base) / JUDGE_DIR, args.clip_weights, offline=args.offline
        )
    except ScorerLoadError as error:
        raise UserError(str(error)) from error
