"""The figures of a run: `{ours, diffusers, ratio, unit}` from the measurement records.

`machine_figures` (matmul GFLOP/s), `pair_figures` (median time, first call, peak
memory), `flop_figures` (achieved GFLOP/s and fraction of the matmul peak), `parity`
(largest differences between the sides' outputs), and the checks that turn a run that
did not measure what it claims into failures (`check_zoo_sampling`, `check_threads`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import measure
from bench.plan import BF16_MATMUL_SIZE, FORWARD_KEY, IMPLS, ZOO_GRID_KEY, Pair, matmul_key


def figure(ours: float, diffusers: float, unit: str) -> dict[str, Any]:
    """`{ours, diffusers, ratio, unit}` with ratio = ours / diffusers."""
    ratio = ours / diffusers if diffusers else float("nan")
    return {"ours": ours, "diffusers": diffusers, "ratio": ratio, "unit": unit}


def machine_figures(results: dict[tuple[str, str], Any], matmul_size: int) -> dict[str, Any]:
    """Matmul figures (GFLOP/s) from the records of `machine_tasks`."""

    def gflops(size: int, dtype: str) -> tuple[float, float] | None:
        key = matmul_key(size, dtype)
        records = [results.get((impl, key)) for impl in IMPLS]
        if not all(isinstance(r, dict) for r in records):
            return None
        return records[0]["extra"]["gflops"], records[1]["extra"]["gflops"]

    out: dict[str, Any] = {}
    rows = {
        "matmul_peak_gflops_fp32": gflops(matmul_size, "float32"),
        f"matmul_{BF16_MATMUL_SIZE}_gflops_fp32": gflops(BF16_MATMUL_SIZE, "float32"),
        f"matmul_{BF16_MATMUL_SIZE}_gflops_bf16": gflops(BF16_MATMUL_SIZE, "bfloat16"),
    }
    for key, values in rows.items():
        if values:
            out[key] = figure(*values, "GFLOP/s")
    fp32 = rows[f"matmul_{BF16_MATMUL_SIZE}_gflops_fp32"]
    bf16 = rows[f"matmul_{BF16_MATMUL_SIZE}_gflops_bf16"]
    if fp32 and bf16:
        out[f"matmul_{BF16_MATMUL_SIZE}_bf16_speedup"] = figure(
            bf16[0] / fp32[0], bf16[1] / fp32[1], "x"
        )
    return out


def collect_runs(results, failures: list[str]) -> dict[str, Any]:
    """Raw records by "side:key"; failures are listed and kept as {"error"}."""
    runs: dict[str, Any] = {}
    for (impl, key), record in results.items():
        if isinstance(record, measure.BenchError):
            failures.append(f"{impl} {key}: {record}")
            runs[f"{impl}:{key}"] = {"error": str(record)}
        else:
            runs[f"{impl}:{key}"] = record
    return runs


def pair_figures(pairs: Sequence[Pair], results) -> dict[str, Any]:
    """Time (median), first-call time and peak-memory figures of measured pairs."""
    figures: dict[str, Any] = {}
    for p in pairs:
        ours = results.get((p.ours.impl, p.ours.key))
        ref = results.get((p.diffusers.impl, p.diffusers.key))
        if not isinstance(ours, dict) or not isinstance(ref, dict):
            continue
        figures[p.key] = figure(ours["median_s"], ref["median_s"], "s")
        steps = [r.get("extra", {}).get("step_median_s") for r in (ours, ref)]
        if p.step_key and all(steps):
            figures[p.step_key] = figure(*steps, "s")
        figures[f"first_call_{p.key}"] = figure(ours["first_s"], ref["first_s"], "s")
        figures[p.memory_key] = figure(ours["peak_rss_mb"], ref["peak_rss_mb"], "MB")
    return figures


def flop_figures(figures: dict[str, Any], results, machine: dict[str, Any]) -> dict[str, Any]:
    """Achieved GFLOP/s of the guided forward on both sides, and its fraction of the peak."""
    record = results.get(("ours", FORWARD_KEY))
    flops = record.get("extra", {}).get("flops") if isinstance(record, dict) else None
    if not flops or FORWARD_KEY not in figures:
        return {}
    time = figures[FORWARD_KEY]
    achieved = (flops / time["ours"] / 1e9, flops / time["diffusers"] / 1e9)
    out = {f"achieved_gflops_{FORWARD_KEY}": figure(*achieved, "GFLOP/s")}
    peak = machine.get("matmul_peak_gflops_fp32")
    if peak:
        out[f"peak_fraction_{FORWARD_KEY}"] = figure(
            achieved[0] / peak["ours"], achieved[1] / peak["diffusers"], "fraction"
        )
    return out


PARITY_CHECKS = (  # (label, workload whose dumps are compared, what the arrays hold)
    ("cfg_forward", "cfg_forward", "logit"),
    ("styledrop", "styledrop_sampling", "logit"),
    ("vq_decode", "zoo_grid", "pixel"),
)


def parity(name: str, dumps: Path) -> dict[str, Any]:
    """Largest output differences between the sides (same weights, same inputs, fp32).

    `cfg_forward`: the guided forward's logits; `styledrop`: one step's Eq. 4 logits
    (LoRA on and off), from the StyleDrop sampling processes; `vq_decode`: the pixels the
    VQ decodes from fixed tokens, from the zoo grid processes. Keys: `<label>_max_abs_diff`,
    `<label>_max_abs_logit` (or `_pixel`: the scale) and `<label>_max_rel_diff`.
    """
    import numpy as np

    out: dict[str, Any] = {}
    for label, workload, what in PARITY_CHECKS:
        paths = [dumps / f"{name}-{impl}-{workload}.npy" for impl in IMPLS]
        if not all(p.is_file() for p in paths):
            continue
        ours, ref = (np.load(p) for p in paths)
        if ours.shape != ref.shape:
            out[f"{label}_shapes"] = [list(ours.shape), list(ref.shape)]
            continue
        scale = float(np.abs(ref).max())
        diff = float(np.abs(ours - ref).max())
        out[f"{label}_max_abs_diff"] = diff
        out[f"{label}_max_abs_{what}"] = scale
        out[f"{label}_max_rel_diff"] = diff / scale if scale else float("nan")
    return out


def check_zoo_sampling(results, failures: list[str]) -> None:
    """Both grids sampled with the same settings: steps, guidance, temperatures, micro-conds.

    diffusers draws tokens at softmax temperature 1, so ours must too.
    """
    records = [results.get((impl, ZOO_GRID_KEY)) for impl in IMPLS]
    if not all(isinstance(r, dict) for r in records):
        return
    ours, ref = (r["extra"]["sampling"] for r in records)
    steps = ref["num_inference_steps"]
    start, end = ref["temperature"]
    theirs = [start + (end - start) * k / max(steps - 1, 1) for k in range(steps)]
    micro = [*ref["micro_conditioning_crop_coord"], ref["micro_conditioning_aesthetic_score"]]
    same = (
        ours["num_steps"] == steps
        and ours["guidance_scale"] == ref["guidance_scale"]
        and ours["micro_conds"][2:] == micro
        and ours.get("token_temperature", 1.0) == 1.0
        and len(ours["temperatures"]) == steps
        and all(abs(a - b) < 1e-5 for a, b in zip(ours["temperatures"], theirs, strict=False))
    )
    if not same:
        failures.append(
            f"{ZOO_GRID_KEY}: the sides sampled differently: ours {ours}, diffusers {ref}"
        )


def check_threads(runs: dict[str, Any], threads: int, failures: list[str]) -> None:
    """Lists as failures the runs whose process used another number of threads."""
    for name, record in runs.items():
        got = record.get("threads") if isinstance(record, dict) else None
        if got and (len(got["cpus"]) != threads or got["torch"] != threads):
            failures.append(f"{name}: ran with {got} instead of {threads} threads")
