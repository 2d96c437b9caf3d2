"""`styledrop bench` end to end on the tiny configuration, and its small helpers.

The end-to-end test runs the whole benchmark (fixture build, every workload on both
sides, matmuls) with one repetition and no warm-up, measurements forked from per-side
servers and spread over the CPUs (`--jobs`), and checks the JSON: every figure present,
each with positive finite `ours`, `diffusers` and `ratio`. Its cost is dominated by
XLA compiling our ten programs (about 140 CPU-seconds in all).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level folder of the checkout, not installed
    sys.path.insert(0, str(ROOT))

from bench import measure  # noqa: E402
from bench.run import figure  # noqa: E402

HAS_REFERENCE = all(importlib.util.find_spec(name) for name in ("diffusers", "peft"))
TRAIN = [f"train_step_{kind}_{p}" for p in ("fp32", "bf16") for kind in ("r1", "r2", "lora")]
TIMED = [
    "cfg_forward_b2_fp32",
    "sampling_12step_b1_fp32",
    "sampling_12step_b4_fp32",
    "styledrop_sampling_12step_b1_fp32",
    *TRAIN,
]
MEMORY = [
    "peak_memory_cfg_forward_b2_fp32",
    "peak_memory_sampling_b1_fp32",
    "peak_memory_sampling_b4_fp32",
    "peak_memory_styledrop_sampling_b1_fp32",
    *(f"peak_memory_{key}" for key in TRAIN),
]
CONFIG_KEYS = [
    *TIMED,
    *(f"first_call_{key}" for key in TIMED),
    *MEMORY,
    "achieved_gflops_cfg_forward_b2_fp32",
    "peak_fraction_cfg_forward_b2_fp32",
]
MACHINE_KEYS = [
    "matmul_peak_gflops_fp32",
    "matmul_2048_gflops_fp32",
    "matmul_2048_gflops_bf16",
    "matmul_2048_bf16_speedup",
]


def _check_figure(name: str, value: dict) -> None:
    for field in ("ours", "diffusers", "ratio"):
        number = value.get(field)
        assert isinstance(number, int | float), f"{name}.{field} = {number!r}"
        assert math.isfinite(number) and number > 0, f"{name}.{field} = {number!r}"
    assert value["ratio"] == pytest.approx(value["ours"] / value["diffusers"])


@pytest.mark.slow
@pytest.mark.skipif(not HAS_REFERENCE, reason="needs the reference extra (diffusers, peft)")
def test_bench_tiny_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    jobs = max(1, min(4, len(os.sched_getaffinity(0))))
    command = [
        sys.executable, "-m", "bench.run", "--config", "tiny", "--config", "zoo",
        "--repeats", "1", "--warmup", "0", "--threads", "1", "--jobs", str(jobs),
        "--isolation", "fork", "--matmul-size", "512",
        "--cache", str(tmp_path / "fixtures"), "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())

    assert result["failures"] == []
    assert result["skipped"]["zoo"] == {
        "status": "skipped",
        "reason": "not available yet (issue 4)",
    }
    machine = result["machine"]["figures"]
    figures = result["configs"]["tiny"]["figures"]
    assert sorted(machine) == sorted(MACHINE_KEYS)
    assert sorted(figures) == sorted(CONFIG_KEYS)
    for name, value in [*machine.items(), *figures.items()]:
        _check_figure(name, value)
    # Same weights on both sides: the guided forward and StyleDrop's Eq. 4 logits agree.
    check = result["configs"]["tiny"]["parity"]
    assert check["cfg_forward_max_rel_diff"] < 1e-4
    assert check["styledrop_max_rel_diff"] < 1e-4
    # Both sides ran pinned to the requested single thread.
    for name, record in result["configs"]["tiny"]["runs"].items():
        assert len(record["threads"]["cpus"]) == 1 and record["threads"]["torch"] == 1, name
    assert result["meta"]["threads"] == 1
    # The table went to stdout with the skip line.
    assert "[zoo] SKIP: not available yet (issue 4)" in done.stdout
    assert "train_step_lora_bf16" in done.stdout


def test_time_repeated_takes_the_median_after_warmup():
    calls = []
    timing = measure.time_repeated(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5
    assert len(timing.times_s) == 3
    assert timing.median_s == sorted(timing.times_s)[1]
    with pytest.raises(ValueError):
        measure.time_repeated(lambda: None, repeats=0)


def test_figure_ratio_is_ours_over_diffusers():
    assert figure(2.0, 4.0, "s") == {"ours": 2.0, "diffusers": 4.0, "ratio": 0.5, "unit": "s"}


def test_child_env_pins_threads_and_keeps_user_xla_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    env = measure.child_env(3)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    assert env["XLA_FLAGS"].split() == [
        measure.XLA_THREAD_FLAG,
        "--xla_cpu_enable_fast_math=false",
    ]
    assert env["JAX_PLATFORMS"] == "cpu"
    assert str(ROOT) in env["PYTHONPATH"].split(os.pathsep)


def test_command_parser_has_the_benchmark_options():
    from styledrop.commands import bench as command

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--config", "tiny", "--json", "out.json"])
    assert args.config == ["tiny"] and args.json == Path("out.json")
    assert (args.repeats, args.warmup, args.isolation, args.jobs) == (5, 1, "process", 1)
    assert args.run is command.run
