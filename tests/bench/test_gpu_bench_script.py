"""The GPU benchmark script, rehearsed on CPU with the tiny configuration, and `bench.gpu`.

`scripts/gpu_bench.sh --rehearse` goes through the same code as the GPU call (the
environment report, the fixture, one process per side and figure, the reference with
`--device cpu`, the JSON rewritten after each run) on tiny random weights. Two figures
take about a minute and a half on 2 cores, so it is `e2e`; the default run checks the
refusal without a GPU, the reference's device choice and `bench.gpu`'s bookkeeping with the
measurement processes stood in for.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu, measure, reference
from bench.fixtures import Fixture

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_bench.sh"
HAS_REFERENCE = all(importlib.util.find_spec(name) for name in ("diffusers", "peft"))
# An r1 figure against diffusers' LoRA in bf16, and one compared like for like in fp32.
REHEARSED = ["train_step_r1_b8_bf16", "sampling_12step_b1_fp32"]


def _run(args, tmp_path, **env):
    environ = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=environ, timeout=900, check=False)  # fmt: skip


@pytest.mark.e2e
@pytest.mark.skipif(not HAS_REFERENCE, reason="needs the reference extra (diffusers, peft)")
def test_the_rehearsal_measures_both_sides_on_cpu_and_writes_every_figure_it_ran(tmp_path):
    out = tmp_path / "OUT"
    only = [part for key in REHEARSED for part in ("--only", key)]
    result = _run(["--rehearse", "--", *only, "--skip", "styledrop"], tmp_path, OUT=str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["doctor.json", "gpu_bench.json"]
    assert json.loads((out / "doctor.json").read_text())["jax"]["backend"] == "cpu"
    bench = json.loads((out / gpu.RESULTS_FILE).read_text())
    assert bench["failures"] == [] and bench["meta"]["config"] == "tiny"
    assert list(bench["figures"]) == REHEARSED  # in FIGURES' order
    assert sorted(bench["not_run"] + REHEARSED) == sorted(f.key for f in gpu.FIGURES)
    for key, figure in bench["figures"].items():
        ours, theirs = figure["ours"], figure["reference"]
        assert ours["median_s"] > 0 and ours["device"] == "cpu:cpu", key
        assert theirs["median_s"] > 0 and theirs["device"] == "cpu", key
        assert figure["ratio"] == pytest.approx(ours["median_s"] / theirs["median_s"]), key
        assert bench["runs"][f"ours:{key}"]["args"]["repeats"] == 1
    assert "no r1 adapter" in bench["figures"]["train_step_r1_b8_bf16"]["reference_note"]
    lora = bench["runs"]["diffusers:train_step_lora_b8_bf16"]["args"]
    assert (lora["device"], lora["no_tf32"], lora["adapter_kind"]) == ("cpu", False, "lora")
    assert bench["runs"]["diffusers:sampling_12step_b1_fp32"]["args"]["no_tf32"] is True


def test_without_a_gpu_the_script_refuses_unless_rehearsing(tmp_path):
    result = _run([], tmp_path, OUT=str(tmp_path / "OUT"))
    assert result.returncode == 3
    assert "no GPU" in result.stderr and "--rehearse" in result.stderr


def _fake_record(side: str) -> dict:
    extra = {"jax_device": "gpu:H200"} if side == "ours" else {"torch_device": "cuda:H200"}
    extra["device_peak_mb"] = 1024.0 if side == "ours" else 2048.0
    return {"median_s": 0.5 if side == "ours" else 2.0, "first_s": 9.0, "peak_rss_mb": 900.0,
            "extra": extra}  # fmt: skip


def _stand_in(monkeypatch, tmp_path, unavailable: str = "", fail: str = ""):
    """bench.gpu with a fixture, a clock and measurement processes that take 50 s each.

    Returns the calls: (module, argv, env, figures in the saved JSON when it started).
    """
    fixture = Fixture("tiny", tmp_path / "d", tmp_path / "n", tmp_path / "lora.safetensors")
    monkeypatch.setattr(gpu, "prepare_fixture", lambda name, cache, env: fixture)
    monkeypatch.setattr(gpu, "reference_unavailable", lambda env, device: unavailable)
    clock, calls = [0.0], []
    monkeypatch.setattr(gpu.time, "monotonic", lambda: clock[0])

    def fake_process(module, argv, env, timeout=None):
        saved = json.loads((tmp_path / "out" / gpu.RESULTS_FILE).read_text())["figures"]
        calls.append((module, list(argv), env, saved))
        clock[0] += 50.0
        if fail and module == fail:
            raise measure.BenchError("out of memory")
        return {**_fake_record("ours" if module == "bench.ours" else "diffusers"), "argv": argv}

    monkeypatch.setattr(gpu.measure, "run_process", fake_process)
    return calls


def test_each_figure_runs_ours_then_the_reference_saved_after_each_run(tmp_path, monkeypatch):
    """Order, --only / --skip, a reference run shared by two figures, the budget, the JSON."""
    calls = _stand_in(monkeypatch, tmp_path)
    args = [
        "--config", "tiny", "--out", str(tmp_path / "out"), "--budget", "300",
        "--only", "sampling_12step_b1", "--only", "train_step_r1", "--only", "train_step_lora",
        "--skip", "styledrop",
    ]  # fmt: skip
    assert gpu.main(args) == 0
    result = json.loads((tmp_path / "out" / gpu.RESULTS_FILE).read_text())
    sides = [(module.removeprefix("bench."), argv[0]) for module, argv, _, _ in calls]
    assert sides == [
        ("ours", "sampling"), ("reference", "sampling"),
        ("ours", "train_step"), ("reference", "train_step"),  # diffusers' LoRA, run once
        ("ours", "train_step"), ("ours", "sampling"),  # then the 300 s are spent
    ]  # fmt: skip
    assert [len(saved) for *_, saved in calls] == [0, 1, 1, 2, 2, 3]  # saved after each run
    assert calls[1][3]["sampling_12step_b1_bf16"]["reference"] is None  # ours already in
    ran = [
        "sampling_12step_b1_bf16", "train_step_r1_b8_bf16", "train_step_lora_b8_bf16",
        "sampling_12step_b1_fp32",
    ]  # fmt: skip
    assert list(result["figures"]) == ran
    assert result["failures"] == []
    assert "train_step_r1_b8_fp32" in result["not_run"]
    assert "styledrop_sampling_12step_b1_bf16" in result["not_run"]
    figure = result["figures"]["train_step_r1_b8_bf16"]
    assert figure["ours"]["device"] == "gpu:H200" and figure["reference"]["device"] == "cuda:H200"
    assert figure["ratio"] == 0.25 and figure["ratios"]["device_peak_mb"] == 0.5
    assert "no r1 adapter" in figure["reference_note"]
    assert result["figures"]["train_step_lora_b8_bf16"]["reference"] == figure["reference"]
    late = result["figures"]["sampling_12step_b1_fp32"]
    assert late["reference"] is None and late["ratio"] is None
    assert late["reference_note"] == "not run: the budget was spent"
    assert sorted(result["runs"]) == sorted(
        [f"ours:{key}" for key in ran]
        + ["diffusers:sampling_12step_b1_bf16", "diffusers:train_step_lora_b8_bf16"]
    )
    assert calls[2][1][-6:] == ["--batch", "8", "--adapter-kind", "r1", "--dtype", "bfloat16"]
    for _, _, env, _ in calls:
        assert env.get("JAX_PLATFORMS") != "cpu" and env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


def test_a_failed_or_unavailable_reference_leaves_ours_with_a_reason(tmp_path, monkeypatch):
    calls = _stand_in(monkeypatch, tmp_path, fail="bench.reference")
    args = [
        "--config", "tiny", "--out", str(tmp_path / "out"), "--only", "sampling_12step_b1",
        "--skip", "styledrop",
    ]  # fmt: skip
    assert gpu.main(args) == 1
    result = json.loads((tmp_path / "out" / gpu.RESULTS_FILE).read_text())
    assert result["failures"] == [
        "diffusers:sampling_12step_b1_bf16: out of memory",
        "diffusers:sampling_12step_b1_fp32: out of memory",
    ]
    figure = result["figures"]["sampling_12step_b1_bf16"]
    assert figure["ours"]["median_s"] == 0.5 and figure["reference"] is None
    assert figure["reference_note"].startswith("failed")
    assert len(calls) == 4

    missing = "the reference cannot run: ModuleNotFoundError: No module named 'peft'"
    calls = _stand_in(monkeypatch, tmp_path, unavailable=missing)
    assert gpu.main(args) == 1
    result = json.loads((tmp_path / "out" / gpu.RESULTS_FILE).read_text())
    assert result["failures"] == [missing]
    assert [module for module, *_ in calls] == ["bench.ours", "bench.ours"]
    for figure in result["figures"].values():
        assert figure["reference"] is None and figure["reference_note"] == missing


def test_fp32_means_full_fp32_products_on_both_sides(tmp_path):
    fixture = Fixture("tiny", tmp_path / "d", tmp_path / "n", tmp_path / "lora.safetensors")
    args = argparse.Namespace(warmup=1, repeats=5, finetune_steps=200, device="cuda")
    assert len({figure.key for figure in gpu.FIGURES}) == len(gpu.FIGURES)  # unique keys
    for figure in gpu.FIGURES:
        fp32 = figure.options["dtype"] == "float32"
        assert figure.key.endswith("_fp32" if fp32 else "_bf16"), figure.key
        ours, env = gpu.side_argv(figure, "ours", fixture, args)
        assert env == (gpu.HIGHEST if fp32 else {}) and "--device" not in ours, figure.key
        if figure.reference is None:
            continue
        theirs, env = gpu.side_argv(figure, "diffusers", fixture, args)
        assert env == {} and ("--no-tf32" in theirs) == fp32, figure.key
        assert theirs[theirs.index("--device") + 1] == "cuda", figure.key
        assert theirs[theirs.index("--model") + 1] == str(fixture.diffusers_dir)
        if "--adapter-kind" in theirs:
            assert theirs[theirs.index("--adapter-kind") + 1] == "lora", figure.key
        if figure.workload == "zoo_finetune":  # one run of 200 steps on each side
            for command in (ours, theirs):
                assert command[command.index("--train-steps") + 1] == "200"
                assert command[command.index("--repeats") + 1] == "1"


def test_a_side_reports_flops_throughput_and_a_rounds_extrapolated_time():
    record = {"median_s": 2.0, "first_s": 5.0, "peak_rss_mb": 1.0}
    forward = gpu.summary_of({**record, "extra": {"flops": 4e12}})
    assert forward["achieved_tflops"] == 2.0 and forward["device_peak_mb"] is None
    assert gpu.summary_of({**record, "extra": {"gflops": 5e5}})["tflops"] == 500.0
    finetune = gpu.summary_of({**record, "extra": {"steps": 200, "step_median_s": 0.01}})
    assert finetune["extrapolated_1000step_s"] == pytest.approx(2.0 + 800 * 0.01)
    assert gpu.summary_of(None) is None


def test_auto_picks_cuda_only_where_torch_sees_a_gpu(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test is about a machine without a GPU")
    assert reference.resolve_device("auto") == "cpu"
    assert reference.resolve_device("cpu") == "cpu"
    with pytest.raises(SystemExit, match="sees no CUDA GPU"):
        reference.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert reference.resolve_device("auto") == "cuda"
    assert reference.resolve_device("cuda") == "cuda"
    args = reference.parser().parse_args(["sampling"])
    assert (args.device, args.no_tf32) == ("cpu", False)  # the CPU benchmark's defaults
