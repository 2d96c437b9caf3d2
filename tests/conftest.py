"""Shared fixtures: tiny random checkpoints in the diffusers layout, built in the test run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from muse.config import TransformerConfig, VQConfig

# Nothing in the tests may reach the network: every model is built in the test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def perturb_norms(model, scale: float = 0.3) -> None:
    """Adds noise to every norm weight / GRN gamma and beta: init values hide port bugs."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "gamma" in name or "beta" in name:
                param.add_(scale * torch.randn_like(param))


def write_tiny_diffusers_checkpoint(root: Path, seed: int = 0, fp16: bool = False) -> Path:
    """Writes a random aMUSEd-layout folder with the `tiny` configs (every branch on).

    Args:
        root: Destination folder (created).
        seed: Torch seed for the random weights.
        fp16: Save the `.fp16` safetensors variants instead of full precision.

    Returns:
        `root`.
    """
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from muse.tokenizer import build_open_clip_tokenizer

    torch.manual_seed(seed)
    tcfg = TransformerConfig.tiny()
    vcfg = VQConfig.tiny()
    variant = "fp16" if fp16 else None
    transformer = diffusers.UVit2DModel(**tcfg.to_dict())
    perturb_norms(transformer)
    vq = diffusers.VQModel(**vcfg.diffusers_kwargs())
    perturb_norms(vq)
    with torch.no_grad():
        vq.quantize.embedding.weight.normal_()
    tokenizer = build_open_clip_tokenizer()
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=tcfg.encoder_hidden_size,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=tcfg.cond_embed_dim,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModelWithProjection(text_config)
    dtype = torch.float16 if fp16 else torch.float32
    for name, module in (
        ("transformer", transformer),
        ("vqvae", vq),
        ("text_encoder", text_encoder),
    ):
        module.to(dtype).save_pretrained(root / name, variant=variant, safe_serialization=True)
    tokenizer.save_pretrained(root / "tokenizer")
    scheduler = diffusers.AmusedScheduler(mask_token_id=tcfg.mask_token_id)
    scheduler.save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "AmusedPipeline"}))
    return root


@pytest.fixture(scope="session")
def make_tiny_diffusers():
    """The checkpoint writer itself, for tests that need a variant (fp16, another seed)."""
    return write_tiny_diffusers_checkpoint


@pytest.fixture(scope="session")
def tiny_diffusers_dir(tmp_path_factory) -> Path:
    """A tiny random aMUSEd checkpoint in diffusers layout (float32)."""
    return write_tiny_diffusers_checkpoint(tmp_path_factory.mktemp("diffusers") / "tiny-amused")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_diffusers_dir, tmp_path_factory) -> Path:
    """The tiny checkpoint converted to the native folder."""
    from muse.convert import convert_diffusers

    return convert_diffusers(tiny_diffusers_dir, tmp_path_factory.mktemp("native") / "tiny")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
