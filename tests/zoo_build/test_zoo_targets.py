"""`styledrop zoo targets`: every target measured on the tiny zoo, and the table."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from styledrop.demo import DemoConfig
from styledrop.prompt_sets import PromptSet
from zoo_build.assemble import ZOO_CONTENT_FIRST
from zoo_build.targets import (
    TARGETS,
    TARGETS_FORMAT,
    TargetsConfig,
    load_targets,
    markdown_table,
    measure_targets,
)


@pytest.fixture(scope="module")
def measured(tiny_zoo, tmp_path_factory):
    """The tiny zoo measured with tiny settings (no rounds: `test_rounds.py` covers them)."""
    out = tmp_path_factory.mktemp("targets")
    config = TargetsConfig(
        t2i_subjects=3,
        report_batch_size=4,
        demo=DemoConfig(prompts=("a cat", "a dog"), images_per_prompt=1, steps=2),
        watercolor_prompts=PromptSet("two", ("a penguin", "a dog"), ("penguin", "dog")),
        watercolor_steps=2,
        watercolor_images_per_prompt=2,
        generation_prompts=("a cat",),
    )
    stages = []
    record = measure_targets(tiny_zoo, tiny_zoo.parent / "data", out, config, stages.append)
    return out, record, stages


def test_each_target_is_the_figure_of_its_part(measured):
    out, record, stages = measured
    assert [s for s in stages if s.startswith("== ")] == [
        "== report", "== generation", "== demo", "== watercolor",
    ]  # fmt: skip
    assert json.loads((out / "targets.json").read_text()) == record
    assert record["format"] == TARGETS_FORMAT
    assert record["machine"]["cpu_cores"] >= 1 and record["machine"]["jax_backend"] == "cpu"
    figures, parts = record["figures"], record["parts"]
    report = parts["report"]
    assert json.loads((out / "report" / "report.json").read_text())["figures"] == report
    assert figures["vq_psnr"] == report["vq_psnr"] and figures["t2i_top1"] == report["t2i_top1"]
    assert figures["t2i_over_judge_real"] == pytest.approx(
        report["t2i_top1"] / report["judge_top1_real"]
    )
    assert figures["recognisability_judge_prompts"] == report["recognisability_judge_prompts"]
    # The demo: one sample per subject, so a subject counts when the judge names it.
    styled = parts["demo"]["scores"]["round 1 (StyleDrop)"]
    assert set(styled["named_per_prompt"]) == {"a cat", "a dog"}
    assert figures["demo_subjects_named"] == sum(styled["named_per_prompt"].values())
    assert figures["demo_minutes"] > 0 and (out / "demo" / "styled.png").is_file()
    # The watercolor target is round 1's subject top-1 in the evaluation it wrote.
    evaluation = json.loads((out / "watercolor" / "evaluation.json").read_text())
    round1 = evaluation["methods"]["round 1"]
    assert figures["watercolor_subject_named"] == round1["subject_named"]
    assert round1["images"] == 4 and evaluation["provenance"]["heldout_style"] == "watercolor"
    assert evaluation["provenance"]["descriptor"] == "in watercolor painting style"
    # Their StyleDrop draws use the zoo's own content first (none was given).
    demo_config = json.loads((out / "demo" / "summary.json").read_text())["config"]
    assert demo_config["content_first"] == ZOO_CONTENT_FIRST == parts["watercolor"]["content_first"]
    generation = parts["generation"]
    assert generation["images"] == 4
    assert figures["generation_seconds_per_image"] == generation["seconds_with_loading"] / 4
    # Not run here: the rounds.
    assert (
        "rounds_text_gain_in_stderr" not in figures
        and record["met"]["rounds_text_gain_in_stderr"] is None
    )


def test_met_follows_each_bound(measured):
    _, record, _ = measured
    for target in TARGETS:
        value = record["figures"].get(target.key)
        if value is None:
            continue
        expected = value >= target.bound if target.at_least else value <= target.bound
        assert record["met"][target.key] is bool(expected), target.key
    assert TARGETS[0].met(float("nan")) is None


def test_table_has_a_row_per_target_and_a_column_per_zoo(measured, tiny_zoo):
    out, record, _ = measured
    table = (out / "targets.md").read_text().splitlines()
    assert sum(line.startswith("| ") for line in table) == len(TARGETS) + 2
    assert "report/report-recognisability.png" in table[-1]
    assert (out / "report" / "report-recognisability.png").is_file()
    two = markdown_table([record, load_targets(out / "targets.json")], ["before", "after"])
    assert two[0] == "| target | bound | before | after |"
    psnr = f"{record['figures']['vq_psnr']:.3g}"
    assert two[2].count(psnr) == 2 and two[2].count("not met") == 2  # far below 26 dB
    assert "not measured" in next(row for row in two if "round 2 CLIP" in row)


def test_command_refuses_bad_inputs_before_measuring(tiny_zoo, tmp_path, capsys):
    data = tiny_zoo.parent / "data"
    assert main(["zoo", "targets", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "styledrop zoo data --out" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text("{}")  # a world without its held-out styles
    assert main(["zoo", "targets", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "held-out styles" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    argv = ["zoo", "targets", "--zoo", str(tiny_zoo), "--data", str(data), "--out",
            str(tmp_path / "o"), "--against", str(bad)]  # fmt: skip
    assert main(argv) == 2
    assert "is not a targets record" in capsys.readouterr().err
    argv = ["zoo", "targets", "--zoo", str(tmp_path), "--data", str(data), "--out",
            str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    assert "holds no model.json" in capsys.readouterr().err
    argv = ["zoo", "targets", "--zoo", str(tiny_zoo), "--data", str(data), "--out",
            str(tmp_path / "o"), "--rounds", "0", "16"]  # fmt: skip
    assert main(argv) == 2
    assert "at least 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.e2e
def test_rounds_target_is_round2_clip_over_round1_in_standard_errors(tiny_zoo, tmp_path):
    two = PromptSet("two", ("a penguin", "a dog"), ("penguin", "dog"))
    # The paper's rule: the tiny zoo stores content first 0.75, under which its 2-step
    # adapters leave every image as the base draws it (a difference of 0 with no error).
    config = TargetsConfig(
        t2i_subjects=3, report_batch_size=4, demo=None, watercolor_prompts=None,
        generation_prompts=(), watercolor_steps=2, rounds_pool=1,
        rounds_images_per_prompt=2, rounds_prompts=two, content_first=0.0,
    )  # fmt: skip
    record = measure_targets(tiny_zoo, tiny_zoo.parent / "data", tmp_path, config, print)
    assert set(record["parts"]) == {"report", "rounds"}
    evaluation = json.loads((tmp_path / "rounds" / "evaluation.json").read_text())
    gain = evaluation["comparisons"]["round 2 CLIP feedback - round 1"]
    assert record["parts"]["rounds"]["round2_clip_minus_round1"] == gain
    assert record["figures"]["rounds_text_gain_in_stderr"] == pytest.approx(
        gain["text"] / gain["text_stderr"]
    )
    settings = evaluation["provenance"]["rounds_config"]
    assert settings["pool_images_per_prompt"] == 1 and settings["round1_steps"] == 2
    assert evaluation["provenance"]["content_first"] == 0.0 == settings["content_first"]
    assert evaluation["provenance"]["descriptor"] == "in watercolor painting style"
    assert (tmp_path / "rounds" / "watercolor_house.png").is_file()
