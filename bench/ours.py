"""Our side of the benchmark (JAX + Flax NNX), through the public API a user calls.

`python -m bench.ours WORKLOAD --model NATIVE_DIR [options]` prints one JSON line (see
`bench.measure.report`). Workloads:

* `cfg_forward`: `Pipeline.guided_logits(cfg_branches(prompts, negatives, 10), ids)` for
  `--batch` images (the transformer sees 2x the rows); the prompts are encoded once
  (the text cache is warm, as during sampling). Also reports the forward's FLOPs from
  XLA's cost analysis of the same model call (lowered with the same inputs).
* `sampling`: `Pipeline.generate(prompts, seed=0, batch_size=B)`: text encoding, 12
  classifier-free-guided steps in one jitted loop, VQ decode. The text-embedding cache
  is cleared before every call, so each call encodes its prompts as diffusers does.
* `styledrop_sampling`: the LoRA file attached with `attach_adapter`, then
  `generate_styled` (StyleDrop Eq. 4: adapted, base and negative branches in one
  batched forward per step, the adapter gated per row), VQ decode; cache cleared too.
  `--dump` saves one step's Eq. 4 logits (`Pipeline.guided_logits`) after timing.
* `train_step`: `make_train_step` (the jitted step `styledrop finetune` runs) with a fresh
  r1, r2 or LoRA adapter, Adam at the kind's default learning rate, a pool of 8 token
  grids and one prompt; `--dtype bfloat16` loads the model with bf16 compute.
* `zoo_finetune`: the embedded zoo fine-tuned as `styledrop finetune` does it:
  `styledrop.finetune.finetune` on the demo's style image and caption (token pool of
  8 augmented crops, VQ-tokenized and text-encoded once), `--train-steps` Adam steps at
  batch `--batch` with a fresh LoRA r16 q/k/v or r1 adapter, a resumable checkpoint every
  100 steps and the adapter file at the end (`FinetuneConfig` defaults otherwise). Each
  call starts from a freshly loaded model (loaded outside the timed span) and compiles its
  step, as every `styledrop finetune` run does. Also reports the median time between
  consecutive steps after the first (the steady state, no compile) of the timed calls,
  and per timed call the time to the end of step 1 (pool, compile, one step).
* `zoo_grid`: `Pipeline.generate` of the 8 demo subjects, one image each, in one batch
  with the model's sampling defaults (the zoo: 36 MaskGIT steps, guidance 1.5) and tokens
  drawn at softmax temperature 1 (diffusers' rule), VQ decode,
  `make_grid`; text cache cleared per call. `--dump` saves the VQ decode of fixed tokens.
* `matmul`: `bench.matmul.jax_matmul`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench import fixtures, measure

WORKLOADS = (
    "cfg_forward", "sampling", "styledrop_sampling", "train_step", "zoo_finetune", "zoo_grid",
    "matmul",
)  # fmt: skip
# What the fork server imports once (nothing here starts a JAX backend).
PRELOAD = (
    "numpy",
    "torch",
    "transformers",
    "jax",
    "jax.numpy",
    "flax.nnx",
    "optax",
    "muse.pipeline",
    "adapters",
    "styledrop.adapted",
    "styledrop.train_step",
    "styledrop.finetune",
    "styledrop.images",
)


def _cfg_forward(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import numpy as np

    import muse
    from muse.pipeline import cfg_branches

    pipe = muse.load(args.model, dtype=args.dtype)
    batch = args.batch
    branches = cfg_branches(fixtures.prompts(batch), [""] * batch, fixtures.GUIDANCE_SCALE)
    ids = fixtures.token_grid(pipe.config.transformer, batch).astype(np.int32)
    timing = measure.time_repeated(
        lambda: pipe.guided_logits(branches, ids), args.warmup, args.repeats
    )
    if args.dump:
        np.save(args.dump, pipe.guided_logits(branches, ids))
    peak = measure.peak_rss_mb()  # before the cost analysis traces another program
    return timing, {"flops": _forward_flops(pipe, branches, ids), "peak_rss_mb": peak}


def _forward_flops(pipe, branches, ids) -> float:
    """FLOPs of the model call of one guided forward (XLA's HLO cost analysis).

    Counted on the lowered program (within 1 % of the optimised one's count here) so no
    second program is compiled.
    """
    import jax
    import numpy as np
    from flax import nnx

    graphdef, state = nnx.split(pipe.transformer)
    hidden, pooled, micro, _ = pipe.branch_inputs(branches, np.arange(len(ids)))
    tiled = np.tile(ids, (len(branches), 1, 1))

    def forward(state, ids, hidden, pooled, micro):
        return nnx.merge(graphdef, state)(ids, hidden, pooled, micro)

    lowered = jax.jit(forward).lower(state, tiled, hidden, pooled, micro)
    cost = lowered.cost_analysis()  # of the lowered program: no second compile
    if not cost:
        cost = lowered.compile().cost_analysis()
    if isinstance(cost, list | tuple):  # older jaxlib: one dict per computation
        cost = cost[0]
    return float(cost["flops"])


def _sampling(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import muse

    pipe = muse.load(args.model, dtype=args.dtype)
    prompts = fixtures.prompts(args.batch)

    def call():
        pipe.text_encoder.clear_cache()
        return pipe.generate(
            prompts,
            seed=0,
            guidance_scale=fixtures.GUIDANCE_SCALE,
            num_steps=fixtures.NUM_STEPS,
            batch_size=args.batch,
        )

    return measure.time_repeated(call, args.warmup, args.repeats), {}


def _styledrop_sampling(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import muse
    from styledrop.adapted import attach_adapter, generate_styled
    from styledrop.guidance import GuidanceScales

    if args.adapter is None:
        raise SystemExit("styledrop_sampling needs --adapter (a LoRA file).")
    pipe = muse.load(args.model, dtype=args.dtype)
    style = attach_adapter(pipe, args.adapter)
    prompts = fixtures.styled_prompts(args.batch)
    scales = GuidanceScales(fixtures.LAMBDA_A, fixtures.LAMBDA_B)

    def call():
        pipe.text_encoder.clear_cache()
        return generate_styled(pipe, style, prompts, seed=0, scales=scales, batch_size=args.batch)

    timing = measure.time_repeated(call, args.warmup, args.repeats)
    peak = measure.peak_rss_mb()  # before the check below compiles another program
    if args.dump:  # Eq. 4 logits of one step, for the same-function check
        import numpy as np

        from styledrop.guidance import styledrop_branches

        branches = styledrop_branches(
            prompts, [""] * len(prompts), scales, adapter_index=style.index,
            num_adapters=style.index + 1,
        )  # fmt: skip
        ids = fixtures.token_grid(pipe.config.transformer, len(prompts)).astype(np.int32)
        np.save(args.dump, pipe.guided_logits(branches, ids))
    return timing, {"peak_rss_mb": peak}


def _train_step(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import muse
    from adapters import AdapterParam, count_parameters, inject_adapter
    from muse.transformer import current_adapter_gate
    from styledrop.finetune import DEFAULT_LEARNING_RATES
    from styledrop.train_step import make_train_step

    pipe = muse.load(args.model, dtype=args.dtype)
    kind = args.adapter_kind
    spec = _adapter_spec(kind)
    trainable = count_parameters(pipe.transformer, spec)
    inject_adapter(pipe.transformer, spec, rngs=nnx.Rngs(0), gate_source=current_adapter_gate)
    graphdef, adapter_state, base_state = nnx.split(pipe.transformer, AdapterParam, ...)
    tx = optax.adam(DEFAULT_LEARNING_RATES[kind])
    opt_state = tx.init(adapter_state)
    cfg = pipe.config.transformer
    step_fn = make_train_step(graphdef, tx, args.batch, cfg.mask_token_id)
    text = pipe.text_encoder.encode([fixtures.TRAIN_PROMPT])
    ids = fixtures.training_tokens(cfg)
    pool = (
        jnp.asarray(ids, jnp.int32),
        jnp.zeros((len(ids),), jnp.int32),
        jnp.asarray(text.hidden_states),
        jnp.asarray(text.pooled),
        jnp.asarray(pipe.micro_conds(1)[0]),
    )
    key = jax.random.key(0)
    state = {"adapter": adapter_state, "opt": opt_state, "step": 0}

    def call():
        adapter, opt, metrics = step_fn(
            state["adapter"], state["opt"], base_state, pool, state["step"], key
        )
        state.update(adapter=adapter, opt=opt, step=state["step"] + 1)
        return float(metrics["loss"])  # what the fine-tuning loop reads every step

    timing = measure.time_repeated(call, args.warmup, args.repeats)
    return timing, {"trainable_parameters": trainable}


def _adapter_spec(kind: str):
    from adapters import AdapterSpec

    if kind == "lora":
        return AdapterSpec(
            kind, rank=fixtures.LORA_RANK, alpha=fixtures.LORA_ALPHA,
            lora_targets=fixtures.LORA_TARGETS,
        )  # fmt: skip
    return AdapterSpec(kind)


def _zoo_finetune(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import tempfile
    import time
    from pathlib import Path

    import numpy as np

    import muse
    from adapters import count_parameters
    from styledrop.dataset import StyleExample
    from styledrop.finetune import FinetuneConfig, finetune
    from styledrop.inputs import load_images

    image = load_images([fixtures.zoo_style_image()])[0]
    example = StyleExample(image.pixels, fixtures.ZOO_CAPTION, image.name, image.sha256)
    spec = _adapter_spec(args.adapter_kind)
    config = FinetuneConfig(
        adapter=spec, steps=args.train_steps, batch_size=args.batch,
        variants_per_image=fixtures.ZOO_VARIANTS,
    )  # fmt: skip
    state: dict[str, Any] = {}
    intervals: list[np.ndarray] = []  # per call: seconds between consecutive step ends
    first_steps: list[float] = []  # per call: seconds from the call to the end of step 1
    losses: list[float] = []
    work = tempfile.TemporaryDirectory(prefix="bench-zoo-finetune-")

    def setup():
        state["pipe"] = None  # the previous model goes before the next one loads
        state["pipe"] = muse.load(args.model, dtype=args.dtype)
        state["out"] = Path(work.name) / f"run-{len(intervals)}"
        if "trainable" not in state:
            state["trainable"] = count_parameters(state["pipe"].transformer, spec)

    def call():
        ticks: list[float] = [time.perf_counter()]
        result = finetune(
            state["pipe"], [example], fixtures.ZOO_DESCRIPTOR, config, state["out"],
            progress=lambda _event: ticks.append(time.perf_counter()),
        )  # fmt: skip
        if result.status != "succeeded" or result.step != config.steps:
            raise RuntimeError(f"Fine-tuning ended {result.status} at step {result.step}.")
        first_steps.append(ticks[1] - ticks[0])
        intervals.append(np.diff(ticks[1:]))
        losses.append(result.final_loss)
        return result

    with work:
        timing = measure.time_repeated(call, args.warmup, args.repeats, setup=setup)
    timed = np.concatenate(intervals[args.warmup :])
    return timing, {
        "step_median_s": float(np.median(timed)) if timed.size else None,
        "first_step_s": first_steps[args.warmup :],
        "steps": config.steps,
        "batch_size": config.batch_size,
        "final_loss": losses[-1],
        "trainable_parameters": state["trainable"],
    }


def _zoo_grid(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import muse
    from styledrop.images import make_grid

    pipe = muse.load(args.model, dtype=args.dtype)
    prompts = list(fixtures.ZOO_SUBJECTS)
    # diffusers draws every token from softmax(logits): sample as it does, whatever model.json says.
    reference_rule = 1.0

    def call():
        pipe.text_encoder.clear_cache()
        images = pipe.generate(
            prompts, seed=0, batch_size=len(prompts), token_temperature=reference_rule
        )
        return make_grid(images, columns=4)

    timing = measure.time_repeated(call, args.warmup, args.repeats)
    peak = measure.peak_rss_mb()  # before the check below compiles another program
    if args.dump:  # the VQ decode of fixed tokens, for the same-function check
        import numpy as np

        codes = fixtures.code_grid(pipe.config.transformer, 2)
        np.save(args.dump, pipe.decode_tokens(codes.astype(np.int32)))
    cfg = pipe.decode_config(token_temperature=reference_rule)
    sampling = {
        "num_steps": cfg.num_steps,
        "token_temperature": cfg.token_temperature,
        "style": cfg.style,
        "guidance_scale": pipe.config.sampling.guidance_scale,
        "temperatures": [float(t) for t in cfg.step_temperatures()],
        "micro_conds": pipe.micro_conds(1)[0].tolist(),  # width, height, crop, aesthetic
    }
    return timing, {"peak_rss_mb": peak, "images": len(prompts), "sampling": sampling}


def _matmul(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    from bench.matmul import gflops, jax_matmul

    timing = jax_matmul(args.size, args.dtype, args.variant, args.warmup, args.repeats)
    return timing, {"gflops": gflops(args.size, timing.median_s)}


_FUNCTIONS = {
    "cfg_forward": _cfg_forward,
    "sampling": _sampling,
    "styledrop_sampling": _styledrop_sampling,
    "train_step": _train_step,
    "zoo_finetune": _zoo_finetune,
    "zoo_grid": _zoo_grid,
    "matmul": _matmul,
}


def _device_memory() -> dict[str, Any]:
    """The device JAX ran on and, on an accelerator, the peak memory its allocator held."""
    import jax

    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}  # None on a CPU
    out: dict[str, Any] = {"jax_device": f"{device.platform}:{device.device_kind}"}
    if "peak_bytes_in_use" in stats:
        out["device_peak_mb"] = stats["peak_bytes_in_use"] / 2**20
    return out


def run(argv: list[str]) -> dict[str, Any]:
    """Runs one workload in this process and returns its record."""
    args = measure.workload_parser("python -m bench.ours", WORKLOADS).parse_args(argv)
    cpus = measure.pin_process(args.threads, measure.parse_cpus(args.cpus))
    measure.preload(PRELOAD)
    import torch  # the text encoder runs in PyTorch: same thread count

    torch.set_num_threads(len(cpus))
    baseline = measure.current_rss_mb()
    timing, extra = _FUNCTIONS[args.workload](args)
    peak = extra.pop("peak_rss_mb", None) or measure.peak_rss_mb()
    extra.update(_device_memory())
    return measure.report(
        "ours", args, timing, baseline_rss_mb=baseline, peak_mb=peak, cpus=cpus,
        torch_threads=torch.get_num_threads(), extra=extra,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(measure.workload_main(run, preload_modules=PRELOAD))
