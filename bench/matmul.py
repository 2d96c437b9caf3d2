"""Matrix-multiply peak of the machine, and the CPU bf16 investigation.

`jax_matmul` / `torch_matmul` time one square matmul (2 n^3 FLOPs) in a framework; the
benchmark uses a large fp32 one as each framework's achievable peak, the denominator of
our achieved FLOP/s, and 2048 x 2048 in fp32 and bf16 to show how each framework does
bf16 on this CPU.

Variants (`--variant`):

* JAX: `plain` (`a @ b` in the dtype), `f32_accumulate` (bf16 inputs,
  `lax.dot(..., preferred_element_type=float32)`), `precision_bf16` (fp32 inputs under
  `jax.default_matmul_precision("bfloat16")`), `precision_highest` (fp32 inputs,
  `Precision.HIGHEST`).
* torch: `plain`, `autocast` (fp32 inputs under `torch.autocast("cpu", bfloat16)`).

`python -m bench.matmul investigate [--size 2048] [--threads N]` runs every JAX variant
under several `XLA_FLAGS` settings (each in its own process, since XLA reads its flags
once) and the torch variants, and prints GFLOP/s. `python -m bench.matmul jax|torch
--size N --dtype D --variant V` measures one.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench import measure

JAX_VARIANTS = ("plain", "f32_accumulate", "precision_bf16", "precision_highest")
TORCH_VARIANTS = ("plain", "autocast")
# XLA_FLAGS settings tried by the investigation ("" is the default configuration).
XLA_FLAG_SETS = (
    "",
    "--xla_cpu_use_thunk_runtime=false",
    "--xla_cpu_enable_fast_math=true",
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_experimental_ynn_fusion_type=",
)
# (dtype, variant) pairs the investigation measures in JAX for every flag set.
JAX_CASES = (
    ("float32", "plain"),
    ("bfloat16", "plain"),
    ("bfloat16", "f32_accumulate"),
    ("float32", "precision_bf16"),
    ("float32", "precision_highest"),
)
TORCH_CASES = (("float32", "plain"), ("bfloat16", "plain"), ("float32", "autocast"))


def gflops(size: int, seconds: float) -> float:
    """GFLOP/s of one n x n x n matmul (2 n^3 FLOPs) that took `seconds`."""
    return 2.0 * size**3 / seconds / 1e9


def jax_matmul(
    size: int, dtype: str = "float32", variant: str = "plain", warmup: int = 1, repeats: int = 5
) -> measure.Timing:
    """Times a jitted n x n matmul in JAX (the result is blocked on)."""
    import jax
    import jax.numpy as jnp

    if variant not in JAX_VARIANTS:
        raise ValueError(f"Unknown JAX variant {variant!r}; choose from {JAX_VARIANTS}.")
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    if variant == "f32_accumulate":
        a, b = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)

        def fn(x, y):
            return jax.lax.dot(x, y, preferred_element_type=jnp.float32)

    elif variant == "precision_highest":

        def fn(x, y):
            return jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST)

    else:
        a, b = a.astype(dtype), b.astype(dtype)

        def fn(x, y):
            return x @ y

    if variant == "precision_bf16":
        with jax.default_matmul_precision("bfloat16"):
            compiled = jax.jit(fn).lower(a, b).compile()
    else:
        compiled = jax.jit(fn).lower(a, b).compile()
    return measure.time_repeated(lambda: compiled(a, b).block_until_ready(), warmup, repeats)


def torch_matmul(
    size: int,
    dtype: str = "float32",
    variant: str = "plain",
    warmup: int = 1,
    repeats: int = 5,
    device: str = "cpu",
) -> measure.Timing:
    """Times an n x n `torch.matmul` (no autograd) on `device` ("cpu" or "cuda")."""
    import torch

    if variant not in TORCH_VARIANTS:
        raise ValueError(f"Unknown torch variant {variant!r}; choose from {TORCH_VARIANTS}.")
    generator = torch.Generator().manual_seed(0)  # the same numbers on every device
    a = torch.randn(size, size, generator=generator).to(device, getattr(torch, dtype))  # [n, n]
    b = torch.randn(size, size, generator=generator).to(device, getattr(torch, dtype))  # [n, n]

    @torch.no_grad()
    def fn():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=variant == "autocast"):
            return torch.matmul(a, b)  # [n, n]

    sync = torch.cuda.synchronize if device == "cuda" else None
    return measure.time_repeated(fn, warmup, repeats, sync=sync)


def _measure_cases(framework: str, cases, size: int, warmup: int, repeats: int) -> list[dict]:
    function = jax_matmul if framework == "jax" else torch_matmul
    out = []
    for dtype, variant in cases:
        timing = function(size, dtype, variant, warmup, repeats)
        out.append(
            {
                "framework": framework,
                "dtype": dtype,
                "variant": variant,
                "median_s": timing.median_s,
                "gflops": gflops(size, timing.median_s),
            }
        )
    return out


def investigate(
    size: int = 2048, threads: int = 0, warmup: int = 1, repeats: int = 5
) -> dict[str, Any]:
    """Runs the bf16 investigation; every setting in its own pinned process.

    Returns:
        {"size", "threads", "torch": [rows], "jax": {xla_flags: [rows] or {"error"}}}.
    """
    threads = threads or len(measure.available_cpus())
    common = ["--size", str(size), "--threads", str(threads)]
    common += ["--warmup", str(warmup), "--repeats", str(repeats)]
    out: dict[str, Any] = {"size": size, "threads": threads, "jax": {}}
    env = measure.child_env(threads)
    out["torch"] = measure.run_process("bench.matmul", ["cases", "torch", *common], env)["rows"]
    for flags in XLA_FLAG_SETS:
        env = measure.child_env(threads, flags)
        try:
            record = measure.run_process("bench.matmul", ["cases", "jax", *common], env)
            out["jax"][flags] = record["rows"]
        except measure.BenchError as error:  # a flag this jaxlib does not know
            out["jax"][flags] = {"error": str(error).splitlines()[-1]}
    return out


def format_investigation(result: dict[str, Any]) -> str:
    """A plain-text table of `investigate` output (GFLOP/s; higher is better)."""
    size = result["size"]
    lines = [f"CPU bf16 investigation: {size}x{size} matmul, {result['threads']} threads, GFLOP/s"]
    lines.append("  torch:")
    for row in result["torch"]:
        lines.append(f"    {row['dtype']:9s} {row['variant']:18s} {row['gflops']:8.1f}")
    for flags, rows in result["jax"].items():
        lines.append(f"  jax, XLA_FLAGS={flags or '(default)'}:")
        if isinstance(rows, dict):
            lines.append(f"    error: {rows['error']}")
            continue
        for row in rows:
            lines.append(f"    {row['dtype']:9s} {row['variant']:18s} {row['gflops']:8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.matmul", description=__doc__)
    parser.add_argument("what", choices=["investigate", "jax", "torch", "cases"])
    parser.add_argument("framework", nargs="?", choices=["jax", "torch"], help="for `cases`")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--variant", default="plain")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    parser.add_argument("--cpus", help="comma-separated CPUs to run on (overrides --threads)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="investigate: also write the result here")
    args = parser.parse_args(argv)
    if args.what == "investigate":
        result = investigate(args.size, args.threads, args.warmup, args.repeats)
        print(format_investigation(result))
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(result, handle, indent=2)
        return 0
    framework = args.framework if args.what == "cases" else args.what
    if framework is None:
        parser.error("`cases` needs a framework: jax or torch.")
    cpus = measure.pin_process(args.threads, measure.parse_cpus(args.cpus))
    if framework == "torch":
        import torch

        torch.set_num_threads(len(cpus))
    with measure.stdout_to_stderr() as out:
        if args.what == "cases":
            cases = JAX_CASES if framework == "jax" else TORCH_CASES
            record: dict[str, Any] = {
                "rows": _measure_cases(framework, cases, args.size, args.warmup, args.repeats)
            }
        else:
            function = jax_matmul if framework == "jax" else torch_matmul
            timing = function(args.size, args.dtype, args.variant, args.warmup, args.repeats)
            record = {"median_s": timing.median_s, "gflops": gflops(args.size, timing.median_s)}
        out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
