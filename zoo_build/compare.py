"""`styledrop zoo compare`: two zoo reports, paired subject by subject.

Two zoos scored by `zoo report --json` on the same subjects differ in whether the judge
names each subject. Differences taken per subject and then averaged cancel what the
subjects share (some are hard for any base), so the standard error of a paired difference
is much smaller than that of either level: this is how each zoo was weighed against the
one before it (docs/zoo.md).

A measure is compared when both records hold it: `t2i` (the plain prompts),
`t2i_descriptor` (a held-out descriptor appended) and `t2i_world_style` (one of the
world's training styles appended), each over the subjects both drew; and the
recognisability check, prompt by prompt (named in at least 3 of its 4 samples).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feedback import metrics
from zoo_build.recognisability import SAMPLES_PER_PROMPT, samples_to_name
from zoo_build.report import REPORT_RECORD_FORMAT

# Measures of the per-subject record, in the order they are shown.
SUBJECT_MEASURES = ("t2i", "t2i_descriptor", "t2i_world_style")
RECOGNISABILITY_MEASURE = "recognisability"
RECOGNISABILITY_FIGURE = "recognisability_judge_by_prompt"


class ReportRecordError(ValueError):
    """A file is not a `zoo report --json` record, or two records cannot be paired."""


@dataclass(frozen=True)
class PairedDifference:
    """One measure of two zoos, paired by subject (or prompt).

    Attributes:
        measure: Which measure ("t2i", "t2i_descriptor", ...).
        before: Its mean on the first zoo.
        after: Its mean on the second zoo.
        difference: Mean of the per-item differences (after - before).
        stderr: Standard error of that mean (NaN with one item).
        count: Items paired.
    """

    measure: str
    before: float
    after: float
    difference: float
    stderr: float
    count: int


def load_report_record(path: str | Path) -> dict:
    """Reads a record written by `zoo report --json`.

    Raises:
        ReportRecordError: The file is missing or is not such a record.
    """
    path = Path(path)
    if not path.is_file():
        raise ReportRecordError(
            f"{path} does not exist: write it with `styledrop zoo report --json {path} ...`."
        )
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ReportRecordError(f"{path} is not JSON ({error}).") from error
    if not isinstance(record, dict) or record.get("format") != REPORT_RECORD_FORMAT:
        raise ReportRecordError(
            f"{path} is not a zoo report record (format {REPORT_RECORD_FORMAT!r}): write one"
            " with `styledrop zoo report --json FILE` (the JSON line it prints holds the"
            " figures only, not the per-subject results)."
        )
    return record


def paired_difference(
    measure: str, before: Sequence[float], after: Sequence[float]
) -> PairedDifference:
    """Mean levels and the mean paired difference with its standard error.

    Args:
        measure: Name of the measure.
        before: One value per item on the first zoo.
        after: The same items on the second zoo, in the same order.

    Returns:
        A `PairedDifference` (`feedback.metrics.paired_difference` with one image per item).
    """
    if len(before) != len(after) or not before:
        raise ValueError(f"{measure}: need the same, non-zero number of items on both sides.")
    difference, stderr = metrics.paired_difference(np.asarray(after), np.asarray(before), 1)
    return PairedDifference(
        measure, float(np.mean(before)), float(np.mean(after)), difference, stderr, len(before)
    )


def compare_records(before: dict, after: dict) -> list[PairedDifference]:
    """The paired differences of every measure both records hold.

    Args:
        before: The first zoo's record (`load_report_record`).
        after: The second zoo's record.

    Returns:
        One `PairedDifference` per shared measure, in `SUBJECT_MEASURES` order, then the
        recognisability check's.

    Raises:
        ReportRecordError: The two records drew different subjects, or share no measure.
    """
    if before["subjects"] != after["subjects"]:
        raise ReportRecordError(
            f"The two reports drew different subjects ({len(before['subjects'])} and"
            f" {len(after['subjects'])}): score both zoos with the same --data and"
            " --t2i-subjects."
        )
    rows = [
        paired_difference(measure, before["named"][measure], after["named"][measure])
        for measure in SUBJECT_MEASURES
        if measure in before["named"] and measure in after["named"]
    ]
    counts = [record["figures"].get(RECOGNISABILITY_FIGURE) for record in (before, after)]
    if all(counts):
        prompts = [prompt for prompt in counts[0] if prompt in counts[1]]
        enough = samples_to_name(SAMPLES_PER_PROMPT)
        named = [[float(c[p] >= enough) for p in prompts] for c in counts]
        rows.append(paired_difference(RECOGNISABILITY_MEASURE, *named))
    if not rows:
        raise ReportRecordError("The two reports share no measure to compare.")
    return rows
