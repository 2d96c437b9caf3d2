"""Prompt sets, the feedback experiment end to end, and `styledrop evaluate`, on a tiny zoo."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from adapters.files import read_adapter_file
from cli.main import main
from feedback.scorer import ClipScorer
from muse.checkpoint import read_model_json
from styledrop.dataset import StyleExample
from styledrop.prompt_sets import (
    PromptSet,
    load_prompt_set,
    parti190_prompts,
    round_prompts,
    world_prompts,
)
from styledrop.rounds import (
    SETTINGS_FILE,
    RoundsConfig,
    check_stage_settings,
    run_rounds,
    stage_settings,
)
from styledrop.zoo.draws import heldout_references
from tests.html_report import assert_report_complete


def test_prompt_sets():
    rounds = round_prompts()
    assert len(rounds.prompts) == 30 == len(set(rounds.prompts))
    assert "house" not in rounds.subjects
    world = world_prompts()
    assert len(world.prompts) == 48 and not set(world.subjects) & set(rounds.subjects)
    covered = parti190_prompts(world_only=True)
    assert len(covered.prompts) == len(covered.sources) >= 150
    assert f"{len(covered.prompts)} of 190" in covered.note
    assert len(parti190_prompts(world_only=False).prompts) == 190


def test_prompt_file_and_errors(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# mine\na cat\n\na dog on a boat\n")
    assert load_prompt_set(str(path), world_only=True).prompts == ("a cat", "a dog on a boat")
    # On the zoo a line that is a subject's phrase is that subject; elsewhere none is.
    assert load_prompt_set(str(path), world_only=True).subjects == ("cat", None)
    assert load_prompt_set(str(path), world_only=False).subjects == (None, None)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no prompts"):
        load_prompt_set(str(tmp_path / "empty.txt"), world_only=True)
    with pytest.raises(ValueError, match="parti190"):
        load_prompt_set("nonsense", world_only=True)


@pytest.fixture(scope="module")
def experiment(tiny_zoo, tmp_path_factory):
    """run_rounds with 2-step rounds, a 30 x 2 pool and a 2-prompt evaluation."""
    out = tmp_path_factory.mktemp("rounds")
    style, _ = heldout_references("line_art", ["house"])
    examples = [StyleExample(style[0], "a house", "house.png", "0" * 64)]
    prompts = PromptSet("two", ("a penguin", "a dog"), ("penguin", "dog"))
    config = RoundsConfig(round1_steps=2, round2_steps=2, pool_images_per_prompt=2,
                          eval_images_per_prompt=2, round1_lr=1e-3, round2_lr=1e-3)  # fmt: skip
    scorer = ClipScorer.load(tiny_zoo / "judge")
    evaluation = run_rounds(
        tiny_zoo, examples, "in line art style", out, scorer, prompts, config,
        reference_caption="a house", heldout_style="line_art",
    )  # fmt: skip
    return out, evaluation


def test_pool_and_selections_follow_the_policies(experiment):
    out, _ = experiment
    pool = json.loads((out / "pool" / "candidates.json").read_text())
    assert len(pool) == 60 and all((out / "pool" / c["id"]).is_file() for c in pool)
    chosen = json.loads((out / "selections.json").read_text())
    assert len(chosen["clip"]) == len(chosen["random"]) == 30
    by_prompt = {}
    for candidate in pool:
        by_prompt.setdefault(candidate["prompt"], []).append(candidate)
    best = {max(group, key=lambda c: c["text_score"])["id"] for group in by_prompt.values()}
    assert set(chosen["clip"]) == best


def test_round2_adapters_are_round2_kind_trained_on_the_selection(experiment):
    out, _ = experiment
    for name in ("clip", "random"):
        adapter = read_adapter_file(out / f"round2_{name}" / "adapter.safetensors")
        assert adapter.spec.kind == "r2" and int(adapter.metadata["round"]) == 2
        assert len(adapter.metadata["source_images"]) == 30


def test_evaluation_table_has_four_methods_with_ground_truth(experiment):
    out, evaluation = experiment
    names = [m.name for m in evaluation.methods]
    assert names == ["base + descriptor", "round 1", "round 2 CLIP feedback", "round 2 random"]
    figures = json.loads((out / "evaluation.json").read_text())
    for name in names:
        summary = figures["methods"][name]
        assert summary["images"] == 4
        for key in ("text", "style", "leakage", "style_truth"):
            assert np.isfinite(summary[key]) and np.isfinite(summary[f"{key}_stderr"]), key
    assert figures["provenance"]["selected"] == {"clip": 30, "random": 30}
    # The prompts are world subjects, so the judge names each image's subject as well.
    assert evaluation.score_keys() == ["text", "style", "leakage", "style_truth", "subject_named"]
    for name in names:
        assert figures["methods"][name]["subject_named"] in (0.0, 0.25, 0.5, 0.75, 1.0)


def test_feedback_selection_figures_describe_the_pool_and_both_picks(experiment, tiny_zoo):
    from PIL import Image

    out, evaluation = experiment
    pool = json.loads((out / "pool" / "candidates.json").read_text())
    picked = evaluation.provenance["feedback_selection"]
    assert list(picked) == ["pool", "clip", "random"]
    assert [picked[k]["images"] for k in picked] == [60, 30, 30]
    assert picked["pool"]["text"] == pytest.approx(np.mean([c["text_score"] for c in pool]))
    # CLIP feedback takes each prompt's best text score: its mean is at least the pool's.
    assert picked["clip"]["text"] >= picked["pool"]["text"]
    for figures in picked.values():
        assert 0 <= figures["subject_named"] <= 1 and 0 <= figures["leakage"] <= 1
    # Leakage as the evaluation counts it: closer to the reference's "a house" than to the
    # image's own prompt, here over the whole pool.
    scorer = ClipScorer.load(tiny_zoo / "judge")
    pixels = np.stack([np.asarray(Image.open(out / "pool" / c["id"]).convert("RGB")) for c in pool])
    house = scorer.text_scores(pixels, ["a house"] * len(pool))
    own = np.array([c["text_score"] for c in pool])
    assert picked["pool"]["leakage"] == pytest.approx(np.mean(house > own))
    # The rounds report: the reference, then per method 2 prompts x 2 images.
    assert assert_report_complete(out / "evaluation.html") == 1 + 4 * 4


def test_evaluation_compares_the_papers_pairs_by_prompt(experiment):
    out, evaluation = experiment
    figures = json.loads((out / "evaluation.json").read_text())
    assert list(figures["comparisons"]) == [
        "round 1 - base + descriptor",
        "round 2 CLIP feedback - round 1",
        "round 2 CLIP feedback - round 2 random",
    ]
    per_prompt = figures["per_prompt"]
    for a, b in evaluation.comparisons:
        # The paired mean difference is the mean of the per-prompt differences.
        expected = np.mean(np.subtract(per_prompt[a]["text"], per_prompt[b]["text"]))
        assert figures["comparisons"][f"{a} - {b}"]["text"] == pytest.approx(expected)
        # Two prompts: the per-prompt means average to the method's overall mean.
        assert np.mean(per_prompt[a]["style"]) == pytest.approx(figures["methods"][a]["style"])
    assert "round 2 CLIP feedback − round 1" in (out / "evaluation.html").read_text()


def test_rerun_skips_finished_stages(experiment, tiny_zoo):
    out, _ = experiment
    adapter = out / "round1" / "adapter.safetensors"
    before = adapter.stat().st_mtime_ns
    style, _ = heldout_references("line_art", ["house"])
    scorer = ClipScorer.load(tiny_zoo / "judge")
    same = RoundsConfig(round1_steps=2, round2_steps=2, pool_images_per_prompt=2,
                        eval_images_per_prompt=1, round1_lr=1e-3, round2_lr=1e-3)  # fmt: skip
    run_rounds(tiny_zoo, [StyleExample(style[0], "a house", "h.png", "0" * 64)],
               "in line art style", out, scorer, PromptSet("one", ("a dog",), (None,)),
               same, reference_caption="a house")  # fmt: skip
    assert adapter.stat().st_mtime_ns == before


def test_rerun_with_other_settings_is_refused_before_anything_changes(experiment, tiny_zoo):
    out, _ = experiment
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    style, _ = heldout_references("line_art", ["house"])
    scorer = ClipScorer.load(tiny_zoo / "judge")
    more_steps = RoundsConfig(round1_steps=3, round2_steps=2, pool_images_per_prompt=2,
                              eval_images_per_prompt=1, round1_lr=1e-3, round2_lr=1e-3)  # fmt: skip
    with pytest.raises(ValueError, match=r"round1_steps.*new output folder"):
        run_rounds(tiny_zoo, [StyleExample(style[0], "a house", "h.png", "0" * 64)],
                   "in line art style", out, scorer, PromptSet("one", ("a dog",), (None,)),
                   more_steps, reference_caption="a house")  # fmt: skip
    other_image = [StyleExample(255 - style[0], "a house", "h.png", "0" * 64)]
    with pytest.raises(ValueError, match="style_images"):
        run_rounds(tiny_zoo, other_image, "in line art style", out, scorer,
                   PromptSet("one", ("a dog",), (None,)), RoundsConfig(round1_steps=2),
                   reference_caption="a house")  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files


def test_stage_settings_name_the_compute_dtype(tmp_path):
    old = {"round1_steps": 2, "descriptor": "x"}  # written before the dtype setting
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(old))
    picks = {"picks_per_prompt": 1}  # it kept the paper's one image per prompt
    check_stage_settings(tmp_path, {**old, "dtype": "float32", **picks})  # computed in float32
    # Its pool was drawn at the base's temperatures, the ones recorded today.
    pools = {"pool_temperature": 1.0, "pool_token_temperature": 0.5}
    check_stage_settings(tmp_path, {**old, "dtype": "float32", **pools, **picks})
    with pytest.raises(ValueError, match=r"\(dtype\)"):
        check_stage_settings(tmp_path, {**old, "dtype": "bfloat16", **pools, **picks})
    with pytest.raises(ValueError, match=r"\(picks_per_prompt\)"):
        check_stage_settings(tmp_path, {**old, "dtype": "float32", **pools, "picks_per_prompt": 3})


def test_draws_take_decoding_temperatures_and_the_pool_records_them(experiment, tiny_zoo):
    from styledrop.evaluation import Method, draw

    out, _ = experiment
    method = Method("round 1", out / "round1" / "adapter.safetensors")
    own = read_model_json(tiny_zoo)["config"]["sampling"]

    def images(**temperatures):
        return draw(tiny_zoo, method, ["a dog"], "in line art style", 2, 0, **temperatures)

    default = images()
    same = images(temperature=own["temperature"], token_temperature=own["token_temperature"])
    np.testing.assert_array_equal(default, same)  # None is the base's own
    assert not np.array_equal(default, images(temperature=4.5, token_temperature=1.0))
    hot = RoundsConfig(pool_temperature=4.5, pool_token_temperature=1.0)
    style, _ = heldout_references("line_art", ["house"])
    examples = [StyleExample(style[0], "a house", "h.png", "0" * 64)]
    settings = stage_settings(tiny_zoo, examples, "x", hot)
    assert (settings["pool_temperature"], settings["pool_token_temperature"]) == (4.5, 1.0)
    # Left None, the base's are recorded: an edited model.json is not taken for the same pool.
    default = stage_settings(tiny_zoo, examples, "x", RoundsConfig())
    assert default["pool_token_temperature"] == own["token_temperature"]


def test_evaluate_command(experiment, tiny_zoo, tmp_path, capsys):
    out, _ = experiment
    reference = tmp_path / "house.png"
    from PIL import Image

    Image.fromarray(heldout_references("line_art", ["house"])[0][0]).save(reference)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a penguin\na dog\n")
    round1 = out / "round1" / "adapter.safetensors"
    code = main([
        "evaluate", "--base", str(tiny_zoo), "--adapter", f"r1={round1}",
        "--reference", str(reference), "--prompts", str(prompts), "-n", "1",
        "--json", str(tmp_path / "e.json"), "--html", str(tmp_path / "e.html"),
    ])  # fmt: skip
    assert code == 0
    figures = json.loads((tmp_path / "e.json").read_text())
    assert set(figures["methods"]) == {"base + descriptor", "r1"}
    # "a penguin" and "a dog" are world subjects' phrases, so the judge names them too.
    assert figures["methods"]["r1"]["subject_named"] in (0.0, 0.5, 1.0)
    assert figures["provenance"]["dtype"] == "float32"  # --dtype auto, without a GPU
    assert figures["provenance"]["reference_caption"] == "a house"  # read from the adapter
    own = figures["provenance"]["token_temperature"]  # the base's, as none was given
    assert own == read_model_json(tiny_zoo)["config"]["sampling"]["token_temperature"]
    assert assert_report_complete(tmp_path / "e.html") == 1 + 2 * 2  # reference, 2 methods
    assert "r1" in capsys.readouterr().out
    args = ["evaluate", "--adapter", str(round1), "--reference", str(reference), "--json", "j",
            "--html", "h", "--token-temperature", "0"]  # fmt: skip
    assert main(args) == 2
    assert "--token-temperature must be positive, got 0.0" in capsys.readouterr().err


def test_rounds_command_reuses_the_stages_and_prints_what_feedback_picked(
    experiment, tiny_zoo, tmp_path, capsys
):
    from PIL import Image

    out = tmp_path / "rounds"
    shutil.copytree(experiment[0], out)
    adapter = out / "round1" / "adapter.safetensors"
    before = adapter.stat().st_mtime_ns
    reference = tmp_path / "house.png"
    Image.fromarray(heldout_references("line_art", ["house"])[0][0]).save(reference)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog\n")
    code = main([
        "rounds", str(reference), "--caption", "house.png=a house", "--descriptor",
        "in line art style", "--base", str(tiny_zoo), "--prompts", str(prompts),
        "--round1-steps", "2", "--round2-steps", "2", "--round1-lr", "1e-3", "--round2-lr",
        "1e-3", "--pool-k", "2", "-n", "1", "--out", str(out),
    ])  # fmt: skip
    assert code == 0 and adapter.stat().st_mtime_ns == before  # the stages were reused
    printed = capsys.readouterr().out
    assert "What feedback picked from the pool" in printed
    table = printed.split("What feedback picked from the pool")[1].splitlines()
    assert [line.split()[:2] for line in table[2:5]] == [["pool", "60"], ["clip", "30"],
                                                         ["random", "30"]]  # fmt: skip
    figures = json.loads((out / "evaluation.json").read_text())
    assert figures["provenance"]["feedback_selection"]["clip"]["images"] == 30


def test_rounds_command_keeps_the_best_few_per_prompt(experiment, tiny_zoo, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "rounds"
    shutil.copytree(experiment[0], out)
    (out / SETTINGS_FILE).unlink()  # the stages are reused; the selection follows the settings
    reference = tmp_path / "house.png"
    Image.fromarray(heldout_references("line_art", ["house"])[0][0]).save(reference)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog\n")
    args = [
        "rounds", str(reference), "--caption", "house.png=a house", "--descriptor",
        "in line art style", "--base", str(tiny_zoo), "--prompts", str(prompts),
        "--round1-steps", "2", "--round2-steps", "2", "--round1-lr", "1e-3", "--round2-lr",
        "1e-3", "--pool-k", "2", "-n", "1", "--out", str(out), "--round2-adapter", "r1",
    ]  # fmt: skip
    assert main([*args, "--picks-per-prompt", "3"]) == 2  # more than the pool holds
    assert "picks_per_prompt must be in [1, pool_images_per_prompt = 2]" in capsys.readouterr().err
    assert not (out / SETTINGS_FILE).exists()
    assert main([*args, "--picks-per-prompt", "2"]) == 0
    chosen = json.loads((out / "selections.json").read_text())
    assert len(chosen["clip"]) == len(chosen["random"]) == 60  # 2 of each prompt's 2
    pool = json.loads((out / "pool" / "candidates.json").read_text())
    assert set(chosen["clip"]) == {c["id"] for c in pool}
    settings = json.loads((out / SETTINGS_FILE).read_text())
    assert (settings["picks_per_prompt"], settings["round2_adapter"]) == (2, "r1")
