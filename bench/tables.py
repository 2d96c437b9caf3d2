"""The plain-text table of a result (ratio = ours / diffusers)."""

from __future__ import annotations

import math
from typing import Any

from bench.figures import PARITY_CHECKS


def format_value(value: float, unit: str) -> str:
    """A value in its unit, for the table: "12.30 ms", "1.234 s", "512 MB", "41.0 %"."""
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
                f"{key:{width}s} {format_value(fig['ours'], fig['unit']):>14s}"
                f" {format_value(fig['diffusers'], fig['unit']):>14s} {fig['ratio']:7.2f}"
            )
    for name, skip in result["skipped"].items():
        lines += ["", f"[{name}] SKIP: {skip['reason']}"]
    if result["failures"]:
        lines += ["", "FAILURES:"] + [f"  {f.splitlines()[0]}" for f in result["failures"]]
    return "\n".join(lines)
