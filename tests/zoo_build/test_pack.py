"""The data pack: small, byte-identical on rebuild, and draws exactly what the fonts draw."""

from __future__ import annotations

import json

import numpy as np
import pytest

from styledrop.zoo import render
from styledrop.zoo.vocabulary import get_subject
from zoo_build.dataset import build_dataset, load_dataset
from zoo_build.pack import PACK_FORMAT, PackError, read_pack, using_pack, write_pack

SUBJECTS = ["penguin", "banana", "car", "letter_a", "letter_r"]
DRAWS = {"vq": 1, "base": 2, "judge": 1, "eval": 1, "canonical": 2}


def test_the_whole_world_packs_small_and_identically(tmp_path):
    first = write_pack(tmp_path / "a.npz")
    write_pack(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.npz").stat().st_size < 20 * 2**20  # the pack budget
    assert first["format"] == PACK_FORMAT and len(first["subjects"]) >= 400
    assert first["fonts"] == render.font_info()


def test_draws_from_the_pack_equal_draws_from_the_fonts(tmp_path):
    write_pack(tmp_path / "pack.npz", SUBJECTS)
    from_fonts = build_dataset(tmp_path / "fonts", draws=DRAWS, subjects=SUBJECTS, heldout=False)
    with using_pack(tmp_path / "pack.npz") as manifest:
        assert manifest["subjects"] == SUBJECTS
        from_pack = build_dataset(
            tmp_path / "pack", draws=DRAWS, subjects=SUBJECTS, heldout=False, size=48
        )
        assert render.can_render_emoji("🐧") and not render.can_render_emoji("🦒")
    with using_pack(tmp_path / "pack.npz"):  # in two spawned processes, as the build does
        again = build_dataset(
            tmp_path / "pack", draws=DRAWS, subjects=SUBJECTS, heldout=False, processes=2
        )
    fonts_images, fonts_records = load_dataset(tmp_path / "fonts")
    pack_images, pack_records = load_dataset(tmp_path / "pack")
    assert np.array_equal(fonts_images, pack_images) and fonts_records == pack_records
    assert again["files"] == from_fonts["files"] and again["fonts"] == from_fonts["fonts"]
    assert from_pack["size"] == 48
    assert render.can_render_emoji("🦒")  # the fonts again once the context closes


def test_a_subject_outside_the_pack_is_left_out_by_name(tmp_path):
    write_pack(tmp_path / "pack.npz", ["penguin"])
    with using_pack(tmp_path / "pack.npz"):
        manifest = build_dataset(
            tmp_path / "out", draws=DRAWS, subjects=["penguin", "banana"], heldout=False
        )
        with pytest.raises(ValueError, match="banana"):
            render.render_subject(get_subject("banana"))
    assert manifest["skipped_subjects"] == ["banana"] and manifest["subjects"] == 1


def test_what_is_not_a_pack_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(PackError, match="styledrop zoo pack"):
        read_pack(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(PackError, match="not a data pack"):
        read_pack(tmp_path / "text.npz")
    write_pack(tmp_path / "pack.npz", ["penguin"])
    with np.load(tmp_path / "pack.npz") as archive:
        arrays = dict(archive)
    manifest = json.loads(arrays["manifest"].tobytes()) | {"format": "other-1"}
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(PackError, match="other-1"):
        read_pack(tmp_path / "other.npz")
