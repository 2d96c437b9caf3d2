"""The zoo's two CLIPs on a tiny emoji-world build: world tokenizer, learning, resume, loading."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPTextModelWithProjection

from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR
from muse.text_encoder import TextEncoder
from muse.tokenizer import build_open_clip_tokenizer, load_tokenizer, tokenize
from styledrop.zoo.draws import captions_for
from styledrop.zoo.embedded import JUDGE_DIR
from styledrop.zoo.vocabulary import get_subject
from zoo_build import contrastive, judge_folder, run_files
from zoo_build import train_judge as tj
from zoo_build import train_text_encoder as tt
from zoo_build.dataset import build_dataset, load_dataset
from zoo_build.world_tokenizer import build_world_tokenizer, world_texts

SUBJECTS = ["penguin", "banana", "racing_car", "teapot", "letter_a"]

TINY_TEXT = tt.TextTrainConfig(
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    projection_dim=16,
    vision_width=32,
    vision_layers=2,
    vision_heads=2,
    patch_size=16,
    steps=20,
    batch_size=16,
    learning_rate=3e-3,
    warmup_steps=2,
    checkpoint_every=5,
    eval_every=0,
)
TINY_JUDGE = tj.JudgeTrainConfig(
    embed_dim=16,
    vision="vit",
    vision_width=32,
    vision_layers=2,
    vision_head_width=16,
    patch_size=16,
    text_width=32,
    text_layers=2,
    text_heads=2,
    steps=20,
    batch_size=16,
    learning_rate=3e-3,
    warmup_steps=2,
    checkpoint_every=5,
    eval_every=0,
)
TRAIN = {"text": tt.train_text_encoder, "judge": tj.train_judge}
CONFIGS = {"text": TINY_TEXT, "judge": TINY_JUDGE}
CHECKPOINTS = {"text": run_files.TEXT_CHECKPOINT_FILE, "judge": run_files.JUDGE_CHECKPOINT_FILE}
LOGS = {"text": run_files.TEXT_LOG_FILE, "judge": run_files.JUDGE_LOG_FILE}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """5 subjects: 40 base images, 40 judge images, 10 eval images, held-out references."""
    data = tmp_path_factory.mktemp("world")
    build_dataset(data, subjects=SUBJECTS, draws={"base": 8, "judge": 8, "eval": 2})
    return data


@pytest.fixture(autouse=True)
def deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """Both models trained for 20 tiny steps: {"text": run folder, "judge": run folder}."""
    runs = {}
    for name, train in TRAIN.items():
        runs[name] = tmp_path_factory.mktemp(name)
        train(world, runs[name], CONFIGS[name])
    return runs


def _losses(run, name):
    lines = (run / LOGS[name]).read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_world_tokenizer_splits_world_text_like_clip():
    world = build_world_tokenizer()
    full = build_open_clip_tokenizer()
    texts = [*world_texts()[::50], "a penguin in watercolor style", "the letter 'Z'"]
    assert len(world) < 4000 and world.pad_token_id == world.eos_token_id == len(world) - 1
    ours, clips = tokenize(world, texts), tokenize(full, texts)
    for a, b in zip(ours, clips, strict=True):
        pieces = world.convert_ids_to_tokens(a[a != world.pad_token_id].tolist())
        assert pieces == full.convert_ids_to_tokens(b[b != full.pad_token_id].tolist())
    # Text outside the world still tokenizes, into smaller pieces.
    assert world.tokenize("astronaut") == ["a", "str", "on", "au", "t</w>"]


@pytest.mark.parametrize("name", ["text", "judge"])
def test_training_lowers_the_loss(trained, name):
    losses = _losses(trained[name], name)
    assert len(losses) == CONFIGS[name].steps
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.1


@pytest.mark.parametrize("name", ["text", "judge"])
def test_resume_is_bit_identical(world, tmp_path, name):
    config = dataclasses.replace(CONFIGS[name], steps=6, checkpoint_every=2)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    TRAIN[name](world, straight, config)
    steps = []
    assert TRAIN[name](world, resumed, config, progress=steps.append,
                       should_stop=lambda: steps[-1]["step"] == 3) is None  # fmt: skip
    assert json.loads((resumed / LOGS[name]).read_text().splitlines()[-1])["step"] == 3
    TRAIN[name](world, resumed, config)
    a = torch.load(straight / CHECKPOINTS[name], weights_only=True)
    b = torch.load(resumed / CHECKPOINTS[name], weights_only=True)
    assert a["step"] == b["step"] == 6
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key, state in a["optimizer"]["state"].items():
        for field, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][key][field]), (key, field)
    assert _losses(straight, name) == _losses(resumed, name)


def test_resume_refuses_other_settings(world, trained):
    other = dataclasses.replace(TINY_TEXT, learning_rate=1e-2)
    with pytest.raises(contrastive.CheckpointMismatchError, match="other settings"):
        tt.train_text_encoder(world, trained["text"], other)


def test_saved_text_encoder_loads_and_encodes(world, trained):
    out = trained["text"]
    model = CLIPTextModelWithProjection.from_pretrained(out / TEXT_ENCODER_DIR)
    assert model.config.vocab_size == len(load_tokenizer(out / TOKENIZER_DIR))
    assert model.config.max_position_embeddings == 77
    encoder = TextEncoder.load(out / TEXT_ENCODER_DIR, tokenizer=out / TOKENIZER_DIR)
    emb = encoder.encode(["a penguin in greyscale", ""])
    assert emb.hidden_states.shape == (2, 77, TINY_TEXT.hidden_size)
    assert emb.pooled.shape == (2, TINY_TEXT.projection_dim)
    assert np.isfinite(emb.hidden_states).all() and np.isfinite(emb.pooled).all()
    # The text tower is the trained one, and the short training context changes nothing.
    state = torch.load(out / run_files.TEXT_CHECKPOINT_FILE, weights_only=True)["model"]
    ids = torch.from_numpy(tokenize(encoder.tokenizer, ["a penguin in greyscale"]))
    clip = tt.TextCLIP(TINY_TEXT, encoder.tokenizer)
    clip.load_state_dict(state)
    with torch.no_grad():
        full = clip.text(input_ids=ids).text_embeds
        short = clip.text(input_ids=ids[:, :12]).text_embeds
    np.testing.assert_allclose(emb.pooled[:1], full.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(short.numpy(), full.numpy(), rtol=1e-5, atol=1e-6)
    info = json.loads((out / run_files.TEXT_EVAL_FILE).read_text())
    assert 0.0 <= info["text_top1_eval"] <= 1.0 and info["classes"] == len(SUBJECTS)
    assert tt.evaluate_text_encoder(world, out)["text_top1_eval"] == info["text_top1_eval"]


def _assert_judge_reloads_with_the_same_embeddings(run, config):
    judge_dir = run / JUDGE_DIR
    model, tokenizer = tj.load_judge(judge_dir)
    # The weights are stored in float16: compare with the trained model rounded the same way.
    state = torch.load(run / run_files.JUDGE_CHECKPOINT_FILE, weights_only=True)["model"]
    config_file = judge_dir / run_files.JUDGE_CONFIG_FILE
    reference = judge_folder.build_judge(json.loads(config_file.read_text())["model_cfg"])
    reference.load_state_dict(
        {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}
    )
    reference.eval()
    saved = load_file(judge_dir / run_files.JUDGE_WEIGHTS_FILE)
    for name, value in saved.items():
        expected = torch.float16 if state[name].is_floating_point() else state[name].dtype
        assert value.dtype == expected, name
    prompts = ["a penguin", "a banana on a blue background", "an image of the letter 'A'"]
    ids = tokenizer(prompts)
    world_ids = tokenize(build_world_tokenizer(), prompts, config.context_length)
    assert torch.equal(ids, torch.from_numpy(world_ids))
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    pixels = contrastive.to_pixels(images)
    with torch.no_grad():
        for a, b in [
            (model.encode_text(ids), reference.encode_text(ids)),
            (model.encode_image(pixels), reference.encode_image(pixels)),
        ]:
            assert a.shape == (3, config.embed_dim)
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_saved_judge_reloads_offline_with_the_same_embeddings(world, trained):
    _assert_judge_reloads_with_the_same_embeddings(trained["judge"], TINY_JUDGE)
    scores = tj.evaluate_judge(world, trained["judge"] / JUDGE_DIR)
    assert set(scores) >= {"judge_top1_real", "judge_top1_heldout_style"}
    assert 0.0 <= scores["judge_top1_real"] <= 1.0


def test_resnet_judge_learns_and_reloads_with_its_batchnorm_statistics(world, tmp_path):
    config = dataclasses.replace(
        TINY_JUDGE, vision="resnet", resnet_layers=(1, 1, 1, 1), resnet_width=8,
        resnet_head_width=16, steps=12,
    )  # fmt: skip
    tj.train_judge(world, tmp_path, config)
    cfg = json.loads((tmp_path / JUDGE_DIR / run_files.JUDGE_CONFIG_FILE).read_text())["model_cfg"]
    assert cfg["vision_cfg"]["layers"] == [1, 1, 1, 1]  # a list: open_clip builds a ResNet
    model, _ = tj.load_judge(tmp_path / JUDGE_DIR)
    assert type(model.visual).__name__ == "ModifiedResNet"
    losses = _losses(tmp_path, "judge")
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1
    # BatchNorm's running statistics moved in training and survive the float16 round trip.
    state = torch.load(tmp_path / run_files.JUDGE_CHECKPOINT_FILE, weights_only=True)["model"]
    assert not torch.equal(state["visual.bn1.running_var"], torch.ones_like(
        state["visual.bn1.running_var"]))  # fmt: skip
    assert int(state["visual.bn1.num_batches_tracked"]) == config.steps
    _assert_judge_reloads_with_the_same_embeddings(tmp_path, config)


def test_judge_config_refuses_an_unknown_vision_tower():
    with pytest.raises(ValueError, match="'vit' or 'resnet'"):
        dataclasses.replace(TINY_JUDGE, vision="convnext").model_cfg(100)


def test_key_loss_is_the_positives_loss_with_key_matches():
    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    keys, scale = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor(2.0)
    positives = keys[:, None] == keys[None, :]
    torch.testing.assert_close(
        contrastive.contrastive_loss(image, text, scale, keys),
        contrastive.contrastive_loss_with_positives(image, text, scale, positives),
        rtol=0, atol=0,
    )  # fmt: skip


def test_subject_only_captions_match_every_image_of_their_subject(world):
    tokenizer = build_world_tokenizer()
    _, records = load_dataset(world, split="judge")
    styled = contrastive.CaptionBank(tokenizer, records, context=32)
    content = tj.ContentCaptions(tokenizer, records, context=32)
    rows = torch.arange(len(records))
    text, positives = content.mix(rows, styled, 0.5, torch.Generator().manual_seed(0))
    assert positives.diagonal().all()
    subject_only = [
        j for j, r in enumerate(records) if tuple(text[j].tolist()) in _plain_ids(tokenizer, r)
    ]
    styled_only = [j for j in range(len(records)) if j not in subject_only]
    # Plain images always take subject-only captions; about half the styled ones do.
    assert {j for j, r in enumerate(records) if r["style"] == "plain"} <= set(subject_only)
    assert subject_only and styled_only
    for j in subject_only:  # matches every image of the subject, whatever its style
        same = [i for i, r in enumerate(records) if r["subject"] == records[j]["subject"]]
        assert positives[:, j].nonzero().flatten().tolist() == same
    for j in styled_only:  # matches only images of the same subject in the same style
        same = [
            i
            for i, r in enumerate(records)
            if (r["subject"], r["style"]) == (records[j]["subject"], records[j]["style"])
        ]
        assert positives[:, j].nonzero().flatten().tolist() == same  # fmt: skip


def _plain_ids(tokenizer, record):
    """Token ids of the subject-only captions of a record's subject."""
    captions = captions_for(get_subject(record["subject"]), ())
    return {tuple(row) for row in tokenize(tokenizer, captions, 32).tolist()}
