"""Statistics and selection policies on hand-made numbers a reader can check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from feedback.metrics import (
    leakage_flags,
    mean_stderr,
    paired_difference,
    preference_rates,
    wilson_interval,
)
from feedback.selection import (
    Candidate,
    HumanSelection,
    candidates_from_json,
    clip_best_per_prompt,
    random_selection,
    threshold,
    top_k,
)

POOL = [
    Candidate("a0", "a cat", 0.30, 0.60),
    Candidate("a1", "a cat", 0.35, 0.50),
    Candidate("b0", "a dog", 0.20, 0.90),
    Candidate("b1", "a dog", 0.10, 0.95),
    Candidate("c0", "a tree", 0.25, 0.70),
]


def test_mean_stderr():
    mean, err = mean_stderr([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and err == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert math.isnan(mean_stderr([5.0])[1])


def test_paired_difference_is_over_prompt_means():
    # Two prompts, two images each; the prompts differ a lot, the methods by 0.1 and 0.3.
    a = np.array([0.9, 0.7, 0.4, 0.2])
    b = np.array([0.7, 0.7, 0.0, 0.0])
    mean, err = paired_difference(a, b, images_per_prompt=2)
    assert mean == pytest.approx(0.2)  # per-prompt differences 0.1 and 0.3
    assert err == pytest.approx(np.std([0.1, 0.3], ddof=1) / math.sqrt(2))
    # Pairing takes the prompts' difficulty out: far below the unpaired error of a - b.
    assert err < math.hypot(mean_stderr(a)[1], mean_stderr(b)[1])


def test_paired_difference_skips_missing_scores_and_checks_shapes():
    a = np.array([0.5, np.nan, np.nan, np.nan, 0.4, 0.2])
    b = np.array([0.1, 0.3, np.nan, np.nan, 0.1, 0.1])
    mean, _ = paired_difference(a, b, images_per_prompt=2)
    assert mean == pytest.approx(((0.5 - 0.2) + (0.3 - 0.1)) / 2)  # the NaN prompt is left out
    with pytest.raises(ValueError, match="P \\* 4"):
        paired_difference(a, b, images_per_prompt=4)
    with pytest.raises(ValueError):
        paired_difference(a, b[:4], images_per_prompt=2)


def test_leakage_counts_images_closer_to_the_reference_caption():
    flags = leakage_flags(np.array([0.3, 0.2, 0.4]), np.array([0.1, 0.25, 0.4]))
    assert flags.tolist() == [False, True, False]


def test_preference_rates_and_wilson():
    rates = preference_rates(["A"] * 8 + ["B"] + ["tie"], "A", "B")
    assert rates["A"]["rate"] == 0.8 and rates["tie"]["votes"] == 1
    low, high = wilson_interval(8, 10)
    assert low < 0.8 < high and low >= 0.0 and high <= 1.0
    with pytest.raises(ValueError, match="expected"):
        preference_rates(["C"], "A", "B")


def test_clip_feedback_keeps_the_best_text_score_per_prompt():
    assert [c.id for c in clip_best_per_prompt(POOL)] == ["a1", "b0", "c0"]
    # The best two per prompt, best first; a prompt with one image gives its one.
    assert [c.id for c in clip_best_per_prompt(POOL, 2)] == ["a1", "a0", "b0", "b1", "c0"]
    tied = [Candidate("x0", "a fox", 0.3), Candidate("x1", "a fox", 0.3)]
    assert [c.id for c in clip_best_per_prompt(tied)] == ["x0"]  # ties: pool order
    with pytest.raises(ValueError, match="per_prompt"):
        clip_best_per_prompt(POOL, 0)


def test_top_k_threshold_random():
    assert [c.id for c in top_k(POOL, 2)] == ["a1", "a0"]
    assert [c.id for c in top_k(POOL, 2, key="style")] == ["b1", "b0"]
    assert [c.id for c in threshold(POOL, text_min=0.25, style_min=0.6)] == ["a0", "c0"]
    picked = random_selection(POOL, 3, seed=1)
    assert len({c.id for c in picked}) == 3 and picked == random_selection(POOL, 3, seed=1)
    with pytest.raises(ValueError):
        random_selection(POOL, 6)


def test_human_selection_round_trips_and_resolves(tmp_path):
    record = HumanSelection(pool="job-1", reviewer="ana")
    for candidate in ("c0", "a0", "c0"):
        record.pick(candidate)
    record.unpick("a0")
    record.pick("b1")
    path = record.save(tmp_path / "selection.json")
    loaded = HumanSelection.load(path)
    assert loaded == record
    assert [c.id for c in loaded.resolve(POOL)] == ["c0", "b1"]
    (tmp_path / "hand.json").write_text(json.dumps({"selected": ["zz"]}))
    with pytest.raises(ValueError, match="not in the pool"):
        HumanSelection.load(tmp_path / "hand.json").resolve(POOL)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="selected"):
        HumanSelection.load(tmp_path / "bad.json")


def test_candidates_from_json(tmp_path):
    path = tmp_path / "candidates.json"
    path.write_text(json.dumps([{"file": "x.png", "prompt": "a cat", "text_score": 0.3}]))
    (candidate,) = candidates_from_json(path)
    assert candidate.id == "x.png" and candidate.text_score == 0.3
    assert math.isnan(candidate.style_score)
