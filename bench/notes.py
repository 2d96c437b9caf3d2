"""What each workload runs on each side, in words: the `workloads` block of the JSON."""

from __future__ import annotations

WORKLOAD_NOTES = {
    "cfg_forward": (
        "B = 2 images, so the transformer sees 2B rows. ours:"
        " Pipeline.guided_logits(cfg_branches(prompts, [''] * B, 10), ids) (text cache warm);"
        " diffusers: UVit2DModel on the rows [negatives; prompts] with the embeddings"
        " AmusedPipeline computes (encoded once), then u + 10 (c - u)."
    ),
    "sampling": (
        "ours: Pipeline.generate(prompts, seed=0, guidance_scale=10, num_steps=12,"
        " batch_size=B), text-embedding cache cleared before each call; diffusers:"
        " AmusedPipeline(prompts, num_inference_steps=12, guidance_scale=10, generator,"
        " output_type='np'). Both: text encoding, 12 CFG steps, VQ decode."
    ),
    "styledrop_sampling": (
        "StyleDrop Eq. 4 (lambda_A 1, lambda_B 5), 12 steps, VQ decode, the same LoRA r16 q/k/v"
        " file on both sides. ours: attach_adapter + generate_styled, three branches in one"
        " batched forward per step (adapter gated per row), text cache cleared per call;"
        " diffusers + peft: load_lora_adapter, then per step enable_adapters() + one"
        " transformer call on the prompt rows and disable_adapters() + one call on"
        " [prompt; negative] rows (the two base branches batched: 2 calls per step, not 3),"
        " AmusedScheduler.step; prompts encoded per call."
    ),
    "train_step": (
        "batch 1: masking, forward, masked cross-entropy, backward, optimizer update. ours:"
        " make_train_step (jitted, as styledrop finetune) with a fresh r1, r2 or LoRA r16 q/k/v"
        " adapter, Adam; diffusers + peft: add_adapter(LoraConfig(r=16, lora_alpha=32,"
        " target_modules=[to_q, to_k, to_v])), AdamW, train_amused.py masking and loss. The one"
        " diffusers LoRA figure is the reference for all three of our kinds. bf16: ours"
        " muse.load(dtype='bfloat16') (fp32 parameters, bf16 compute); diffusers forward and"
        " loss under torch.autocast('cpu', dtype=torch.bfloat16) (fp32 weights)."
    ),
    "zoo_weights": (
        "The embedded zoo's committed weights on both sides: ours muse.load(zoo folder);"
        " diffusers the same tensors exported with the inverse of our conversion's layout"
        " transforms (bench.fixtures.export_diffusers, checked by converting back: every"
        " tensor equal) into AmusedPipeline.from_pretrained; the zoo U-ViT's position"
        " embedding, which diffusers lacks, is added to the output of project_to_hidden by a"
        " forward hook (bench.fixtures.add_position_embedding). Parity: cfg_forward logits and"
        " the VQ decode (pixels) of fixed tokens."
    ),
    "zoo_finetune": (
        "A whole fine-tuning run on the demo's style image (styledrop/data, caption 'a house',"
        " descriptor 'in blue ink line drawing style'), batch 8, N steps (--zoo-steps), fp32,"
        " from a loaded model (the load is outside the timed span); --zoo-runs timed runs, no"
        " warm-up run. ours:"
        " styledrop.finetune.finetune with a LoRA r16 q/k/v or r1 adapter (FinetuneConfig"
        " defaults: Adam at the kind's lr, 8 augmented crops tokenized and the prompt encoded"
        " once, a resumable checkpoint every 100 steps, adapter file at the end; the jitted step"
        " compiles in every run); diffusers + peft: the same crops tokenized with"
        " vqvae.encode + quantize, add_adapter(LoraConfig(r=16, lora_alpha=32, q/k/v)),"
        " AdamW lr 4e-4, train_amused.py masking and loss, loss.item() per step,"
        " save_lora_adapter at the end. The diffusers LoRA run is the reference for both of"
        " our kinds. zoo_finetune_step_*: median time between consecutive steps after the"
        " first (steady state, no compile); the runs' extra.first_step_s: time to the end of"
        " step 1 (tokenizing and encoding, on our side the compile)."
    ),
    "zoo_grid": (
        "8 images, one per demo subject, in one batch with the zoo's sampling settings from its"
        " model.json (at present K = 36 MaskGIT steps, guidance 1.5, choice temperature c = 1:"
        " from a fully masked grid that is AmusedScheduler's rule with temperature"
        " (c (K - 1) / K, 0); tokens drawn at softmax temperature 1, diffusers' rule, whatever"
        " model.json says; the run checks both sides used the same settings), VQ decode,"
        " a 2 x 4 grid. ours: Pipeline.generate(prompts, seed=0, batch_size=8,"
        " token_temperature=1) with the model's other defaults + make_grid, text cache cleared"
        " per call; diffusers: AmusedPipeline(...,"
        " output_type='latent') + the pipeline's VQ decode with the codebook width (its own"
        " decode assumes vq_embed_dim == latent_channels, false for the zoo) +"
        " postprocess('pil') + make_image_grid."
    ),
    "matmul": (
        "jax.jit(a @ b) vs torch.matmul on n x n matrices, GFLOP/s = 2 n^3 / time. The large"
        " fp32 one is each framework's peak for peak_fraction_*; 2048 in fp32 and bf16 shows"
        " CPU bf16 support (bf16 inputs and output)."
    ),
    "achieved_gflops": (
        "FLOPs of our guided forward's model call from XLA's HLO cost analysis (of the"
        " lowered program), divided by each side's median time (both compute the same"
        " function, so the same count serves both)."
    ),
    "peak_memory": (
        "VmHWM (peak RSS) of the process that ran the measurement: imports, model load and"
        " the runs (our processes also hold PyTorch + transformers for the CLIP text"
        " encoder). With --isolation fork it counts from the fork and leaves out library"
        " pages the child never touches: lower than, and not comparable with, process mode."
    ),
}
