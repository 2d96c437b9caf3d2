"""Base U-ViT training on a small emoji-world build: learning and resume identity."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from safetensors.numpy import load_file
from transformers import CLIPTextModelWithProjection

from muse.text_encoder import TextEncoder
from muse.tokenizer import build_open_clip_tokenizer
from tests.tiny_models import tiny_text_config, tiny_vq
from zoo_build.dataset import build_dataset, load_dataset, recipe_version
from zoo_build.descriptors import HELDOUT_DESCRIPTORS, made_up_words
from zoo_build.train_base import BaseTrainConfig, build_pool, train_base


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 6-subject dataset, a random factor-8 VQ and a random tiny text encoder."""
    import torch

    data = tmp_path_factory.mktemp("world")
    build_dataset(
        data, subjects=["penguin", "banana", "dog", "rocket", "house", "letter_a"], heldout=False
    )
    vq = tiny_vq()
    torch.manual_seed(0)
    tokenizer = build_open_clip_tokenizer()
    text = CLIPTextModelWithProjection(tiny_text_config(tokenizer))
    return data, vq, TextEncoder(text, tokenizer)


# bfloat16 is what `zoo build` computes in on a GPU ("auto"); the CPU suite trains in it too.
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_base_training_learns(world, tmp_path, dtype):
    data, vq, text = world
    config = BaseTrainConfig(
        width=32, steps=40, batch_size=16, learning_rate=3e-3, warmup_steps=5, checkpoint_every=0,
        dtype=dtype,
    )  # fmt: skip
    path = train_base(data, vq, text, tmp_path, config)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    first = np.mean([r["loss"] for r in log[:5]])
    last = np.mean([r["loss"] for r in log[-5:]])
    assert last < 0.8 * first, (first, last)
    info = json.loads((tmp_path / "transformer_config.json").read_text())
    assert info["transformer"]["codebook_size"] == 16
    assert info["transformer"]["sample_size"] == 8  # 64 px / factor 8
    assert info["machine"]["jax_backend"] == "cpu" and info["machine"]["cpu"]
    weights = load_file(str(path))
    assert len(weights) > 0
    # Parameters stay float32 whatever the compute dtype.
    assert {w.dtype for w in weights.values()} == {np.dtype(np.float32)}


def test_pool_holds_the_canonical_framing_and_repeats_only_the_plain_draw(world):
    data, vq, text = world
    _, records = load_dataset(data)
    plain = [r for r in records if r["split"] == "base" and r["draw"] == 0]
    styled = [r for r in records if r["split"] == "canonical"]
    jittered = [r for r in records if r["split"] == "base" and r["draw"] > 0]
    assert len(plain) == 6 and len(styled) == 6 * 8 and all(r["styles"] for r in styled)

    def pairs(chosen):
        return sum(min(2, len(r["captions"])) for r in chosen)

    once, summary = build_pool(data, vq, text, captions_per_image=2, canonical_repeats=0)
    assert summary["images"] == len(plain) + len(styled)
    # The run records the data it trained on: the dataset's recipe and its 8 canonical draws.
    assert summary["data_recipe_version"] == recipe_version(data)
    assert summary["data_draws"]["canonical"] == 8
    assert summary["pairs"] == pairs(plain) + pairs(styled)
    _, with_jitter = build_pool(data, vq, text, 2, canonical_repeats=0, jittered_draws=True)
    assert with_jitter["pairs"] == summary["pairs"] + pairs(jittered)

    thrice, summary_thrice = build_pool(data, vq, text, captions_per_image=2, canonical_repeats=2)
    assert summary_thrice["pairs"] == summary["pairs"] + 2 * pairs(plain)
    assert thrice.prompts == once.prompts  # no new captions, only repeated pairs
    # Every extra row is a copy of a plain canonical (grid, caption) pair already in the pool.
    rows_once = [(np.asarray(once.ids[i]).tobytes(), int(once.prompt_index[i]))
                 for i in range(len(once.prompt_index))]  # fmt: skip
    rows_thrice = [(np.asarray(thrice.ids[i]).tobytes(), int(thrice.prompt_index[i]))
                   for i in range(len(thrice.prompt_index))]  # fmt: skip
    assert set(rows_thrice) == set(rows_once)
    plain_prompts = {once.prompts.index(c) for r in plain for c in r["captions"][:2]}
    for pair in set(rows_once):
        expected = 3 if pair[1] in plain_prompts else 1
        assert rows_thrice.count(pair) == expected * rows_once.count(pair)


@pytest.mark.parametrize("words", ["open", "curated"])
def test_descriptor_pairs_append_made_up_descriptors_to_the_same_images(world, words):
    data, vq, text = world
    plain, summary = build_pool(data, vq, text, captions_per_image=1)
    described, with_pairs = build_pool(
        data, vq, text, captions_per_image=1, descriptor_pairs=2, descriptor_words=words
    )
    assert with_pairs["images"] == summary["images"]
    assert with_pairs["pairs"] == summary["pairs"] + 2 * summary["images"]
    extra = [p for p in described.prompts if p not in set(plain.prompts)]
    assert set(plain.prompts) <= set(described.prompts) and len(extra) > 0
    made_up = made_up_words(words) - {"in", "style", "the", "of", "a", "as"}
    for prompt in extra:  # "<first caption> <made-up descriptor>"
        assert any(prompt.startswith(c + " ") for c in plain.prompts[1:])
        tail = prompt.replace(",", "").split()[-3:]
        identifier = re.compile(r"\[.*\]|<.*>|[a-z]{3}")  # "[Q*]", "<word>", "zqv"
        assert any(w in made_up or identifier.fullmatch(w) for w in tail), prompt
        assert not any(d in prompt for d in HELDOUT_DESCRIPTORS)
    # Each described pair's target is the grid of an image whose own caption starts it.
    for row in range(len(described.prompt_index)):
        prompt = described.prompts[int(described.prompt_index[row])]
        if prompt in extra:
            grids = [
                np.asarray(plain.ids[i]).tobytes()
                for i in range(len(plain.prompt_index))
                if prompt.startswith(plain.prompts[int(plain.prompt_index[i])] + " ")
            ]
            assert np.asarray(described.ids[row]).tobytes() in grids


def test_settings_added_later_keep_earlier_fingerprints():
    earlier = BaseTrainConfig()
    assert "descriptor_pairs" not in earlier.fingerprint() and "dtype" not in earlier.fingerprint()
    assert BaseTrainConfig(descriptor_pairs=2).fingerprint() != earlier.fingerprint()
    assert BaseTrainConfig(dtype="bfloat16").fingerprint() != earlier.fingerprint()
    assert "downsample" not in earlier.fingerprint()
    assert BaseTrainConfig(downsample=True).fingerprint() != earlier.fingerprint()
    assert "position_embedding" not in earlier.fingerprint()
    assert BaseTrainConfig(position_embedding=True).fingerprint() != earlier.fingerprint()
    # Descriptors came from the curated list before the word source was a setting.
    described = BaseTrainConfig(descriptor_pairs=2, descriptor_words="curated")
    assert "descriptor_words" not in described.fingerprint()
    opened = BaseTrainConfig(descriptor_pairs=2)
    assert opened.descriptor_words == "open"
    assert '"descriptor_words": "open"' in opened.fingerprint()
    assert "descriptor_words" not in earlier.fingerprint()  # no pairs: the source is moot
    with pytest.raises(ValueError, match="descriptor_words"):
        BaseTrainConfig(descriptor_words="closed")
    with pytest.raises(ValueError, match="dtype"):
        BaseTrainConfig(dtype="float16")


def test_a_downsampled_base_trains_and_records_its_halved_grid(world, tmp_path):
    data, vq, text = world
    config = BaseTrainConfig(
        width=32, steps=2, batch_size=4, warmup_steps=1, checkpoint_every=0, downsample=True
    )
    trained = load_file(str(train_base(data, vq, text, tmp_path, config)))
    info = json.loads((tmp_path / "transformer_config.json").read_text())
    assert info["transformer"]["downsample"] and info["transformer"]["upsample"]
    assert info["transformer"]["sample_size"] == 8  # the token grid; the layers see 4 x 4
    assert any("downsample" in key for key in trained)
    assert any("upsample" in key for key in trained)
    assert all(np.isfinite(value).all() for value in trained.values())


def test_base_training_resumes_bit_identically(world, tmp_path):
    data, vq, text = world
    config = BaseTrainConfig(width=32, steps=4, batch_size=4, warmup_steps=1, checkpoint_every=2)
    straight = train_base(data, vq, text, tmp_path / "a", config)
    calls = {"n": 0}

    def stop_after_two():
        calls["n"] += 1
        return calls["n"] >= 2

    assert train_base(data, vq, text, tmp_path / "b", config, should_stop=stop_after_two) is None
    resumed = train_base(data, vq, text, tmp_path / "b", config)
    a, b = load_file(str(straight)), load_file(str(resumed))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_run_shorter_than_its_warmup_trains(world, tmp_path):
    data, vq, text = world
    config = BaseTrainConfig(width=32, steps=2, batch_size=4, warmup_steps=5, checkpoint_every=0)
    weights = train_base(data, vq, text, tmp_path / "short", config)
    trained = load_file(str(weights))
    info = json.loads((tmp_path / "short" / "transformer_config.json").read_text())
    assert info["steps_done"] == 2 and info["complete"]
    assert all(np.isfinite(value).all() for value in trained.values())


def test_assembled_zoo_folder_loads_and_generates(world, tmp_path):
    """Base + VQ + text encoder runs assemble into a native folder `muse.load` can use."""
    import dataclasses

    import muse
    from muse import weights
    from muse.checkpoint import sha256_file
    from styledrop.guidance import folder_guidance, model_guidance
    from styledrop.terms import DEFAULT_LAMBDA_B
    from zoo_build.assemble import (
        ZOO_CHOICE_TEMPERATURE,
        ZOO_CONTENT_FIRST,
        ZOO_TOKEN_TEMPERATURE,
        assemble_zoo,
    )

    data, vq, text = world
    config = BaseTrainConfig(width=32, steps=2, batch_size=4, warmup_steps=1, checkpoint_every=0)
    train_base(data, vq, text, tmp_path / "base", config)
    (tmp_path / "vq").mkdir()
    weights.save_params(vq, tmp_path / "vq" / "vqvae.safetensors")
    (tmp_path / "vq" / "vq_config.json").write_text(json.dumps(vq.config.to_dict()))
    (tmp_path / "vq" / "train_info.json").write_text(json.dumps({"steps_done": 7}))
    text.model.save_pretrained(tmp_path / "text" / "text_encoder")
    text.tokenizer.save_pretrained(tmp_path / "text" / "tokenizer")
    out = assemble_zoo(
        tmp_path / "base",
        tmp_path / "vq",
        tmp_path / "text",
        tmp_path / "zoo",
        data_recipe_version="test",
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert "transformer.safetensors" in manifest["files"]
    pipe = muse.load(out)
    assert pipe.config.sampling.decoding == "maskgit" and pipe.config.sampling.num_steps == 36
    assert pipe.decode_config().temperature == ZOO_CHOICE_TEMPERATURE  # the zoo's, not 4.5
    assert pipe.decode_config().token_temperature == ZOO_TOKEN_TEMPERATURE < 1
    assert model_guidance(pipe.config.sampling).lambda_b == DEFAULT_LAMBDA_B  # stores none
    assert model_guidance(pipe.config.sampling).content_first == ZOO_CONTENT_FIRST > 0
    images = pipe.generate("a penguin", num_steps=4)
    assert images.shape == (1, 64, 64, 3)
    # A base warm-started from this zoo's transformer keeps the first run in its manifest.
    more = BaseTrainConfig(width=32, steps=2, batch_size=4, warmup_steps=1, checkpoint_every=0,
                           init_from=sha256_file(out / "transformer.safetensors"))  # fmt: skip
    train_base(
        data, vq, text, tmp_path / "more", more, init_weights=out / "transformer.safetensors"
    )
    # The tokenizer and text encoder may come from the zoo folder itself (the committed
    # zoo's, say): its VQ sizes and its record of the VQ's training are kept.
    again = assemble_zoo(
        tmp_path / "more", out, out, out, styledrop_lambda_b=0.5, styledrop_content_first=0.0
    )
    assert folder_guidance(again).lambda_b == 0.5  # the zoo's own, stored in model.json
    assert folder_guidance(again).content_first == 0.0  # the paper's rule, as asked
    renewed = json.loads((again / "manifest.json").read_text())
    lineage = renewed["training"]["base"]
    assert lineage["train"]["steps"] == 2 and lineage["init"] == manifest["training"]["base"]
    assert "init" not in manifest["training"]["base"]
    assert renewed["training"]["vq"] == {"steps_done": 7} == manifest["training"]["vq"]
    assert renewed["files"]["vqvae.safetensors"] == manifest["files"]["vqvae.safetensors"]
    assert muse.load(again).config.vq == pipe.config.vq
    # The same base assembled again with another part (here the text encoder) keeps it.
    text.model.save_pretrained(tmp_path / "text2" / "text_encoder")
    text.tokenizer.save_pretrained(tmp_path / "text2" / "tokenizer")
    third = json.loads(
        (
            assemble_zoo(tmp_path / "more", out, tmp_path / "text2", out) / "manifest.json"
        ).read_text()
    )
    assert third["training"]["base"] == lineage
    # So does the same run whose record a rerun of the finished command rewrote.
    record = json.loads((tmp_path / "more" / "transformer_config.json").read_text())
    record["data_draws"] = {"canonical": 8}
    (tmp_path / "more" / "transformer_config.json").write_text(json.dumps(record))
    fourth = json.loads(
        (assemble_zoo(tmp_path / "more", out, out, out) / "manifest.json").read_text()
    )
    assert fourth["training"]["base"]["init"] == lineage["init"]
    assert fourth["training"]["base"]["data_draws"] == {"canonical": 8}
    # A base trained in pieces keeps each piece's record, checked against the next's start.
    start = tmp_path / "more" / "transformer.safetensors"
    piece = dataclasses.replace(more, init_from=sha256_file(start), seed=1)
    train_base(data, vq, text, tmp_path / "piece", piece, init_weights=start)
    pieces = assemble_zoo(
        tmp_path / "piece", out, out, tmp_path / "pieces", lineage_from=out,
        earlier_base_runs=[tmp_path / "more"],
    )  # fmt: skip
    chain = json.loads((pieces / "manifest.json").read_text())["training"]["base"]
    assert chain["train"]["seed"] == 1 and chain["init"]["data_draws"] == {"canonical": 8}
    assert chain["init"]["init"] == manifest["training"]["base"]  # back to the first zoo
    with pytest.raises(ValueError, match="is not where the base run after it started"):
        assemble_zoo(tmp_path / "piece", out, out, tmp_path / "wrong",
                     earlier_base_runs=[tmp_path / "base"])  # fmt: skip
    assert not (tmp_path / "wrong").exists() and not (tmp_path / "wrong.partial").exists()


def test_a_zoo_folder_serves_as_the_tokenizer_of_a_base_run(tmp_path):
    """`zoo train base --vq ZOO` reads the tokenizer from a zoo's `model.json`."""
    from muse import weights
    from zoo_build.run_files import vq_config_dict
    from zoo_build.train_vq import load_vq

    vq = tiny_vq()
    weights.save_params(vq, tmp_path / "vqvae.safetensors")
    model_json = {"config": {"vq": vq.config.to_dict()}}  # the part of model.json it reads
    (tmp_path / "model.json").write_text(json.dumps(model_json))
    assert vq_config_dict(tmp_path) == vq.config.to_dict()
    loaded = load_vq(tmp_path)
    assert loaded.config == vq.config
    weights.save_params(loaded, tmp_path / "reloaded.safetensors")
    saved, reloaded = (
        load_file(str(tmp_path / n)) for n in ("vqvae.safetensors", "reloaded.safetensors")
    )
    assert saved.keys() == reloaded.keys()
    for key in saved:
        np.testing.assert_array_equal(saved[key], reloaded[key], err_msg=key)
    with pytest.raises(FileNotFoundError, match="zoo train vq"):
        vq_config_dict(tmp_path / "nowhere")


def test_warm_start_begins_from_the_given_weights(world, tmp_path):
    from muse.checkpoint import sha256_file

    data, vq, text = world
    config = BaseTrainConfig(width=32, steps=3, batch_size=4, warmup_steps=1, checkpoint_every=0)
    first = train_base(data, vq, text, tmp_path / "first", config)
    # A zero learning rate leaves the parameters where the warm start put them.
    still = BaseTrainConfig(width=32, steps=2, batch_size=4, warmup_steps=1, learning_rate=0.0,
                            checkpoint_every=0, init_from=sha256_file(first))  # fmt: skip
    second = train_base(data, vq, text, tmp_path / "second", still, init_weights=first)
    a, b = load_file(str(first)), load_file(str(second))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with pytest.raises(ValueError, match="init_from"):
        train_base(data, vq, text, tmp_path / "third", config, init_weights=first)


def test_warm_start_deepens_a_shallower_base(world, tmp_path):
    from muse.checkpoint import sha256_file

    data, vq, text = world
    config = BaseTrainConfig(width=32, layers=2, steps=2, batch_size=4, warmup_steps=1,
                             checkpoint_every=0)  # fmt: skip
    first = train_base(data, vq, text, tmp_path / "first", config)
    deeper = BaseTrainConfig(width=32, layers=3, steps=2, batch_size=4, warmup_steps=1,
                             learning_rate=0.0, checkpoint_every=0,
                             init_from=sha256_file(first))  # fmt: skip
    second = train_base(data, vq, text, tmp_path / "second", deeper, init_weights=first)
    info = json.loads((tmp_path / "second" / "transformer_config.json").read_text())
    assert info["transformer"]["num_hidden_layers"] == 3
    assert info["deepened_from_layers"] == 2 and info["inserted_layers"] == [2]
    a, b = load_file(str(first)), load_file(str(second))
    for key in a:  # layers 0 and 1 keep their place; layer 2 is new
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not b["transformer_layers.2.ff.out.kernel"].any()


def test_warm_start_gains_a_position_embedding_that_learns_and_resumes(world, tmp_path):
    from muse.checkpoint import sha256_file

    data, vq, text = world
    config = BaseTrainConfig(width=32, steps=2, batch_size=4, warmup_steps=1, checkpoint_every=0)
    first = train_base(data, vq, text, tmp_path / "first", config)
    gaining = BaseTrainConfig(width=32, steps=4, batch_size=4, warmup_steps=1,
                              checkpoint_every=2, position_embedding=True,
                              init_from=sha256_file(first))  # fmt: skip
    second = train_base(data, vq, text, tmp_path / "second", gaining, init_weights=first)
    info = json.loads((tmp_path / "second" / "transformer_config.json").read_text())
    assert info["transformer"]["position_embedding"]
    assert info["added_params"] == ["position_embedding"]
    trained = load_file(str(second))
    assert trained["position_embedding"].shape == (64, 32)  # [8 x 8 cells, width]
    assert trained["position_embedding"].any()  # it started at zero and moved

    calls = {"n": 0}

    def stop_after_two():
        calls["n"] += 1
        return calls["n"] >= 2

    resumed_dir = tmp_path / "resumed"
    stopped = train_base(data, vq, text, resumed_dir, gaining, init_weights=first,
                         should_stop=stop_after_two)  # fmt: skip
    assert stopped is None
    resumed = load_file(str(train_base(data, vq, text, resumed_dir, gaining, init_weights=first)))
    for key in trained:
        np.testing.assert_array_equal(trained[key], resumed[key], err_msg=key)


def test_a_transplant_trains_only_its_new_tensors_when_asked(world, tmp_path):
    from flax import nnx

    from muse import weights
    from muse.checkpoint import sha256_file
    from muse.transformer import UVit2D
    from zoo_build.train_base import zoo_transformer_config

    data, vq, text = world
    # A base of another tokenizer: 12 codes on a 4x4 grid, the halved grid of the world's 8x8.
    hidden, pooled = text.model.config.hidden_size, text.model.config.projection_dim
    source_cfg = zoo_transformer_config(
        12, hidden, pooled, grid=4, width=32, layers=2, position_embedding=True
    )
    path = tmp_path / "source.safetensors"
    weights.save_params(UVit2D(source_cfg, rngs=nnx.Rngs(5)), path)
    source = load_file(str(path))

    def run(name: str, learning_rate: float) -> dict:
        config = BaseTrainConfig(width=32, layers=2, steps=2, batch_size=4, warmup_steps=1,
                                 learning_rate=learning_rate, checkpoint_every=0,
                                 downsample=True, position_embedding=True, transplant=True,
                                 train_only_new=True, init_from=sha256_file(path))  # fmt: skip
        weights_file = train_base(data, vq, text, tmp_path / name, config, init_weights=path)
        return load_file(str(weights_file))

    trained, still = run("trained", 1e-3), run("still", 0.0)
    info = json.loads((tmp_path / "trained" / "transformer_config.json").read_text())
    assert "embed.embeddings.embedding" in info["kept_init"]
    for name, value in trained.items():
        if name in info["kept_init"]:  # learned from the same init
            assert not np.array_equal(value, still[name]), name
        else:  # the transplanted transformer stays as the file has it
            np.testing.assert_array_equal(value, source[name], err_msg=name)
    with pytest.raises(ValueError, match="set transplant"):
        BaseTrainConfig(train_only_new=True)
