"""VQ tokenizer training on a small emoji-world build: learning, resume identity, restarts, PSNR."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from cli.zoo.train_vq import main as main_train_vq
from muse.folder_layout import VQ_FILE
from zoo_build.dataset import build_dataset, load_dataset
from zoo_build.run_files import TRAIN_LOG_FILE, VQ_CONFIG_FILE, VQ_INFO_FILE
from zoo_build.train_vq import VQTrainConfig, export_vq, load_vq, train_vq
from zoo_build.vq_metrics import evaluate_vq, map_batches, psnr
from zoo_build.vq_step import update_codebook

SUBJECTS = ["penguin", "banana", "racing_car", "teapot", "owl", "rocket", "house", "letter_a"]

TINY = VQTrainConfig.tiny()  # 32 px -> 16 x 16 tokens, 32 codes


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """8 subjects x 4 "vq" draws (32 training images) and 8 "eval" draws, at 32 px."""
    data = tmp_path_factory.mktemp("vq_world")
    build_dataset(data, size=32, draws={"vq": 4, "eval": 1}, subjects=SUBJECTS, heldout=False)
    return data


def test_psnr_known_cases():
    reference = np.zeros((2, 4, 4, 3), np.float32)
    assert np.all(np.isinf(psnr(reference, reference)))
    # A constant error of 0.1 is an MSE of 0.01: 20 dB; an error of 0.01 gives 40 dB.
    off = reference + np.array([0.1, 0.01], np.float32)[:, None, None, None]
    np.testing.assert_allclose(psnr(reference, off), [20.0, 40.0], rtol=1e-5)
    assert psnr(reference[0], off[0]) == pytest.approx(20.0, rel=1e-5)  # one image
    np.testing.assert_allclose(psnr(reference * 255, off * 255, max_value=255.0), [20.0, 40.0])
    with pytest.raises(ValueError):
        psnr(reference, reference[:1])


def test_dead_code_restart_moves_only_dead_codes():
    config = dataclasses.replace(TINY, dead_threshold=0.5, restart_count=0.6, ema_decay=0.9)
    num_codes, dim = 6, 3
    z = jnp.arange(12 * dim, dtype=jnp.float32).reshape(12, dim)  # [T, D]
    ids = jnp.array([0, 0, 1, 1] * 3, jnp.int32)  # only codes 0 and 1 are hit
    errors = jnp.full((12,), 1e-3).at[5].set(1.0)  # token 5 is by far the worst quantized
    ema = {"count": jnp.full((num_codes,), 2.0), "sum": jnp.ones((num_codes, dim))}
    ema = {**ema, "count": ema["count"].at[2:].set(0.1)}  # codes 2..5 are dead
    key = jax.random.key(0)
    update = jax.jit(update_codebook, static_argnums=6)
    kept, before = update(ema, z, ids, errors, jnp.bool_(False), key, config)
    assert np.all(np.asarray(kept["count"][2:]) < 0.5)  # no restart step: left dead
    new, table = update(ema, z, ids, errors, jnp.bool_(True), key, config)
    table, z_np = np.asarray(table), np.asarray(z)
    np.testing.assert_array_equal(table[:2], np.asarray(before)[:2])  # live codes untouched
    np.testing.assert_allclose(np.asarray(new["count"]), [2 * 0.9 + 0.6, 2 * 0.9 + 0.6] + [0.6] * 4)
    np.testing.assert_array_equal(table[2], z_np[5])  # the worst token goes first
    rows = [int(np.flatnonzero((z_np == row).all(1))[0]) for row in table[2:]]
    assert len(set(rows)) == 4  # distinct encoder outputs, drawn without replacement
    # More dead codes than tokens: every token is used once, the rest are jittered copies.
    few = z[:3]
    dead = {"count": jnp.zeros((num_codes,)), "sum": jnp.zeros((num_codes, dim))}
    _, table = update(dead, few, jnp.zeros(3, jnp.int32), jnp.ones(3), jnp.bool_(True), key, config)
    table = np.asarray(table)
    assert sorted(map(tuple, table[:3])) == sorted(map(tuple, np.asarray(few)))
    assert not any((table[3:] == row).all(1).any() for row in np.asarray(few))
    np.testing.assert_allclose(np.sort(table[3:], 0), np.sort(np.asarray(few), 0), atol=0.5)


def test_training_learns_and_keeps_codes_alive(world, tmp_path):
    events = []
    path = train_vq(world, tmp_path, TINY, progress=events.append)
    losses = [e["loss"] for e in events]
    assert len(losses) == TINY.steps
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert events[-1]["usage"] >= 0.5  # restarts keep most codes in use
    assert {"psnr", "usage", "steps_per_s", "eta_s"} <= set(events[-1])
    # The outputs: weights, the diffusers-style config, the run record.
    assert path == tmp_path / VQ_FILE and path.is_file()
    assert json.loads((tmp_path / VQ_CONFIG_FILE).read_text())["block_out_channels"] == [8, 16]
    info = json.loads((tmp_path / VQ_INFO_FILE).read_text())
    assert info["train_images"] == 32 and info["eval_images"] == 8
    assert info["data_recipe_version"]
    model = load_vq(tmp_path)
    eval_images, _ = load_dataset(world, split="eval")
    again = evaluate_vq(model, eval_images, batch_size=3)  # uneven batches pad correctly
    assert again["psnr"] == pytest.approx(info["eval"]["psnr"], abs=1e-3)
    assert again["codebook_usage"] >= 0.25
    assert 1.0 <= again["perplexity"] <= TINY.vq.num_vq_embeddings
    assert math.isfinite(again["psnr_global"]) and again["psnr_global"] <= again["psnr"] + 1e-6
    # uint8 and [0, 1] floats are the same input.
    as_float = evaluate_vq(model, eval_images.astype(np.float32) / 255.0, batch_size=3)
    assert as_float["psnr"] == pytest.approx(again["psnr"], abs=1e-4)


def test_resume_is_bit_identical(world, tmp_path):
    config = dataclasses.replace(TINY, steps=12, checkpoint_every=4)
    straight = train_vq(world, tmp_path / "straight", config)
    run = tmp_path / "resumed"
    assert train_vq(world, run, config, stop_after=6) is None  # interrupted on purpose
    assert not (run / VQ_FILE).exists()
    with (run / TRAIN_LOG_FILE).open("a") as log:
        log.write('{"step": 9, "lo')  # a line cut short by a kill
    export_vq(world, run, config)  # the weights so far, from the checkpoint
    info = json.loads((run / VQ_INFO_FILE).read_text())
    assert (info["steps_done"], info["complete"]) == (6, False)
    train_vq(world, run, config, time_limit_s=0.0)  # one more step, then a partial export
    info = json.loads((run / VQ_INFO_FILE).read_text())
    assert (info["steps_done"], info["complete"]) == (7, False)
    resumed = train_vq(world, run, config)
    assert json.loads((run / VQ_INFO_FILE).read_text())["complete"]
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    lines = (run / TRAIN_LOG_FILE).read_text().splitlines()
    steps = [record["step"] for record in map(json.loads, lines) if "loss" in record]
    assert steps == list(range(1, 13))  # no step logged twice


def test_cli_trains_and_refuses_to_overwrite_a_checkpoint(world, tmp_path, capsys):
    args = ["--data", str(world), "--out", str(tmp_path), "--steps", "3", "--batch-size", "4",
            "--channels", "8,16", "--latent", "4", "--codebook", "16", "--groups", "4",
            "--eval-every", "0"]  # fmt: skip
    assert main_train_vq(args) == 0
    assert (tmp_path / VQ_FILE).is_file()
    train = json.loads((tmp_path / VQ_INFO_FILE).read_text())["train"]
    assert train["block_out_channels"] == [8, 16] and train["num_vq_embeddings"] == 16
    assert (train["latent_channels"], train["norm_num_groups"], train["steps"]) == (4, 4, 3)
    assert "eval PSNR" in capsys.readouterr().out
    assert main_train_vq(args) == 2  # a checkpoint is there and --resume is missing
    assert "--resume" in capsys.readouterr().err
    assert main_train_vq([*args, "--resume"]) == 0
    assert main_train_vq([*args, "--resume", "--lr", "0.5"]) == 2  # other settings
    capsys.readouterr()
    other = [*args[:2], "--out", str(tmp_path / "other"), *args[4:]]
    assert main_train_vq([*other, "--splits", "vq,eval"]) == 2  # never the eval split
    assert "splits must be taken from" in capsys.readouterr().err


def test_map_batches_runs_one_shape_and_cuts_the_padding():
    shapes = []

    def corner_and_sum(batch):  # a tuple of outputs, as `reconstruct_images` has
        shapes.append(batch.shape)
        return batch[:, 0, 0, 0], batch.sum(axis=(1, 2, 3))

    images = np.arange(5 * 2 * 2 * 3, dtype=np.float32).reshape(5, 2, 2, 3)
    corners, sums = map_batches(corner_and_sum, images, batch_size=2)
    assert shapes == [(2, 2, 2, 3)] * 3  # the last batch of one image is padded to two
    np.testing.assert_array_equal(corners, images[:, 0, 0, 0])
    np.testing.assert_array_equal(sums, images.sum(axis=(1, 2, 3)))


def test_settings_keep_the_fingerprint_and_record_of_earlier_runs():
    """Checkpoints written before the settings nested `VQConfig` still resume, and their
    `train_info.json` records still load."""
    assert VQTrainConfig().fingerprint() == (
        '{"batch_size": 16, "block_out_channels": [16, 32, 64, 128], "commitment": 0.25,'
        ' "dead_threshold": 0.02, "ema_decay": 0.99, "hflip": true, "latent_channels": 32,'
        ' "layers_per_block": 1, "learning_rate": 0.002, "norm_num_groups": 8,'
        ' "num_vq_embeddings": 1024, "recon_loss": "l1", "restart_count": 0.05,'
        ' "restart_every": 10, "restart_until": 0.9, "seed": 0, "splits": ["vq", "base",'
        ' "canonical"], "steps": 7000, "vq_embed_dim": 16, "warmup_steps": 100}'
    )
    record = json.loads(json.dumps(TINY.record()))
    assert record["block_out_channels"] == [8, 16] and "vq" not in record
    assert VQTrainConfig.from_dict(record) == TINY
    other = dataclasses.replace(TINY, vq=dataclasses.replace(TINY.vq, sample_size=32))
    assert other.record()["sample_size"] == 32 and other.fingerprint() != TINY.fingerprint()
