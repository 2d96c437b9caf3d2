"""The files each zoo training run leaves in its run folder, named once.

The trainers write them, `compact_vq` and `assemble` read them, and the command line
reports from them. The weights and model folders themselves keep the native layout's
names (`muse.folder_layout`: `vqvae.safetensors`, `transformer.safetensors`,
`text_encoder/`, `tokenizer/`) and the judge folder is `styledrop.zoo.embedded.JUDGE_DIR`.
No JAX or PyTorch here, so reading a name costs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from muse.folder_layout import MODEL_JSON
from styledrop.zoo.embedded import MANIFEST

# `zoo train vq` and `zoo compact-vq`: the tokenizer's sizes (`muse.config.VQConfig`, with
# diffusers' field names) and the run record (settings, steps done, data recipe version,
# eval figures, and for a compacted tokenizer the compaction).
VQ_CONFIG_FILE = "vq_config.json"
VQ_INFO_FILE = "train_info.json"

# `zoo train base`: the U-ViT's `TransformerConfig` with the run record, and the token
# pool of (image tokens, caption) pairs.
BASE_CONFIG_FILE = "transformer_config.json"
POOL_FILE = "pool.npz"

# `zoo train vq` and `zoo train base`: one JSON line per step (and per evaluation).
TRAIN_LOG_FILE = "train_log.jsonl"

# `zoo train text`: the CLIP checkpoint (both towers; the vision tower lives only here),
# one JSON line per step, and the final evaluation with the run's settings.
TEXT_CHECKPOINT_FILE = "text_clip_checkpoint.pt"
TEXT_LOG_FILE = "text_train_log.jsonl"
TEXT_EVAL_FILE = "text_eval.json"

# `zoo train descriptor-invariance`: the student text encoder's checkpoint and its log
# (its record is the text encoder's `text_eval.json` with the fine-tune added).
INVARIANCE_CHECKPOINT_FILE = "invariance_checkpoint.pt"
INVARIANCE_LOG_FILE = "invariance_log.jsonl"

# `zoo train judge`: the same three for the judge CLIP.
JUDGE_CHECKPOINT_FILE = "judge_checkpoint.pt"
JUDGE_LOG_FILE = "judge_train_log.jsonl"
JUDGE_EVAL_FILE = "judge_eval.json"

# Inside the judge folder (open_clip's `local-dir` format): the model and preprocessing
# config, and the weights (float16).
JUDGE_CONFIG_FILE = "open_clip_config.json"
JUDGE_WEIGHTS_FILE = "open_clip_model.safetensors"


def vq_config_dict(folder: str | Path) -> dict:
    """The tokenizer's sizes from a VQ run folder or from an assembled zoo folder.

    Args:
        folder: A `zoo train vq` / `zoo compact-vq` run (`vq_config.json`), or a zoo folder
            (the committed one, say: its `model.json` holds the same sizes).

    Raises:
        FileNotFoundError: if the folder holds neither.
    """
    folder = Path(folder)
    if (folder / VQ_CONFIG_FILE).is_file():
        return json.loads((folder / VQ_CONFIG_FILE).read_text())
    if (folder / MODEL_JSON).is_file():
        return json.loads((folder / MODEL_JSON).read_text())["config"]["vq"]
    raise FileNotFoundError(
        f"{folder} has neither {VQ_CONFIG_FILE} nor {MODEL_JSON}: give a `zoo train vq` "
        "run folder or a zoo folder."
    )


def part_record(folder: str | Path, record_file: str, part: str) -> dict:
    """A part's training record (VQ, text encoder or judge); {} when there is none.

    Args:
        folder: The part's run folder (its `record_file`), or an assembled zoo (the
            committed one, say), whose manifest holds the record under `training.<part>`.
        record_file: The run's record file name (`VQ_INFO_FILE`, `TEXT_EVAL_FILE`, ...).
        part: "vq", "text" or "judge".
    """
    folder = Path(folder)
    if (folder / record_file).is_file():
        return json.loads((folder / record_file).read_text())
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return {}
    return json.loads(manifest.read_text()).get("training", {}).get(part, {})
