"""Muse / aMUSEd in JAX + Flax NNX: U-ViT, VQ tokenizer, text encoder, sampler, conversion."""
