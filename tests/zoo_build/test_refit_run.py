"""The resumable decoder refit (`zoo refit-decoder`): tokens kept, resumes bit-identically."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from cli.zoo.refit_decoder import main as main_refit
from muse.folder_layout import VQ_FILE
from zoo_build.dataset import build_dataset, load_dataset
from zoo_build.refit_decoder import RefitConfig
from zoo_build.refit_run import refit_run
from zoo_build.run_files import VQ_CONFIG_FILE, VQ_INFO_FILE, part_record
from zoo_build.train_vq import VQTrainConfig, load_vq, train_vq

SUBJECTS = ["penguin", "banana", "teapot", "owl"]
REFIT = RefitConfig(steps=40, batch_size=8, learning_rate=3e-3, warmup_steps=5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny tokenizer trained for a few steps on the "base" split, and its 32 px dataset."""
    root = tmp_path_factory.mktemp("refit")
    data = root / "data"
    draws = {"vq": 2, "base": 1, "eval": 1}
    build_dataset(data, size=32, draws=draws, subjects=SUBJECTS, heldout=False)
    train_vq(data, root / "vq", dataclasses.replace(VQTrainConfig.tiny(), splits=("base",)))
    return data, root / "vq"


def _tokens(folder, images: np.ndarray) -> np.ndarray:
    """int [N, h, w]: the code grids the tokenizer in `folder` gives uint8 `images`."""
    return np.asarray(load_vq(folder).tokenize(images.astype(np.float32) / 255.0))


def _logged_steps(folder) -> list[int]:
    """The "step" of every line of a run's train_log.jsonl."""
    lines = (folder / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]


def test_refit_changes_only_the_decoder_keeps_tokens_and_records_both(trained, tmp_path):
    data, vq_dir = trained
    path = refit_run(vq_dir, data, tmp_path, REFIT)
    before, after = load_file(str(vq_dir / VQ_FILE)), load_file(str(path))
    assert before.keys() == after.keys()
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert changed and all(n.startswith(("decoder.", "post_quant_conv.")) for n in changed)
    images = load_dataset(data, split="eval")[0]
    np.testing.assert_array_equal(_tokens(vq_dir, images), _tokens(tmp_path, images))
    info = json.loads((tmp_path / VQ_INFO_FILE).read_text())
    source = json.loads((vq_dir / VQ_INFO_FILE).read_text())
    assert info["train"] == source["train"]  # the source's record is kept
    refit = info["decoder_refit"]
    assert refit["splits"] == ["base"]  # those the source trained on
    assert refit["train_images"] == len(load_dataset(data, split="base")[0])
    assert refit["steps_done"] == 40 and refit["complete"]
    assert refit["eval_before"]["psnr"] == pytest.approx(source["eval"]["psnr"], abs=1e-4)
    print(f"eval PSNR {refit['eval_before']['psnr']:.2f} -> {info['eval']['psnr']:.2f} dB")
    assert info["eval"]["psnr"] > refit["eval_before"]["psnr"]
    # What `zoo assemble --vq` reads: the sizes and the record.
    assert json.loads((tmp_path / VQ_CONFIG_FILE).read_text()) == json.loads(
        (vq_dir / VQ_CONFIG_FILE).read_text()
    )
    assert part_record(tmp_path, VQ_INFO_FILE, "vq") == info
    # A second refit, of the refitted tokenizer, keeps the first one's record.
    again = RefitConfig(steps=3, batch_size=4, warmup_steps=1)
    refit_run(tmp_path, data, tmp_path / "again", again)
    second = json.loads((tmp_path / "again" / VQ_INFO_FILE).read_text())
    assert second["decoder_refit"]["steps_done"] == 3
    assert second["decoder_refit"]["continues"] == refit
    assert second["decoder_refit"]["eval_before"]["psnr"] == pytest.approx(info["eval"]["psnr"])


def test_a_run_stopped_and_resumed_matches_one_run(trained, tmp_path):
    data, vq_dir = trained
    config = RefitConfig(steps=12, batch_size=4, learning_rate=3e-3, warmup_steps=2)
    whole = refit_run(vq_dir, data, tmp_path / "whole", config)
    assert refit_run(vq_dir, data, tmp_path / "cut", config, stop_after=5) is None
    assert _logged_steps(tmp_path / "cut") == [1, 2, 3, 4, 5]
    resumed = refit_run(vq_dir, data, tmp_path / "cut", config)
    a, b = load_file(str(whole)), load_file(str(resumed))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # Each step once, then the final evaluation.
    assert _logged_steps(tmp_path / "cut") == [*range(1, 13), 12]


def test_a_time_limit_writes_the_weights_so_far(trained, tmp_path):
    data, vq_dir = trained
    path = refit_run(vq_dir, data, tmp_path, REFIT, time_limit_s=0.0)
    refit = json.loads((tmp_path / VQ_INFO_FILE).read_text())["decoder_refit"]
    assert path.is_file() and refit["steps_done"] == 1 and not refit["complete"]


def test_cli_refits_resumes_and_refuses_bad_input(trained, tmp_path, capsys):
    data, vq_dir = trained
    out = tmp_path / "out"
    args = ["--vq", str(vq_dir), "--data", str(data), "--out", str(out)]
    small = ["--steps", "6", "--batch-size", "4", "--warmup", "1"]
    assert main_refit([*args, *small]) == 0
    assert "dB after" in capsys.readouterr().out
    assert main_refit([*args, *small]) == 2  # a checkpoint is there
    assert "--resume" in capsys.readouterr().err
    assert main_refit([*args, *small, "--resume", "--lr", "1e-2"]) == 2  # other settings
    assert "other settings" in capsys.readouterr().err
    assert main_refit([*args, *small, "--resume"]) == 0  # nothing left to do: re-export
    fresh = ["--data", str(data), "--out", str(tmp_path / "fresh"), *small]
    assert main_refit(["--vq", str(vq_dir), *fresh, "--splits", "vq,eval"]) == 2
    assert "eval split" in capsys.readouterr().err
    assert main_refit(["--vq", str(tmp_path / "nothing"), *fresh]) == 2
    assert "nothing" in capsys.readouterr().err
    assert not (tmp_path / "fresh").exists()  # nothing written for bad input
