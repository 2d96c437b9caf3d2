"""Codebook compaction: k-means on known points, and a compacted tokenizer that still works."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from cli.zoo.compact_vq import main as main_compact_vq
from muse import weights
from muse.folder_layout import VQ_FILE
from zoo_build.compact_vq import compact_vq, kmeans, nearest
from zoo_build.dataset import build_dataset, load_dataset
from zoo_build.refit_decoder import RefitConfig, refit_decoder
from zoo_build.run_files import VQ_CONFIG_FILE, VQ_INFO_FILE
from zoo_build.train_vq import VQTrainConfig, load_vq, train_vq

SUBJECTS = ["penguin", "banana", "teapot", "owl"]

TINY = VQTrainConfig.tiny()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny tokenizer (32 codes) trained for a few steps, and its 32 px dataset."""
    root = tmp_path_factory.mktemp("compact")
    data = root / "data"
    build_dataset(data, size=32, draws={"vq": 3, "eval": 1}, subjects=SUBJECTS, heldout=False)
    train_vq(data, root / "vq", TINY)
    return data, root / "vq"


def test_nearest_and_kmeans_on_known_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    points = np.concatenate([c + 0.1 * rng.standard_normal((50, 2)) for c in centres])
    points = points.astype(np.float32)  # [150, 2]
    np.testing.assert_array_equal(nearest(points, centres), np.repeat([0, 1, 2], 50))
    # Started badly (two centres in one cluster, one far away), it still finds all three.
    found = kmeans(points, np.array([[0.0, 0.1], [0.1, 0.0], [50.0, 50.0]]), iterations=10)
    order = np.argsort(found[:, 0] + 2 * found[:, 1])
    np.testing.assert_allclose(found[order], centres, atol=0.05)
    errors = []
    kmeans(points, centres + 1.0, iterations=4, progress=lambda i, e: errors.append(e))
    assert len(errors) == 4 and errors == sorted(errors, reverse=True)


def test_compaction_shrinks_the_codebook_and_keeps_the_rest(trained, tmp_path):
    data, vq_dir = trained
    path = compact_vq(vq_dir, data, tmp_path, codes=8, iterations=5, log=lambda _: None)
    before, after = load_file(str(vq_dir / VQ_FILE)), load_file(str(path))
    assert after["quantize.embedding.embedding"].shape == (8, TINY.vq.embed_dim)
    assert before.keys() == after.keys()
    for name in before:  # encoder and decoder untouched
        if name != "quantize.embedding.embedding":
            np.testing.assert_array_equal(before[name], after[name], err_msg=name)
    assert json.loads((tmp_path / VQ_CONFIG_FILE).read_text())["num_vq_embeddings"] == 8
    info = json.loads((tmp_path / VQ_INFO_FILE).read_text())
    assert info["compaction"]["from_codes"] == 32 and info["compaction"]["codes"] == 8
    assert info["train"]["num_vq_embeddings"] == 32  # the source run's record is kept
    model = load_vq(tmp_path)
    images, _ = load_dataset(data, split="eval")
    ids = np.asarray(model.tokenize(images.astype(np.float32) / 255.0))
    assert ids.min() >= 0 and ids.max() < 8
    # Centroids of the encoder outputs reconstruct about as well as the codes they replace.
    before_psnr, after_psnr = info["compaction"]["eval_before"]["psnr"], info["eval"]["psnr"]
    print(f"eval PSNR {before_psnr:.2f} dB with 32 codes, {after_psnr:.2f} dB with 8")
    assert before_psnr - 1.5 <= after_psnr <= before_psnr + 1.5


def test_cli_refuses_a_larger_codebook_and_a_missing_run(trained, tmp_path, capsys):
    data, vq_dir = trained
    args = ["--data", str(data), "--out", str(tmp_path / "out")]
    assert main_compact_vq(["--vq", str(vq_dir), *args, "--codes", "64"]) == 2
    assert "between 2 and" in capsys.readouterr().err
    assert main_compact_vq(["--vq", str(tmp_path / "nothing"), *args]) == 2
    assert "nothing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written


def test_refit_trains_only_the_decoder_and_keeps_every_token(trained, tmp_path):
    """A refit changes post_quant_conv and the decoder only, so no image's codes change,
    and it reconstructs better than the compacted tokenizer it started from."""
    data, vq_dir = trained
    refit = RefitConfig(steps=60, batch_size=8, learning_rate=3e-3, warmup_steps=5)
    plain = compact_vq(vq_dir, data, tmp_path / "plain", codes=8, iterations=5, log=print)
    path = compact_vq(
        vq_dir, data, tmp_path / "refit", codes=8, iterations=5, log=print, refit=refit
    )
    before, after = load_file(str(plain)), load_file(str(path))
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert changed and all(n.startswith(("decoder.", "post_quant_conv.")) for n in changed)
    images, _ = load_dataset(data, split="eval")
    pixels = images.astype(np.float32) / 255.0
    ids_plain = np.asarray(load_vq(tmp_path / "plain").tokenize(pixels))
    np.testing.assert_array_equal(
        ids_plain, np.asarray(load_vq(tmp_path / "refit").tokenize(pixels))
    )
    info = json.loads((tmp_path / "refit" / VQ_INFO_FILE).read_text())["compaction"]
    assert info["refit"]["steps"] == 60
    assert info["eval_before_refit"]["psnr"] == pytest.approx(
        json.loads((tmp_path / "plain" / VQ_INFO_FILE).read_text())["eval"]["psnr"]
    )
    refit_psnr = json.loads((tmp_path / "refit" / VQ_INFO_FILE).read_text())["eval"]["psnr"]
    print(f"eval PSNR {info['eval_before_refit']['psnr']:.2f} -> {refit_psnr:.2f} dB")
    assert refit_psnr > info["eval_before_refit"]["psnr"]


def test_refit_is_deterministic(trained):
    data, vq_dir = trained
    images = load_dataset(data, split="vq")[0]
    config = RefitConfig(steps=5, batch_size=4)
    results = []
    for _ in range(2):
        model = load_vq(vq_dir)
        refit_decoder(model, images, config)
        results.append(weights.flat_params(model))
    for name, value in results[0].items():
        np.testing.assert_array_equal(value, results[1][name], err_msg=name)
