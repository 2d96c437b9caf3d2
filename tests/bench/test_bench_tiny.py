"""`styledrop bench` end to end on the tiny configuration and on the zoo, and its helpers.

The two end-to-end runs (about 3.5 and 1.2 minutes on 2 cores) are `e2e`: CI runs them
after the default run (`make test-e2e`); the helpers' tests run in the default run.

The tiny end-to-end test runs the whole benchmark (fixture build, every workload on both
sides, matmuls) with one repetition and no warm-up, measurements forked from per-side
servers and spread over the CPUs (`--jobs`), and checks the JSON: every figure present,
each with positive finite `ours`, `diffusers` and `ratio`. Its cost is dominated by
XLA compiling our ten programs (about 140 CPU-seconds in all).

The zoo end-to-end test runs the zoo's measurements only (no matmuls) with two
fine-tuning steps per run: the export of the committed weights to diffusers, the
same-function checks, both fine-tuning kinds and the 8-image grid (about 100
CPU-seconds, mostly our compiles and the 36-step grid on both sides).
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

import numpy as np
import pytest

from bench import fixtures, measure
from bench.figures import figure
from bench.plan import replace_options, selects

ROOT = Path(__file__).resolve().parents[2]

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
ZOO_STEPS = 2
ZOO_TIMED = [
    "cfg_forward_b2_fp32",
    "zoo_grid_8img_fp32",
    f"zoo_finetune_{ZOO_STEPS}step_lora_fp32",
    f"zoo_finetune_{ZOO_STEPS}step_r1_fp32",
]
ZOO_KEYS = [
    *ZOO_TIMED,
    *(f"first_call_{key}" for key in ZOO_TIMED),
    *(f"peak_memory_{key}" for key in ZOO_TIMED),
    "zoo_finetune_step_lora_fp32",
    "zoo_finetune_step_r1_fp32",
    "achieved_gflops_cfg_forward_b2_fp32",  # no peak_fraction_*: no matmul with --only
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


@pytest.mark.e2e
@pytest.mark.skipif(not HAS_REFERENCE, reason="needs the reference extra (diffusers, peft)")
def test_bench_tiny_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    jobs = max(1, min(4, len(os.sched_getaffinity(0))))
    command = [
        sys.executable, "-m", "bench.run", "--config", "tiny",
        "--repeats", "1", "--warmup", "0", "--threads", "1", "--jobs", str(jobs),
        "--isolation", "fork", "--matmul-size", "512",
        "--cache", str(tmp_path / "fixtures"), "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())

    assert result["failures"] == []
    assert result["skipped"] == {}
    assert sorted(result["configs"]) == ["tiny"]
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
    # The table went to stdout.
    assert "[tiny] same function" in done.stdout
    assert "train_step_lora_bf16" in done.stdout


@pytest.mark.e2e
@pytest.mark.skipif(not HAS_REFERENCE, reason="needs the reference extra (diffusers, peft)")
def test_bench_zoo_writes_its_figures(tmp_path):
    out = tmp_path / "bench.json"
    jobs = max(1, min(2, len(os.sched_getaffinity(0))))
    command = [
        sys.executable, "-m", "bench.run", "--config", "zoo", "--zoo-steps", str(ZOO_STEPS),
        "--only", "zoo_", "--only", "cfg_forward",
        "--repeats", "1", "--warmup", "0", "--threads", "1", "--jobs", str(jobs),
        "--isolation", "fork", "--cache", str(tmp_path / "fixtures"), "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())

    assert result["failures"] == []
    assert result["skipped"] == {}
    assert result["meta"]["zoo_steps"] == ZOO_STEPS
    block = result["configs"]["zoo"]
    assert sorted(block["figures"]) == sorted(ZOO_KEYS)
    for name, value in block["figures"].items():
        _check_figure(name, value)
    # The committed zoo weights on both sides: same logits, same decoded pixels.
    check = block["parity"]
    assert check["cfg_forward_max_rel_diff"] < 1e-4
    assert check["vq_decode_max_rel_diff"] < 1e-4
    runs = block["runs"]
    for kind in ("lora", "r1"):  # each fine-tuning run went through every step
        record = runs[f"ours:zoo_finetune_{ZOO_STEPS}step_{kind}_fp32"]
        assert record["extra"]["steps"] == ZOO_STEPS and record["args"]["warmup"] == 0
    reference = runs[f"diffusers:zoo_finetune_{ZOO_STEPS}step_lora_fp32"]
    assert reference["extra"]["steps"] == ZOO_STEPS
    assert (
        reference["extra"]["trainable_parameters"]
        == (runs[f"ours:zoo_finetune_{ZOO_STEPS}step_lora_fp32"]["extra"]["trainable_parameters"])
    )
    # The grid used the zoo's settings on both sides.
    ours_grid = runs["ours:zoo_grid_8img_fp32"]["extra"]["sampling"]
    ref_grid = runs["diffusers:zoo_grid_8img_fp32"]["extra"]["sampling"]
    assert ours_grid["num_steps"] == ref_grid["num_inference_steps"]
    assert ours_grid["guidance_scale"] == ref_grid["guidance_scale"]
    assert ours_grid["token_temperature"] == 1.0  # diffusers' rule
    assert "zoo_grid_8img_fp32" in done.stdout and "vq_decode" in done.stdout


def test_zoo_inputs_are_the_demo_and_finetune_inputs():
    from styledrop.dataset import augmented_crops
    from styledrop.demo import DEMO_SUBJECTS, DemoConfig, demo_style_image
    from styledrop.inputs import load_images

    assert fixtures.ZOO_SUBJECTS == DEMO_SUBJECTS
    demo = DemoConfig()
    assert demo.caption == fixtures.ZOO_CAPTION
    assert demo.descriptor == fixtures.ZOO_DESCRIPTOR
    assert fixtures.zoo_style_image() == demo_style_image()
    pixels = load_images([fixtures.zoo_style_image()])[0].pixels
    ours = augmented_crops(pixels, 64, fixtures.ZOO_VARIANTS, np.random.default_rng(0))
    np.testing.assert_array_equal(fixtures.style_crops(pixels, 64, fixtures.ZOO_VARIANTS), ours)


def test_zoo_sampling_settings_translate_to_the_amused_scheduler():
    from muse.checkpoint import read_model_json
    from muse.config import ModelConfig
    from muse.sampling import DecodeConfig
    from styledrop.zoo.embedded import embedded_base

    folder = embedded_base()
    sampling = ModelConfig.from_dict(read_model_json(folder)["config"]).sampling
    ours = DecodeConfig(
        mask_token_id=sampling.mask_token_id,
        num_steps=sampling.num_steps,
        style=sampling.decoding,
        schedule=sampling.masking_schedule,
        temperature=sampling.temperature,
    )
    theirs = fixtures.diffusers_sampling(folder)
    assert theirs["num_inference_steps"] == ours.num_steps
    assert theirs["guidance_scale"] == sampling.guidance_scale
    # AmusedScheduler.set_timesteps: linspace(start, end, K) for a pair.
    expected = np.linspace(*theirs["temperature"], ours.num_steps)
    np.testing.assert_allclose(ours.step_temperatures(), expected, atol=1e-6)


@pytest.mark.skipif(not HAS_REFERENCE, reason="needs the reference extra (diffusers, peft)")
def test_torch_state_inverts_the_conversion_layouts():
    import diffusers
    from flax import nnx

    from muse import weights
    from muse.config import TransformerConfig, VQConfig
    from muse.transformer import UVit2D
    from muse.vq import VQModel

    cases = (
        (UVit2D(TransformerConfig.tiny(), rngs=nnx.Rngs(0)),
         diffusers.UVit2DModel(**TransformerConfig.tiny().diffusers_kwargs())),
        (VQModel(VQConfig.tiny(), rngs=nnx.Rngs(0)),
         diffusers.VQModel(**VQConfig.tiny().diffusers_kwargs())),
    )  # fmt: skip
    for ours, theirs in cases:
        params = weights.flat_params(ours)
        shapes = {key: tuple(value.shape) for key, value in theirs.state_dict().items()}
        state = fixtures.torch_state(ours, params, shapes, type(ours).__name__)
        assert {key: value.shape for key, value in state.items()} == shapes
        back = weights.from_torch_state(ours, state, type(ours).__name__)
        assert sorted(back) == sorted(params)
        for name, value in params.items():
            np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_replace_options_swaps_only_the_named_values():
    common = ("--threads", "2", "--warmup", "1", "--repeats", "5")
    assert replace_options(common, warmup=0, repeats=1) == [
        "--threads", "2", "--warmup", "0", "--repeats", "1",
    ]  # fmt: skip


def test_time_repeated_takes_the_median_after_warmup():
    calls = []
    timing = measure.time_repeated(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5
    assert len(timing.times_s) == 3
    assert timing.median_s == sorted(timing.times_s)[1]
    with pytest.raises(ValueError):
        measure.time_repeated(lambda: None, repeats=0)


def test_time_repeated_waits_for_the_sync_hook_inside_each_timed_span(monkeypatch):
    events, clock = [], [0.0]
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock[0])

    def sync():  # an accelerator finishing the queued work: 2 s
        events.append("sync")
        clock[0] += 2.0

    timing = measure.time_repeated(lambda: events.append("call"), 1, 2, sync=sync)
    assert events == ["call", "sync"] * 3
    assert timing.times_s == (2.0, 2.0) and timing.first_s == 2.0


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
    from cli import bench as command

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--config", "tiny", "--json", "out.json"])
    assert args.config == ["tiny"] and args.json == Path("out.json")
    assert (args.repeats, args.warmup, args.isolation, args.jobs) == (5, 1, "process", 1)
    assert (args.zoo_steps, args.zoo_runs) == (1000, 1)
    assert args.run is command.run
    args = parser.parse_args(["bench", "--config", "zoo", "--zoo-steps", "3"])
    assert args.config == ["zoo"] and args.zoo_steps == 3
    assert args.skip is None
    args = parser.parse_args(["bench", "--skip", "bf16", "--skip", "amused_512"])
    assert args.skip == ["bf16", "amused_512"]


def test_skip_leaves_out_matching_figures_and_wins_over_only():
    keys = ["matmul_2048_fp32", "matmul_2048_bf16", "train_step_lora_bf16", "cfg_forward_b2_fp32"]
    assert [k for k in keys if selects(k)] == keys
    assert [k for k in keys if selects(k, skip=("bf16",))] == [keys[0], keys[3]]
    assert [k for k in keys if selects(k, only=("matmul",), skip=("bf16",))] == [keys[0]]
    assert [k for k in keys if selects(k, only=("matmul", "train_step"))] == keys[:3]


def test_the_zoo_is_measured_by_default():
    from bench import options

    assert "zoo" in options.DEFAULT_CONFIGS
    assert set(options.DEFAULT_CONFIGS) <= set(options.CONFIG_CHOICES) == set(fixtures.CONFIGS)
