"""Parity of muse.vq.VQModel with the diffusers VQModel (the aMUSEd VQ-GAN)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file

from muse import weights
from muse.config import VQConfig
from muse.vq import VQModel, vq_from_diffusers

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.parity

ATOL = 1e-4
# Non-square, so a height/width mix-up cannot pass.
HEIGHT, WIDTH = 16, 24

# Jitted once per session (nnx.jit caches on the function object).
encode = nnx.jit(VQModel.encode)
tokenize = nnx.jit(VQModel.tokenize)
decode = nnx.jit(VQModel.decode)


def diffusers_kwargs(config: VQConfig) -> dict:
    """The diffusers `VQModel` constructor arguments of an aMUSEd-style VQ."""
    return config.diffusers_kwargs()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A tiny random diffusers VQModel, its saved tensors, and a batch of images."""
    torch.manual_seed(0)
    config = VQConfig.tiny()
    model = diffusers.VQModel(**diffusers_kwargs(config)).eval()
    with torch.no_grad():
        # Norm init (ones / zeros) would hide a swapped scale and bias or a wrong
        # grouping; the default codebook (uniform +-1/32) would send every latent
        # to the same few codes.
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.add_(0.3 * torch.randn_like(module.weight))
                module.bias.add_(0.3 * torch.randn_like(module.bias))
        images = torch.rand(3, 3, HEIGHT, WIDTH)
        latents = model.encode(images).latents
        # Codes drawn from the latents themselves (plus noise) cover their distribution.
        flat = latents.permute(0, 2, 3, 1).reshape(-1, config.latent_channels)
        codebook = model.quantize.embedding.weight
        picks = torch.randperm(len(flat))[: len(codebook)]
        codebook.copy_(flat[picks] + 0.1 * flat.std(0) * torch.randn_like(codebook))
        # Centre the random decoder's output in [0, 1] so clipping hides little.
        model.decoder.conv_out.bias.add_(0.5)
    folder = tmp_path_factory.mktemp("vq")
    model.save_pretrained(folder)
    tensors = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    return config, model, tensors, images


@pytest.fixture(scope="module")
def ours(reference):
    config, _, tensors, _ = reference
    return vq_from_diffusers(config, tensors)


def to_nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(0, 2, 3, 1).numpy()


def test_latents_match(reference, ours):
    _, model, _, images = reference
    with torch.no_grad():
        expected = to_nhwc(model.encode(images).latents)
    got = np.asarray(encode(ours, to_nhwc(images)))
    assert got.shape == (3, HEIGHT // 2, WIDTH // 2, 4)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


def test_ids_match(reference, ours):
    _, model, _, images = reference
    with torch.no_grad():
        latents = model.encode(images).latents
        expected = model.quantize(latents)[2][2].reshape(3, HEIGHT // 2, WIDTH // 2).numpy()
    assert len(np.unique(expected)) >= 8  # the test exercises many codes
    ours_latents = np.asarray(encode(ours, to_nhwc(images)))

    # Exact equality is only meaningful away from ties. Moving a latent by d moves
    # each of its distances by at most |d|, so no id can flip where the best code
    # beats the runner-up by more than twice our latent error (plus float32 slack).
    flat = to_nhwc(latents).reshape(-1, 4).astype(np.float64)
    codes = model.quantize.embedding.weight.detach().numpy().astype(np.float64)
    best_two = np.sort(np.linalg.norm(flat[:, None] - codes[None], axis=-1), axis=-1)[:, :2]
    shift = np.linalg.norm(ours_latents.reshape(-1, 4) - flat, axis=-1)
    assert np.all(best_two[:, 1] - best_two[:, 0] > 2 * shift + 1e-5)

    got_from_latents = np.asarray(ours.quantize(to_nhwc(latents)))
    got_from_images = np.asarray(tokenize(ours, to_nhwc(images)))
    assert got_from_images.dtype == np.int32
    np.testing.assert_array_equal(got_from_latents, expected)
    np.testing.assert_array_equal(got_from_images, expected)


def test_decoded_pixels_match(reference, ours):
    config, model, _, _ = reference
    ids = torch.randint(0, config.num_vq_embeddings, (2, HEIGHT // 2, WIDTH // 2))
    with torch.no_grad():
        shape = (*ids.shape, config.latent_channels)
        decoded = model.decode(ids.reshape(-1), force_not_quantize=True, shape=shape).sample
        expected = to_nhwc(decoded.clip(0, 1))
    got = np.asarray(decode(ours, ids.numpy()))
    assert got.shape == (2, HEIGHT, WIDTH, 3)
    # Most pixels must be unclipped, or clipping would hide errors.
    assert ((expected > 0) & (expected < 1)).mean() > 0.5
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


def test_real_amused_checkpoint_layout_converts():
    # The meta device gives the real state-dict shapes without allocating 146M weights.
    config = VQConfig.amused()
    with torch.device("meta"):
        model = diffusers.VQModel(**diffusers_kwargs(config))
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert len(shapes) == 277
    assert shapes["quantize.embedding.weight"] == (8192, 64)
    abstract = nnx.eval_shape(lambda: VQModel(config, rngs=nnx.Rngs(0)))
    mapping = weights.check_torch_shapes(abstract, shapes, what="VQ")
    assert {torch_key for torch_key, _ in mapping.values()} == set(shapes)
    native = {name: value.shape for name, value in weights.flat_params(abstract, True).items()}
    assert native["encoder.down_blocks.0.resnets.1.conv1.kernel"] == (3, 3, 128, 128)
    assert native["decoder.up_blocks.4.resnets.0.conv_shortcut.kernel"] == (1, 1, 256, 128)


@pytest.mark.parametrize("problem", ["missing", "misshapen", "unexpected"])
def test_strict_loading_names_the_bad_key(reference, problem):
    config, _, tensors, _ = reference
    tensors = dict(tensors)
    key = "decoder.up_blocks.1.resnets.1.norm2.weight"
    if problem == "missing":
        del tensors[key]
    elif problem == "misshapen":
        tensors[key] = tensors[key][:-1]
    else:
        key = "decoder.mid_block.attentions.0.to_q.weight"
        tensors[key] = np.zeros((16, 16), np.float32)
    with pytest.raises(weights.WeightsError, match=re.escape(key)) as info:
        vq_from_diffusers(config, tensors)
    assert problem.replace("misshapen", "wrong shape") in str(info.value)


def test_attention_mid_block_is_refused():
    config = dataclasses.replace(VQConfig.tiny(), mid_block_add_attention=True)
    with pytest.raises(NotImplementedError, match="mid_block_add_attention"):
        VQModel(config, rngs=nnx.Rngs(0))
