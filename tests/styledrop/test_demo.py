"""`styledrop demo` on a tiny zoo: every stage runs and the report is written."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys

import pytest
from PIL import Image

from cli.main import main
from styledrop.demo import DemoConfig, demo_style_image, run_demo
from worker import jobs
from worker.store import Store


def test_shipped_style_image_is_a_small_rgb_png():
    with Image.open(demo_style_image()) as image:
        assert image.format == "PNG" and image.size == (64, 64)


def test_demo_writes_adapter_grids_scores_and_report(tiny_zoo, tmp_path):
    config = DemoConfig(prompts=("a cat", "a dog"), images_per_prompt=1, steps=3)
    stages, steps = [], []
    summary = run_demo(tmp_path, config, base=tiny_zoo, on_stage=stages.append,
                       on_step=lambda e: steps.append(e.step))  # fmt: skip
    assert summary["status"] == "succeeded" and steps == [1, 2, 3]
    assert len(stages) == 5
    for name in ("base + descriptor", "round 1 (StyleDrop)"):
        assert -1.0 <= summary["scores"][name]["style"] <= 1.0
    assert (tmp_path / "adapter" / "adapter.safetensors").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 3
    page = (tmp_path / "report.html").read_text()
    assert page.count("<img") == 1 + 2 + 2  # reference, styled, baseline


def test_demo_stops_early_when_asked(tiny_zoo, tmp_path):
    config = DemoConfig(prompts=("a cat",), images_per_prompt=1, steps=5)
    summary = run_demo(tmp_path, config, base=tiny_zoo, should_stop=lambda: True)
    assert summary["status"] == "cancelled" and summary["steps"] == 1
    assert not (tmp_path / "report.html").exists()


def test_demo_command_needs_a_caption_for_another_image(tmp_path, capsys):
    image = tmp_path / "style.png"
    Image.new("RGB", (32, 32), "red").save(image)
    assert main(["demo", "--style-image", str(image), "--out", str(tmp_path)]) == 2
    assert "--caption" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_command_runs_as_a_job_on_a_worker_and_stops_what_it_started(
    tiny_zoo, tmp_path, monkeypatch
):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make system-packages installs it)")
    monkeypatch.delenv("STYLEDROP_BROKER_URL", raising=False)
    out, store_dir = tmp_path / "out", tmp_path / "store"
    result = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--base", str(tiny_zoo), "--steps", "2",
         "-n", "1", "--out", str(out), "--store", str(store_dir)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "round 1 (StyleDrop)" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["steps"] == 2
    assert (out / "report.html").read_text().count("<img") == 1 + 8 + 8
    [job] = jobs.list_jobs(Store(store_dir))
    assert job.kind == "demo" and job.status == "succeeded"
    assert job.worker.startswith("demo-0@") and job.progress["step"] == 2
    config = (store_dir / ".redis" / "redis.conf").read_text()
    port = int(re.search(r"^port (\d+)$", config, re.MULTILINE).group(1))
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # its Redis was stopped
