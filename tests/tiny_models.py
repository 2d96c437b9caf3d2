"""Tiny random model pieces the tests build: a factor-8 VQ-GAN and CLIP text towers."""

from __future__ import annotations

from muse.config import VQConfig

# A factor-8 VQ-GAN (three downsamplings) small enough to train in a test.
TINY_VQ = VQConfig(
    block_out_channels=(8, 8, 16, 16),
    layers_per_block=1,
    latent_channels=4,
    num_vq_embeddings=16,
    norm_num_groups=4,
)


def tiny_vq(seed: int = 0):
    """A `VQModel` of `TINY_VQ` with random weights."""
    from flax import nnx

    from muse.vq import VQModel

    return VQModel(TINY_VQ, rngs=nnx.Rngs(seed))


def tiny_text_config(
    tokenizer, hidden_size: int = 16, intermediate_size: int = 32, projection_dim: int = 8
):
    """A 2-layer, 2-head `CLIPTextConfig` for `tokenizer` (77 positions, its special ids)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=projection_dim,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
