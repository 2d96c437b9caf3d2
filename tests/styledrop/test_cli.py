"""The `styledrop` console script, run as a user would: in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(sys.executable).with_name("styledrop")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_help_lists_commands():
    result = _run("--help")
    assert result.returncode == 0
    assert "convert" in result.stdout and "generate" in result.stdout


def test_convert_then_generate_writes_a_grid(tmp_path, tiny_diffusers_dir):
    model = tmp_path / "model"
    result = _run("convert", str(tiny_diffusers_dir), str(model))
    assert result.returncode == 0, result.stderr
    assert (model / "model.json").is_file()

    out = tmp_path / "grid.png"
    result = _run(
        "generate",
        "--base",
        str(model),
        "--prompt",
        "a cat",
        "--prompt",
        "a bus",
        "-n",
        "3",
        "--seed",
        "0",
        "--steps",
        "4",
        "--out",
        str(out),
        "--individual",
    )
    assert result.returncode == 0, result.stderr
    grid = np.asarray(Image.open(out))
    # 2 rows x 3 columns of 16 px images with 2 px padding.
    assert grid.shape == (2 * 18 + 2, 3 * 18 + 2, 3)
    singles = sorted(tmp_path.glob("grid-*.png"))
    assert len(singles) == 6
    first = np.asarray(Image.open(singles[0]))
    np.testing.assert_array_equal(grid[2:18, 2:18], first)


def test_user_errors_are_one_line_not_tracebacks(tmp_path, tiny_diffusers_dir):
    result = _run(
        "generate", "--base", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "a.png")
    )
    assert result.returncode == 2
    assert "not a converted model folder" in result.stderr
    assert "Traceback" not in result.stderr

    result = _run(
        "generate",
        "--base",
        str(tiny_diffusers_dir),
        "--prompt",
        "x",
        "--out",
        str(tmp_path / "a.png"),
    )
    assert "styledrop convert" in result.stderr  # a diffusers folder: says what to run

    result = _run(
        "generate", "--base", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "a.gif")
    )
    assert result.returncode == 2 and "--out must end in" in result.stderr

    result = _run("convert", str(tmp_path / "nothing"), str(tmp_path / "out"))
    assert result.returncode == 2 and "No checkpoint folder" in result.stderr
