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

The pieces: `bench.plan` (the tasks and figure keys), `bench.pool` (the processes),
`bench.figures` (figures, parity, checks), `bench.machine` (the `meta` block),
`bench.tables` (the printed table), `bench.notes` (the `workloads` block). This module
runs them in order: `run_benchmark`.

`python -m bench.run [options]` takes the options of `styledrop bench`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import fixtures, measure
from bench.figures import (
    check_threads,
    check_zoo_sampling,
    collect_runs,
    flop_figures,
    machine_figures,
    pair_figures,
    parity,
)
from bench.machine import run_meta
from bench.notes import WORKLOAD_NOTES
from bench.options import DEFAULT_CONFIGS, OptionError, add_arguments, validate
from bench.plan import machine_tasks, measurement_pairs, selects
from bench.pool import Runner, prepare_fixture
from bench.tables import format_table


def _progress(text: str) -> None:
    sys.stderr.write(text + "\n")  # one write, so that lines from two threads stay whole
    sys.stderr.flush()


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
        "meta": run_meta(args, configs, cpus, threads, env),
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
                    "runs": collect_runs(results, failures),
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
                    check_zoo_sampling(results, failures)
                figures.update(flop_figures(figures, results, result["machine"]["figures"]))
                result["configs"][name] = {
                    "figures": figures,
                    "parity": parity(name, dumps),
                    "runs": collect_runs(results, failures),
                    "fixture": fixture.to_dict(),
                }
        finally:
            runner.close()
    for block in [result["machine"], *result["configs"].values()]:
        check_threads(block["runs"], threads, failures)
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
