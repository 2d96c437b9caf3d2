"""Assembling the trained zoo parts into one native model folder, with a manifest.

The base U-ViT, the VQ tokenizer and the text encoder are trained separately (each
resumable); this step copies their final files into the native layout that `muse.load`
reads (see `muse.checkpoint`), with the paper's decoding defaults (MaskGIT re-masking,
36 steps, choice temperature 4.5), and writes `manifest.json`: the sha256 of every file,
each part's training config and the data recipe version, so a rebuild can be checked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from muse import checkpoint
from muse.config import ModelConfig, SamplingConfig, TransformerConfig, VQConfig
from styledrop.zoo.train_base import CONFIG_FILE as BASE_CONFIG_FILE
from styledrop.zoo.train_base import TRANSFORMER_FILE

MANIFEST = "manifest.json"
ZOO_SOURCE = "styledrop-zoo/emoji-world"


def zoo_sampling(mask_token_id: int, guidance_scale: float = 3.0) -> SamplingConfig:
    """The StyleDrop paper's decoding defaults for the zoo base."""
    return SamplingConfig(
        mask_token_id=mask_token_id,
        decoding="maskgit",
        num_steps=36,
        temperature=4.5,
        guidance_scale=guidance_scale,
        aesthetic_score=6.0,
    )


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"Missing {path}: train that part first (styledrop zoo train).")
    return json.loads(path.read_text())


def assemble_zoo(
    base_dir: str | Path,
    vq_dir: str | Path,
    text_dir: str | Path,
    out_dir: str | Path,
    *,
    data_recipe_version: str = "",
    guidance_scale: float = 3.0,
) -> Path:
    """Writes the native model folder of the zoo from the three training run folders.

    Args:
        base_dir: Base U-ViT run (transformer.safetensors, transformer_config.json).
        vq_dir: VQ run (vqvae.safetensors, vq_config.json).
        text_dir: Text-encoder run (text_encoder/, tokenizer/).
        out_dir: Destination (replaced atomically).
        data_recipe_version: The dataset recipe the parts were trained on.
        guidance_scale: Default classifier-free guidance scale of the base.

    Returns:
        `out_dir`.
    """
    base_dir, vq_dir, text_dir, out_dir = map(Path, (base_dir, vq_dir, text_dir, out_dir))
    base_info = _read_json(base_dir / BASE_CONFIG_FILE)
    vq = VQConfig.from_dict(_read_json(vq_dir / "vq_config.json"))
    vq_train = vq_dir / "train_info.json"
    vq_info = json.loads(vq_train.read_text()) if vq_train.is_file() else {}
    transformer = TransformerConfig.from_dict(base_info["transformer"])
    config = ModelConfig(
        transformer=transformer,
        vq=vq,
        sampling=zoo_sampling(transformer.mask_token_id, guidance_scale),
        source=ZOO_SOURCE,
    )
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy2(base_dir / TRANSFORMER_FILE, staging / checkpoint.TRANSFORMER_FILE)
    shutil.copy2(vq_dir / "vqvae.safetensors", staging / checkpoint.VQ_FILE)
    for name in (checkpoint.TEXT_ENCODER_DIR, checkpoint.TOKENIZER_DIR):
        shutil.copytree(text_dir / name, staging / name)
    checkpoint.write_model_json(staging, config)
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    manifest = {
        "source": ZOO_SOURCE,
        "data_recipe_version": data_recipe_version,
        "files": {str(p.relative_to(staging)): checkpoint.sha256_file(p) for p in files},
        "training": {"base": base_info.get("train", {}), "vq": vq_info.get("train", {})},
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    checkpoint.replace_folder(staging, out_dir)
    return out_dir
