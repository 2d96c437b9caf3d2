"""Orchestration of `styledrop bench`: fixtures, measurements, table and JSON.

For each configuration the fixture (random diffusers weights converted to ours; for
`zoo`, the embedded zoo exported to diffusers) is built or found in the cache, then
every measurement runs once per implementation in its own
process (a fresh interpreter, or with `--isolation fork` a fork of a per-side server that
imported the libraries once), all pinned to the same CPUs and thread count. Each
measurement yields a median time, the first call's time and the process's peak RSS;
these become figures `{ours, diffusers, ratio, unit}` with ratio = ours / diffusers.

JSON layout::

    {"meta": {...},                   # threads, repetitions, versions, CPU, load average
     "machine": {"figures": {...}, "runs": {...}},   # matmul peak, 2048 fp32 / bf16
     "configs": {"tiny": {"figures": {...}, "parity": {...}, "runs": {...},
                          "fixture": {...}},
                 "zoo": {...}},       # cfg_forward (parity), zoo_finetune_*, zoo_grid_*
     "skipped": {"zoo": {"status": "skipped", "reason": "..."}},  # only if not measured
     "workloads": {...},              # what each side runs, in words
     "failures": [...]}

The zoo's figures: `zoo_finetune_<N>step_{lora,r1}_fp32` (a whole `styledrop finetune`
run of N steps, `--zoo-steps`; diffusers + peft trains LoRA, the reference for both of
our kinds), `zoo_finetune_step_{lora,r1}_fp32` (its steady-state time per step) and
`zoo_grid_8img_fp32` (8 images with the zoo's sampling settings, VQ decode, grid).

`python -m bench.run [options]` takes the options of `styledrop bench`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import platform
import queue
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import fixtures, measure
from bench.options import DEFAULT_CONFIGS, OptionError, add_arguments, validate

BF16_MATMUL_SIZE = 2048
TRAIN_KINDS = ("r1", "r2", "lora")
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16"}
IMPLS = {"ours": "bench.ours", "diffusers": "bench.reference"}
FORWARD_KEY = "cfg_forward_b2_fp32"
STYLEDROP_KEY = "styledrop_sampling_12step_b1_fp32"
ZOO_KINDS = ("lora", "r1")  # our adapters fine-tuned on the zoo (diffusers: LoRA for both)
ZOO_GRID_KEY = "zoo_grid_8img_fp32"

WORKLOAD_NOTES = {
    "cfg_forward": (
        "B = 2 images, so the transformer sees 2B rows. ours:"
        " Pipeline.guided_logits(cfg_branches(prompts, [''] * B, 10), ids) (text cache warm);"
        " diffusers: UVit2DModel on the rows [negatives; prompts] with the embeddings"
        " AmusedPipeline computes (encoded once), then u + 10 (c - u)."
    ),
    "sampling": (
        "ours: Pipeline.generate(prompts, seed=0, guidance_scale=10, num_steps=12,"
        " batch_size=B), text-embedding cache cleared before each call; diffusers:"
        " AmusedPipeline(prompts, num_inference_steps=12, guidance_scale=10, generator,"
        " output_type='np'). Both: text encoding, 12 CFG steps, VQ decode."
    ),
    "styledrop_sampling": (
        "StyleDrop Eq. 4 (lambda_A 1, lambda_B 5), 12 steps, VQ decode, the same LoRA r16 q/k/v"
        " file on both sides. ours: attach_adapter + generate_styled, three branches in one"
        " batched forward per step (adapter gated per row), text cache cleared per call;"
        " diffusers + peft: load_lora_adapter, then per step enable_adapters() + one"
        " transformer call on the prompt rows and disable_adapters() + one call on"
        " [prompt; negative] rows (the two base branches batched: 2 calls per step, not 3),"
        " AmusedScheduler.step; prompts encoded per call."
    ),
    "train_step": (
        "batch 1: masking, forward, masked cross-entropy, backward, optimizer update. ours:"
        " make_train_step (jitted, as styledrop finetune) with a fresh r1, r2 or LoRA r16 q/k/v"
        " adapter, Adam; diffusers + peft: add_adapter(LoraConfig(r=16, lora_alpha=32,"
        " target_modules=[to_q, to_k, to_v])), AdamW, train_amused.py masking and loss. The one"
        " diffusers LoRA figure is the reference for all three of our kinds. bf16: ours"
        " muse.load(dtype='bfloat16') (fp32 parameters, bf16 compute); diffusers forward and"
        " loss under torch.autocast('cpu', dtype=torch.bfloat16) (fp32 weights)."
    ),
    "zoo_weights": (
        "The embedded zoo's committed weights on both sides: ours muse.load(zoo folder);"
        " diffusers the same tensors exported with the inverse of our conversion's layout"
        " transforms (bench.fixtures.export_diffusers, checked by converting back: every"
        " tensor equal) into AmusedPipeline.from_pretrained. Parity: cfg_forward logits and"
        " the VQ decode (pixels) of fixed tokens."
    ),
    "zoo_finetune": (
        "A whole fine-tuning run on the demo's style image (styledrop/data, caption 'a house',"
        " descriptor 'in blue ink line drawing style'), batch 8, N steps (--zoo-steps), fp32,"
        " from a loaded model (the load is outside the timed span); --zoo-runs timed runs, no"
        " warm-up run. ours:"
        " styledrop.finetune.finetune with a LoRA r16 q/k/v or r1 adapter (FinetuneConfig"
        " defaults: Adam at the kind's lr, 8 augmented crops tokenized and the prompt encoded"
        " once, a resumable checkpoint every 100 steps, adapter file at the end; the jitted step"
        " compiles in every run); diffusers + peft: the same crops tokenized with"
        " vqvae.encode + quantize, add_adapter(LoraConfig(r=16, lora_alpha=32, q/k/v)),"
        " AdamW lr 4e-4, train_amused.py masking and loss, loss.item() per step,"
        " save_lora_adapter at the end. The diffusers LoRA run is the reference for both of"
        " our kinds. zoo_finetune_step_*: median time between consecutive steps after the"
        " first (steady state, no compile); the runs' extra.first_step_s: time to the end of"
        " step 1 (tokenizing and encoding, on our side the compile)."
    ),
    "zoo_grid": (
        "8 images, one per demo subject, in one batch with the zoo's sampling settings from its"
        " model.json (at present K = 36 MaskGIT steps, guidance 3, choice temperature c = 4.5:"
        " from a fully masked grid that is AmusedScheduler's rule with temperature"
        " (c (K - 1) / K, 0); the run checks both sides used the same settings), VQ decode,"
        " a 2 x 4 grid. ours: Pipeline.generate(prompts, seed=0, batch_size=8) with the model's"
        " defaults + make_grid, text cache cleared per call; diffusers: AmusedPipeline(...,"
        " output_type='latent') + the pipeline's VQ decode with the codebook width (its own"
        " decode assumes vq_embed_dim == latent_channels, false for the zoo) +"
        " postprocess('pil') + make_image_grid."
    ),
    "matmul": (
        "jax.jit(a @ b) vs torch.matmul on n x n matrices, GFLOP/s = 2 n^3 / time. The large"
        " fp32 one is each framework's peak for peak_fraction_*; 2048 in fp32 and bf16 shows"
        " CPU bf16 support (bf16 inputs and output)."
    ),
    "achieved_gflops": (
        "FLOPs of our guided forward's model call from XLA's HLO cost analysis (of the"
        " lowered program), divided by each side's median time (both compute the same"
        " function, so the same count serves both)."
    ),
    "peak_memory": (
        "VmHWM (peak RSS) of the process that ran the measurement: imports, model load and"
        " the runs (our processes also hold PyTorch + transformers for the CLIP text"
        " encoder). With --isolation fork it counts from the fork and leaves out library"
        " pages the child never touches: lower than, and not comparable with, process mode."
    ),
}


@dataclass(frozen=True)
class Task:
    """One measurement process: which side runs which workload with which arguments.

    `key` identifies a distinct run on that side (a task shared by several figures, such
    as the diffusers LoRA train step, runs once).
    """

    impl: str
    key: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Pair:
    """A figure measured on both sides: its key, the peak-memory key and the two tasks.

    `step_key`, when set, names a second time figure read from the records' extra
    `step_median_s` (a fine-tuning run's steady-state time per step).
    """

    key: str
    memory_key: str
    ours: Task
    diffusers: Task
    step_key: str | None = None


def _argv(workload: str, common: Sequence[str], **options: Any) -> tuple[str, ...]:
    out = [workload, *common]
    for name, value in options.items():
        out += [f"--{name.replace('_', '-')}", str(value)]
    return tuple(out)


def _replace_options(options: Sequence[str], **values: Any) -> list[str]:
    """Flag-value pairs `options` with the values of the flags named in `values` replaced."""
    flags = {f"--{name.replace('_', '-')}": str(value) for name, value in values.items()}
    pairs = zip(options[::2], options[1::2], strict=True)
    return [part for flag, value in pairs for part in (flag, flags.get(flag, value))]


def _matmul_key(size: int, dtype: str) -> str:
    return f"matmul_{size}_{'fp32' if dtype == 'float32' else 'bf16'}"


def machine_tasks(common: Sequence[str], matmul_size: int) -> list[Task]:
    """The matmul tasks of both sides: fp32 at `matmul_size`, 2048 in fp32 and bf16."""
    cases = dict.fromkeys(
        [(matmul_size, "float32"), (BF16_MATMUL_SIZE, "float32"), (BF16_MATMUL_SIZE, "bfloat16")]
    )
    return [
        Task(impl, _matmul_key(size, dtype), _argv("matmul", common, size=size, dtype=dtype))
        for size, dtype in cases
        for impl in IMPLS
    ]


def machine_figures(results: dict[tuple[str, str], Any], matmul_size: int) -> dict[str, Any]:
    """Matmul figures (GFLOP/s) from the records of `machine_tasks`."""

    def gflops(size: int, dtype: str) -> tuple[float, float] | None:
        key = _matmul_key(size, dtype)
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


def config_pairs(fixture: fixtures.Fixture, common: Sequence[str], dumps: Path) -> list[Pair]:
    """The measurements of one configuration: forward, sampling, StyleDrop, train steps."""
    models = {"ours": str(fixture.native_dir), "diffusers": str(fixture.diffusers_dir)}

    def task(impl: str, key: str, workload: str, **options: Any) -> Task:
        return Task(impl, key, _argv(workload, [*common, "--model", models[impl]], **options))

    def pair(key: str, memory_key: str, workload: str, **options: Any) -> Pair:
        return Pair(
            key,
            memory_key,
            task("ours", key, workload, **options),
            task("diffusers", key, workload, **options),
        )

    def dump(workload: str) -> dict[str, Path]:  # logits saved for the same-function check
        return {impl: dumps / f"{fixture.name}-{impl}-{workload}.npy" for impl in IMPLS}

    forward, styled = dump("cfg_forward"), dump("styledrop_sampling")
    pairs = [
        Pair(
            FORWARD_KEY,
            "peak_memory_cfg_forward_b2_fp32",
            *(task(i, FORWARD_KEY, "cfg_forward", batch=2, dump=forward[i]) for i in IMPLS),
        ),
        pair("sampling_12step_b1_fp32", "peak_memory_sampling_b1_fp32", "sampling", batch=1),
        pair("sampling_12step_b4_fp32", "peak_memory_sampling_b4_fp32", "sampling", batch=4),
        Pair(
            STYLEDROP_KEY,
            "peak_memory_styledrop_sampling_b1_fp32",
            *(
                task(
                    i,
                    STYLEDROP_KEY,
                    "styledrop_sampling",
                    batch=1,
                    adapter=fixture.lora_file,
                    dump=styled[i],
                )
                for i in IMPLS
            ),
        ),
    ]
    for label, dtype in PRECISIONS.items():
        reference = task(
            "diffusers", f"train_step_lora_{label}", "train_step",
            batch=1, adapter_kind="lora", dtype=dtype,
        )  # fmt: skip
        for kind in TRAIN_KINDS:
            key = f"train_step_{kind}_{label}"
            ours = task("ours", key, "train_step", batch=1, adapter_kind=kind, dtype=dtype)
            pairs.append(Pair(key, f"peak_memory_{key}", ours, reference))
    return pairs


def zoo_pairs(
    fixture: fixtures.Fixture, common: Sequence[str], dumps: Path, steps: int, runs: int = 1
) -> list[Pair]:
    """The zoo's measurements: the guided forward (parity), fine-tuning runs, the grid.

    Args:
        fixture: The zoo fixture (our zoo folder and its diffusers export).
        common: Options every task gets (threads, warm-up, repeats).
        dumps: Folder for the same-function arrays.
        steps: Fine-tuning steps per run.
        runs: Timed fine-tuning runs per task, without a warm-up run (each run compiles
            its step on our side, as every `styledrop finetune` does, so a warm-up would
            not take the compile out of the others).
    """
    models = {"ours": str(fixture.native_dir), "diffusers": str(fixture.diffusers_dir)}
    finetune_common = _replace_options(common, warmup=0, repeats=runs)

    def task(impl: str, key: str, workload: str, **options: Any) -> Task:
        shared = finetune_common if workload == "zoo_finetune" else common
        return Task(impl, key, _argv(workload, [*shared, "--model", models[impl]], **options))

    def dump(workload: str) -> dict[str, Path]:
        return {impl: dumps / f"{fixture.name}-{impl}-{workload}.npy" for impl in IMPLS}

    forward, grid = dump("cfg_forward"), dump("zoo_grid")
    sampling = json.dumps(fixtures.diffusers_sampling(fixture.native_dir))
    pairs = [
        Pair(
            FORWARD_KEY,
            "peak_memory_cfg_forward_b2_fp32",
            *(task(i, FORWARD_KEY, "cfg_forward", batch=2, dump=forward[i]) for i in IMPLS),
        ),
        Pair(
            ZOO_GRID_KEY,
            f"peak_memory_{ZOO_GRID_KEY}",
            task("ours", ZOO_GRID_KEY, "zoo_grid", dump=grid["ours"]),
            task("diffusers", ZOO_GRID_KEY, "zoo_grid", dump=grid["diffusers"], sampling=sampling),
        ),
    ]
    options = {"batch": fixtures.ZOO_BATCH, "train_steps": steps}
    reference = task(
        "diffusers", f"zoo_finetune_{steps}step_lora_fp32", "zoo_finetune",
        adapter_kind="lora", **options,
    )  # fmt: skip
    for kind in ZOO_KINDS:
        key = f"zoo_finetune_{steps}step_{kind}_fp32"
        ours = task("ours", key, "zoo_finetune", adapter_kind=kind, **options)
        pairs.append(
            Pair(key, f"peak_memory_{key}", ours, reference, f"zoo_finetune_step_{kind}_fp32")
        )
    return pairs


def measurement_pairs(
    fixture: fixtures.Fixture, common: Sequence[str], dumps: Path, args: argparse.Namespace
) -> list[Pair]:
    """The pairs of a configuration: `zoo_pairs` for the zoo, else `config_pairs`."""
    if fixture.name == "zoo":
        return zoo_pairs(fixture, common, dumps, args.zoo_steps, args.zoo_runs)
    return config_pairs(fixture, common, dumps)


def figure(ours: float, diffusers: float, unit: str) -> dict[str, Any]:
    """`{ours, diffusers, ratio, unit}` with ratio = ours / diffusers."""
    ratio = ours / diffusers if diffusers else float("nan")
    return {"ours": ours, "diffusers": diffusers, "ratio": ratio, "unit": unit}


class Runner:
    """Runs tasks in isolated processes, `jobs` at a time on disjoint CPU sets ("slots").

    Slot i runs on CPUs `cpus[i * threads:(i + 1) * threads]`. With `isolation="fork"`
    there is one fork server per side (started by `start()`, on all the slots' CPUs);
    each forked child pins itself to its slot.
    """

    def __init__(
        self,
        isolation: str,
        cpus: Sequence[int],
        threads: int,
        jobs: int,
        env: dict[str, str],
        log_dir: Path,
        timeout: float | None = None,
    ) -> None:
        if jobs * threads > len(cpus):
            raise ValueError(f"{jobs} jobs x {threads} threads need more than {len(cpus)} CPUs.")
        self.isolation = isolation
        self.slots = [list(cpus[i * threads : (i + 1) * threads]) for i in range(jobs)]
        self.env = env
        self.log_dir = log_dir
        self.timeout = timeout
        self._workers: dict[str, measure.ForkWorker] = {}

    def start(self) -> None:
        """Starts the fork servers (their imports overlap with whatever runs next)."""
        if self.isolation != "fork":
            return
        used = sorted({cpu for slot in self.slots for cpu in slot})
        for impl, module in IMPLS.items():
            log = self.log_dir / f"{impl}-server.log"
            self._workers[impl] = measure.ForkWorker(module, self.env, used, log)

    def run_one(self, task: Task, slot: int = 0) -> dict[str, Any]:
        """Runs one task on a slot's CPUs and returns its record (BenchError on failure)."""
        argv = (*task.argv, "--cpus", ",".join(map(str, self.slots[slot])))
        if self.isolation == "fork":
            return self._workers[task.impl].request(argv)
        return measure.run_process(IMPLS[task.impl], argv, self.env, self.timeout)

    def run_all(
        self, tasks: Sequence[Task], progress: Callable[[str], None]
    ) -> dict[tuple[str, str], dict[str, Any] | measure.BenchError]:
        """Runs each distinct task (by side and key) once; failures are returned, not raised."""
        distinct = list({(t.impl, t.key): t for t in tasks}.values())
        if len(self.slots) > 1:  # longest first, so that no slot idles at the end
            distinct.sort(key=_expected_cost, reverse=True)
        pending: queue.Queue = queue.Queue()
        for task in distinct:
            pending.put(task)
        results: dict[tuple[str, str], Any] = {}

        def drain(slot: int) -> None:
            while True:
                try:
                    task = pending.get_nowait()
                except queue.Empty:
                    return
                progress(f"  {task.impl:9s} {task.key} ...")
                try:
                    record = self.run_one(task, slot)
                    progress(f"  {task.impl:9s} {task.key}: {_fmt(record['median_s'], 's')}")
                except measure.BenchError as error:
                    record = error
                    progress(f"  {task.impl:9s} {task.key}: FAILED")
                results[task.impl, task.key] = record

        if len(self.slots) == 1:
            drain(0)
        else:
            with concurrent.futures.ThreadPoolExecutor(len(self.slots)) as pool:
                for future in [pool.submit(drain, i) for i in range(len(self.slots))]:
                    future.result()
        return results

    def close(self) -> None:
        """Stops the fork servers."""
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()


def _expected_cost(task: Task) -> int:
    """A rough rank of how long a task takes (ours compiles; training compiles most)."""
    order = (
        "matmul", "cfg_forward", "sampling", "zoo_grid", "styledrop_sampling", "train_step",
        "zoo_finetune",
    )  # fmt: skip
    rank = order.index(task.argv[0])
    return rank + (len(order) if task.impl == "ours" else 0) + ("bfloat16" in task.argv)


def _collect(results, failures: list[str]) -> dict[str, Any]:
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


def _check_zoo_sampling(results, failures: list[str]) -> None:
    """Both grids sampled with the same settings: steps, guidance, temperatures, micro-conds."""
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
        and len(ours["temperatures"]) == steps
        and all(abs(a - b) < 1e-5 for a, b in zip(ours["temperatures"], theirs, strict=False))
    )
    if not same:
        failures.append(
            f"{ZOO_GRID_KEY}: the sides sampled differently: ours {ours}, diffusers {ref}"
        )


def _check_threads(runs: dict[str, Any], threads: int, failures: list[str]) -> None:
    for name, record in runs.items():
        got = record.get("threads") if isinstance(record, dict) else None
        if got and (len(got["cpus"]) != threads or got["torch"] != threads):
            failures.append(f"{name}: ran with {got} instead of {threads} threads")


def _versions() -> dict[str, str]:
    out = {}
    for name in ("jax", "jaxlib", "flax", "optax", "torch", "diffusers", "peft", "transformers"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def _cpuinfo(field_name: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field_name):
                return line.split(":", 1)[1].strip()
    return ""


def _meta(args: argparse.Namespace, configs, cpus, threads, env) -> dict[str, Any]:
    flags = _cpuinfo("flags").split()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "threads": threads,
        "thread_pinning": (
            f"each process pinned (sched_setaffinity) to {threads} CPU(s) of {cpus},"
            f" torch.set_num_threads({threads}), OMP/MKL/OPENBLAS_NUM_THREADS={threads},"
            f" XLA_FLAGS='{env['XLA_FLAGS']}' (XLA sizes its thread pool from the affinity)"
        ),
        "xla_flags": env["XLA_FLAGS"],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "isolation": args.isolation,
        "jobs": args.jobs,
        "matmul_size": args.matmul_size,
        "zoo_steps": args.zoo_steps,
        "zoo_runs": args.zoo_runs,
        "cpu": _cpuinfo("model name") or platform.processor() or "unknown",
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx512f", "avx512_bf16", "amx"))),
        "cpus_available": len(measure.available_cpus()),
        "load_average_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "versions": _versions(),
        "configs": configs,
    }


def _fmt(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "nan"
    if unit == "s":
        return f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "fraction":
        return f"{value * 100:.1f} %"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.1f} {unit}"


def format_table(result: dict[str, Any]) -> str:
    """The plain-text table of a result (ratio = ours / diffusers)."""
    meta = result["meta"]
    versions = meta["versions"]
    lines = [
        f"styledrop bench: ours (JAX {versions.get('jax', '?')} + Flax NNX) vs diffusers"
        f" {versions.get('diffusers', '?')} + peft {versions.get('peft', '?')}"
        f" (torch {versions.get('torch', '?')}), CPU: {meta['cpu']}",
        f"threads: {meta['threads']} for both; {meta['thread_pinning']}",
        f"times: median of {meta['repeats']} after {meta['warmup']} warm-up call(s);"
        f" first_call_* = the very first call (ours: includes tracing + XLA compile);"
        f" peak_memory_* = VmHWM of the measuring process ({meta['isolation']} isolation)",
        "ratio = ours / diffusers (times, memory: < 1 favours ours; GFLOP/s: > 1 favours ours)",
    ]
    if meta["jobs"] > 1:
        lines.append(f"WARNING: {meta['jobs']} measurements ran at once: a smoke run, not figures.")
    if meta["load_average_start"] > 1.0:
        lines.append(
            f"WARNING: load average {meta['load_average_start']:.1f} at the start: other work"
            " shares the CPUs, times are noisy (and torch's spinning OpenMP threads suffer most)."
        )
    width = 46
    header = f"{'figure':{width}s} {'ours':>14s} {'diffusers':>14s} {'ratio':>7s}"
    sections = [("machine", result["machine"]["figures"], "")]
    for name, block in result["configs"].items():
        check = block.get("parity", {})
        parts = [
            f"{label} {check[f'{label}_max_abs_diff']:.1e}"
            f" of {check[f'{label}_max_abs_{what}']:.1e} ({what}s)"
            for label, _, what in PARITY_CHECKS
            if f"{label}_max_abs_diff" in check
        ]
        note = f" same function, max |ours - diffusers|: {', '.join(parts)}" if parts else ""
        sections.append((name, block["figures"], note))
    for name, figures, note in sections:
        if not figures:
            continue
        lines += ["", f"[{name}]{note}", header]
        for key, fig in figures.items():
            lines.append(
                f"{key:{width}s} {_fmt(fig['ours'], fig['unit']):>14s}"
                f" {_fmt(fig['diffusers'], fig['unit']):>14s} {fig['ratio']:7.2f}"
            )
    for name, skip in result["skipped"].items():
        lines += ["", f"[{name}] SKIP: {skip['reason']}"]
    if result["failures"]:
        lines += ["", "FAILURES:"] + [f"  {f.splitlines()[0]}" for f in result["failures"]]
    return "\n".join(lines)


def _progress(text: str) -> None:
    sys.stderr.write(text + "\n")  # one write, so that lines from two threads stay whole
    sys.stderr.flush()


def prepare_fixture(name: str, cache: Path, env: dict[str, str]) -> fixtures.Fixture:
    """Builds or finds a fixture in a separate process (its memory is freed at its exit)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.fixtures", name, "--cache", str(cache)],
        capture_output=True,
        text=True,
        env=env,
        cwd=measure.REPO_ROOT,
    )
    if done.returncode != 0:
        raise measure.BenchError(f"Building the {name} fixture failed:\n{done.stderr[-3000:]}")
    return fixtures.Fixture.from_dict(json.loads(done.stdout.strip().splitlines()[-1]))


def selects(key: str, only: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> bool:
    """Whether the measurement with this time-figure key runs.

    Args:
        key: The figure key, such as "train_step_lora_bf16".
        only: Texts of which the key must contain one (none: every key).
        skip: Texts the key must not contain; these win over `only`.
    """
    if any(text in key for text in skip):
        return False
    return not only or any(text in key for text in only)


def run_benchmark(
    args: argparse.Namespace, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Runs the benchmark for parsed `styledrop bench` arguments.

    Prints the table, writes `args.json` when given, and returns the result (see the
    module docstring). Failed measurements are listed under "failures".
    """
    progress = progress or _progress
    cpus = measure.available_cpus()
    threads = args.threads or len(cpus) // args.jobs
    if threads < 1 or threads * args.jobs > len(cpus):
        raise ValueError(f"{args.jobs} job(s) x {args.threads} threads: only {len(cpus)} CPUs.")
    configs = list(dict.fromkeys(args.config or DEFAULT_CONFIGS))
    if args.zoo_steps < 1 or args.zoo_runs < 1:
        raise ValueError(
            f"--zoo-steps and --zoo-runs must be >= 1: {args.zoo_steps}, {args.zoo_runs}."
        )
    skipped: dict[str, Any] = {}
    zoo_folder = Path()  # our side of the zoo fixture (the plan reads its sampling settings)
    if "zoo" in configs:
        from styledrop.zoo.embedded import ZooMissingError, embedded_base

        try:
            zoo_folder = embedded_base()
        except ZooMissingError as error:
            skipped["zoo"] = {"status": "skipped", "reason": str(error)}
    measured = [name for name in configs if name not in skipped]
    cache = Path(args.cache).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    common = ("--threads", str(threads), "--warmup", str(args.warmup))
    common += ("--repeats", str(args.repeats))
    only, skip = tuple(args.only or ()), tuple(args.skip or ())

    def wanted(key: str) -> bool:
        return selects(key, only, skip)

    env = measure.child_env(threads)
    failures: list[str] = []
    result: dict[str, Any] = {
        "meta": _meta(args, configs, cpus, threads, env),
        "machine": {"figures": {}, "runs": {}},
        "configs": {},
        "skipped": skipped,
        "workloads": WORKLOAD_NOTES,
        "failures": failures,
    }
    with (
        tempfile.TemporaryDirectory(prefix="styledrop-bench-") as tmp,
        concurrent.futures.ThreadPoolExecutor(max(1, len(measured))) as builders,
    ):
        dumps = Path(tmp)
        runner = Runner(args.isolation, cpus, threads, args.jobs, env, dumps, args.timeout)
        try:
            runner.start()
            # With several jobs (a smoke run) fixtures build while the matmuls run.
            builds = {}
            if args.jobs > 1 and not only:
                builds = {n: builders.submit(prepare_fixture, n, cache, env) for n in measured}
            tasks = [t for t in machine_tasks(common, args.matmul_size) if wanted(t.key)]
            if tasks:
                progress("[machine] matmul")
                results = runner.run_all(tasks, progress)
                result["machine"] = {
                    "figures": machine_figures(results, args.matmul_size),
                    "runs": _collect(results, failures),
                }
            for name in measured:
                native = zoo_folder if name == "zoo" else Path()
                plan = fixtures.Fixture(name, Path(), native, Path())
                plan_pairs = measurement_pairs(plan, common, dumps, args)
                if not any(wanted(p.key) for p in plan_pairs):
                    continue
                progress(f"[{name}] fixture (cache: {cache / name})")
                fixture = builds[name].result() if name in builds else None
                fixture = fixture or prepare_fixture(name, cache, env)
                pairs = measurement_pairs(fixture, common, dumps, args)
                pairs = [p for p in pairs if wanted(p.key)]
                tasks = [t for p in pairs for t in (p.ours, p.diffusers)]
                results = runner.run_all(tasks, progress)
                figures = pair_figures(pairs, results)
                if name == "zoo":
                    _check_zoo_sampling(results, failures)
                figures.update(flop_figures(figures, results, result["machine"]["figures"]))
                result["configs"][name] = {
                    "figures": figures,
                    "parity": parity(name, dumps),
                    "runs": _collect(results, failures),
                    "fixture": fixture.to_dict(),
                }
        finally:
            runner.close()
    for block in [result["machine"], *result["configs"].values()]:
        _check_threads(block["runs"], threads, failures)
    result["meta"]["load_average_end"] = os.getloadavg()[0]
    print(format_table(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        progress(f"wrote {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.run [options]`: the options of `styledrop bench`."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        validate(args)
    except OptionError as error:
        parser.error(str(error))
    result = run_benchmark(args)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
