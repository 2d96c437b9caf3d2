"""`styledrop zoo train descriptor-invariance`: teach the text encoder to keep the content.

The trainer is `zoo_build.descriptor_invariance`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from cli.zoo.options import (
    DESCRIPTOR_WORDS_OPTION,
    Option,
    add_config_options,
    add_out_option,
    add_time_limit_option,
    config_from_args,
    deadline,
    progress_bar,
    refuse,
)
from muse import checkpoint as model_checkpoint
from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR
from muse.text_encoder import default_device
from zoo_build.descriptor_invariance import (
    RETENTION_PHRASES,
    InvarianceConfig,
    train_descriptor_invariance,
)
from zoo_build.run_files import TEXT_EVAL_FILE

OPTIONS = (
    Option("--steps", "steps", "optimizer steps in all"),
    Option("--batch-size", "batch_size", "world texts per step, each also with a descriptor"),
    Option("--lr", "learning_rate", "peak AdamW learning rate"),
    Option(
        "--keep-weight",
        "keep_weight",
        "weight of keeping the world's own texts as the starting encoder embeds them",
    ),
    Option(
        "--subject-weight",
        "subject_weight",
        "weight of keeping the subject readable in the pooled embedding when one of the"
        " world's own styles is appended (0: off; the base must then be trained on the result)",
    ),
    Option(
        "--retention-phrases",
        "retention_phrases",
        "what --subject-weight's term appends to the subject prompts: 'world' (the world's"
        " training styles) or 'mixed' (half of them made-up phrases mixing the world's style"
        " words with words from outside it)",
        choices=RETENTION_PHRASES,
    ),
    Option("--seed", "seed", "seed of each step's texts and descriptors"),
    DESCRIPTOR_WORDS_OPTION,
    Option("--checkpoint-every", "checkpoint_every", "steps between checkpoints"),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo train descriptor-invariance`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo train descriptor-invariance",
        description=(
            "Fine-tune a trained text encoder so that a style descriptor it has never seen,"
            " appended to a caption, leaves the caption's pooled embedding and its states"
            " from the caption's end on as they were (made-up descriptors drawn afresh each"
            " step), while the world's own texts keep their embeddings. Writes"
            " OUT/text_encoder/ and OUT/tokenizer/ for `zoo train base --text` and"
            " `zoo assemble --text`; rerun the same command to resume."
        ),
    )
    parser.add_argument(
        "--text",
        type=Path,
        required=True,
        help="folder with text_encoder/ and tokenizer/: a `zoo train text` run or a zoo folder",
    )
    add_out_option(parser)
    add_config_options(parser, InvarianceConfig(), OPTIONS)
    add_time_limit_option(parser, "minutes; then checkpoint and stop (rerun to resume)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo train descriptor-invariance --text DIR --out DIR [--steps N]`.

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    weights = args.text / TEXT_ENCODER_DIR / "model.safetensors"
    if not weights.is_file() or not (args.text / TOKENIZER_DIR).is_dir():
        return refuse(
            f"{args.text} needs {TEXT_ENCODER_DIR}/model.safetensors and {TOKENIZER_DIR}/:"
            " give a `zoo train text` run folder or a zoo folder (e.g. styledrop/zoo/weights)."
        )
    defaults = InvarianceConfig(init_from=model_checkpoint.sha256_file(weights))
    config = config_from_args(defaults, args, OPTIONS)
    figures = {
        "loss": ("loss", ".3f"),
        "pooled": ("invariance_pooled", ".3f"),
        "keep": ("keep_pooled", ".4f"),
    }
    with progress_bar(config.steps, "descriptor invariance", figures) as show:
        folder = train_descriptor_invariance(
            args.text, args.out, config, progress=show,
            should_stop=deadline(args.time_limit), device=default_device(),
        )  # fmt: skip
    if folder is None:
        print(f"Stopped at the time limit; checkpoint in {args.out}. Rerun to resume.")
        return 0
    record = json.loads((args.out / TEXT_EVAL_FILE).read_text())["descriptor_invariance"]
    before, after = record["before"], record["after"]
    print(f"Wrote {folder} and {args.out / TOKENIZER_DIR}")
    print(
        "pooled cosine, plain vs held-out descriptor:"
        f" {before['heldout_pooled_cosine']:.3f} -> {after['heldout_pooled_cosine']:.3f};"
        f" world texts kept to a relative error of {after['world_pooled_error']:.4f} (pooled)"
        f" and {after['world_states_error']:.4f} (states)"
    )
    print(
        "own plain prompt nearest, held-out descriptor:"
        f" {before['heldout_subject_top1']:.3f} -> {after['heldout_subject_top1']:.3f};"
        f" world style: {before['world_style_subject_top1']:.3f}"
        f" -> {after['world_style_subject_top1']:.3f}"
    )
    return 0
