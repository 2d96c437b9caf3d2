"""Our side's figures on a GPU: one process per figure, most wanted first, saved after each.

`styledrop bench` compares both implementations on the same CPUs (it keeps JAX on the CPU).
On a lent GPU the questions are about ours alone: how fast a StyleDrop train step and
sampling run in bf16 and fp32, and how much device memory they hold. This module builds (or
finds) a configuration's random-weight fixture (`bench.fixtures`, as `styledrop bench`
does), then runs `bench.ours` workloads, each in a fresh process on JAX's default backend,
in the order of `FIGURES`, and rewrites `OUT/gpu_bench.json` after every figure, so a run
cut short keeps what it measured. Figures are not started once `--budget` seconds are spent.

`FIGURES` are in priority order: fine-tuning steps first (StyleDrop spends a GPU's time
there: two rounds of 1000 steps per style), in bf16 (the GPU default) then fp32, at batch 1
(the CPU tables' setting) and 8 (`styledrop finetune`'s default); then sampling (candidate
pools and evaluation draw thousands of images); then the guided forward's achieved FLOP/s;
then the other adapter kinds; the matmul peak last (a check of the machine). fp32 figures run
at JAX's default matmul precision unless the key ends in `_highest`
(`JAX_DEFAULT_MATMUL_PRECISION=highest`: full fp32 products, no TF32).

JSON layout::

    {"meta": {...},         # config, budget, repeats, versions, the device figures ran on
     "fixture": {...},      # the fixture's folders
     "figures": {"train_step_r1_bf16": {"median_s": ..., "first_s": ...,
                                        "device_peak_mb": ..., "unit": "s"}, ...},
     "runs": {...},         # the raw records of `bench.ours`
     "failures": [...],     # "KEY: error"
     "not_run": [...]}      # keys left out (--only, --skip) or when the budget ran out

`python -m bench.gpu --config amused_512 --out DIR` (scripts/gpu_bench.sh runs it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import measure
from bench.machine import versions
from bench.plan import argv, selects
from bench.pool import prepare_fixture

RESULTS_FILE = "gpu_bench.json"
HIGHEST = {"JAX_DEFAULT_MATMUL_PRECISION": "highest"}
BF16, FP32 = {"dtype": "bfloat16"}, {"dtype": "float32"}
# (figure key, bench.ours workload, its options, extra environment), most wanted first.
FIGURES: tuple[tuple[str, str, dict[str, Any], dict[str, str]], ...] = (
    ("train_step_r1_bf16", "train_step", {"batch": 1, "adapter_kind": "r1", **BF16}, {}),
    ("train_step_r1_b8_bf16", "train_step", {"batch": 8, "adapter_kind": "r1", **BF16}, {}),
    ("train_step_r1_fp32", "train_step", {"batch": 1, "adapter_kind": "r1", **FP32}, {}),
    ("train_step_r1_fp32_highest", "train_step",
     {"batch": 1, "adapter_kind": "r1", **FP32}, HIGHEST),
    ("styledrop_sampling_12step_b1_bf16", "styledrop_sampling", {"batch": 1, **BF16}, {}),
    ("sampling_12step_b4_bf16", "sampling", {"batch": 4, **BF16}, {}),
    ("sampling_12step_b4_fp32", "sampling", {"batch": 4, **FP32}, {}),
    ("cfg_forward_b2_fp32", "cfg_forward", {"batch": 2, **FP32}, {}),
    ("cfg_forward_b2_bf16", "cfg_forward", {"batch": 2, **BF16}, {}),
    ("train_step_lora_bf16", "train_step", {"batch": 1, "adapter_kind": "lora", **BF16}, {}),
    ("train_step_r2_bf16", "train_step", {"batch": 1, "adapter_kind": "r2", **BF16}, {}),
    ("matmul_8192_bf16", "matmul", {"size": 8192, **BF16}, {}),
    ("matmul_8192_fp32", "matmul", {"size": 8192, **FP32}, {}),
)  # fmt: skip


def figure_of(record: dict[str, Any]) -> dict[str, Any]:
    """The figure of one `bench.ours` record: times, memory and, where known, FLOP/s."""
    extra = record.get("extra", {})
    out = {
        "median_s": record["median_s"],
        "first_s": record["first_s"],
        "unit": "s",
        "device_peak_mb": extra.get("device_peak_mb"),
        "peak_rss_mb": record["peak_rss_mb"],
        "device": extra.get("jax_device"),
    }
    if "gflops" in extra:  # matmul
        out["tflops"] = extra["gflops"] / 1e3
    if extra.get("flops"):  # the guided forward: XLA's count of its FLOPs
        out["achieved_tflops"] = extra["flops"] / record["median_s"] / 1e12
    return out


def run_figures(args: argparse.Namespace, log=print) -> dict[str, Any]:
    """Builds the fixture, runs the selected figures within the budget; returns the result."""
    began = time.monotonic()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = len(measure.available_cpus())
    env = measure.child_env(threads, cpu_only=False)
    result: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "config": args.config,
            "budget_s": args.budget,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "jax_platforms": os.environ.get("JAX_PLATFORMS", ""),
            "matmul_precision": os.environ.get("JAX_DEFAULT_MATMUL_PRECISION", "default"),
            "versions": versions(),
        },
        "fixture": {},
        "figures": {},
        "runs": {},
        "failures": [],
        "not_run": [],
    }

    def save() -> None:
        path = out_dir / RESULTS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(path)

    log(f"[{args.config}] fixture (cache: {args.cache})")
    fixture = prepare_fixture(args.config, Path(args.cache).expanduser().resolve(), env)
    result["fixture"] = fixture.to_dict()
    save()
    common = ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    common += ["--model", str(fixture.native_dir)]
    for key, workload, options, extra_env in FIGURES:
        left = args.budget - (time.monotonic() - began)
        if not selects(key, tuple(args.only or ()), tuple(args.skip or ())) or left <= 0:
            result["not_run"].append(key)
            continue
        if workload == "styledrop_sampling":
            options = {**options, "adapter": fixture.lora_file}
        log(f"[{args.config}] {key} ({left:.0f} s left)")
        try:
            record = measure.run_process(
                "bench.ours", argv(workload, common, **options), {**env, **extra_env},
                timeout=min(left, args.timeout),
            )  # fmt: skip
        except measure.BenchError as error:
            result["failures"].append(f"{key}: {error}")
            log(f"  failed: {str(error)[-500:]}")
        else:
            result["runs"][key] = record
            result["figures"][key] = figure_of(record)
            shown = {k: v for k, v in result["figures"][key].items() if v is not None}
            log(f"  {json.dumps(shown)}")
        save()
    result["meta"]["seconds"] = time.monotonic() - began
    save()
    return result


def main(argv_: list[str] | None = None) -> int:
    """`python -m bench.gpu [options]`; exits 1 when a figure failed."""
    from bench.fixtures import CONFIGS

    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    parser.add_argument("--config", choices=CONFIGS, default="amused_512")
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {RESULTS_FILE}")
    parser.add_argument(
        "--cache", type=Path, default=Path("runs/bench/fixtures"), help="fixture cache folder"
    )
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for everything")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per figure")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    parser.add_argument(
        "--only", action="append", metavar="TEXT",
        help="run only figures whose key contains TEXT (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--skip", action="append", metavar="TEXT",
        help="leave out figures whose key contains TEXT (repeatable; wins over --only)",
    )  # fmt: skip
    args = parser.parse_args(argv_)
    if args.repeats < 1 or args.warmup < 0 or args.budget <= 0:
        parser.error("--repeats must be >= 1, --warmup >= 0 and --budget > 0.")

    def log(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    result = run_figures(args, log)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
