"""The GPU benchmark script, rehearsed on CPU with the tiny configuration, and `bench.gpu`.

`scripts/gpu_bench.sh --rehearse` goes through the same code as the GPU call (the
environment report, the fixture, one process per figure, the JSON rewritten after each)
on tiny random weights. It takes about two minutes on 2 cores, so it is `e2e`; the default
run checks the refusal without a GPU and `bench.gpu`'s bookkeeping with the measurement
processes stood in for.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu, measure
from bench.fixtures import Fixture

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_bench.sh"
HAS_DIFFUSERS = importlib.util.find_spec("diffusers") is not None
REHEARSED = [  # one figure of each workload the rehearsal runs
    "train_step_r1_bf16", "styledrop_sampling_12step_b1_bf16", "sampling_12step_b4_bf16",
    "cfg_forward_b2_fp32",
]  # fmt: skip


def _run(args, tmp_path, **env):
    environ = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=environ, timeout=900, check=False)  # fmt: skip


@pytest.mark.e2e
@pytest.mark.skipif(not HAS_DIFFUSERS, reason="the fixture is made in diffusers")
def test_the_rehearsal_writes_the_environment_and_every_figure_it_ran(tmp_path):
    out = tmp_path / "OUT"
    only = [part for key in REHEARSED for part in ("--only", key)]
    result = _run(["--rehearse", "--", *only], tmp_path, OUT=str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["doctor.json", "gpu_bench.json"]
    assert json.loads((out / "doctor.json").read_text())["jax"]["backend"] == "cpu"
    bench = json.loads((out / gpu.RESULTS_FILE).read_text())
    assert bench["failures"] == [] and bench["meta"]["config"] == "tiny"
    assert list(bench["figures"]) == REHEARSED  # in FIGURES' order
    assert sorted(bench["not_run"] + REHEARSED) == sorted(key for key, *_ in gpu.FIGURES)
    for key, value in bench["figures"].items():
        assert value["median_s"] > 0 and value["device"] == "cpu:cpu", key
        assert bench["runs"][key]["args"]["repeats"] == 1
    assert bench["figures"]["cfg_forward_b2_fp32"]["achieved_tflops"] > 0


def test_without_a_gpu_the_script_refuses_unless_rehearsing(tmp_path):
    result = _run([], tmp_path, OUT=str(tmp_path / "OUT"))
    assert result.returncode == 3
    assert "no GPU" in result.stderr and "--rehearse" in result.stderr


def test_figures_run_in_order_within_the_budget_and_are_saved_after_each(tmp_path, monkeypatch):
    """bench.gpu's bookkeeping: order, --only / --skip, failures, the budget, the JSON."""
    fixture = Fixture("tiny", tmp_path / "d", tmp_path / "n", tmp_path / "lora.safetensors")
    monkeypatch.setattr(gpu, "prepare_fixture", lambda name, cache, env: fixture)
    saved, clock = [], [0.0]
    monkeypatch.setattr(gpu.time, "monotonic", lambda: clock[0])

    def fake_process(module, argv, env, timeout=None):
        saved.append(json.loads((tmp_path / "out" / gpu.RESULTS_FILE).read_text())["figures"])
        assert module == "bench.ours" and env.get("JAX_PLATFORMS") != "cpu"
        clock[0] += 100.0  # each figure takes 100 s
        if argv[0] == "sampling":
            raise measure.BenchError("out of memory")
        extra = {"jax_device": "gpu:H200", "device_peak_mb": 1024.0}
        record = {"median_s": 0.5, "first_s": 9.0, "peak_rss_mb": 900.0, "extra": extra}
        return {**record, "env": env.get("JAX_DEFAULT_MATMUL_PRECISION"), "argv": argv}

    monkeypatch.setattr(gpu.measure, "run_process", fake_process)
    args = [
        "--config", "tiny", "--out", str(tmp_path / "out"), "--budget", "300",
        "--only", "train_step_r1", "--only", "sampling", "--skip", "styledrop",
    ]  # fmt: skip
    assert gpu.main(args) == 0
    result = json.loads((tmp_path / "out" / gpu.RESULTS_FILE).read_text())
    ran = ["train_step_r1_bf16", "train_step_r1_b8_bf16", "train_step_r1_fp32"]
    assert list(result["figures"]) == ran  # the budget is spent after three
    assert [len(figures) for figures in saved] == [0, 1, 2]  # saved after each figure
    assert result["failures"] == []
    assert "train_step_r1_fp32_highest" in result["not_run"]
    assert "styledrop_sampling_12step_b1_bf16" in result["not_run"]
    assert result["figures"]["train_step_r1_b8_bf16"]["device_peak_mb"] == 1024.0
    assert result["runs"]["train_step_r1_b8_bf16"]["argv"][-6:] == [
        "--batch", "8", "--adapter-kind", "r1", "--dtype", "bfloat16",
    ]  # fmt: skip
    assert gpu.main([*args[:4], "--budget", "1000", "--only", "sampling_12step_b4_fp32"]) == 1
    result = json.loads((tmp_path / "out" / gpu.RESULTS_FILE).read_text())
    assert result["failures"] == ["sampling_12step_b4_fp32: out of memory"]


def test_the_highest_precision_figure_runs_with_full_fp32_products():
    envs = {key: env for key, _, _, env in gpu.FIGURES}
    assert envs["train_step_r1_fp32_highest"] == {"JAX_DEFAULT_MATMUL_PRECISION": "highest"}
    assert sum(bool(env) for env in envs.values()) == 1
    assert len(envs) == len(gpu.FIGURES)  # keys are unique


def test_a_figure_reports_achieved_flops_and_matmul_throughput():
    record = {"median_s": 2.0, "first_s": 5.0, "peak_rss_mb": 1.0}
    forward = gpu.figure_of({**record, "extra": {"flops": 4e12}})
    assert forward["achieved_tflops"] == 2.0 and forward["device_peak_mb"] is None
    assert gpu.figure_of({**record, "extra": {"gflops": 5e5}})["tflops"] == 500.0
