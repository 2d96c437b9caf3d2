"""The Flax U-ViT computes the same function as diffusers' UVit2DModel."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from muse.config import TransformerConfig
from muse.transformer import UVit2D
from muse.weights import WeightsError, assign, check_torch_shapes, flat_params, from_torch_state

diffusers = pytest.importorskip("diffusers")


def _torch_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def _perturbed_reference(cfg: TransformerConfig, seed: int = 0):
    """A random diffusers UVit2DModel whose norm weights and GRN gamma/beta are not at init."""
    torch.manual_seed(seed)
    model = diffusers.UVit2DModel(**cfg.diffusers_kwargs()).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "gamma" in name or "beta" in name:
                param.add_(0.3 * torch.randn_like(param))
    return model


def _inputs(cfg: TransformerConfig, batch: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, (batch, cfg.sample_size, cfg.sample_size))
    ids[:, ::3, ::2] = cfg.mask_token_id
    hidden = rng.standard_normal((batch, 7, cfg.encoder_hidden_size)).astype(np.float32)
    pooled = rng.standard_normal((batch, cfg.cond_embed_dim)).astype(np.float32)
    micro = np.tile(np.array([[256, 256, 0, 0, 6]], np.float32), (batch, 1))
    micro[:, 4] = rng.uniform(4, 7, batch)
    return ids, hidden, pooled, micro


def converted(cfg: TransformerConfig, reference: torch.nn.Module, dtype=jnp.float32) -> UVit2D:
    model = UVit2D(cfg, dtype=dtype, rngs=nnx.Rngs(0))
    assign(model, from_torch_state(model, _torch_state(reference), "transformer"))
    return model


@pytest.mark.parity
def test_logits_match_diffusers_fp32():
    cfg = TransformerConfig.tiny()
    reference = _perturbed_reference(cfg)
    ours = converted(cfg, reference)
    ids, hidden, pooled, micro = _inputs(cfg, batch=3)
    with torch.no_grad():
        expected = reference(
            torch.from_numpy(ids),
            torch.from_numpy(hidden),
            torch.from_numpy(pooled),
            torch.from_numpy(micro),
        ).numpy()  # [B, codebook, H, W]
    got = np.asarray(ours(jnp.asarray(ids), hidden, pooled, micro))  # [B, H, W, codebook]
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parity
def test_logits_match_without_resampling_or_kv_mapper():
    """The amused-256 shape: no down/up sampling; hidden == block width drops kv_mapper."""
    cfg = TransformerConfig.tiny()
    cfg = TransformerConfig(
        **{
            **cfg.to_dict(),
            "downsample": False,
            "upsample": False,
            "hidden_size": 16,
            "num_attention_heads": 2,
        }
    )
    reference = _perturbed_reference(cfg, seed=3)
    ours = converted(cfg, reference)
    ids, hidden, pooled, micro = _inputs(cfg, batch=2)
    with torch.no_grad():
        expected = reference(*(torch.from_numpy(a) for a in (ids, hidden, pooled, micro))).numpy()
    got = np.asarray(ours(jnp.asarray(ids), hidden, pooled, micro))
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parity
def test_our_position_embedding_matches_diffusers_with_it_hooked_in():
    """The zoo's U-ViT adds a position embedding; the benchmark's reference hooks in the same."""
    from bench.fixtures import add_position_embedding

    cfg = dataclasses.replace(TransformerConfig.tiny(), position_embedding=True)
    reference = _perturbed_reference(cfg, seed=4)
    cells = (cfg.sample_size // 2) ** 2  # the tiny config downsamples
    rng = np.random.default_rng(5)
    add_position_embedding(reference, rng.standard_normal((cells, cfg.hidden_size)))
    ours = converted(cfg, reference)
    assert np.asarray(flat_params(ours)["position_embedding"]).any()
    ids, hidden, pooled, micro = _inputs(cfg, batch=2)
    with torch.no_grad():
        expected = reference(*(torch.from_numpy(a) for a in (ids, hidden, pooled, micro))).numpy()
    got = np.asarray(ours(jnp.asarray(ids), hidden, pooled, micro))
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parity
def test_bf16_compute_stays_close_to_fp32():
    cfg = TransformerConfig.tiny()
    reference = _perturbed_reference(cfg)
    fp32 = converted(cfg, reference)
    bf16 = converted(cfg, reference, dtype=jnp.bfloat16)
    ids, hidden, pooled, micro = _inputs(cfg, batch=2)
    a = np.asarray(fp32(jnp.asarray(ids), hidden, pooled, micro))
    b = np.asarray(bf16(jnp.asarray(ids), hidden, pooled, micro))
    assert b.dtype == np.float32
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()
    # Parameters stay float32 whatever the compute dtype.
    assert all(v.dtype == np.float32 for v in flat_params(bf16).values())


@pytest.mark.parity
@pytest.mark.parametrize(
    ("preset", "count"), [(TransformerConfig.amused_256, 474), (TransformerConfig.amused_512, 478)]
)
def test_real_amused_shapes_convert(preset, count):
    """The real configs: diffusers builds them on the meta device; we check names and shapes."""
    cfg = preset()
    with torch.device("meta"):
        reference = diffusers.UVit2DModel(**cfg.diffusers_kwargs())
    shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert len(shapes) == count
    abstract = nnx.eval_shape(lambda: UVit2D(cfg, rngs=nnx.Rngs(0)))
    assert len(check_torch_shapes(abstract, shapes, "transformer")) == count


def test_missing_and_misshapen_tensors_are_named():
    cfg = TransformerConfig.tiny()
    abstract = nnx.eval_shape(lambda: UVit2D(cfg, rngs=nnx.Rngs(0)))
    reference = diffusers.UVit2DModel(**cfg.diffusers_kwargs())
    state = _torch_state(reference)
    del state["mlm_layer.conv2.weight"]
    state["encoder_proj.weight"] = np.zeros((3, 3), np.float32)
    state["extra.weight"] = np.zeros(1, np.float32)
    with pytest.raises(WeightsError) as info:
        from_torch_state(abstract, state, "transformer")
    message = str(info.value)
    assert "mlm_layer.conv2.weight" in message
    assert "encoder_proj.weight" in message
    assert "extra.weight" in message
