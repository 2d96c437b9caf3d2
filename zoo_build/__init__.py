"""Building the embedded model zoo: datasets, trainers, compaction, assembly and the report.

Runs on CPU and on a GPU unchanged (JAX for the VQ tokenizer and the base U-ViT, PyTorch
for the text encoder and the judge CLIP). What the zoo needs at run time is
`styledrop.zoo`; the `styledrop zoo ...` commands (`cli.zoo`) run these steps.

- Data: `dataset` renders the world's draws into training files.
- VQ tokenizer: `vq_train_config` (settings), `vq_step` (the jitted step with the EMA
  codebook), `vq_metrics` (PSNR, codebook use), `train_vq` (the loop, export, loading);
  `compact_vq` and `refit_decoder` shrink a trained codebook.
- The two CLIPs: `world_tokenizer` (CLIP's BPE cut to the world's text), `contrastive`
  (batches, augmentation, loss, checkpoints and the step loop both share), `zero_shot`
  (top-1 over the vocabulary), `train_text_encoder`, `train_judge` and `judge_folder`
  (the judge's open_clip folder).
- Base U-ViT: `train_base`.
- Shared: `schedule` (warm-up + cosine), `step_rate` (speed and time left), `run_files`
  (the files of each run folder).
- The zoo: `assemble` writes the committed zoo folder, `report` scores it.
"""
