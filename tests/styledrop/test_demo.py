"""`styledrop demo` on a tiny zoo: every stage runs and the report is written."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from feedback.scorer import ClipScorer
from styledrop.demo import DemoConfig, demo_style_image, run_demo
from styledrop.zoo.naming import judge_guesses
from tests.html_report import assert_report_complete, references
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
    assert (tmp_path / "adapter" / "adapter.safetensors").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 3
    report = tmp_path / "report.html"
    assert assert_report_complete(report) == 1 + 2 + 2  # reference, styled, baseline
    # The scores are the judge's on the images the report shows (as saved: uint8).
    shown = [_pixels(report.parent / src) for tag, _, src in references(report) if tag == "img"]
    scorer = ClipScorer.load(tiny_zoo / "judge")
    reference = shown[0][None]
    for name, images in (("round 1 (StyleDrop)", shown[1:3]), ("base + descriptor", shown[3:])):
        images = np.stack(images)
        hits = np.array(judge_guesses(scorer, images)) == ["cat", "dog"]
        expected = {
            "style": float(scorer.style_scores(images, reference).mean()),
            "text": float(scorer.text_scores(images, ["a cat", "a dog"]).mean()),
            # "a cat" and "a dog" are world subjects: how often the judge names them.
            "subject_named": np.mean(hits),
        }
        scores = dict(summary["scores"][name])
        assert scores.pop("named_per_prompt") == {"a cat": int(hits[0]), "a dog": int(hits[1])}
        assert scores == pytest.approx(expected, abs=2e-3), name
        assert f"{summary['scores'][name]['style']:.4g}" in report.read_text()


def _pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


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


# Starts redis-server and a Celery worker and runs the whole demo as a job (45-65 s on 2
# cores): CI's second step. `test_demo_writes_adapter_grids_scores_and_report` runs the
# demo itself in the default run, and tests/worker the jobs.
@pytest.mark.e2e
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
    # Copied out of the store with the images it shows (a fresh clone's `make demo`).
    assert assert_report_complete(out / "report.html") == 1 + 8 + 8
    [job] = jobs.list_jobs(Store(store_dir))
    assert job.kind == "demo" and job.status == "succeeded"
    assert job.worker.startswith("demo-0@") and job.progress["step"] == 2
    config = (store_dir / ".redis" / "redis.conf").read_text()
    port = int(re.search(r"^port (\d+)$", config, re.MULTILINE).group(1))
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # its Redis was stopped
