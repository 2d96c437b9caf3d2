"""Conversion of a diffusers folder and generation through the Python API."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import muse
from muse import checkpoint
from muse.convert import ConversionError, convert_diffusers
from muse.weights import WeightsError


def test_converted_folder_has_native_layout(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {
        "model.json",
        "transformer.safetensors",
        "vqvae.safetensors",
        "text_encoder",
        "tokenizer",
    } <= names
    record = json.loads((tiny_model_dir / "model.json").read_text())
    assert record["sha256"]["transformer.safetensors"] == checkpoint.sha256_file(
        tiny_model_dir / "transformer.safetensors"
    )
    assert record["config"]["sampling"]["mask_token_id"] == 39


@pytest.mark.parity
def test_loaded_pipeline_matches_diffusers_modules(tiny_diffusers_dir, tiny_model_dir):
    """Each converted component computes what its diffusers original computes."""
    import diffusers
    from transformers import CLIPTextModelWithProjection

    pipe = muse.load(tiny_model_dir)
    reference = diffusers.UVit2DModel.from_pretrained(tiny_diffusers_dir / "transformer").eval()
    text_model = CLIPTextModelWithProjection.from_pretrained(tiny_diffusers_dir / "text_encoder")
    prompts = ["a cat", "a red bus in the snow"]
    emb = pipe.text_encoder.encode(prompts)
    ids = pipe.text_encoder.tokenizer(
        prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        out = text_model(ids, output_hidden_states=True)
    np.testing.assert_allclose(emb.hidden_states, out.hidden_states[-2].numpy(), atol=1e-5)
    np.testing.assert_allclose(emb.pooled, out.text_embeds.numpy(), atol=1e-5)

    tokens = np.random.default_rng(0).integers(0, 40, (2, 8, 8))
    micro = pipe.micro_conds(2)
    with torch.no_grad():
        expected = reference(
            torch.from_numpy(tokens),
            out.hidden_states[-2],
            out.text_embeds,
            torch.from_numpy(micro),
        ).numpy()
    got = np.asarray(pipe.transformer(tokens, emb.hidden_states, emb.pooled, micro))
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, atol=1e-4, rtol=1e-4)
    assert micro[0].tolist() == [16, 16, 0, 0, 6]  # 8 tokens x factor 2, crop (0, 0), score 6


def test_generate_is_deterministic_and_shaped(tiny_model_dir):
    pipe = muse.load(tiny_model_dir)
    images = pipe.generate(["a cat", "a dog"], num_images_per_prompt=2, seed=3, batch_size=3)
    assert images.shape == (4, 16, 16, 3)
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    again = pipe.generate(["a cat", "a dog"], num_images_per_prompt=2, seed=3, batch_size=3)
    np.testing.assert_array_equal(images, again)
    other = pipe.generate(["a cat", "a dog"], num_images_per_prompt=2, seed=4, batch_size=3)
    assert not np.array_equal(images, other)


def test_the_token_temperature_comes_from_model_json_and_older_folders_sample_at_one(
    tiny_model_dir, tmp_path
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    record = json.loads((folder / "model.json").read_text())
    record["config"]["sampling"].pop("token_temperature", None)  # as folders written before it
    (folder / "model.json").write_text(json.dumps(record))
    assert muse.load(folder).decode_config().token_temperature == 1.0
    record["config"]["sampling"]["token_temperature"] = 0.05
    (folder / "model.json").write_text(json.dumps(record))
    pipe = muse.load(folder)
    assert pipe.decode_config().token_temperature == 0.05
    sharp = pipe.generate(["a cat", "a dog"], num_images_per_prompt=2, seed=3)
    explicit = pipe.generate(
        ["a cat", "a dog"], num_images_per_prompt=2, seed=3, token_temperature=0.05
    )
    at_one = pipe.generate(
        ["a cat", "a dog"], num_images_per_prompt=2, seed=3, token_temperature=1.0
    )
    np.testing.assert_array_equal(sharp, explicit)
    assert not np.array_equal(sharp, at_one)


def test_prompt_embeddings_are_computed_once(tiny_model_dir):
    pipe = muse.load(tiny_model_dir)
    calls = []
    hook = pipe.text_encoder.model.register_forward_hook(lambda *a: calls.append(1))
    pipe.generate(["a cat"] * 3, num_steps=4, batch_size=2)
    pipe.generate(["a cat"], num_steps=4, batch_size=2)
    hook.remove()
    assert len(calls) == 2  # "a cat" and the empty negative prompt, each once


def test_fp16_variant_converts(tmp_path, make_tiny_diffusers):
    """fp16 safetensors variants are read and stored as float32 with the same values."""
    from safetensors.numpy import load_file

    src = make_tiny_diffusers(tmp_path / "fp16", fp16=True)
    assert (src / "transformer" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    out = convert_diffusers(src, tmp_path / "native")
    half = load_file(str(src / "transformer" / "diffusion_pytorch_model.fp16.safetensors"))
    native = load_file(str(out / "transformer.safetensors"))
    assert all(v.dtype == np.float32 for v in native.values())
    np.testing.assert_array_equal(
        native["mlm_layer.conv2.kernel"][0, 0],
        half["mlm_layer.conv2.weight"][:, :, 0, 0].T.astype(np.float32),
    )
    images = muse.load(out).generate("a cat", num_steps=2)
    assert images.shape == (1, 16, 16, 3)


def test_missing_tensor_is_named_and_nothing_written(tmp_path, tiny_diffusers_dir):
    import shutil

    from safetensors.numpy import load_file, save_file

    src = tmp_path / "broken"
    shutil.copytree(tiny_diffusers_dir, src)
    path = src / "transformer" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    del tensors["mlm_layer.conv2.weight"]
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match=r"mlm_layer\.conv2\.weight"):
        convert_diffusers(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial").exists()


def test_bad_sources_have_clear_errors(tmp_path, tiny_model_dir):
    with pytest.raises(ConversionError, match="not in the local Hugging Face cache"):
        convert_diffusers("nobody/no-such-model", tmp_path / "a")
    with pytest.raises(ConversionError, match="missing"):
        convert_diffusers(tmp_path, tmp_path / "b")
    with pytest.raises(ConversionError, match="exists"):
        convert_diffusers(tmp_path, tiny_model_dir)
    with pytest.raises(checkpoint.CheckpointError, match="not a converted model"):
        muse.load(tmp_path)


def test_generation_compiles_once_for_a_shape(tiny_model_dir):
    """New prompts, seeds and guidance scales reuse the compiled decode loop."""
    from muse import pipeline

    pipe = muse.load(tiny_model_dir)
    pipe.generate(["warm", "up"], num_steps=3, batch_size=2)  # chunks of 2 images
    before = pipeline._sample_tokens._cache_size()
    pipe.generate(
        ["a cat", "a dog", "a bus"],
        num_steps=3,
        batch_size=2,
        seed=5,
        guidance_scale=4.0,
        negative_prompt="blurry",
    )
    assert pipeline._sample_tokens._cache_size() == before


def test_convert_from_the_hugging_face_cache_by_repo_id(tmp_path, tiny_diffusers_dir, monkeypatch):
    """A repo id resolves to the snapshot in the local cache (laid out as huggingface_hub does)."""
    import shutil

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-amused" / "snapshots" / ("ab" * 20)
    shutil.copytree(tiny_diffusers_dir, snapshot)
    (cache / "models--someone--tiny-amused" / "refs").mkdir()
    (cache / "models--someone--tiny-amused" / "refs" / "main").write_text("ab" * 20)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    out = convert_diffusers("someone/tiny-amused", tmp_path / "native")
    assert checkpoint.read_model_json(out)["config"]["source"] == "someone/tiny-amused"
