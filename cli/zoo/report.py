"""`styledrop zoo report`: score the zoo and write an HTML report (`zoo_build.report`)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from styledrop.zoo.embedded import zoo_dir
from zoo_build.dataset import build_dataset
from zoo_build.report import DEFAULT_T2I_SUBJECTS, zoo_report


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo report`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo report",
        description=(
            "Scores the zoo (VQ PSNR, judge zero-shot top-1 on real renders and on the"
            " held-out line-art style, text-to-image top-1, and again with a style descriptor"
            " appended that no training caption contains), prints one JSON line and writes"
            " an HTML report with image grids."
        ),
    )
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (default: embedded)")
    parser.add_argument(
        "--data", type=Path, help="dataset folder (default: render one into a temporary folder)"
    )
    parser.add_argument("--html", type=Path, required=True, help="report file to write")
    parser.add_argument(
        "--json", type=Path,
        help="also write the figures and, per drawn subject, whether the judge named it"
        " (what `styledrop zoo compare` pairs)",
    )  # fmt: skip
    parser.add_argument(
        "--t2i-subjects", type=int, default=DEFAULT_T2I_SUBJECTS,
        help="subjects the base draws, spread over the vocabulary (0: all)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="generation seed")
    parser.add_argument(
        "--no-descriptors", action="store_true",
        help="skip drawing the prompts again with a held-out style descriptor appended, and"
        " with one of the world's training styles appended",
    )  # fmt: skip
    parser.add_argument(
        "--no-recognisability", action="store_true",
        help="skip the recognisability check (24 everyday prompts, 4 samples each, saved as"
        " HTML-NAME-recognisability.png beside the report)",
    )  # fmt: skip
    return parser


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo report [--zoo DIR] [--data DIR] --html OUT.html [--json OUT.json]`.

    Prints the figures as one JSON line on stdout, and the stages on stderr.

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    zoo = args.zoo or zoo_dir()
    count = None if args.t2i_subjects <= 0 else args.t2i_subjects
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            _log("rendering the emoji-world dataset")
            data = Path(scratch) / "data"
            build_dataset(data)
        figures = zoo_report(
            zoo, data, args.html, t2i_subjects=count, seed=args.seed, log=_log,
            descriptors=not args.no_descriptors, recognisability=not args.no_recognisability,
            json_path=args.json,
        )  # fmt: skip
    print(json.dumps(figures, sort_keys=True))
    _log(f"Wrote {args.html}")
    return 0
