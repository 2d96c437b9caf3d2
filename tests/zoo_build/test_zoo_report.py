"""The zoo's embedded location, assembly into float16, and `styledrop zoo report`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from cli.main import main
from muse import checkpoint
from muse.folder_layout import TRANSFORMER_FILE
from styledrop.zoo import embedded
from styledrop.zoo.styles import NOT_FOR_LETTERS, TRAIN_STYLES
from styledrop.zoo.vocabulary import get_subject
from tests.html_report import assert_report_complete
from zoo_build.descriptors import HELDOUT_DESCRIPTORS, world_style_prompts
from zoo_build.recognisability import SAMPLE_PROMPTS
from zoo_build.report import spread, top1_by_group, zoo_report


def test_assembled_zoo_stores_float16_with_a_complete_manifest(tiny_zoo):
    base_run = tiny_zoo.parent / "base" / "transformer.safetensors"
    stored = load_file(str(tiny_zoo / TRANSFORMER_FILE))
    trained = load_file(str(base_run))
    assert stored.keys() == trained.keys()
    for name, array in stored.items():
        assert array.dtype == np.float16, name
        np.testing.assert_allclose(array, trained[name], rtol=1e-3, atol=1e-4, err_msg=name)
    manifest = embedded.read_manifest(tiny_zoo)
    on_disk = {str(p.relative_to(tiny_zoo)) for p in tiny_zoo.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(manifest["files"]) == on_disk
    for name, digest in manifest["files"].items():
        assert checkpoint.sha256_file(tiny_zoo / name) == digest
    assert "judge/open_clip_config.json" in manifest["files"]
    assert manifest["training"]["base"]["complete"] is True
    assert manifest["training"]["judge"]["train"]["steps"] == 2


def test_embedded_paths_follow_the_environment(tiny_zoo, monkeypatch, tmp_path):
    monkeypatch.setenv(embedded.ZOO_ENV, str(tiny_zoo))
    assert embedded.embedded_base() == tiny_zoo
    assert embedded.embedded_judge() == tiny_zoo / "judge"
    monkeypatch.setenv(embedded.ZOO_ENV, str(tmp_path))
    with pytest.raises(embedded.ZooMissingError, match="--base"):
        embedded.embedded_base()


def test_spread_picks_evenly_and_keeps_ends():
    assert spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread([1, 2], 5) == [1, 2]
    assert spread([1, 2, 3], None) == [1, 2, 3]


def test_report_figures_and_html(tiny_zoo, tmp_path):
    data = tiny_zoo.parent / "data"
    figures = zoo_report(tiny_zoo, data, tmp_path / "report.html", t2i_subjects=3,
                         batch_size=4, log=lambda _: None,
                         json_path=tmp_path / "report.json")  # fmt: skip
    assert figures["vocabulary_size"] == 6
    assert figures["t2i_subjects"] == 3
    for key in ("vq_psnr", "judge_top1_real", "judge_top1_heldout_style", "t2i_top1"):
        assert np.isfinite(figures[key]), key
    top1 = ("judge_top1_real", "judge_top1_heldout_style", "judge_top1_vq_reconstruction",
            "judge_top1_vq_canonical")  # fmt: skip
    for key in (*top1, "t2i_top1"):
        assert 0.0 <= figures[key] <= 1.0
    assert 0.0 < figures["vq_psnr"] < 100.0
    assert 0.0 <= figures["t2i_top1_descriptor"] <= 1.0
    assert "t2i_descriptor_ratio" in figures
    by_descriptor = figures["t2i_top1_by_descriptor"]
    assert set(by_descriptor) <= set(HELDOUT_DESCRIPTORS) and by_descriptor
    assert all(0.0 <= value <= 1.0 for value in by_descriptor.values())
    # The world's own styles: 3 subjects take the first 3 training styles, all "fg".
    assert 0.0 <= figures["t2i_top1_world_style"] <= 1.0
    assert "t2i_world_style_ratio" in figures
    assert set(figures["t2i_top1_by_world_style_kind"]) == {"fg"}
    page = (tmp_path / "report.html").read_text()
    pictures = list((tmp_path / "report_files").glob("*.png"))
    assert page.count("<img") == len(pictures) > 3 + 3 + 16
    assert assert_report_complete(tmp_path / "report.html") == len(pictures)
    assert "held-out style descriptor" in page and HELDOUT_DESCRIPTORS[0] in page
    assert "training styles appended" in page and TRAIN_STYLES[0].suffix in page
    # The recognisability check: 24 prompts x 4 samples, also saved as one grid.
    assert figures["recognisability_prompts"] == len(SAMPLE_PROMPTS) == 24
    counts = figures["recognisability_judge_by_prompt"]
    assert list(counts) == list(SAMPLE_PROMPTS) and all(0 <= n <= 4 for n in counts.values())
    assert figures["recognisability_judge_prompts"] == sum(n >= 3 for n in counts.values())
    assert figures["recognisability_judge_top1"] == sum(counts.values()) / 96
    grid = np.asarray(Image.open(tmp_path / "report-recognisability.png"))
    assert grid.shape == (12 * 66 + 2, 8 * 66 + 2, 3)  # 12 rows of 2 prompts x 4, 2 px gaps
    assert "Recognisability check" in page
    # The per-subject record `zoo compare` pairs: one 0/1 per drawn subject and measure,
    # whose mean is the figure.
    record = json.loads((tmp_path / "report.json").read_text())
    assert record["figures"] == json.loads(json.dumps(figures))
    assert len(record["subjects"]) == 3 and record["seed"] == 0
    for measure, figure in (("t2i", "t2i_top1"), ("t2i_descriptor", "t2i_top1_descriptor"),
                            ("t2i_world_style", "t2i_top1_world_style")):  # fmt: skip
        hits = record["named"][measure]
        assert len(hits) == 3 and set(hits) <= {0, 1}
        assert sum(hits) / 3 == pytest.approx(figures[figure])


def test_report_command_prints_one_json_line(tiny_zoo, tmp_path, capsys):
    data = tiny_zoo.parent / "data"
    code = main(["zoo", "report", "--zoo", str(tiny_zoo), "--data", str(data),
                 "--html", str(tmp_path / "r.html"), "--t2i-subjects", "2",
                 "--no-descriptors", "--no-recognisability"])  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["t2i_subjects"] == 2 and figures["vocabulary_size"] == 6
    assert "t2i_top1_descriptor" not in figures and "t2i_top1_world_style" not in figures
    assert "recognisability_judge_prompts" not in figures
    assert not (tmp_path / "r-recognisability.png").exists()


def test_top1_by_descriptor_groups_prompts_by_their_descriptor():
    from zoo_build.report import top1_by_descriptor

    truth = [f"s{i}" for i in range(22)]
    predicted = ["wrong" if i in (0, 1) else t for i, t in enumerate(truth)]
    split = top1_by_descriptor(truth, predicted)
    assert len(split) == 20
    assert split[HELDOUT_DESCRIPTORS[0]] == 0.5  # prompts 0 (wrong) and 20 (right)
    assert split[HELDOUT_DESCRIPTORS[1]] == 0.5  # prompts 1 (wrong) and 21 (right)
    assert split[HELDOUT_DESCRIPTORS[2]] == 1.0


def test_world_style_prompts_cycle_the_training_styles_letters_keep_visible():
    penguin, letter = get_subject("penguin"), get_subject("letter_a")
    prompts, styles = world_style_prompts([penguin] * len(TRAIN_STYLES))
    assert styles == list(TRAIN_STYLES)
    assert prompts[0] == f"a penguin {TRAIN_STYLES[0].suffix}"
    assert all(not style.heldout for style in styles)
    _, letter_styles = world_style_prompts([letter] * len(TRAIN_STYLES))
    assert not {style.name for style in letter_styles} & NOT_FOR_LETTERS


def test_top1_by_group_keeps_first_seen_order():
    split = top1_by_group(["bg", "fg", "bg"], ["a", "b", "c"], ["a", "x", "x"])
    assert split == {"bg": 0.5, "fg": 0.0}
