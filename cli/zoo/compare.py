"""`styledrop zoo compare`: two zoo reports, paired by subject (`zoo_build.compare`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cli.errors import UserError
from cli.text_table import print_table


def build_parser() -> argparse.ArgumentParser:
    """The parser of `styledrop zoo compare`."""
    parser = argparse.ArgumentParser(
        prog="styledrop zoo compare",
        description=(
            "Compares two zoos scored by `styledrop zoo report --json` on the same subjects:"
            " for each measure (the plain prompts, with a held-out descriptor, with one of the"
            " world's styles, the recognisability check) the share the judge named on each,"
            " and the mean of the per-subject differences with its standard error."
        ),
    )
    parser.add_argument("before", type=Path, help="the first zoo's report record (JSON)")
    parser.add_argument("after", type=Path, help="the second zoo's report record (JSON)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo compare BEFORE.json AFTER.json`: prints a table.

    Returns:
        The exit code.
    """
    from zoo_build.compare import ReportRecordError, compare_records, load_report_record

    args = build_parser().parse_args(argv)
    try:
        before, after = load_report_record(args.before), load_report_record(args.after)
        rows = compare_records(before, after)
    except ReportRecordError as error:
        raise UserError(str(error)) from error
    print(f"before: {before['zoo']} (seed {before['seed']})")
    print(f"after:  {after['zoo']} (seed {after['seed']})")
    print_table(
        [["measure", "before", "after", "paired difference", "paired by"]]
        + [
            [row.measure, f"{row.before:.3f}", f"{row.after:.3f}",
             f"{row.difference:+.3f} ± {row.stderr:.3f}", f"{row.count} subjects"
             if row.measure != "recognisability" else f"{row.count} prompts"]
            for row in rows
        ]
    )  # fmt: skip
    return 0
