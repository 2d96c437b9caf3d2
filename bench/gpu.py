"""Both sides on one GPU: one process per run, most wanted figure first, saved after each.

`styledrop bench` compares both implementations on the same CPUs (it keeps JAX on the CPU).
This module asks the same questions on a lent GPU: it builds (or finds) a configuration's
random-weight fixture (`bench.fixtures`, as `styledrop bench` does), then, figure by figure
in the order of `FIGURES`, runs our workload (`bench.ours`, JAX's default backend) and the
diffusers + peft one (`bench.reference --device DEVICE`), each in a fresh process, and
rewrites `OUT/gpu_bench.json` after every run, so a run cut short keeps what it measured.
Runs are not started once `--budget` seconds are spent.

`FIGURES` are in priority order: 12-step sampling at batch 1 and 8, StyleDrop's
three-branch sampling, a train step at batch 8 (our r1 and LoRA, against diffusers' LoRA:
diffusers has no r1 adapter), a `--finetune-steps` fine-tune at batch 8 (a round's time is
extrapolated from it), all in bf16 (our bf16 models against `torch.autocast` bf16), then all
again in fp32; then the guided forward's achieved FLOP/s, the r2 train step and our matmul
peak (a check of the machine, without a reference). "fp32" means full fp32 products on both
sides: `JAX_DEFAULT_MATMUL_PRECISION=highest` for ours, `--no-tf32` (TF32 off for matmuls
and cuDNN) for the reference. JAX allocates on demand (`XLA_PYTHON_CLIENT_PREALLOCATE=false`),
as torch does; each side reports its own peak device memory (JAX's `peak_bytes_in_use`,
`torch.cuda.max_memory_allocated`).

JSON layout::

    {"meta": {...},         # config, budget, repeats, versions, devices, precision
     "fixture": {...},      # the fixture's folders
     "figures": {"sampling_12step_b1_bf16": {
                     "unit": "s",
                     "ours": {"median_s", "first_s", "device_peak_mb", "peak_rss_mb",
                              "device", ...},
                     "reference": {...} or null,
                     "reference_note": "...",   # only where the reference differs or is null
                     "ratio": ours / reference median_s, or null,
                     "ratios": {"median_s", "first_s", "device_peak_mb", ...}}, ...},
     "runs": {"ours:KEY": {...}, "diffusers:KEY": {...}},   # the raw records
     "failures": [...],     # "ours:KEY: error", "diffusers:KEY: error"
     "not_run": [...]}      # figures left out (--only, --skip) or when the budget ran out

`python -m bench.gpu --config amused_512 --out DIR` (scripts/gpu_bench.sh runs it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import fixtures, measure
from bench.machine import versions
from bench.plan import IMPLS, argv, selects
from bench.pool import prepare_fixture

RESULTS_FILE = "gpu_bench.json"
HIGHEST = {"JAX_DEFAULT_MATMUL_PRECISION": "highest"}
PRECISIONS = {"bf16": "bfloat16", "fp32": "float32"}  # the GPU's default first
ROUND_STEPS = 1000  # a StyleDrop round's fine-tuning steps (the paper's)
TRAIN_BATCH = fixtures.ZOO_BATCH  # `styledrop finetune`'s default batch size
NO_SUCH_ADAPTER = "diffusers has no {kind} adapter: the reference trains LoRA r16 q/k/v (run {run})"
RATIO_FIELDS = ("median_s", "first_s", "device_peak_mb", "step_median_s")


@dataclass(frozen=True)
class Figure:
    """One figure: our workload and the reference run it is compared with.

    Attributes:
        key: The figure key, such as "sampling_12step_b1_bf16".
        workload: The workload both sides run (`bench.ours`, `bench.reference`).
        options: The workload's options (`--name value`); the reference trains LoRA
            whatever our `adapter_kind`.
        reference: The key of the reference run (figures that share one run it once), or
            None where diffusers has no counterpart.
        note: How the reference differs from ours, or why there is none.
    """

    key: str
    workload: str
    options: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    note: str = ""


def _precision_figures(label: str) -> list[Figure]:
    """The most wanted figures in one precision: sampling, StyleDrop, train step, fine-tune."""
    dtype = {"dtype": PRECISIONS[label]}
    out = [
        Figure(f"sampling_12step_b{b}_{label}", "sampling", {"batch": b, **dtype},
               f"sampling_12step_b{b}_{label}")
        for b in (1, TRAIN_BATCH)
    ]  # fmt: skip
    styled = f"styledrop_sampling_12step_b1_{label}"
    out.append(Figure(styled, "styledrop_sampling", {"batch": 1, **dtype}, styled))
    for prefix, workload in (("train_step", "train_step"), ("finetune", "zoo_finetune")):
        lora = f"{prefix}_lora_b{TRAIN_BATCH}_{label}"
        for kind in ("r1", "lora"):
            note = NO_SUCH_ADAPTER.format(kind=kind, run=lora) if kind != "lora" else ""
            options = {"batch": TRAIN_BATCH, "adapter_kind": kind, **dtype}
            out.append(Figure(f"{prefix}_{kind}_b{TRAIN_BATCH}_{label}", workload, options,
                              lora, note))  # fmt: skip
    return out


def _figures() -> tuple[Figure, ...]:
    """Every figure, most wanted first: both precisions, then the extras (see above)."""
    out = [figure for label in PRECISIONS for figure in _precision_figures(label)]
    for label, dtype in PRECISIONS.items():
        key = f"cfg_forward_b2_{label}"
        out.append(Figure(key, "cfg_forward", {"batch": 2, "dtype": dtype}, key))
    lora = f"train_step_lora_b{TRAIN_BATCH}_bf16"
    out.append(Figure(
        f"train_step_r2_b{TRAIN_BATCH}_bf16", "train_step",
        {"batch": TRAIN_BATCH, "adapter_kind": "r2", "dtype": "bfloat16"}, lora,
        NO_SUCH_ADAPTER.format(kind="r2", run=lora),
    ))  # fmt: skip
    for label, dtype in PRECISIONS.items():
        out.append(Figure(f"matmul_8192_{label}", "matmul", {"size": 8192, "dtype": dtype},
                          None, "a check of the machine: our matmul only"))  # fmt: skip
    return tuple(out)


FIGURES = _figures()


def side_argv(
    figure: Figure, side: str, fixture: fixtures.Fixture, args: argparse.Namespace
) -> tuple[tuple[str, ...], dict[str, str]]:
    """One side's command line (`python -m IMPLS[side] ...`) and extra environment."""
    options = dict(figure.options)
    full_fp32 = options.get("dtype") == "float32"
    finetune = figure.workload == "zoo_finetune"
    # A fine-tune compiles its step in every run, as `styledrop finetune` does: one run.
    warmup, repeats = (0, 1) if finetune else (args.warmup, args.repeats)
    model = fixture.native_dir if side == "ours" else fixture.diffusers_dir
    common = ["--warmup", str(warmup), "--repeats", str(repeats), "--model", str(model)]
    if figure.workload == "styledrop_sampling":
        options["adapter"] = fixture.lora_file
    if finetune:
        options["train_steps"] = args.finetune_steps
    if side == "ours":
        return argv(figure.workload, common, **options), HIGHEST if full_fp32 else {}
    if "adapter_kind" in options:
        options["adapter_kind"] = "lora"
    out = argv(figure.workload, common, **options, device=args.device)
    return (*out, "--no-tf32") if full_fp32 else out, {}


def summary_of(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """One side's part of a figure: times, memory, the device and, where known, FLOP/s."""
    if record is None:
        return None
    extra = record.get("extra", {})
    out = {
        "median_s": record["median_s"],
        "first_s": record["first_s"],
        "device_peak_mb": extra.get("device_peak_mb"),
        "peak_rss_mb": record["peak_rss_mb"],
        "device": extra.get("jax_device") or extra.get("torch_device"),
    }
    if "gflops" in extra:  # matmul
        out["tflops"] = extra["gflops"] / 1e3
    if extra.get("flops"):  # the guided forward: XLA's count of its FLOPs
        out["achieved_tflops"] = extra["flops"] / record["median_s"] / 1e12
    if extra.get("step_median_s"):  # a fine-tune: its steady state, and a whole round
        steps = extra["steps"]
        out.update(steps=steps, step_median_s=extra["step_median_s"])
        rest = ROUND_STEPS - steps
        out[f"extrapolated_{ROUND_STEPS}step_s"] = record["median_s"] + rest * out["step_median_s"]
    return out


def compare(
    ours: dict[str, Any] | None, reference: dict[str, Any] | None, note: str = ""
) -> dict[str, Any]:
    """A figure from both sides' summaries: ratio = ours / reference (median time)."""
    out: dict[str, Any] = {"unit": "s", "ours": ours, "reference": reference}
    if note:
        out["reference_note"] = note
    ratios = {}
    if ours and reference:
        names = (*RATIO_FIELDS, f"extrapolated_{ROUND_STEPS}step_s")
        ratios = {n: ours[n] / reference[n] for n in names if ours.get(n) and reference.get(n)}
    out["ratio"] = ratios.get("median_s")
    out["ratios"] = ratios
    return out


def reference_unavailable(env: dict[str, str], device: str) -> str:
    """Why the reference cannot run here (a missing library, no GPU for torch), or ""."""
    code = (
        "from bench import measure, reference; measure.preload(reference.PRELOAD); "
        f"print(reference.resolve_device({device!r}))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env,
            cwd=measure.REPO_ROOT, timeout=300,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "the reference cannot run: importing its libraries took over 300 s"
    if done.returncode == 0:
        return ""
    lines = done.stderr.strip().splitlines()
    return f"the reference cannot run: {lines[-1] if lines else done.returncode}"


def run_figures(args: argparse.Namespace, log=print) -> dict[str, Any]:
    """Builds the fixture, runs the selected figures within the budget; returns the result."""
    began = time.monotonic()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = len(measure.available_cpus())
    env = measure.child_env(threads, cpu_only=False)
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # JAX's peak is what it needs, as torch's
    result: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "config": args.config,
            "budget_s": args.budget,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "finetune_steps": args.finetune_steps,
            "jax_platforms": os.environ.get("JAX_PLATFORMS", ""),
            "matmul_precision": os.environ.get("JAX_DEFAULT_MATMUL_PRECISION", "default"),
            "reference_device": args.device,
            "fp32": "full fp32 products: JAX_DEFAULT_MATMUL_PRECISION=highest (ours), "
            "TF32 off for matmuls and cuDNN (reference)",
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

    def left() -> float:
        return args.budget - (time.monotonic() - began)

    def attempt(side: str, key: str, command: tuple[str, ...], extra_env: dict[str, str]):
        """Runs one side's process; its record, or None if it failed (listed, logged)."""
        log(f"[{args.config}] {side}:{key} ({left():.0f} s left)")
        try:
            record = measure.run_process(
                IMPLS[side], command, {**env, **extra_env}, timeout=min(left(), args.timeout)
            )
        except measure.BenchError as error:
            result["failures"].append(f"{side}:{key}: {error}")
            log(f"  failed: {str(error)[-500:]}")
            return None
        result["runs"][f"{side}:{key}"] = record
        shown = {k: v for k, v in (summary_of(record) or {}).items() if v is not None}
        log(f"  {json.dumps(shown)}")
        return record

    log(f"[{args.config}] fixture (cache: {args.cache})")
    fixture = prepare_fixture(args.config, Path(args.cache).expanduser().resolve(), env)
    result["fixture"] = fixture.to_dict()
    only, skip = tuple(args.only or ()), tuple(args.skip or ())
    chosen = [f for f in FIGURES if selects(f.key, only, skip)]
    unavailable = ""
    if any(f.reference for f in chosen):
        unavailable = reference_unavailable(env, args.device)
        if unavailable:
            result["failures"].append(unavailable)
            log(unavailable)
    save()
    references: dict[str, dict[str, Any] | None] = {}  # reference runs done (None: failed)
    for figure in FIGURES:
        if not selects(figure.key, only, skip) or left() <= 0:
            result["not_run"].append(figure.key)
            continue
        ours = attempt("ours", figure.key, *side_argv(figure, "ours", fixture, args))
        note = figure.note
        result["figures"][figure.key] = compare(summary_of(ours), None, note)
        save()
        if figure.reference is None:
            continue
        if unavailable:
            note = unavailable
        elif figure.reference not in references and left() <= 0:
            note = "not run: the budget was spent"
        elif figure.reference not in references:
            command = side_argv(figure, "diffusers", fixture, args)
            references[figure.reference] = attempt("diffusers", figure.reference, *command)
        reference = references.get(figure.reference)
        if figure.reference in references and reference is None:
            note = f"failed: see failures (diffusers:{figure.reference})"
        result["figures"][figure.key] = compare(summary_of(ours), summary_of(reference), note)
        save()
    result["meta"]["seconds"] = time.monotonic() - began
    save()
    return result


def main(argv_: list[str] | None = None) -> int:
    """`python -m bench.gpu [options]`; exits 1 when a run failed."""
    from bench.fixtures import CONFIGS

    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    parser.add_argument("--config", choices=CONFIGS, default="amused_512")
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {RESULTS_FILE}")
    parser.add_argument(
        "--cache", type=Path, default=Path("runs/bench/fixtures"), help="fixture cache folder"
    )
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for everything")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    parser.add_argument(
        "--device", choices=["cuda", "cpu", "auto"], default="cuda",
        help="the reference's torch device (bench.reference --device)",
    )  # fmt: skip
    parser.add_argument(
        "--finetune-steps", type=int, default=200,
        help=f"steps of the fine-tune figures ({ROUND_STEPS} are extrapolated)",
    )  # fmt: skip
    parser.add_argument(
        "--only", action="append", metavar="TEXT",
        help="run only figures whose key contains TEXT (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--skip", action="append", metavar="TEXT",
        help="leave out figures whose key contains TEXT (repeatable; wins over --only)",
    )  # fmt: skip
    args = parser.parse_args(argv_)
    if args.repeats < 1 or args.warmup < 0 or args.budget <= 0 or args.finetune_steps < 2:
        parser.error(
            "--repeats must be >= 1, --warmup >= 0, --budget > 0 and --finetune-steps >= 2."
        )

    def log(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    result = run_figures(args, log)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
