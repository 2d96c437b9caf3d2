"""The CLIP scorer: exact self-similarity, batch/order invariance, offline loading."""

from __future__ import annotations

import numpy as np
import pytest

from feedback.scorer import ClipScorer, ScorerLoadError


@pytest.fixture(scope="module")
def scorer(tiny_zoo):
    return ClipScorer.load(tiny_zoo / "judge", batch_size=3)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(7, 64, 64, 3), dtype=np.uint8)


def test_identical_images_score_one(scorer, images):
    scores = scorer.style_scores(images, images[:1])
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(scores[1:] < 1.0 - 1e-4)


def test_scores_do_not_depend_on_batch_size_or_order(scorer, images, tiny_zoo):
    prompts = ["a cat", "a dog", "a penguin", "a house", "a banana", "a rocket", "a tree"]
    text = scorer.text_scores(images, prompts)
    style = scorer.style_scores(images, images[:2])
    other = ClipScorer.load(tiny_zoo / "judge", batch_size=5)
    order = np.array([6, 2, 0, 5, 1, 3, 4])
    np.testing.assert_array_equal(other.text_scores(images[order], [prompts[i] for i in order]),
                                  text[order])  # fmt: skip
    np.testing.assert_array_equal(other.style_scores(images[order], images[:2]), style[order])


def test_scores_are_raw_cosines(scorer, images):
    a = scorer.image_embeddings(images[:2])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    expected = float(a[0] @ scorer.text_embeddings(["a cat"])[0])
    assert scorer.text_scores(images[:1], ["a cat"])[0] == pytest.approx(expected, abs=1e-6)


def test_classify_picks_the_nearest_class(scorer, images):
    best, sims = scorer.classify(images, [["a cat", "cat"], ["a dog"], ["a rocket"]])
    assert sims.shape == (7, 3)
    np.testing.assert_array_equal(best, sims.argmax(1))


def test_resizes_other_image_sizes(scorer):
    big = np.full((2, 100, 80, 3), 200, np.uint8)
    assert scorer.pixels(big).shape == (2, 3, 64, 64)


def test_real_architecture_loads_weights_saved_in_the_test(tmp_path):
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-S-32")
    path = tmp_path / "vit-s-32.pt"
    torch.save(model.state_dict(), path)
    scorer = ClipScorer.load("ViT-S-32", weights=path)
    assert scorer.image_size == (224, 224)
    image = np.random.default_rng(1).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = model.eval().encode_image(scorer.pixels(image), normalize=True).numpy()
    np.testing.assert_allclose(scorer.image_embeddings(image), expected, atol=1e-5)


def test_load_errors_say_what_to_pass(tmp_path):
    with pytest.raises(ScorerLoadError, match="--clip-weights"):
        ClipScorer.load("ViT-S-32")
    with pytest.raises(ScorerLoadError, match="neither"):
        ClipScorer.load(tmp_path)
    with pytest.raises(ScorerLoadError, match="not a file"):
        ClipScorer.load("ViT-S-32", weights=tmp_path / "missing.pt")
