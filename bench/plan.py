"""The benchmark's plan: which measurement processes run, keyed by the figures they make.

A `Task` is one measurement process (a side, a workload, its command-line arguments); a
`Pair` is a figure measured on both sides. `machine_tasks` plans the matmuls,
`config_pairs` a random-weight configuration's workloads, `zoo_pairs` the embedded zoo's;
`selects` applies `--only` / `--skip` to the figure keys.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import fixtures

BF16_MATMUL_SIZE = 2048
TRAIN_KINDS = ("r1", "r2", "lora")
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16"}
IMPLS = {"ours": "bench.ours", "diffusers": "bench.reference"}
FORWARD_KEY = "cfg_forward_b2_fp32"
STYLEDROP_KEY = "styledrop_sampling_12step_b1_fp32"
ZOO_KINDS = ("lora", "r1")  # our adapters fine-tuned on the zoo (diffusers: LoRA for both)
ZOO_GRID_KEY = "zoo_grid_8img_fp32"


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


def argv(workload: str, common: Sequence[str], **options: Any) -> tuple[str, ...]:
    """A task's arguments: the workload, `common`, then `--name value` per option."""
    out = [workload, *common]
    for name, value in options.items():
        out += [f"--{name.replace('_', '-')}", str(value)]
    return tuple(out)


def replace_options(options: Sequence[str], **values: Any) -> list[str]:
    """Flag-value pairs `options` with the values of the flags named in `values` replaced."""
    flags = {f"--{name.replace('_', '-')}": str(value) for name, value in values.items()}
    pairs = zip(options[::2], options[1::2], strict=True)
    return [part for flag, value in pairs for part in (flag, flags.get(flag, value))]


def matmul_key(size: int, dtype: str) -> str:
    """The task key of a matmul: "matmul_4096_fp32", "matmul_2048_bf16"."""
    return f"matmul_{size}_{'fp32' if dtype == 'float32' else 'bf16'}"


def machine_tasks(common: Sequence[str], matmul_size: int) -> list[Task]:
    """The matmul tasks of both sides: fp32 at `matmul_size`, 2048 in fp32 and bf16."""
    cases = dict.fromkeys(
        [(matmul_size, "float32"), (BF16_MATMUL_SIZE, "float32"), (BF16_MATMUL_SIZE, "bfloat16")]
    )
    return [
        Task(impl, matmul_key(size, dtype), argv("matmul", common, size=size, dtype=dtype))
        for size, dtype in cases
        for impl in IMPLS
    ]


def config_pairs(fixture: fixtures.Fixture, common: Sequence[str], dumps: Path) -> list[Pair]:
    """The measurements of one configuration: forward, sampling, StyleDrop, train steps."""
    models = {"ours": str(fixture.native_dir), "diffusers": str(fixture.diffusers_dir)}

    def task(impl: str, key: str, workload: str, **options: Any) -> Task:
        return Task(impl, key, argv(workload, [*common, "--model", models[impl]], **options))

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
    finetune_common = replace_options(common, warmup=0, repeats=runs)

    def task(impl: str, key: str, workload: str, **options: Any) -> Task:
        shared = finetune_common if workload == "zoo_finetune" else common
        return Task(impl, key, argv(workload, [*shared, "--model", models[impl]], **options))

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
