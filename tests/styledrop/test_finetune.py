"""The fine-tuning loop: adapter-only updates, learning, resume identity, no recompilation."""

from __future__ import annotations

import json

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from safetensors.numpy import load_file

import muse
from adapters import AdapterParam, AdapterSpec, inject_adapter
from adapters.files import AdapterFileError, read_adapter_file
from muse.transformer import current_adapter_gate
from styledrop.adapted import attach_adapter, generate_styled
from styledrop.dataset import StyleExample, build_token_pool
from styledrop.finetune import FinetuneConfig, finetune
from styledrop.guidance import GuidanceScales
from styledrop.train_step import make_train_step, mask_tokens


def _style_image(size: int = 16) -> np.ndarray:
    """A striped, two-colour image: structure a small model can memorise."""
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[:, ::4] = (230, 40, 40)
    pixels[::4, :] = (40, 40, 230)
    pixels[size // 2 :, size // 2 :] = (250, 220, 0)
    return pixels


def _flat(model, filt):
    return {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(model, filt))}


def test_mask_tokens_follows_muse_masking():
    ids = np.arange(4 * 64).reshape(4, 8, 8) % 30
    masked, mask = mask_tokens(jax.random.key(0), ids, 39)
    masked, mask = np.asarray(masked), np.asarray(mask)
    assert (mask.reshape(4, -1).sum(-1) >= 1).all()
    np.testing.assert_array_equal(masked[mask], 39)
    np.testing.assert_array_equal(masked[~mask], ids[~mask])
    ratios = [np.asarray(mask_tokens(jax.random.key(s), ids, 39)[1]).mean() for s in range(200)]
    assert abs(np.mean(ratios) - 2 / np.pi) < 0.05  # E[cos(pi/2 u)] = 2/pi


def test_step_updates_only_adapters_and_compiles_once(tiny_model_dir):
    pipe = muse.load(tiny_model_dir)
    pool = build_token_pool(
        pipe, [StyleExample(_style_image(), "a grid")], "in stripes style", variants_per_image=3
    )
    inject_adapter(
        pipe.transformer, AdapterSpec(kind="r2"), rngs=nnx.Rngs(0), gate_source=current_adapter_gate
    )
    base_before = _flat(pipe.transformer, nnx.Not(AdapterParam))
    adapters_before = _flat(pipe.transformer, AdapterParam)
    graphdef, adapter_state, base_state = nnx.split(pipe.transformer, AdapterParam, ...)
    tx = optax.adam(1e-2)
    opt_state = tx.init(adapter_state)
    step = make_train_step(graphdef, tx, 4, pipe.config.sampling.mask_token_id)
    key = jax.random.key(0)
    for i in range(3):
        adapter_state, opt_state, metrics = step(
            adapter_state, opt_state, base_state, pool.as_tuple(), i, key
        )
    assert step._cache_size() == 1  # no recompilation after the first step
    assert np.isfinite(float(metrics["loss"]))
    nnx.update(pipe.transformer, adapter_state)
    base_after = _flat(pipe.transformer, nnx.Not(AdapterParam))
    for name, value in base_before.items():
        np.testing.assert_array_equal(base_after[name], value, err_msg=name)
    adapters_after = _flat(pipe.transformer, AdapterParam)
    assert any(not np.array_equal(adapters_after[k], v) for k, v in adapters_before.items())


def test_fitting_one_image_beats_chance_and_loss_falls(tiny_model_dir, tmp_path):
    pipe = muse.load(tiny_model_dir)
    config = FinetuneConfig(
        adapter=AdapterSpec(kind="r2"),
        steps=150,
        learning_rate=3e-3,
        batch_size=8,
        checkpoint_every=0,
        variants_per_image=1,
    )
    result = finetune(
        pipe, [StyleExample(_style_image(), "a grid")], "in stripes style", config, tmp_path
    )
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    first = np.mean([r["loss"] for r in log[:10]])
    last = np.mean([r["loss"] for r in log[-10:]])
    accuracy = np.mean([r["accuracy"] for r in log[-10:]])
    chance = 1 / pipe.config.transformer.codebook_size
    print(
        f"loss {first:.3f} -> {last:.3f};"
        f" masked-token accuracy {accuracy:.3f} (chance {chance:.3f})"
    )
    assert result.status == "succeeded" and result.adapter_path.is_file()
    assert last < 0.75 * first
    assert accuracy > 10 * chance


def test_resume_is_bit_identical(tiny_model_dir, tmp_path):
    example = [StyleExample(_style_image(), "a grid", "grid.png", "ab" * 32)]
    config = FinetuneConfig(
        adapter=AdapterSpec(kind="r1"),
        steps=6,
        learning_rate=1e-3,
        batch_size=2,
        checkpoint_every=2,
        variants_per_image=2,
        seed=7,
    )
    straight = finetune(
        muse.load(tiny_model_dir), example, "in stripes style", config, tmp_path / "straight"
    )
    calls = {"n": 0}

    def stop_after_three():
        calls["n"] += 1
        return calls["n"] >= 3

    interrupted = finetune(
        muse.load(tiny_model_dir),
        example,
        "in stripes style",
        config,
        tmp_path / "resumed",
        should_stop=stop_after_three,
    )
    assert interrupted.status == "cancelled" and interrupted.step == 3
    # As a killed run leaves it: logged steps past the checkpoint, which a resume replays.
    with (tmp_path / "resumed" / "train_log.jsonl").open("a") as log:
        log.write('{"step": 4, "loss": 1.0, "accuracy": 0.0}\n{"step": 5, "loss": 1.0, "accu')
    resumed = finetune(
        muse.load(tiny_model_dir), example, "in stripes style", config, tmp_path / "resumed"
    )
    assert resumed.status == "succeeded" and resumed.step == 6
    log = (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2, 3, 4, 5, 6]  # each step once
    a, b = load_file(str(straight.adapter_path)), load_file(str(resumed.adapter_path))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_adapter_file_provenance_and_base_check(tiny_model_dir, tmp_path, make_tiny_diffusers):
    from muse.convert import convert_diffusers

    example = [StyleExample(_style_image(), "a grid", "grid.png", "cd" * 32)]
    config = FinetuneConfig(
        adapter=AdapterSpec(kind="r1"), steps=2, checkpoint_every=0, variants_per_image=1
    )
    result = finetune(muse.load(tiny_model_dir), example, "in stripes style", config, tmp_path)
    file = read_adapter_file(result.adapter_path)
    meta = file.metadata
    assert meta["descriptor"] == "in stripes style"
    assert "a grid in stripes style" in json.dumps(meta["training_prompts"])
    assert "cd" * 32 in json.dumps(meta["source_images"])
    pipe = muse.load(tiny_model_dir)
    attached = attach_adapter(pipe, result.adapter_path)
    images = generate_styled(pipe, attached, ["a cat"], num_images_per_prompt=2)
    assert images.shape == (2, 16, 16, 3)
    content_first = generate_styled(
        pipe, attached, ["a cat"], num_images_per_prompt=2,
        scales=GuidanceScales(content_first=0.5),
    )  # fmt: skip
    assert content_first.shape == images.shape and not np.array_equal(content_first, images)

    other = convert_diffusers(
        make_tiny_diffusers(tmp_path / "other-src", seed=1), tmp_path / "other"
    )
    with pytest.raises(AdapterFileError, match="base"):
        attach_adapter(muse.load(other), result.adapter_path)


def test_a_diverging_run_fails_and_keeps_its_last_finite_checkpoint(tiny_model_dir, tmp_path):
    from styledrop.finetune import TrainingDivergedError

    example = [StyleExample(_style_image(), "a grid", "grid.png", "ab" * 32)]
    config = FinetuneConfig(
        adapter=AdapterSpec(kind="r1"), steps=8, learning_rate=1e30, batch_size=2,
        checkpoint_every=1, variants_per_image=2,
    )  # fmt: skip
    with pytest.raises(TrainingDivergedError, match="Lower the learning rate") as raised:
        finetune(muse.load(tiny_model_dir), example, "in stripes style", config, tmp_path)
    assert not (tmp_path / "adapter.safetensors").exists()
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert f"checkpoint of step {state['step']} is kept" in str(raised.value)
    for name, leaf in load_file(str(tmp_path / "checkpoint" / "state.safetensors")).items():
        assert np.isfinite(leaf).all(), name


@pytest.mark.parametrize("learning_rate", [float("inf"), float("nan"), 0.0, -1e-3])
def test_a_learning_rate_that_cannot_train_is_refused(learning_rate):
    with pytest.raises(ValueError, match="finite number > 0"):
        FinetuneConfig(learning_rate=learning_rate)


def test_a_bfloat16_base_fine_tunes(tiny_model_dir, tmp_path):
    # What "auto" means on a GPU (finetune, workers): the transformer computes in bf16.
    example = [StyleExample(_style_image(), "a grid", "grid.png", "ab" * 32)]
    config = FinetuneConfig(
        adapter=AdapterSpec(kind="r1"), steps=3, learning_rate=1e-3, batch_size=2,
        variants_per_image=2,
    )  # fmt: skip
    pipe = muse.load(tiny_model_dir, dtype="bfloat16")
    result = finetune(pipe, example, "in stripes style", config, tmp_path)
    assert result.status == "succeeded" and np.isfinite(result.final_loss)
    weights = load_file(str(result.adapter_path))
    assert weights and all(np.isfinite(w).all() for w in weights.values())


def test_previews_are_what_the_finished_adapter_draws_content_first_included(tiny_zoo, tmp_path):
    from styledrop.finetune import preview_images
    from styledrop.guidance import folder_guidance

    assert folder_guidance(tiny_zoo).content_first > 0  # the zoo's stored value is exercised
    side = muse.load(tiny_zoo).image_size
    example = [StyleExample(_style_image(side), "a grid", "grid.png", "cd" * 32)]
    config = FinetuneConfig(
        adapter=AdapterSpec(kind="r1"), steps=2, checkpoint_every=0, variants_per_image=1,
        preview_prompts=("a penguin", "a dog"), preview_seed=3,
    )  # fmt: skip
    pipe = muse.load(tiny_zoo)
    result = finetune(pipe, example, "in stripes style", config, tmp_path)
    previews = preview_images(pipe, config, "in stripes style", 0)
    fresh = muse.load(tiny_zoo)
    drawn = generate_styled(
        fresh, attach_adapter(fresh, result.adapter_path), ["a penguin", "a dog"], seed=3
    )
    np.testing.assert_allclose(previews, drawn, atol=1e-5)
