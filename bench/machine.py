"""The machine and the run a result was measured on: CPU, versions, threads, load."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

from bench import measure


def versions() -> dict[str, str]:
    """Versions of the libraries both sides run on (those installed)."""
    out = {}
    for name in ("jax", "jaxlib", "flax", "optax", "torch", "diffusers", "peft", "transformers"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def cpuinfo(field_name: str) -> str:
    """The first value of a `/proc/cpuinfo` field ("model name", "flags"); "" if none."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field_name):
                return line.split(":", 1)[1].strip()
    return ""


def run_meta(args: argparse.Namespace, configs, cpus, threads, env) -> dict[str, Any]:
    """The `meta` block of a result: the run's settings, the CPU, versions and load."""
    flags = cpuinfo("flags").split()
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
        "cpu": cpuinfo("model name") or platform.processor() or "unknown",
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx512f", "avx512_bf16", "amx"))),
        "cpus_available": len(measure.available_cpus()),
        "load_average_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "versions": versions(),
        "configs": configs,
    }
