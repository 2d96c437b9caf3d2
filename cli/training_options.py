"""The fine-tuning options that `finetune`, `jobs submit` and `jobs round2` share."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from styledrop.terms import DEFAULT_CAPTION, DEFAULT_STEPS


def style_descriptor(text: str) -> str:
    """An argparse type: a descriptor with words in it (stripped)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            'is empty; give the style in words, e.g. "in watercolor painting style"'
        )
    return text.strip()


def learning_rate(text: str) -> float:
    """An argparse type: a finite learning rate > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"takes a finite number > 0 such as 3e-5, got {text!r}")
    return value


def add_style_image_options(parser: argparse.ArgumentParser) -> None:
    """The style images, the descriptor and the images' content captions."""
    parser.add_argument("images", nargs="+", type=Path, help="style images (PNG, JPEG, WebP)")
    parser.add_argument(
        "--descriptor", required=True, type=style_descriptor,
        help='style descriptor, e.g. "in watercolor painting style"',
    )  # fmt: skip
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
    parser.add_argument("--lr", type=learning_rate, help=lr_help)
    parser.add_argument("--batch-size", type=int, default=8, help="examples per step")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def add_preview_options(parser: argparse.ArgumentParser) -> None:
    """Preview grids during training."""
    parser.add_argument("--preview-every", type=int, default=0, help="steps per preview grid")
    parser.add_argument(
        "--preview-prompt", action="append", default=[], help="content prompt for previews"
    )


def add_dtype_option(parser: argparse.ArgumentParser) -> None:
    """`--dtype`: the base model's compute precision (see `compute_dtype`)."""
    parser.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
        help="compute dtype of the base model (auto: bfloat16 on a GPU, float32 elsewhere)",
    )  # fmt: skip


def compute_dtype(choice: str) -> str:
    """The dtype name `--dtype` stands for on this machine ("auto" asks JAX's backend)."""
    if choice != "auto":
        return choice
    from muse.low_precision import default_compute_dtype

    return default_compute_dtype()
