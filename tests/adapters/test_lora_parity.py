"""Our LoRA files load into diffusers + PEFT and compute the same logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import muse
from adapters.files import save_adapter_file
from adapters.inject import adapter_state_dict, inject_adapter
from adapters.params import AdapterParam, AdapterSpec
from muse.config import TransformerConfig
from muse.transformer import current_adapter_gate

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")
torch = pytest.importorskip("torch")


def _inputs(batch: int = 2, seed: int = 3):
    cfg = TransformerConfig.tiny()
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, (batch, cfg.sample_size, cfg.sample_size))
    ids[:, ::3, ::2] = cfg.mask_token_id
    hidden = rng.standard_normal((batch, 7, cfg.encoder_hidden_size)).astype(np.float32)
    pooled = rng.standard_normal((batch, cfg.cond_embed_dim)).astype(np.float32)
    micro = np.tile(np.array([[256, 256, 0, 0, 6]], np.float32), (batch, 1))
    return ids, hidden, pooled, micro


@pytest.mark.parity
def test_lora_file_gives_the_same_logits_in_diffusers(tiny_diffusers_dir, tiny_model_dir, tmp_path):
    ours = muse.load(tiny_model_dir).transformer
    # PyTorch-style names beyond q/k/v, and alpha / r = 2, so the scale must come through.
    spec = AdapterSpec(
        "lora",
        rank=4,
        alpha=8.0,
        lora_targets=("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj"),
    )
    index = inject_adapter(ours, spec, rngs=nnx.Rngs(0), gate_source=current_adapter_gate)
    flat = nnx.to_flat_state(nnx.state(ours, AdapterParam))
    keys = jax.random.split(jax.random.key(1), len(flat))
    for key, (_, variable) in zip(keys, flat, strict=True):
        value = variable.get_value()  # A and B both nonzero
        variable.set_value(0.3 * jax.random.normal(key, value.shape, value.dtype))
    nnx.update(ours, nnx.from_flat_state(flat))
    tensors = adapter_state_dict(ours, index)
    path = save_adapter_file(
        tmp_path / "lora.safetensors",
        tensors,
        spec,
        {"base_model": "tiny", "base_model_sha256": "0" * 64},
    )

    reference = diffusers.UVit2DModel.from_pretrained(tiny_diffusers_dir / "transformer").eval()
    reference.load_lora_adapter(
        str(path.parent), weight_name=path.name, prefix="transformer", adapter_name="style"
    )
    config = reference.peft_config["style"]
    assert (config.r, config.lora_alpha) == (4, 8.0)  # read from our header
    lora_weights = [k for k in reference.state_dict() if ".lora_" in k]
    assert len(lora_weights) == len(tensors)  # 12 attentions x 4 + 2 feed-forwards, A and B

    ids, hidden, pooled, micro = _inputs()
    with torch.no_grad():
        expected = reference(*(torch.from_numpy(a) for a in (ids, hidden, pooled, micro)))
    expected = expected.numpy().transpose(0, 2, 3, 1)  # [B, V, H, W] -> [B, H, W, V]
    got = np.asarray(ours(jnp.asarray(ids), hidden, pooled, micro))  # [B, H, W, V]
    base = np.asarray(ours(jnp.asarray(ids), hidden, pooled, micro, adapter_gate=jnp.zeros((2, 1))))
    assert np.abs(got - base).max() > 1e-1  # the LoRA changes the logits
    max_diff = float(np.abs(got - expected).max())
    print(f"LoRA parity max |diff| = {max_diff:.2e}")
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
