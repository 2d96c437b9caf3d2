"""Building the embedded model zoo: datasets, trainers, compaction, assembly and the report.

Runs on CPU and on a GPU unchanged (JAX for the VQ tokenizer and the base U-ViT, PyTorch
for the text encoder and the judge CLIP). `dataset` renders the world's draws into
training files; `train_vq`, `compact_vq` / `refit_decoder`, `train_text_encoder`,
`train_judge` and `train_base` train the parts, each resumable; `assemble` writes the
committed zoo folder and `report` scores it. What the zoo needs at run time is
`styledrop.zoo`. The `styledrop zoo ...` commands (`cli.zoo`) run these steps.
"""
