"""The `styledrop` command line: the user's paths in a subprocess, as a shell runs them.

Checks of what one command prints or writes go through `cli.main.main` in this process
(the console script calls it), which spares a Python start and a JAX import each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cli.main import main

SCRIPT = Path(sys.executable).with_name("styledrop")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_help_lists_commands():
    result = _run("--help")
    assert result.returncode == 0
    assert "convert" in result.stdout and "generate" in result.stdout


def test_convert_then_generate_writes_a_grid(tmp_path, tiny_diffusers_dir):
    model = tmp_path / "model"
    assert main(["convert", str(tiny_diffusers_dir), str(model)]) == 0
    assert (model / "model.json").is_file()

    out = tmp_path / "grid.png"
    code = main([
        "generate", "--base", str(model), "--prompt", "a cat", "--prompt", "a bus", "-n", "3",
        "--seed", "0", "--steps", "4", "--out", str(out), "--individual",
    ])  # fmt: skip
    assert code == 0
    grid = np.asarray(Image.open(out))
    # 2 rows x 3 columns of 16 px images with 2 px padding.
    assert grid.shape == (2 * 18 + 2, 3 * 18 + 2, 3)
    singles = sorted(tmp_path.glob("grid-*.png"))
    assert len(singles) == 6
    first = np.asarray(Image.open(singles[0]))
    np.testing.assert_array_equal(grid[2:18, 2:18], first)
    sharp = tmp_path / "sharp.png"
    code = main([
        "generate", "--base", str(model), "--prompt", "a cat", "--prompt", "a bus", "-n", "3",
        "--seed", "0", "--steps", "4", "--out", str(sharp), "--token-temperature", "0.01",
    ])  # fmt: skip
    assert code == 0
    assert not np.array_equal(np.asarray(Image.open(sharp)), grid)  # same seed, other draws


def test_user_errors_are_one_line_not_tracebacks(tmp_path, tiny_diffusers_dir, capsys):
    def error(*args: str) -> str:
        assert main(list(args)) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    out = str(tmp_path / "a.png")
    assert "not a converted model folder" in error(
        "generate", "--base", str(tmp_path), "--prompt", "x", "--out", out
    )
    # A diffusers folder: says what to run.
    assert "styledrop convert" in error(
        "generate", "--base", str(tiny_diffusers_dir), "--prompt", "x", "--out", out
    )
    assert "--token-temperature must be positive" in error(
        "generate", "--base", str(tmp_path), "--prompt", "x", "--out", out,
        "--token-temperature", "0",
    )  # fmt: skip
    assert "with --adapter, StyleDrop guidance takes --lambda-a and --lambda-b" in error(
        "generate", "--base", str(tmp_path), "--prompt", "x", "--out", out,
        "--adapter", str(tmp_path / "a.safetensors"), "--guidance-scale", "2",
    )  # fmt: skip
    assert "--out must end in" in error(
        "generate", "--base", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "a.gif")
    )
    assert "No checkpoint folder" in error(
        "convert", str(tmp_path / "nothing"), str(tmp_path / "out")
    )


def test_finetune_then_generate_in_style(tmp_path, tiny_model_dir):
    style = tmp_path / "style.png"
    pixels = np.zeros((24, 24, 3), np.uint8)
    pixels[:, ::3] = (255, 0, 0)
    Image.fromarray(pixels).save(style)
    run = tmp_path / "run"
    result = _run(
        "finetune",
        str(style),
        "--descriptor",
        "in stripes style",
        "--caption",
        "style.png=a grid",
        "--base",
        str(tiny_model_dir),
        "--steps",
        "3",
        "--adapter",
        "r2",
        "--out",
        str(run),
    )
    assert result.returncode == 0, result.stderr
    adapter = run / "adapter.safetensors"
    assert adapter.is_file()
    out = tmp_path / "styled.png"
    result = _run(
        "generate",
        "--base",
        str(tiny_model_dir),
        "--adapter",
        str(adapter),
        "--prompt",
        "a cat",
        "-n",
        "2",
        "--lambda-a",
        "1.5",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert np.asarray(Image.open(out)).shape == (18 + 2, 2 * 18 + 2, 3)


def test_finetune_refuses_bad_images_before_any_work(tmp_path, tiny_model_dir):
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 32)).save(good)
    bad = tmp_path / "anim.gif"
    Image.new("RGB", (32, 32)).save(bad)
    result = _run(
        "finetune",
        str(good),
        str(bad),
        "--descriptor",
        "x",
        "--base",
        str(tiny_model_dir),
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 2
    assert "anim.gif" in result.stderr and "GIF" in result.stderr
    assert not (tmp_path / "run").exists()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = _run(
        "finetune",
        str(broken),
        "--descriptor",
        "x",
        "--base",
        str(tiny_model_dir),
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 2 and "broken.png" in result.stderr


def test_zoo_dispatches_to_its_steps(tmp_path):
    result = _run("zoo", "train", "nothing")
    assert result.returncode == 2
    assert "vq, text, descriptor-invariance, judge or base" in result.stderr
    result = _run(
        "zoo", "data", "--out", str(tmp_path / "w"), "--subjects", "penguin,dog", "--no-heldout"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "w" / "manifest.json").is_file()


def test_generate_defaults_to_the_embedded_zoo(tiny_zoo, tmp_path):
    out = tmp_path / "grid.png"
    result = subprocess.run(
        [str(SCRIPT), "generate", "--prompt", "a penguin", "-n", "1", "--steps", "2",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "STYLEDROP_ZOO": str(tiny_zoo)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.is_file()


def test_missing_zoo_says_how_to_get_one(tmp_path):
    result = subprocess.run(
        [str(SCRIPT), "generate", "--prompt", "x", "--out", str(tmp_path / "a.png")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "STYLEDROP_ZOO": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 2
    assert "--base" in result.stderr
