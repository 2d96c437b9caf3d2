"""The reference side of the benchmark: diffusers 0.42 (+ peft for LoRA), as a user drives it.

`python -m bench.reference WORKLOAD --model DIFFUSERS_DIR [options]` prints one JSON line
(see `bench.measure.report`). Every workload loads `AmusedPipeline.from_pretrained`
(fp32 weights, progress bar off), moves it to `--device`, and runs under `torch.no_grad()`
except training; `--dtype bfloat16` runs the model calls under `torch.autocast(device,
dtype=torch.bfloat16)` (fp32 weights, as accelerate's bf16 mixed precision).

Devices (`--device`): `cpu` (the default; the process is pinned to `--threads` /
`--cpus` as our side is), `cuda`, or `auto` (cuda where torch sees a GPU, else cpu). The
pipeline, every input tensor and every generator live on that device; on CUDA each timed
call ends with `torch.cuda.synchronize()`, `--no-tf32` turns TF32 off for matmuls and
cuDNN (full fp32 products, as `JAX_DEFAULT_MATMUL_PRECISION=highest` on our side), and the
record's `extra.device_peak_mb` is `torch.cuda.max_memory_allocated` from the start of the
timed calls (the weights already on the device). `extra.torch_device` names the device.

* `cfg_forward`: what one step of `AmusedPipeline.__call__` does: `transformer` on the
  rows [negatives; prompts] (prompts encoded once, as the pipeline does per call, with
  `text_encoder(..., output_hidden_states=True)`: `hidden_states[-2]` and
  `text_embeds`), then `u + 10 (c - u)`, copied to the host (ours returns numpy).
* `sampling`: `AmusedPipeline(prompts, num_inference_steps=12, guidance_scale=10,
  generator=torch.Generator().manual_seed(0), output_type="np")`: text encoding, 12
  steps of one batched transformer call + `AmusedScheduler.step`, VQ decode.
* `styledrop_sampling`: diffusers has no StyleDrop guidance, so this is the loop a user
  writes with its API: the LoRA file is loaded with
  `transformer.load_lora_adapter(..., prefix="transformer")`; per step,
  `enable_adapters()` and one call on the prompt rows (adapted model), then
  `disable_adapters()` and one call on [prompts; negatives] (frozen base, both base
  branches batched), Eq. 4 `(1 + a) G_a(t) + (b - a) G(t) - b G(n)`,
  `AmusedScheduler.step`; then `enable_adapters()`, the VQ decode and post-processing of
  the pipeline. `--dump` saves one step's Eq. 4 logits after timing.
* `train_step` (LoRA only): diffusers' `train_amused.py` recipe at batch `--batch`:
  `transformer.add_adapter(LoraConfig(r=16, lora_alpha=32,
  target_modules=["to_q", "to_k", "to_v"]))`, train mode, AdamW (lr 4e-4) on the LoRA
  weights only, cosine masking (>= 1 token), cross-entropy on masked tokens,
  `backward`, `step`, `zero_grad`; `--dtype bfloat16` wraps forward and loss in
  `torch.autocast(device, dtype=torch.bfloat16)`.
* `zoo_finetune` (LoRA only): the same fine-tuning as ours, written with diffusers + peft:
  the demo's style image as 8 augmented crops (`fixtures.style_crops`, our crops
  exactly), tokenized once with `vqvae.encode` + `vqvae.quantize` (as `train_amused.py`
  tokenizes) and the prompt encoded once, then `add_adapter(LoraConfig(r=16,
  lora_alpha=32, target_modules=["to_q", "to_k", "to_v"]))`, AdamW (lr 4e-4), and
  `--train-steps` steps of the `train_step` recipe at batch `--batch`, each batch a
  shuffled pass over the pool (as ours; `--dtype bfloat16`: under autocast as
  `train_step`), `loss.item()` every step; at the end
  `save_lora_adapter`. Each call starts from a freshly loaded pipeline (outside the timed
  span). Also reports the median time between consecutive steps after the first, and
  per timed call the time to the end of step 1.
* `zoo_grid`: `AmusedPipeline(prompts, generator=..., output_type="latent", **sampling)`
  for the 8 demo subjects in one batch (`--sampling`: the zoo's settings, see
  `fixtures.diffusers_sampling`), then the VQ decode and post-processing of the pipeline
  and `make_image_grid`. The pipeline's own decode cannot run here: it looks codebook
  vectors up as `latent_channels` wide, which holds for aMUSEd's checkpoints but not for
  the zoo's VQ (16-wide codes, 32 latent channels), so `_decode_tokens` passes the
  codebook width. `--dump` saves the VQ decode of fixed tokens.
* `matmul`: `bench.matmul.torch_matmul`.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from bench import fixtures, measure

WORKLOADS = (
    "cfg_forward", "sampling", "styledrop_sampling", "train_step", "zoo_finetune", "zoo_grid",
    "matmul",
)  # fmt: skip
DEVICES = ("cpu", "cuda", "auto")
PRELOAD = (
    "numpy",
    "torch",
    "transformers",
    "diffusers",
    "diffusers.pipelines.deprecated.amused.pipeline_amused",
    "peft",
    "styledrop.inputs",
)


def parser() -> argparse.ArgumentParser:
    """The workload command line (`measure.workload_parser`) with the device options."""
    out = measure.workload_parser("python -m bench.reference", WORKLOADS)
    out.add_argument(
        "--device", choices=DEVICES, default="cpu",
        help="torch device (auto: cuda if torch sees a GPU, else cpu)",
    )  # fmt: skip
    out.add_argument(
        "--no-tf32", action="store_true",
        help="CUDA: full fp32 products (TF32 off for matmuls and cuDNN)",
    )  # fmt: skip
    return out


def resolve_device(name: str) -> str:
    """The torch device a `--device` choice names: "cpu" or "cuda".

    "auto" and "cuda" import torch to ask whether it sees a GPU (importing starts no CPU
    thread pool, so pinning afterwards still holds); "cpu" imports nothing.

    Raises:
        SystemExit: "cuda" was asked for and torch sees no GPU.
    """
    if name == "cpu":
        return name
    import torch

    available = torch.cuda.is_available()
    if name == "cuda" and not available:
        raise SystemExit(f"--device cuda: torch {torch.__version__} sees no CUDA GPU.")
    return "cuda" if available else "cpu"


def _load(args: argparse.Namespace):
    import torch
    from diffusers import AmusedPipeline

    pipe = AmusedPipeline.from_pretrained(args.model, torch_dtype=torch.float32)
    position_embedding = fixtures.load_position_embedding(args.model)
    if position_embedding is not None:  # our zoo's U-ViT adds one; diffusers has none
        fixtures.add_position_embedding(pipe.transformer, position_embedding)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(args.device)


def _autocast(args: argparse.Namespace):
    """bf16 autocast on the workload's device when `--dtype bfloat16`, else nothing."""
    import torch

    return torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")


def _timed(args: argparse.Namespace, call, setup=None) -> measure.Timing:
    """`measure.time_repeated` on the workload's device: CUDA work is waited for inside each
    timed span, and the peak-memory counter starts at the timed calls."""
    import torch

    sync = None
    if args.device == "cuda":
        sync = torch.cuda.synchronize
        torch.cuda.reset_peak_memory_stats()
    return measure.time_repeated(call, args.warmup, args.repeats, setup=setup, sync=sync)


def _encode(pipe, prompts: list[str]):
    """(hidden [B, 77, D], pooled [B, E]) exactly as `AmusedPipeline.__call__` encodes."""
    input_ids = pipe.tokenizer(
        prompts,
        return_tensors="pt",
        padding="max_length",
        truncation=True,
        max_length=pipe.tokenizer.model_max_length,
    ).input_ids.to(pipe.text_encoder.device)  # [B, 77]
    outputs = pipe.text_encoder(input_ids, return_dict=True, output_hidden_states=True)
    return outputs.hidden_states[-2], outputs.text_embeds


def _micro_conds(pipe, rows: int):
    import torch

    tcfg = pipe.transformer.config
    vcfg = pipe.vqvae.config
    size = tcfg.sample_size * 2 ** (len(vcfg.block_out_channels) - 1)
    micro = torch.tensor([[size, size, 0, 0, 6]], dtype=torch.float32)
    return micro.to(pipe.transformer.device).expand(rows, -1)  # [rows, 5]


def _cfg_forward(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import numpy as np
    import torch

    pipe = _load(args)
    transformer = pipe.transformer.eval()
    batch = args.batch
    scale = fixtures.GUIDANCE_SCALE
    with torch.no_grad():
        hidden, pooled = _encode(pipe, [""] * batch + fixtures.prompts(batch))
    ids = fixtures.token_grid(_our_config(pipe), batch)  # [B, h, w]
    rows = torch.from_numpy(np.concatenate([ids, ids])).long().to(args.device)  # [2B, h, w]
    micro = _micro_conds(pipe, 2 * batch)

    @torch.no_grad()
    def call():
        with _autocast(args):
            logits = transformer(
                rows, micro_conds=micro, pooled_text_emb=pooled, encoder_hidden_states=hidden
            )  # [2B, V, h, w]
            uncond, cond = logits.chunk(2)
            # On the host, as our `guided_logits` returns them (a no-op on the CPU).
            return (uncond + scale * (cond - uncond)).cpu()  # [B, V, h, w]

    timing = _timed(args, call)
    if args.dump:  # [B, V, h, w] -> [B, h, w, V]
        np.save(args.dump, call().permute(0, 2, 3, 1).float().numpy())
    return timing, {}


def _decode_tokens(pipe, ids):
    """Token grids [B, h, w] -> images [B, 3, H, W] in [0, 1], as `AmusedPipeline` decodes.

    With the width of the codebook vectors (`vq_embed_dim`) as the looked-up shape, where
    the pipeline passes `latent_channels` (the same for aMUSEd's own checkpoints).
    """
    vq = pipe.vqvae
    width = vq.config.vq_embed_dim or vq.config.latent_channels
    batch, height, width_tokens = ids.shape
    shape = (batch, height, width_tokens, width)
    return vq.decode(ids, force_not_quantize=True, shape=shape).sample.clip(0, 1)


def _our_config(pipe):
    from muse.config import TransformerConfig

    return TransformerConfig.from_dict(dict(pipe.transformer.config))


def _sampling(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import torch

    pipe = _load(args)
    prompts = fixtures.prompts(args.batch)

    def call():
        with _autocast(args):
            return pipe(
                prompts,
                num_inference_steps=fixtures.NUM_STEPS,
                guidance_scale=fixtures.GUIDANCE_SCALE,
                generator=torch.Generator(args.device).manual_seed(0),
                output_type="np",
            ).images  # [B, H, W, 3]

    return _timed(args, call), {}


def _styledrop_sampling(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import torch

    if args.adapter is None:
        raise SystemExit("styledrop_sampling needs --adapter (a LoRA file).")
    pipe = _load(args)
    transformer = pipe.transformer.eval()
    transformer.load_lora_adapter(
        str(args.adapter.parent), weight_name=args.adapter.name, prefix="transformer",
        adapter_name="style",
    )  # fmt: skip
    transformer.to(args.device)  # the LoRA layers too, wherever peft created them
    prompts = fixtures.styled_prompts(args.batch)
    a, b = fixtures.LAMBDA_A, fixtures.LAMBDA_B

    side = transformer.config.sample_size
    mask_id = pipe.scheduler.config.mask_token_id

    def guided(latents, text, base_text, micro):
        """Eq. 4 logits: the adapted model, then the base on [prompt; negative] rows.

        Leaves the adapters disabled; the caller enables them again when done.
        """
        (hidden_t, pooled_t), (base_hidden, base_pooled) = text, base_text
        batch = len(latents)
        transformer.enable_adapters()
        adapted = transformer(
            latents, micro_conds=micro[:batch], pooled_text_emb=pooled_t,
            encoder_hidden_states=hidden_t,
        )  # fmt: skip
        transformer.disable_adapters()
        base = transformer(
            torch.cat([latents, latents]), micro_conds=micro, pooled_text_emb=base_pooled,
            encoder_hidden_states=base_hidden,
        )  # fmt: skip
        base_t, base_n = base.chunk(2)
        return (1 + a) * adapted + (b - a) * base_t - b * base_n

    def conditioning():
        batch = len(prompts)
        hidden_t, pooled_t = _encode(pipe, prompts)
        hidden_n, pooled_n = _encode(pipe, [""] * batch)
        base_text = (torch.cat([hidden_t, hidden_n]), torch.cat([pooled_t, pooled_n]))
        return (hidden_t, pooled_t), base_text, _micro_conds(pipe, 2 * batch)

    @torch.no_grad()
    def call():
        batch = len(prompts)
        with _autocast(args):
            text, base_text, micro = conditioning()
            latents = torch.full(
                (batch, side, side), mask_id, dtype=torch.long, device=args.device
            )  # [B, h, w]
            generator = torch.Generator(args.device).manual_seed(0)
            pipe.scheduler.set_timesteps(fixtures.NUM_STEPS, (2, 0), args.device)
            for timestep in pipe.scheduler.timesteps:
                logits = guided(latents, text, base_text, micro)  # [B, V, h, w]
                latents = pipe.scheduler.step(
                    logits, timestep, latents, generator=generator
                ).prev_sample
            transformer.enable_adapters()
            pixels = _decode_tokens(pipe, latents)  # [B, 3, H, W]
        return pipe.image_processor.postprocess(pixels, "np")

    timing = _timed(args, call)
    if args.dump:  # Eq. 4 logits of one step, for the same-function check
        import numpy as np

        ids = fixtures.token_grid(_our_config(pipe), len(prompts))  # [B, h, w]
        ids = torch.from_numpy(ids).long().to(args.device)
        with torch.no_grad(), _autocast(args):
            logits = guided(ids, *conditioning())  # [B, V, h, w]
        transformer.enable_adapters()
        logits = logits.permute(0, 2, 3, 1).float().cpu().numpy()  # -> [B, h, w, V]
        np.save(args.dump, logits)
    return timing, {}


def _train_step(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import torch

    if args.adapter_kind != "lora":
        raise SystemExit("The reference trains LoRA adapters only (peft); use --adapter-kind lora.")
    pipe = _load(args)
    trainable = _add_lora(pipe.transformer, args.device)
    optimizer = torch.optim.AdamW(trainable, lr=4e-4)
    with torch.no_grad():
        hidden, pooled = _encode(pipe, [fixtures.TRAIN_PROMPT] * args.batch)
    pool = fixtures.training_tokens(_our_config(pipe))  # [P, h, w]
    pool = torch.from_numpy(pool).long().to(args.device)
    micro = _micro_conds(pipe, args.batch)
    generator = torch.Generator(args.device).manual_seed(0)
    bf16 = args.dtype == "bfloat16"

    def call():
        rows = torch.randint(len(pool), (args.batch,), generator=generator, device=args.device)
        loss = _masked_loss(pipe, pool[rows], hidden, pooled, micro, generator, bf16)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    timing = _timed(args, call)
    return timing, {"trainable_parameters": sum(p.numel() for p in trainable)}


def _add_lora(model, device: str):
    """peft LoRA r16 on q/k/v (diffusers' `add_adapter`); returns the trainable parameters."""
    from peft import LoraConfig

    model.add_adapter(
        LoraConfig(
            r=fixtures.LORA_RANK,
            lora_alpha=fixtures.LORA_ALPHA,
            target_modules=list(fixtures.LORA_TARGETS),
        )
    )
    model.to(device)  # the LoRA layers too, wherever peft created them
    model.train()
    trainable = [p for n, p in model.named_parameters() if p.requires_grad]
    frozen_leak = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    if frozen_leak:
        raise RuntimeError(f"Non-LoRA parameters would train: {frozen_leak[:5]}")
    return trainable


def _masked_loss(pipe, tokens, hidden, pooled, micro, generator, bf16: bool = False):
    """`train_amused.py`'s loss on token grids [B, h, w]: cosine masking (>= 1 token), forward,
    cross-entropy on the masked tokens (under bf16 autocast if asked).

    The tokens and the generator are on the same device; the masks are drawn there.
    """
    import torch
    import torch.nn.functional as F

    batch, side = tokens.shape[:2]
    device = tokens.device
    mask_id = pipe.scheduler.config.mask_token_id
    vocab = pipe.transformer.config.codebook_size
    tokens = tokens.reshape(batch, -1)  # [B, L]
    length = tokens.shape[1]
    uniform = torch.rand(batch, generator=generator, device=device)  # [B]
    mask_prob = torch.cos(uniform * math.pi * 0.5)  # [B]
    count = (length * mask_prob).round().clamp(min=1)  # [B]
    order = torch.rand(batch, length, generator=generator, device=device).argsort(-1)  # [B, L]
    mask = order < count[:, None]  # [B, L]
    inputs = torch.where(mask, mask_id, tokens).reshape(batch, side, -1)  # [B, h, w]
    labels = torch.where(mask, tokens, -100)  # [B, L]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = pipe.transformer(
            inputs, micro_conds=micro, pooled_text_emb=pooled, encoder_hidden_states=hidden
        )  # [B, V, h, w]
        logits = logits.reshape(batch, vocab, -1).permute(0, 2, 1).reshape(-1, vocab)  # [B L, V]
        return F.cross_entropy(logits, labels.reshape(-1), ignore_index=-100)


def _zoo_finetune(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import tempfile
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from styledrop.inputs import load_images

    if args.adapter_kind != "lora":
        raise SystemExit("The reference trains LoRA adapters only (peft); use --adapter-kind lora.")
    image = load_images([fixtures.zoo_style_image()])[0]
    prompt = f"{fixtures.ZOO_CAPTION} {fixtures.ZOO_DESCRIPTOR}"
    state: dict[str, Any] = {}
    intervals: list[np.ndarray] = []  # per call: seconds between consecutive step ends
    first_steps: list[float] = []  # per call: seconds from the call to the end of step 1
    losses: list[float] = []
    work = tempfile.TemporaryDirectory(prefix="bench-zoo-finetune-")

    def setup():
        state["pipe"] = None  # the previous model goes before the next one loads
        state["pipe"] = _load(args)

    def call():
        ticks = [time.perf_counter()]
        pipe, batch = state["pipe"], args.batch
        trainable = _add_lora(pipe.transformer, args.device)
        state["trainable"] = sum(p.numel() for p in trainable)
        optimizer = torch.optim.AdamW(trainable, lr=4e-4)
        side = pipe.transformer.config.sample_size
        crops = fixtures.style_crops(
            image.pixels, side * pipe.vae_scale_factor, fixtures.ZOO_VARIANTS
        )  # [N, H, W, 3] uint8
        with torch.no_grad():
            pixels = torch.from_numpy(crops).to(args.device)
            pixels = pixels.permute(0, 3, 1, 2).float() / 255.0  # [N, 3, H, W]
            pool = pipe.vqvae.quantize(pipe.vqvae.encode(pixels).latents)[2][2]
            pool = pool.reshape(len(crops), side, side)  # [N, h, w]
            hidden, pooled = _encode(pipe, [prompt])
        hidden, pooled = hidden.expand(batch, -1, -1), pooled.expand(batch, -1)
        micro = _micro_conds(pipe, batch)
        generator = torch.Generator(args.device).manual_seed(0)
        bf16 = args.dtype == "bfloat16"
        for _ in range(args.train_steps):
            order = torch.randperm(len(pool), generator=generator, device=args.device)
            rows = order.repeat(-(-batch // len(pool)))[:batch]  # [B]
            loss = _masked_loss(pipe, pool[rows], hidden, pooled, micro, generator, bf16)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            ticks.append(time.perf_counter())
        pipe.transformer.save_lora_adapter(Path(work.name) / f"run-{len(intervals)}")
        first_steps.append(ticks[1] - ticks[0])
        intervals.append(np.diff(ticks[1:]))

    with work:
        timing = _timed(args, call, setup=setup)
    timed = np.concatenate(intervals[args.warmup :])
    return timing, {
        "step_median_s": float(np.median(timed)) if timed.size else None,
        "first_step_s": first_steps[args.warmup :],
        "steps": args.train_steps,
        "batch_size": args.batch,
        "final_loss": losses[-1],
        "trainable_parameters": state["trainable"],
    }


def _zoo_grid(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    import torch
    from diffusers.utils import make_image_grid

    if not args.sampling:
        raise SystemExit("zoo_grid needs --sampling (the model's sampling arguments, JSON).")
    pipe = _load(args)
    prompts = list(fixtures.ZOO_SUBJECTS)

    @torch.no_grad()
    def call():
        with _autocast(args):
            latents = pipe(
                prompts, generator=torch.Generator(args.device).manual_seed(0),
                output_type="latent", **args.sampling,
            ).images  # fmt: skip
            pixels = _decode_tokens(pipe, latents)  # [B, h, w] -> [B, 3, H, W]
        images = pipe.image_processor.postprocess(pixels, "pil")
        return make_image_grid(images, rows=2, cols=4)

    timing = _timed(args, call)
    if args.dump:  # the VQ decode of fixed tokens, for the same-function check
        import numpy as np

        codes = fixtures.code_grid(_our_config(pipe), 2)  # [2, h, w]
        codes = torch.from_numpy(codes).long().to(args.device)
        with torch.no_grad():
            pixels = _decode_tokens(pipe, codes)  # [2, 3, H, W]
        np.save(args.dump, pixels.permute(0, 2, 3, 1).float().cpu().numpy())  # -> [B, H, W, 3]
    return timing, {"images": len(prompts), "sampling": args.sampling}


def _matmul(args: argparse.Namespace) -> tuple[measure.Timing, dict[str, Any]]:
    from bench.matmul import gflops, torch_matmul

    if args.device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    timing = torch_matmul(
        args.size, args.dtype, args.variant, args.warmup, args.repeats, args.device
    )
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


def _device_report(args: argparse.Namespace) -> dict[str, Any]:
    """The device the workload ran on and, on CUDA, its peak memory and TF32 settings."""
    import torch

    if args.device != "cuda":
        return {"torch_device": args.device}
    return {
        "torch_device": f"cuda:{torch.cuda.get_device_name()}",
        "device_peak_mb": torch.cuda.max_memory_allocated() / 2**20,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }


def run(argv: list[str]) -> dict[str, Any]:
    """Runs one workload in this process and returns its record."""
    args = parser().parse_args(argv)
    args.device = resolve_device(args.device)
    if args.device == "cpu":  # the same CPUs and thread count as our side
        cpus = measure.pin_process(args.threads, measure.parse_cpus(args.cpus))
    else:
        cpus = measure.available_cpus()
    measure.preload(PRELOAD)
    import torch

    torch.set_num_threads(len(cpus))
    if args.no_tf32:  # full fp32 products, as JAX_DEFAULT_MATMUL_PRECISION=highest
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    baseline = measure.current_rss_mb()
    timing, extra = _FUNCTIONS[args.workload](args)
    extra.update(_device_report(args))
    return measure.report(
        "diffusers", args, timing, baseline_rss_mb=baseline, peak_mb=measure.peak_rss_mb(),
        cpus=cpus, torch_threads=torch.get_num_threads(), extra=extra,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(measure.workload_main(run, preload_modules=PRELOAD))
