"""The fine-tuning options that `finetune`, `jobs submit` and `jobs round2` share."""

from __future__ import annotations

import argparse
from pathlib import Path

from styledrop.terms import DEFAULT_CAPTION, DEFAULT_STEPS


def add_style_image_options(parser: argparse.ArgumentParser) -> None:
    """The style images, the descriptor and the images' content captions."""
    parser.add_argument("images", nargs="+", type=Path, help="style images (PNG, JPEG, WebP)")
    parser.add_argument(
        "--descriptor", required=True, help='style descriptor, e.g. "in watercolor painting style"'
    )
    parser.add_argument(
        "--caption", action="append", default=[], metavar="IMAGE=TEXT",
        help=f'content caption of one image, e.g. house.png="A house"'
        f' (default "{DEFAULT_CAPTION}")',
    )  # fmt: skip


def add_optimizer_options(
    parser: argparse.ArgumentParser, lr_help: str = "learning rate (paper 3e-5; LoRA 4e-4)"
) -> None:
    """Steps, learning rate, batch size and seed."""
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"optimizer steps (paper: {DEFAULT_STEPS})"
    )
    parser.add_argument("--lr", type=float, help=lr_help)
    parser.add_argument("--batch-size", type=int, default=8, help="examples per step")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def add_preview_options(parser: argparse.ArgumentParser) -> None:
    """Preview grids during training."""
    parser.add_argument("--preview-every", type=int, default=0, help="steps per preview grid")
    parser.add_argument(
        "--preview-prompt", action="append", default=[], help="content prompt for previews"
    )
