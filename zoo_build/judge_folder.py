"""The judge folder: open_clip's own local format, loadable offline by open_clip alone.

    model = open_clip.create_model("local-dir:/path/to/judge")    # eval mode, fp32
    tokenizer = open_clip.get_tokenizer("local-dir:/path/to/judge")
    # or: model, _, preprocess = open_clip.create_model_and_transforms("local-dir:...")

It holds `open_clip_config.json` (`model_cfg` and `preprocess_cfg`: 64 px, mean and std
0.5), `open_clip_model.safetensors` (the weights, stored in float16 to save space; open_clip
copies them into the float32 model) and the world tokenizer's files (a `CLIPTokenizer`,
see `zoo_build.world_tokenizer`), which open_clip loads through its `HFTokenizer` because
the text config names one. Images go in as [-1, 1] pixels (`contrastive.to_pixels`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from zoo_build.run_files import JUDGE_CONFIG_FILE, JUDGE_WEIGHTS_FILE

TOKENIZER_NAME = "emoji-world-clip-bpe"  # a label: open_clip reads the files in the folder
PIXEL_MEAN = (0.5, 0.5, 0.5)
PIXEL_STD = (0.5, 0.5, 0.5)


def build_judge(model_cfg: dict):
    """An open_clip `CLIP` from a `model_cfg` (what `create_model` builds from it)."""
    import open_clip

    return open_clip.CLIP(**model_cfg)


def load_judge(judge_dir: str | Path):
    """Loads the judge and its tokenizer offline (open_clip's local-dir format).

    Args:
        judge_dir: The judge folder.

    Returns:
        (model in eval mode, open_clip tokenizer: prompts -> int64 [B, context]).
    """
    import open_clip

    spec = f"local-dir:{Path(judge_dir).resolve()}"
    model = open_clip.create_model(spec)
    model.eval()
    return model, open_clip.get_tokenizer(spec)


def save_judge(model, model_cfg: dict, tokenizer, judge_dir: Path) -> Path:
    """Writes the judge folder (config, float16 weights, tokenizer files)."""
    from safetensors.torch import save_file

    judge_dir.mkdir(parents=True, exist_ok=True)
    image_size = model_cfg["vision_cfg"]["image_size"]
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "size": image_size,
            "mean": list(PIXEL_MEAN),
            "std": list(PIXEL_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }
    (judge_dir / JUDGE_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    state = {
        name: (value.to(torch.float16) if value.is_floating_point() else value).contiguous()
        for name, value in model.state_dict().items()
    }  # float16 weights; integer buffers (BatchNorm's step counts) keep their type
    save_file(state, str(judge_dir / JUDGE_WEIGHTS_FILE), metadata={"format": "pt"})
    tokenizer.save_pretrained(judge_dir)
    return judge_dir
