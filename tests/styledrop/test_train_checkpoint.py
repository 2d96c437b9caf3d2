"""The training checkpoint survives a crash at any point of `save`."""

from __future__ import annotations

import shutil

import jax.numpy as jnp
import numpy as np

from styledrop import train_checkpoint as ckpt


def _state(value: float):
    return {"w": jnp.full((3,), value), "b": jnp.array(value + 1)}


def _saved_twice(tmp_path):
    ckpt.save(tmp_path, _state(1.0), step=10, fingerprint="run")
    ckpt.save(tmp_path, _state(2.0), step=20, fingerprint="run")
    return tmp_path / ckpt.CHECKPOINT_DIR


def test_restore_after_a_clean_save(tmp_path):
    _saved_twice(tmp_path)
    state, step = ckpt.restore(tmp_path, _state(0.0), "run")
    assert step == 20 and np.allclose(state["w"], 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.CHECKPOINT_DIR]


def test_a_crash_between_the_renames_resumes_from_the_new_checkpoint(tmp_path):
    folder = _saved_twice(tmp_path)
    # As `save` at step 30 killed after moving the current one aside: .partial is complete.
    ckpt.save(tmp_path / "other", _state(3.0), step=30, fingerprint="run")
    shutil.copytree(
        tmp_path / "other" / ckpt.CHECKPOINT_DIR, folder.with_name("checkpoint.partial")
    )
    folder.rename(folder.with_name("checkpoint.old"))
    state, step = ckpt.restore(tmp_path, _state(0.0), "run")
    assert step == 30 and np.allclose(state["w"], 3.0)
    ckpt.save(tmp_path, _state(4.0), step=40, fingerprint="run")  # and saving goes on
    assert ckpt.restore(tmp_path, _state(0.0), "run")[1] == 40
    assert not folder.with_name("checkpoint.old").exists()


def test_a_crash_while_staging_falls_back_to_the_previous_checkpoint(tmp_path):
    folder = _saved_twice(tmp_path)
    partial = folder.with_name("checkpoint.partial")
    partial.mkdir()
    (partial / "state.json").write_text('{"step": 3')  # cut short
    folder.rename(folder.with_name("checkpoint.old"))
    state, step = ckpt.restore(tmp_path, _state(0.0), "run")
    assert step == 20 and np.allclose(state["b"], 3.0)


def test_no_checkpoint_at_all(tmp_path):
    assert ckpt.restore(tmp_path, _state(0.0), "run") is None
