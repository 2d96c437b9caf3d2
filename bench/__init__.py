"""Benchmarks of our JAX port against the PyTorch reference (diffusers + peft), same weights.

For each configuration (`tiny`, `amused_256`, `amused_512`) random weights are created
once in diffusers, saved in the diffusers layout and converted to our native folder
(`bench.fixtures`), so both implementations compute the same function; for `zoo` the
embedded zoo's committed weights are exported the other way, into diffusers. Every workload
then runs once per implementation, each in its own process (`bench.ours`,
`bench.reference`), pinned to the same number of CPU threads; a process reports the
median of several timed repetitions after warm-up and its peak resident memory
(`bench.measure`). `bench.matmul` measures the matrix-multiply peak of the machine and
the CPU bf16 behaviour of both frameworks. `bench.run` orchestrates, prints one table
and writes JSON; `styledrop bench` is its command line.

Workloads (ours / diffusers + peft; details in `bench.ours` and `bench.reference`):

* `cfg_forward`: `Pipeline.guided_logits` / `UVit2DModel` on [negative; prompt] rows.
* `sampling`: `Pipeline.generate` / `AmusedPipeline.__call__` (12 steps, VQ decode).
* `styledrop_sampling`: `generate_styled` (Eq. 4, three branches in one batched forward
  per step) / a loop over the diffusers API: per step the LoRA on for the prompt rows,
  `disable_adapters()` for [prompt; negative] rows (two transformer calls).
* `train_step`: `make_train_step` with r1, r2 or LoRA / peft LoRA r16 on q/k/v, masked
  cross-entropy, AdamW (diffusers' `train_amused.py` recipe).
* `zoo_finetune` (zoo): a whole `styledrop.finetune` run (LoRA or r1) / the same
  fine-tuning written with diffusers + peft (LoRA), `--zoo-steps` steps.
* `zoo_grid` (zoo): 8 images with the zoo's sampling settings, VQ decode, a grid /
  `AmusedPipeline` with the same settings.
* `matmul`: `jax.jit(a @ b)` / `torch.matmul`.

Run it with `styledrop bench --config tiny --json out.json` or `python -m bench.run`.
"""
