"""The emoji world dataset builder: vocabulary, renderers, styles, captions, splits, Parti-190.

Needs the fonts (fonts-noto-color-emoji, fonts-symbola, fonts-dejavu-core, fontconfig): the
tests fail, naming the package, when one is missing.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from cli.zoo.data import main as zoo_data
from styledrop.zoo import draws, parti_mapping, render, styles, vocabulary
from styledrop.zoo.draws import SPLITS, captions_for, heldout_references
from styledrop.zoo.vocabulary import SUBJECTS, get_subject
from zoo_build import dataset
from zoo_build.dataset import build_dataset

SMALL = [
    "penguin",
    "banana",
    "racing_car",
    "teapot",
    "christmas_tree",
    "cityscape",
    "red_circle",
    "owl",
    "letter_a",
    "letter_q",
]
PROCEDURAL = [s for s in styles.TRAIN_STYLES + styles.HELDOUT_STYLES if s.kind != "glyph"]


def _alpha(image) -> np.ndarray:
    return np.asarray(image)[..., 3]


def _mentions(caption: str, style: styles.Style) -> bool:
    return style.suffix in caption or bool(style.lead and style.lead in caption)


# --------------------------------------------------------------------------------------------
# Vocabulary.


def test_vocabulary_size_categories_and_letters():
    emoji = vocabulary.EMOJI_SUBJECTS
    assert 300 <= len(emoji) <= 450
    counts = vocabulary.category_counts()
    for category in vocabulary.CATEGORIES:
        assert counts[category] >= 5, category
    assert [s.chars for s in vocabulary.LETTER_SUBJECTS] == list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert len({s.id for s in SUBJECTS}) == len(SUBJECTS)
    assert all(len(s.chars) == 1 for s in SUBJECTS)  # no sequences to mis-render


def test_noun_phrases():
    assert get_subject("owl").phrase() == "an owl"
    assert get_subject("penguin").phrase() == "a penguin"
    assert get_subject("grapes").phrase() == "grapes"
    assert get_subject("earth").phrase() == "the earth"
    assert get_subject("unicorn").phrase() == "a unicorn"
    assert get_subject("letter_a").phrase() == "letter 'A'"
    with pytest.raises(KeyError, match="No subject"):
        get_subject("capybara")


def test_every_emoji_subject_renders():
    missing = [s.id for s in vocabulary.EMOJI_SUBJECTS if not render.can_render_emoji(s.chars)]
    assert missing == []


# --------------------------------------------------------------------------------------------
# Renderers.


@pytest.mark.parametrize("subject_id", ["penguin", "banana", "racing_car", "cityscape"])
def test_render_emoji(subject_id):
    image = render.render_emoji(get_subject(subject_id), size=64)
    assert image.mode == "RGBA" and image.size == (64, 64)
    alpha = _alpha(image)
    assert (alpha > 128).mean() > 0.15
    assert alpha[0].max() == 0 and alpha[:, 0].max() == 0  # framed with a margin
    rgb = np.asarray(image)[..., :3][alpha > 128]
    assert rgb.std() > 10  # colour, not a flat tofu box


def test_render_emoji_rejects_what_the_font_lacks():
    assert not render.can_render_emoji("\ue000")
    with pytest.raises(ValueError, match="cannot render"):
        render.render_emoji("\ue000")


def test_render_letters_are_distinct_and_sized():
    images = [render.render_letter(ch, size=48) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    assert all(image.size == (48, 48) and image.mode == "RGBA" for image in images)
    assert all((_alpha(image) > 128).mean() > 0.02 for image in images)
    assert len({image.tobytes() for image in images}) == 26


def test_render_symbola_line_art_in_a_colour():
    image = render.render_symbola(get_subject("penguin"), size=64, colour=(200, 20, 40))
    assert image is not None and image.size == (64, 64)
    pixels = np.asarray(image)
    assert (pixels[..., 3] > 200).mean() > 0.03
    ink = pixels[pixels[..., 3] > 200][:, :3].astype(int)
    assert np.abs(np.median(ink, axis=0) - (200, 20, 40)).max() <= 4
    assert render.render_symbola(get_subject("teapot")) is None  # newer than Symbola
    assert render.has_symbola_glyph(get_subject("letter_a"))


def test_missing_font_names_the_debian_package(monkeypatch):
    monkeypatch.setitem(render.FONTS, "nope", ("NoSuchFontXyz", "NoSuchFontXyz", "fonts-xyz"))
    with pytest.raises(render.FontNotFoundError, match="fonts-xyz"):
        render.find_font("nope")


def test_composite_on_a_background():
    rgba = render.render_emoji("🐧", size=32)
    image = np.asarray(render.composite(rgba, (0, 0, 255)))
    assert image.shape == (32, 32, 3)
    assert tuple(image[0, 0]) == (0, 0, 255)


# --------------------------------------------------------------------------------------------
# Styles.


@pytest.fixture(scope="module")
def penguin_rgba() -> np.ndarray:
    return np.asarray(render.render_emoji("🐧", size=64), np.float32) / 255.0  # [64, 64, 4]


@pytest.mark.parametrize("style", PROCEDURAL, ids=lambda s: s.name)
def test_style_is_deterministic_and_changes_the_image(style, penguin_rgba):
    plain = styles.stylize(penguin_rgba, [], np.random.default_rng(0))
    first = styles.stylize(penguin_rgba, [style], np.random.default_rng(7))
    second = styles.stylize(penguin_rgba, [style], np.random.default_rng(7))
    assert first.shape == (64, 64, 3) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, second)
    assert np.abs(first - plain).mean() > 0.01, style.name


def test_heldout_styles_are_disjoint_from_training():
    train = {s.name for s in styles.TRAIN_STYLES}
    held = {s.name for s in styles.HELDOUT_STYLES}
    assert not train & held
    assert all(s.heldout for s in styles.HELDOUT_STYLES)
    assert not any(s.heldout for s in styles.TRAIN_STYLES)
    assert sum(s.kind == "whole" for s in styles.HELDOUT_STYLES) >= 3
    assert "line_art" in held
    words = {s.suffix for s in styles.TRAIN_STYLES}
    assert not words & {s.suffix for s in styles.HELDOUT_STYLES}


def test_style_combinations_are_checked(penguin_rgba):
    get = styles.get_style
    rng = np.random.default_rng(0)
    out = styles.stylize(penguin_rgba, [get("greyscale"), get("blue_background")], rng)
    assert out[0, 0, 2] > out[0, 0, 0] + 0.2  # a blue background behind a grey penguin
    for bad in (
        [get("greyscale"), get("sepia")],
        [get("pencil_sketch"), get("blue_background")],
        [get("silhouette"), get("black_background")],
        [get("line_art")],
    ):
        with pytest.raises(ValueError):
            styles.stylize(penguin_rgba, bad, rng)
    with pytest.raises(KeyError, match="Unknown style"):
        get("impressionist")


# --------------------------------------------------------------------------------------------
# Captions.


def test_plain_captions_have_the_phrasings():
    captions = captions_for(get_subject("penguin"))
    for phrasing in ("a penguin", "penguin", "an image of a penguin"):
        assert phrasing in captions
    assert "letter 'A'" in captions_for(get_subject("letter_a"))
    assert "an image of the letter 'A'" in captions_for(get_subject("letter_a"))


@pytest.mark.parametrize("style", styles.TRAIN_STYLES + styles.HELDOUT_STYLES, ids=lambda s: s.name)
def test_captions_contain_the_style_words(style):
    captions = captions_for(get_subject("penguin"), [style])
    assert f"a penguin {style.suffix}" in captions
    assert all(_mentions(c, style) for c in captions)
    names = get_subject("penguin").names
    assert all(any(name in c for name in names) for c in captions)


def test_captions_of_two_styles():
    pair = [styles.get_style("greyscale"), styles.get_style("blue_background")]
    captions = captions_for(get_subject("owl"), pair)
    assert "an owl in greyscale on a blue background" in captions
    assert "a greyscale image of an owl on a blue background" in captions


# --------------------------------------------------------------------------------------------
# The dataset.


@pytest.fixture(scope="module")
def small_builds(tmp_path_factory):
    first = tmp_path_factory.mktemp("zoo_a")
    second = tmp_path_factory.mktemp("zoo_b")
    manifests = [
        build_dataset(out, size=48, split_seed=3, subjects=SMALL) for out in (first, second)
    ]
    return first, second, manifests[0]


def test_small_build_is_byte_identical(small_builds):
    first, second, manifest = small_builds
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted([*dataset.FILES, "manifest.json"])
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((first / name).read_bytes()).hexdigest() == digest
    assert set(manifest["fonts"]) == {"emoji", "symbola", "sans"}
    assert manifest["recipe_version"] == vocabulary.RECIPE_VERSION


def test_small_build_contents_and_disjoint_splits(small_builds):
    first, _, manifest = small_builds
    images, records = dataset.load_dataset(first)
    per_subject = sum(draws.DEFAULT_DRAWS.values())
    assert images.shape == (len(SMALL) * per_subject, 48, 48, 3) and images.dtype == np.uint8
    assert [r["index"] for r in records] == list(range(len(records)))
    assert manifest["counts"]["total"] == len(records)
    assert {r["subject"] for r in records} == set(SMALL)
    held = {s.name for s in styles.HELDOUT_STYLES}
    assert not any(set(r["styles"]) & held for r in records)
    hashes = {split: set() for split in SPLITS}
    for record, image in zip(records, images, strict=True):
        hashes[record["split"]].add(hashlib.sha256(image.tobytes()).hexdigest())
        for name in record["styles"]:
            style = styles.get_style(name)
            assert all(_mentions(c, style) for c in record["captions"]), record
    assert sum(len(h) for h in hashes.values()) == len(records)  # no image twice anywhere
    base, base_records = dataset.load_dataset(first, "base")
    canonical = [r for r in base_records if r["draw"] == 0]
    assert all(r["style"] == "plain" for r in canonical) and len(canonical) == len(SMALL)
    assert base.shape[0] == len(SMALL) * draws.DEFAULT_DRAWS["base"]


def test_small_build_heldout_references(small_builds):
    first, _, manifest = small_builds
    images, records = dataset.load_dataset(first, heldout=True)
    assert images.shape[0] == len(records) == sum(manifest["heldout_counts"].values())
    assert manifest["heldout_counts"]["line_art"] == len(SMALL) - 1  # no Symbola teapot
    assert {r["style"] for r in records} == {s.name for s in styles.HELDOUT_STYLES}


def test_another_seed_gives_other_draws(tmp_path):
    draws = {"base": 3}
    a = build_dataset(tmp_path / "a", size=32, split_seed=0, draws=draws, subjects=SMALL[:3])
    b = build_dataset(tmp_path / "b", size=32, split_seed=1, draws=draws, subjects=SMALL[:3])
    assert a["files"]["images.npz"] != b["files"]["images.npz"]


def test_canonical_split_is_styled_and_leaves_the_other_splits_unchanged(tmp_path):
    others = {"vq": 1, "base": 2, "judge": 2, "eval": 1}
    kwargs = {"size": 32, "subjects": SMALL[:3], "heldout": False}
    build_dataset(tmp_path / "without", draws=others, **kwargs)
    build_dataset(tmp_path / "with", draws={**others, "canonical": 3}, **kwargs)
    images, records = dataset.load_dataset(tmp_path / "without")
    images_with, records_with = dataset.load_dataset(tmp_path / "with")
    assert records_with[: len(records)] == records
    np.testing.assert_array_equal(images_with[: len(images)], images)
    canonical = records_with[len(records) :]
    assert len(canonical) == 3 * 3 and {r["split"] for r in canonical} == {"canonical"}
    assert all(r["styles"] for r in canonical)  # the plain look is base draw 0


def test_subjects_the_font_cannot_draw_are_skipped(tmp_path, monkeypatch):
    real = render.can_render_emoji
    monkeypatch.setattr(render, "can_render_emoji", lambda chars: chars != "🐧" and real(chars))
    manifest = build_dataset(
        tmp_path, size=32, draws={"base": 1}, subjects=["penguin", "owl"], heldout=False
    )
    assert manifest["skipped_subjects"] == ["penguin"]
    assert manifest["counts"]["total"] == 1


def test_heldout_references_function():
    images, records = heldout_references("line_art", ["penguin", "teapot", "letter_b"], size=32)
    assert images.shape == (2, 32, 32, 3)
    assert [r["subject"] for r in records] == ["penguin", "letter_b"]
    assert "a penguin in line art style" in records[0]["captions"]
    again, _ = heldout_references("neon", ["owl"], size=32, seed=5)
    np.testing.assert_array_equal(again, heldout_references("neon", ["owl"], size=32, seed=5)[0])
    with pytest.raises(ValueError, match="training style"):
        heldout_references("greyscale", ["owl"])


def test_main_data_prints_counts(tmp_path, capsys):
    out = tmp_path / "zoo"
    code = zoo_data(
        ["--out", str(out), "--size", "32", "--subjects", "penguin,letter_a", "--draws",
         "base=2,eval=1", "--no-heldout"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 subjects" in printed and "base 4" in printed and "eval 2" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"vq": 0, "base": 4, "judge": 0, "eval": 2, "canonical": 0,
                                  "total": 6}  # fmt: skip
    assert not (out / "heldout.npz").exists()
    assert zoo_data(["--out", str(out), "--subjects", "capybara"]) == 2


# --------------------------------------------------------------------------------------------
# Parti-190.


def test_parti190_and_its_mapping():
    prompts = parti_mapping.parti190()
    assert len(prompts) == 190
    assert {p.category for p in prompts} == {
        "Animals",
        "Artifacts",
        "Food & Beverage",
        "Illustrations",
        "Indoor Scenes",
        "Outdoor Scenes",
        "Produce & Plants",
        "Vehicles",
    }
    counts = parti_mapping.coverage()
    assert counts["covered"] >= parti_mapping.MIN_COVERED == 150
    assert counts["exact"] + counts["keyword"] >= 110
    mapping = parti_mapping.PARTI_TO_SUBJECT
    assert len(mapping) == counts["covered"]
    ids = vocabulary.subjects_by_id()
    assert all(subject in ids for subject in mapping.values())
    assert set(parti_mapping.OVERRIDES) <= {p.prompt for p in prompts}
    assert mapping["a baby penguin"] == "penguin"  # a stand-in
    assert mapping["an F1 race car"] == "racing_car"
    assert "a fire hydrant" not in mapping  # a blocked keyword hit ("fire")
    assert len(parti_mapping.parti_to_subject(include_approximate=False)) < len(mapping)
