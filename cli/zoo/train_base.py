"""`styledrop zoo train base`: train the embedded base U-ViT (`zoo_build.train_base`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cli.zoo.options import (
    DESCRIPTOR_WORDS_OPTION,
    Option,
    add_config_options,
    add_data_option,
    add_out_option,
    add_time_limit_option,
    config_from_args,
    deadline,
    progress_bar,
)
from muse import checkpoint as model_checkpoint
from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR
from muse.text_encoder import TextEncoder
from zoo_build.train_base import BaseTrainConfig, train_base
from zoo_build.train_vq import load_vq

OPTIONS = (
    Option("--steps", "steps"),
    Option("--batch-size", "batch_size"),
    Option("--width", "width"),
    Option("--layers", "layers", "transformer layers"),
    Option(
        "--downsample",
        "downsample",
        "run the transformer layers on the token grid halved by a 2x2 convolution (aMUSEd 512's"
        " design): a 16x16 grid then costs the transformer what an 8x8 one does",
    ),
    Option(
        "--position-embedding",
        "position_embedding",
        "give the base a learned embedding of each grid position, so that it can lay out a"
        " drawing from the text alone (with --init from a base without one, it starts at zero)",
    ),
    Option(
        "--descriptor-pairs",
        "descriptor_pairs",
        "extra pairs per image captioned with a made-up style descriptor appended, so that"
        " unknown descriptors keep the content",
    ),
    DESCRIPTOR_WORDS_OPTION,
    Option("--lr", "learning_rate"),
    Option(
        "--seed",
        "seed",
        "seed of the init, the batches, the masks and the made-up descriptors (a warm-started"
        " run with another seed meets other descriptors)",
    ),
    Option("--warmup", "warmup_steps"),
    Option(
        "--canonical-repeats",
        "canonical_repeats",
        "extra copies of each subject's plain canonical draw in the training pool",
    ),
    Option(
        "--transplant",
        "transplant",
        "with --init from a base of another tokenizer and the same transformer (the 8x8"
        " zoo's for a 16x16 base with --downsample, or a 16x16 base of another 16x16"
        " tokenizer): copy every tensor whose name and shape match, except the tokenizer's"
        " (token embedding, output head, the 2x2 down- and up-sampling), which keep their init",
    ),
    Option(
        "--train-only-new",
        "train_only_new",
        "with --transplant, train only the tensors that kept their init and leave the"
        " transplanted transformer as it is; a second run with --init this run's weights"
        " trains everything",
    ),
    Option(
        "--jittered-draws",
        "jittered_draws",
        "also train on the base split's shifted and scaled draws (the emoji-world-1 recipe)",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo train base`."""
    parser = argparse.ArgumentParser(prog="styledrop zoo train base")
    add_data_option(parser)
    parser.add_argument(
        "--vq",
        type=Path,
        required=True,
        help="`zoo train vq` run folder, or a zoo folder (e.g. styledrop/zoo/weights)",
    )
    parser.add_argument(
        "--text", type=Path, required=True, help="folder with text_encoder/ and tokenizer/"
    )
    add_out_option(parser)
    add_config_options(parser, BaseTrainConfig(), OPTIONS)
    parser.add_argument(
        "--init",
        type=Path,
        help="start from this transformer.safetensors (e.g. the committed zoo's) instead of a"
        " random init; the run gets a fresh schedule of --steps. A base of fewer layers than"
        " --layers is deepened: the new layers start as the identity, spread between the old"
        " ones",
    )
    add_time_limit_option(
        parser, "minutes; then checkpoint, export the weights so far and stop (rerun to resume)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo train base --data DIR --vq DIR --text DIR --out DIR [--steps N]`.

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    vq = load_vq(args.vq)
    text = TextEncoder.load(args.text / TEXT_ENCODER_DIR, tokenizer=args.text / TOKENIZER_DIR)
    init_from = "" if args.init is None else model_checkpoint.sha256_file(args.init)
    config = config_from_args(BaseTrainConfig(init_from=init_from), args, OPTIONS)
    with progress_bar(
        config.steps, "base U-ViT", {"loss": ("loss", ".3f"), "acc": ("accuracy", ".3f")}
    ) as show:
        path = train_base(
            args.data, vq, text, args.out, config, progress=show,
            should_stop=deadline(args.time_limit), init_weights=args.init,
        )  # fmt: skip
    if path is None:
        print(f"Stopped at the time limit; weights so far in {args.out}. Rerun to resume.")
    else:
        print(f"Wrote {path}")
    return 0
