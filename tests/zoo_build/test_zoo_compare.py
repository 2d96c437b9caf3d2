"""`styledrop zoo compare`: two zoo report records paired subject by subject."""

from __future__ import annotations

import json
import math

import pytest

from cli.main import main
from zoo_build.compare import (
    ReportRecordError,
    compare_records,
    load_report_record,
    paired_difference,
)
from zoo_build.report import REPORT_RECORD_FORMAT


def _record(zoo, t2i, descriptor=None, recognised=None, subjects=None):
    named = {"t2i": t2i}
    if descriptor is not None:
        named["t2i_descriptor"] = descriptor
    figures = {"t2i_top1": sum(t2i) / len(t2i)}
    if recognised is not None:
        figures["recognisability_judge_by_prompt"] = recognised
    return {
        "format": REPORT_RECORD_FORMAT, "zoo": zoo, "seed": 0, "figures": figures,
        "subjects": subjects or [f"s{i}" for i in range(len(t2i))], "named": named,
    }  # fmt: skip


def test_paired_difference_is_the_mean_of_per_item_differences_with_its_standard_error():
    row = paired_difference("t2i", [1, 0, 1, 1], [1, 1, 1, 0])
    assert (row.before, row.after, row.count) == (0.75, 0.75, 4)
    # Differences 0, +1, 0, -1: mean 0, sample variance 2/3, standard error sqrt(2/3 / 4).
    assert row.difference == 0.0
    assert row.stderr == pytest.approx(math.sqrt(2 / 3 / 4))


def test_pairing_cancels_what_the_subjects_share():
    # The same two subjects are missed by both zoos, and the second names one more: every
    # difference is 0 or +1, so the standard error is smaller than either level's.
    before = [0, 0, 1, 1, 0, 1, 1, 1]
    after = [0, 0, 1, 1, 1, 1, 1, 1]
    row = paired_difference("t2i", before, after)
    assert row.difference == pytest.approx(1 / 8)
    level_stderr = math.sqrt(0.625 * 0.375 / 8)
    assert 0 < row.stderr < level_stderr


def test_compare_records_pairs_every_shared_measure_and_the_recognisability_prompts():
    before = _record("z8", [1, 0, 1], descriptor=[0, 0, 1], recognised={"a cat": 4, "a dog": 2})
    after = _record("z9", [1, 1, 1], descriptor=[1, 0, 1], recognised={"a cat": 3, "a dog": 3})
    rows = {row.measure: row for row in compare_records(before, after)}
    assert list(rows) == ["t2i", "t2i_descriptor", "recognisability"]
    assert rows["t2i"].difference == pytest.approx(1 / 3)
    assert rows["t2i_descriptor"].after == pytest.approx(2 / 3)
    # Named in 3 of 4 samples counts: the cat on both, the dog only after.
    recognised = rows["recognisability"]
    assert (recognised.before, recognised.after, recognised.count) == (0.5, 1.0, 2)


def test_a_measure_only_one_report_holds_is_left_out():
    rows = compare_records(_record("a", [1, 0], descriptor=[1, 1]), _record("b", [1, 1]))
    assert [row.measure for row in rows] == ["t2i"]


def test_reports_of_different_subjects_are_refused():
    with pytest.raises(ReportRecordError, match="--t2i-subjects"):
        compare_records(_record("a", [1, 0]), _record("b", [1, 0], subjects=["x", "y"]))


def test_the_command_prints_the_paired_table(tmp_path, capsys):
    paths = []
    for name, hits in (("before", [0, 1, 0, 1]), ("after", [1, 1, 0, 1])):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(_record(name, hits)))
    assert main(["zoo", "compare", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "before: before (seed 0)" in out
    line = next(line for line in out.splitlines() if line.startswith("t2i"))
    assert line.split()[1:3] == ["0.500", "0.750"] and "+0.250 ± 0.250" in line
    assert "4 subjects" in line


def test_the_figures_line_alone_is_refused_with_what_to_run(tmp_path, capsys):
    figures_line = tmp_path / "figures.json"
    figures_line.write_text(json.dumps({"t2i_top1": 0.9}))
    with pytest.raises(ReportRecordError, match="zoo report --json"):
        load_report_record(figures_line)
    code = main(["zoo", "compare", str(figures_line), str(tmp_path / "missing.json")])
    assert code == 2
    assert "zoo report --json" in capsys.readouterr().err
