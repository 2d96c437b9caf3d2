"""The descriptor-invariance fine-tune of the text encoder, on a tiny random encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPTextModelWithProjection

from cli.zoo import train_descriptor_invariance as cli_invariance
from muse import checkpoint
from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR
from muse.text_encoder import TextEncoder
from muse.tokenizer import build_open_clip_tokenizer
from styledrop.zoo.styles import TRAIN_STYLES
from styledrop.zoo.vocabulary import get_subject
from tests.tiny_models import tiny_text_config
from zoo_build import descriptor_invariance as di
from zoo_build.run_files import INVARIANCE_LOG_FILE, TEXT_EVAL_FILE

TEXTS = [
    "a penguin", "a banana", "a dog", "a red apple", "a house", "the letter a",
    "a penguin in greyscale", "a banana drawn in outline", "a dog, pixel art",
]  # fmt: skip


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    """A random tiny text encoder saved as a `zoo train text` run would leave it."""
    folder = tmp_path_factory.mktemp("text")
    torch.manual_seed(0)
    tokenizer = build_open_clip_tokenizer()
    model = CLIPTextModelWithProjection(tiny_text_config(tokenizer, 32, 64, 16))
    model.save_pretrained(folder / TEXT_ENCODER_DIR)
    tokenizer.save_pretrained(folder / TOKENIZER_DIR)
    (folder / TEXT_EVAL_FILE).write_text(json.dumps({"text_top1_eval": 0.5}))
    return folder


def _config(folder, **changes) -> di.InvarianceConfig:
    digest = checkpoint.sha256_file(folder / TEXT_ENCODER_DIR / "model.safetensors")
    settings = dict(
        init_from=digest, steps=30, batch_size=16, learning_rate=3e-3, warmup_steps=3,
        checkpoint_every=0,
    )  # fmt: skip
    return di.InvarianceConfig(**(settings | changes))


def test_tail_alignment_matches_the_kth_position_after_each_end():
    index, mask = di.tail_alignment(torch.tensor([3, 5]), torch.tensor([2, 2]), 8)
    assert mask.tolist() == [
        [False, False, False, True, True, True, True, True],
        [False, False, False, False, False, True, True, True],
    ]
    # Row 0: positions 3.. take 2..; row 1: positions 5.. take 2..
    assert index[0, 3:].tolist() == [2, 3, 4, 5, 6]
    assert index[1, 5:].tolist() == [2, 3, 4]


def test_fine_tune_brings_described_captions_to_their_plain_embedding(encoder_folder, tmp_path):
    config = _config(encoder_folder)
    folder = di.train_descriptor_invariance(encoder_folder, tmp_path, config, texts=TEXTS)
    record = json.loads((tmp_path / TEXT_EVAL_FILE).read_text())
    assert record["text_top1_eval"] == 0.5  # the starting encoder's record is kept
    figures = record["descriptor_invariance"]
    # Held-out descriptors (none of their words was trained) move the pooled embedding
    # and the states after the caption's end less than before.
    assert (
        figures["after"]["heldout_pooled_error"] < 0.5 * figures["before"]["heldout_pooled_error"]
    )
    assert figures["after"]["heldout_tail_error"] < figures["before"]["heldout_tail_error"]
    assert figures["after"]["heldout_pooled_cosine"] > figures["before"]["heldout_pooled_cosine"]
    # The world's own texts keep close to the starting encoder's embeddings.
    assert figures["after"]["world_pooled_error"] < 0.5 * figures["after"]["heldout_pooled_error"]
    assert figures["train"]["init_from"] == config.init_from
    log = [json.loads(line) for line in (tmp_path / INVARIANCE_LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 31))
    # The result is a plain text-encoder folder with the tokenizer beside it.
    loaded = TextEncoder.load(folder, tokenizer=tmp_path / TOKENIZER_DIR)
    assert loaded.encode(["a penguin in [V*] style"]).pooled.shape == (1, 16)


def test_stopped_and_resumed_run_ends_bit_identical(encoder_folder, tmp_path):
    config = _config(encoder_folder, steps=8, checkpoint_every=3)
    di.train_descriptor_invariance(encoder_folder, tmp_path / "whole", config, texts=TEXTS)
    calls = iter(range(100))
    stopped = di.train_descriptor_invariance(
        encoder_folder, tmp_path / "cut", config, texts=TEXTS,
        should_stop=lambda: next(calls) == 4,
    )  # fmt: skip
    assert stopped is None and not (tmp_path / "cut" / TEXT_ENCODER_DIR).exists()
    di.train_descriptor_invariance(encoder_folder, tmp_path / "cut", config, texts=TEXTS)
    whole = load_file(tmp_path / "whole" / TEXT_ENCODER_DIR / "model.safetensors")
    cut = load_file(tmp_path / "cut" / TEXT_ENCODER_DIR / "model.safetensors")
    assert whole.keys() == cut.keys()
    assert all(torch.equal(whole[name], cut[name]) for name in whole)


def test_starting_weights_must_match_init_from(encoder_folder, tmp_path):
    config = _config(encoder_folder, init_from="0" * 64)
    with pytest.raises(ValueError, match="init_from"):
        di.train_descriptor_invariance(encoder_folder, tmp_path, config, texts=TEXTS)


def test_command_refuses_a_folder_without_an_encoder(tmp_path, capsys):
    code = cli_invariance.main(["--text", str(tmp_path), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "text_encoder/model.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_word_source_is_checked_and_curated_runs_keep_their_fingerprint():
    curated = di.InvarianceConfig(descriptor_words="curated")
    assert "descriptor_words" not in curated.fingerprint()  # as recorded before the setting
    assert '"descriptor_words": "open"' in di.InvarianceConfig().fingerprint()
    with pytest.raises(ValueError, match="descriptor_words"):
        di.InvarianceConfig(descriptor_words="closed")


def test_subject_retention_makes_styled_prompts_name_their_subject(encoder_folder):
    # Few subjects, so that the tiny encoder can learn them in a few steps.
    subjects = [get_subject(name) for name in ("penguin", "dog", "banana", "car", "letter_a")]
    loaded = TextEncoder.load(encoder_folder / TEXT_ENCODER_DIR,
                              tokenizer=encoder_folder / TOKENIZER_DIR)  # fmt: skip
    anchors = di.subject_anchors(loaded.model, loaded.tokenizer, subjects)
    assert anchors.shape == (5, 16)
    torch.testing.assert_close(anchors.norm(dim=-1), torch.ones(5))
    rng = np.random.default_rng(0)
    captions, labels = di.world_style_batch(rng, subjects, 64)
    for caption, row in zip(captions, labels.tolist(), strict=True):
        assert caption.startswith(subjects[row].phrase() + " ")
    assert not any(c.startswith("letter 'A' in inverted") for c in captions)
    student = loaded.model.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = di.subject_retention_loss(student, loaded.tokenizer, captions, labels, anchors, 0.05)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    student.eval()
    figures = di.world_style_figures(student, loaded.tokenizer, subjects)
    assert figures["world_style_subject_top1"] == 1.0


def test_subject_weight_adds_its_loss_to_the_log(encoder_folder, tmp_path):
    config = _config(encoder_folder, steps=2, subject_weight=1.0)
    di.train_descriptor_invariance(encoder_folder, tmp_path, config, texts=TEXTS)
    log = [json.loads(line) for line in (tmp_path / INVARIANCE_LOG_FILE).read_text().splitlines()]
    assert all(record["subject_retention"] > 0 for record in log)
    figures = json.loads((tmp_path / TEXT_EVAL_FILE).read_text())["descriptor_invariance"]
    for moment in ("before", "after"):
        assert 0.0 <= figures[moment]["world_style_subject_top1"] <= 1.0
    # Runs without the loss keep the fingerprint they were checkpointed with.
    assert "subject_weight" not in di.InvarianceConfig().fingerprint()
    assert '"subject_weight": 1.0' in config.fingerprint()


def test_mixed_retention_phrases_fill_the_second_half_and_old_runs_keep_their_fingerprint():
    subjects = [get_subject(name) for name in ("penguin", "dog", "banana", "car", "letter_a")]
    world = {style.suffix for style in TRAIN_STYLES}
    captions, labels = di.world_style_batch(np.random.default_rng(0), subjects, 16, "mixed")
    for index, (caption, row) in enumerate(zip(captions, labels.tolist(), strict=True)):
        phrase = caption.removeprefix(subjects[row].phrase() + " ")
        assert phrase != caption
        assert (phrase in world) == (index < 8), caption
    plain, _ = di.world_style_batch(np.random.default_rng(0), subjects, 16)
    assert all(c.split(" ", 2)[-1] in world or "letter" in c for c in plain)
    assert "retention_phrases" not in di.InvarianceConfig().fingerprint()
    mixed = di.InvarianceConfig(subject_weight=0.4, retention_phrases="mixed")
    assert '"retention_phrases": "mixed"' in mixed.fingerprint()
    with pytest.raises(ValueError, match="retention_phrases"):
        di.InvarianceConfig(retention_phrases="held_out")


def test_the_command_line_sets_the_retention_phrases_and_refuses_others(capsys):
    parser = cli_invariance.build_parser()
    args = parser.parse_args(["--text", "t", "--out", "o", "--retention-phrases", "mixed"])
    config = cli_invariance.config_from_args(di.InvarianceConfig(), args, cli_invariance.OPTIONS)
    assert config.retention_phrases == "mixed"
    with pytest.raises(SystemExit):
        parser.parse_args(["--text", "t", "--out", "o", "--retention-phrases", "held_out"])
    assert "invalid choice" in capsys.readouterr().err
