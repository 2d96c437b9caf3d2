"""CLIP tokenizer and text encoder: open_clip parity, offline loading, the prompt cache.

Everything is built locally: the tokenizer from open_clip's shipped BPE file, the text
model as a tiny random `CLIPTextModelWithProjection` saved to a temporary folder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import CLIPTextModelWithProjection

from muse.text_encoder import TextEmbeddings, TextEncoder
from muse.tokenizer import (
    AMUSED_PAD_TOKEN,
    CONTEXT_LENGTH,
    OPEN_CLIP_PAD_TOKEN,
    TokenizerNotFoundError,
    build_open_clip_tokenizer,
    load_tokenizer,
    tokenize,
)
from tests.tiny_models import tiny_text_config

BOS_ID, EOS_ID = 49406, 49407

PROMPTS = [
    "a photo of a cat",
    "A RED Apple on a Table, oil painting!!!",
    "3 dogs and 42 cats in 1999 (probably)",
    "café crème brûlée, naïve façade",
    "a 😀 smiling emoji and a ninja cat 🐱‍👤",
    "東京の夜景、ネオン",
    "“curly” quotes and ‘single’ ones",
    "ＦＵＬＬ width letters",
    "salt &amp; pepper &lt;3",
    "ΟΔΟΣ ΣΟΦΙΑΣ",
    "don't STOP, it's what we've got",
    "  lots   of\twhitespace \n here  ",
    "",
    "the ﬁnest ligature and mojibake cafÃ©",
    "a very long prompt " * 30,  # > 77 tokens: truncated
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_open_clip_tokenizer()


@pytest.fixture(scope="module")
def open_clip_padded_tokenizer():
    return build_open_clip_tokenizer(pad_token=OPEN_CLIP_PAD_TOKEN)


@pytest.fixture(scope="module")
def open_clip_ids() -> np.ndarray:
    open_clip = pytest.importorskip("open_clip")
    return open_clip.tokenize(PROMPTS).numpy()  # [batch, 77], padded with 0


def tiny_model(tokenizer) -> CLIPTextModelWithProjection:
    config = tiny_text_config(tokenizer, 24, intermediate_size=48, projection_dim=16)
    torch.manual_seed(0)
    return CLIPTextModelWithProjection(config).eval()


def reference_outputs(model, tokenizer, prompts) -> tuple[np.ndarray, np.ndarray]:
    """What diffusers' aMUSEd pipeline takes from the model, computed directly."""
    input_ids = torch.from_numpy(tokenize(tokenizer, prompts))
    with torch.no_grad():
        out = model(input_ids=input_ids, output_hidden_states=True, return_dict=True)
    return out.hidden_states[-2].numpy(), out.text_embeds.numpy()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer):
    """A diffusers-style checkpoint folder: text_encoder/ and tokenizer/."""
    root = tmp_path_factory.mktemp("checkpoint")
    model = tiny_model(tokenizer)
    model.save_pretrained(root / "text_encoder")
    tokenizer.save_pretrained(root / "tokenizer")
    return root, model


class CountingEncoder:
    """A TextEncoder whose model records the batch size of every forward call."""

    def __init__(self, model, tokenizer, **kwargs):
        self.encoder = TextEncoder(model, tokenizer, **kwargs)
        self.batches: list[int] = []

        def hook(module, args, kwargs):
            self.batches.append(kwargs["input_ids"].shape[0])

        self.handle = model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.fixture
def counting(tokenizer):
    counting = CountingEncoder(tiny_model(tokenizer), tokenizer)
    yield counting
    counting.handle.remove()


# Tokenizer.


@pytest.mark.parity
def test_tokenizer_matches_open_clip_exactly(open_clip_padded_tokenizer, open_clip_ids):
    ids = tokenize(open_clip_padded_tokenizer, PROMPTS)
    assert ids.dtype == np.int64
    assert ids.shape == (len(PROMPTS), CONTEXT_LENGTH)
    for prompt, ours, theirs in zip(PROMPTS, ids, open_clip_ids, strict=True):
        np.testing.assert_array_equal(ours, theirs, err_msg=repr(prompt))


@pytest.mark.parity
def test_default_tokenizer_differs_from_open_clip_only_in_pad_id(tokenizer, open_clip_ids):
    assert tokenizer.pad_token == AMUSED_PAD_TOKEN
    assert tokenizer.pad_token_id == EOS_ID
    ids = tokenize(tokenizer, PROMPTS)
    for ours, theirs in zip(ids, open_clip_ids, strict=True):
        end = int(np.argmax(theirs == EOS_ID))  # first <|endoftext|>
        np.testing.assert_array_equal(ours[: end + 1], theirs[: end + 1])
        assert (ours[end + 1 :] == EOS_ID).all()
        assert (theirs[end + 1 :] == 0).all()


def test_truncation_keeps_endoftext_last(tokenizer):
    (ids,) = tokenize(tokenizer, ["word " * 200])
    assert ids.shape == (CONTEXT_LENGTH,)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert (ids[1:-1] < BOS_ID).all()  # 75 text tokens, no padding


def test_pad_symbol_is_not_split_out_of_text(open_clip_padded_tokenizer):
    # "!" (id 0) pads, but "!!!" in a prompt must still be its own BPE token.
    (ids,) = tokenize(open_clip_padded_tokenizer, ["wow!!!"])
    assert open_clip_padded_tokenizer.pad_token_id == 0
    assert ids[:4].tolist() == [BOS_ID, 2781, 995, EOS_ID]  # "wow", "!!!"
    assert (ids[4:] == 0).all()


def test_clean_only_matters_for_prompts_it_changes(tokenizer):
    plain = ["a photo of a cat", "Hello, World!!! 123"]
    np.testing.assert_array_equal(
        tokenize(tokenizer, plain), tokenize(tokenizer, plain, clean=False)
    )
    curly = ["“curly”"]
    assert not np.array_equal(tokenize(tokenizer, curly), tokenize(tokenizer, curly, clean=False))


def test_tokenize_rejects_a_bare_string_and_accepts_an_empty_list(tokenizer):
    with pytest.raises(TypeError):
        tokenize(tokenizer, "a cat")
    assert tokenize(tokenizer, []).shape == (0, CONTEXT_LENGTH)


@pytest.mark.parametrize("pad_token", [AMUSED_PAD_TOKEN, OPEN_CLIP_PAD_TOKEN])
def test_save_and_load_tokenizer_round_trip(tmp_path, pad_token):
    built = build_open_clip_tokenizer(pad_token=pad_token)
    built.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.pad_token_id == built.pad_token_id
    assert loaded.model_max_length == CONTEXT_LENGTH
    prompts = [*PROMPTS, "wow!!!"]
    np.testing.assert_array_equal(tokenize(loaded, prompts), tokenize(built, prompts))


def test_missing_tokenizer_gives_a_clear_error(tmp_path):
    with pytest.raises(TokenizerNotFoundError, match="build_open_clip_tokenizer"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "tokenizer").mkdir()
    with pytest.raises(FileNotFoundError, match=r"vocab\.json \+ merges\.txt"):
        load_tokenizer(tmp_path / "tokenizer")


# Text encoder.


@pytest.mark.parity
def test_load_and_encode_match_transformers(checkpoint, tokenizer):
    root, model = checkpoint
    encoder = TextEncoder.load(root / "text_encoder")
    assert (encoder.hidden_size, encoder.projection_dim) == (24, 16)
    out = encoder.encode(PROMPTS)
    assert isinstance(out, TextEmbeddings) and len(out) == len(PROMPTS)
    assert out.hidden_states.shape == (len(PROMPTS), CONTEXT_LENGTH, 24)
    assert out.pooled.shape == (len(PROMPTS), 16)
    assert out.hidden_states.dtype == out.pooled.dtype == np.float32
    hidden, pooled = reference_outputs(model, tokenizer, PROMPTS)
    np.testing.assert_allclose(out.hidden_states, hidden, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.pooled, pooled, rtol=0, atol=1e-6)


def test_load_falls_back_to_the_fp16_variant(tmp_path, tokenizer):
    model = tiny_model(tokenizer).half()
    model.save_pretrained(tmp_path / "text_encoder", variant="fp16")
    assert not (tmp_path / "text_encoder" / "model.safetensors").exists()
    encoder = TextEncoder.load(tmp_path / "text_encoder", tokenizer=tokenizer)
    expected = model.state_dict()
    for name, value in encoder.model.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, expected[name].float(), rtol=0, atol=0)
    assert encoder.encode(["a cat"]).pooled.dtype == np.float32


def test_load_without_tokenizer_or_weights_fails_clearly(tmp_path, checkpoint):
    root, _ = checkpoint
    alone = tmp_path / "alone" / "text_encoder"  # no tokenizer/ beside it
    alone.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (alone / name).write_bytes((root / "text_encoder" / name).read_bytes())
    with pytest.raises(TokenizerNotFoundError, match="tokenizer="):
        TextEncoder.load(alone)

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_bytes((root / "text_encoder" / "config.json").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        TextEncoder.load(no_weights)


def test_repeated_prompt_runs_the_model_once(counting):
    first = counting.encoder.encode(["a cat", "a cat"])
    second = counting.encoder.encode(["a cat"])
    assert counting.batches == [1]
    np.testing.assert_array_equal(first.hidden_states[0], first.hidden_states[1])
    np.testing.assert_array_equal(first.pooled[1], second.pooled[0])


def test_mixed_cached_and_new_prompts_keep_their_order(counting, tokenizer):
    encoder = counting.encoder
    encoder.encode(["b"])
    prompts = ["c", "b", "", "c", "b"]
    out = encoder.encode(prompts)
    assert counting.batches == [1, 2]  # only "c" and "" were new, in one batch
    hidden, pooled = reference_outputs(encoder.model, tokenizer, prompts)
    np.testing.assert_allclose(out.hidden_states, hidden, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.pooled, pooled, rtol=0, atol=1e-6)


def test_cache_is_bounded_and_least_recently_used(tokenizer):
    counting = CountingEncoder(tiny_model(tokenizer), tokenizer, cache_size=2)
    encoder = counting.encoder
    encoder.encode(["a", "b"])
    encoder.encode(["a"])  # touch "a": "b" is now the oldest
    encoder.encode(["c"])  # evicts "b"
    assert encoder.cached_prompts == 2
    encoder.encode(["a", "c"])
    assert counting.batches == [2, 1]
    encoder.encode(["b"])
    assert counting.batches == [2, 1, 1]


def test_returned_arrays_do_not_alias_the_cache(counting):
    out = counting.encoder.encode(["x"])
    out.pooled[:] = 0.0
    assert np.abs(counting.encoder.encode(["x"]).pooled).sum() > 0


def test_encode_edge_cases(counting):
    with pytest.raises(TypeError):
        counting.encoder.encode("a cat")
    out = counting.encoder.encode([])
    assert out.hidden_states.shape == (0, CONTEXT_LENGTH, 24)
    assert out.pooled.shape == (0, 16)
    assert counting.batches == []


@pytest.mark.parametrize("tokenizer_name", ["tokenizer", "open_clip_padded_tokenizer"])
def test_legacy_eos_pooling_picks_the_same_token(request, tokenizer_name):
    # aMUSEd's text encoder config has the legacy eos_token_id 2, which pools at
    # argmax(input_ids); with either pad id that is the first <|endoftext|>.
    tok = request.getfixturevalue(tokenizer_name)
    model = tiny_model(tok)
    _, pooled = reference_outputs(model, tok, PROMPTS)
    model.text_model.eos_token_id = 2
    _, legacy = reference_outputs(model, tok, PROMPTS)
    np.testing.assert_array_equal(legacy, pooled)
