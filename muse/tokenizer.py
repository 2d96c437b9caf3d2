"""CLIP tokenization for the aMUSEd text encoder, fully offline.

Two ways to get a `transformers.CLIPTokenizer`:

* `load_tokenizer(folder)` reads a checkpoint's `tokenizer/` folder (the files
  `save_pretrained` writes) without touching the network.
* `build_open_clip_tokenizer()` rebuilds CLIP's byte-level BPE tokenizer from the merges
  file that the `open_clip_torch` package ships, for when no checkpoint tokenizer is at hand.

`tokenize` turns prompts into the fixed [batch, 77] id grid the text encoder consumes:
`<|startoftext|>`, the BPE tokens, `<|endoftext|>`, then padding. Prompts longer than the
context are cut so that `<|endoftext|>` is still the last token (as open_clip does).

Padding. The text tower runs without an attention mask and the U-ViT cross-attends to all
77 positions, so the pad id changes the encoder states at the padded positions. open_clip
pads with id 0 (the byte symbol "!"); OpenAI's CLIP-L tokenizer, and the aMUSEd training
runs (open-muse sets `pad_token_id: 49407` for its CLIP-L text encoder), pad with
`<|endoftext|>` (49407). `build_open_clip_tokenizer` therefore pads with `<|endoftext|>` by
default; pass `pad_token=OPEN_CLIP_PAD_TOKEN` for open_clip's exact ids. A checkpoint folder
keeps whatever pad token it declares.

Pooling. CLIP pools the projected embedding at the first `<|endoftext|>`; configs with the
legacy `eos_token_id == 2` (the aMUSEd text encoder) pool at `argmax(input_ids)` instead.
Both pick the same position with either pad id, because 49407 is the largest id and
`argmax` returns its first occurrence.

Known differences from open_clip's `SimpleTokenizer` (deliberate, documented):

* Literal special-token strings in a prompt: `<|endoftext|>` is one special token here
  but ordinary text in open_clip, which instead reserves `<start_of_text>` and
  `<end_of_text>`. Prompts do not normally contain either.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import ftfy
import numpy as np
from transformers import CLIPTokenizer

CONTEXT_LENGTH = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# Pad token of OpenAI's CLIP-L tokenizer and of the aMUSEd training runs (id 49407).
AMUSED_PAD_TOKEN = EOS_TOKEN
# open_clip pads with id 0, which is the byte symbol "!".
OPEN_CLIP_PAD_TOKEN = "!"

_OPEN_CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
# CLIP's vocabulary has 49408 entries: 256 byte symbols, the same with "</w>", the merges,
# and 2 special tokens. The BPE file holds more merges than that; only the first are used.
_VOCAB_SIZE = 49408
_NUM_MERGES = _VOCAB_SIZE - 2 * 256 - 2
# transformers' placeholder when a tokenizer config sets no model_max_length.
_UNSET_MAX_LENGTH = 10**12


class TokenizerNotFoundError(FileNotFoundError):
    """Raised when a tokenizer folder or one of its files is missing."""


def clean_prompt(text: str) -> str:
    """Normalises a prompt the way CLIP's own tokenizer does before BPE.

    Repairs broken unicode and typographic variants with `ftfy` (curly quotes, full-width
    letters, ligatures), resolves HTML entities (twice, for double-escaped text), collapses
    whitespace and lower-cases with Python's rules (context-aware, e.g. a final sigma).
    The `tokenizers` backend of `CLIPTokenizer` only does NFC, whitespace and a per-character
    lower-casing, so without this step such prompts tokenize differently from open_clip.

    Args:
        text: The raw prompt.

    Returns:
        The cleaned, lower-cased prompt.
    """
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


def tokenize(
    tokenizer: CLIPTokenizer,
    prompts: Sequence[str],
    max_length: int = CONTEXT_LENGTH,
    *,
    clean: bool = True,
) -> np.ndarray:
    """Tokenizes prompts into a fixed-length grid of ids.

    Args:
        tokenizer: A CLIP tokenizer (`load_tokenizer` or `build_open_clip_tokenizer`).
        prompts: The prompts; a bare string is rejected (it is not a list of prompts).
        max_length: Context length; longer prompts are truncated, keeping `<|endoftext|>`
            as the last token, shorter ones padded with the tokenizer's pad token.
        clean: Apply `clean_prompt` first, as open_clip and CLIP's original tokenizer do.
            Pass False to reproduce a bare `tokenizer(...)` call (diffusers' pipeline with
            transformers 5), which differs only on prompts `clean_prompt` changes.

    Returns:
        int64 ids of shape [batch, max_length].

    Raises:
        TypeError: If `prompts` is a string rather than a sequence of strings.
    """
    if isinstance(prompts, str):
        raise TypeError("tokenize() takes a list of prompts, not a single string")
    texts = [clean_prompt(p) if clean else p for p in prompts]
    if not texts:
        return np.zeros((0, max_length), np.int64)
    encoded = tokenizer(
        texts,
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    return np.asarray(encoded["input_ids"], dtype=np.int64)  # [batch, max_length]


def load_tokenizer(folder: str | Path) -> CLIPTokenizer:
    """Loads a CLIP tokenizer from a checkpoint's `tokenizer/` folder, offline.

    The folder needs either `tokenizer.json` or `vocab.json` + `merges.txt`, normally with
    `tokenizer_config.json` and `special_tokens_map.json` beside them.

    Args:
        folder: The tokenizer folder, e.g. `<checkpoint>/tokenizer`.

    Returns:
        The tokenizer, with `model_max_length` 77 unless its config says otherwise.

    Raises:
        TokenizerNotFoundError: If the folder or its vocabulary files are missing.
    """
    folder = Path(folder)
    hint = (
        "Point it at a checkpoint's tokenizer/ folder (as written by save_pretrained), "
        "or build one offline with muse.tokenizer.build_open_clip_tokenizer()."
    )
    if not folder.is_dir():
        raise TokenizerNotFoundError(f"No tokenizer folder at {folder}. {hint}")
    has_fast = (folder / "tokenizer.json").is_file()
    missing_bpe = [n for n in ("vocab.json", "merges.txt") if not (folder / n).is_file()]
    if not has_fast and missing_bpe:
        raise TokenizerNotFoundError(
            f"Tokenizer folder {folder} has neither tokenizer.json nor "
            f"{' + '.join(missing_bpe)}. {hint}"
        )

    tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    if _pad_splits_text(tokenizer):
        # A pad token that is an ordinary BPE symbol (open_clip's "!") gets registered as
        # an added token, and added tokens are cut out of the text before BPE: "wow!!!"
        # would become "wow" + three pads instead of "wow" + "!!!". Load with a special
        # pad token and set the declared one afterwards: assigning the attribute sets the
        # pad id without registering the token with the backend.
        pad_token = str(tokenizer.pad_token)
        tokenizer = CLIPTokenizer.from_pretrained(
            folder, local_files_only=True, pad_token=tokenizer.eos_token
        )
        tokenizer.pad_token = pad_token
    if tokenizer.model_max_length >= _UNSET_MAX_LENGTH:
        tokenizer.model_max_length = CONTEXT_LENGTH
    return tokenizer


def build_open_clip_tokenizer(
    max_length: int = CONTEXT_LENGTH, pad_token: str = AMUSED_PAD_TOKEN
) -> CLIPTokenizer:
    """Builds CLIP's tokenizer from the BPE merges shipped inside `open_clip_torch`.

    The vocabulary is laid out as in CLIP: the 256 byte-level symbols, the same symbols
    with the end-of-word marker `</w>`, one entry per merge (the pair joined), then
    `<|startoftext|>` (49406) and `<|endoftext|>` (49407). The files are written to a
    temporary folder and loaded from there; the tokenizer keeps everything in memory.

    Args:
        max_length: The tokenizer's `model_max_length`.
        pad_token: `AMUSED_PAD_TOKEN` (`<|endoftext|>`, id 49407; what aMUSEd was trained
            with) or `OPEN_CLIP_PAD_TOKEN` ("!", id 0; open_clip's padding). Any vocabulary
            entry is accepted.

    Returns:
        A `CLIPTokenizer` that produces the same ids as `open_clip.tokenize` (apart from
        the pad id when it differs) when used through `tokenize`.

    Raises:
        TokenizerNotFoundError: If `open_clip_torch` or its BPE file is not installed.
        ValueError: If `pad_token` is not in the vocabulary.
    """
    merges = _read_open_clip_merges()
    if len(_bpe_vocabulary(merges)) != _VOCAB_SIZE:
        raise ValueError(
            f"expected {_VOCAB_SIZE} distinct vocabulary entries,"
            f" got {len(_bpe_vocabulary(merges))}"
        )
    # The pad defaults to <|endoftext|>, which is special anyway; see load_tokenizer for why
    # an ordinary pad symbol is assigned afterwards rather than passed to the constructor.
    return tokenizer_from_merges(merges, max_length, pad_token)


def tokenizer_from_merges(
    merges: Sequence[tuple[str, str]],
    max_length: int = CONTEXT_LENGTH,
    pad_token: str = EOS_TOKEN,
) -> CLIPTokenizer:
    """A byte-level BPE `CLIPTokenizer` with CLIP's vocabulary layout over `merges`.

    The vocabulary is the 256 byte-level symbols, the same with `</w>`, one entry per
    merge (the pair joined), then `<|startoftext|>` and `<|endoftext|>`. CLIP's own
    tokenizer is this over CLIP's merges; the emoji world's is this over the subset its
    texts use (`zoo_build.world_tokenizer`).

    Args:
        merges: BPE merge rules in rank order.
        max_length: The tokenizer's `model_max_length`.
        pad_token: A vocabulary entry to pad with.

    Raises:
        ValueError: If `pad_token` is not in the vocabulary.
    """
    ids = _bpe_vocabulary(merges)
    if pad_token not in ids:
        raise ValueError(f"pad_token {pad_token!r} is not in the CLIP vocabulary")
    with tempfile.TemporaryDirectory(prefix="clip-tokenizer-") as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps(ids, ensure_ascii=False), "utf-8")
        merges_text = "\n".join(f"{a} {b}" for a, b in merges)
        (folder / "merges.txt").write_text(f"#version: 0.2\n{merges_text}\n", "utf-8")
        tokenizer = CLIPTokenizer.from_pretrained(
            folder, local_files_only=True, model_max_length=max_length
        )
    tokenizer.pad_token = pad_token
    return tokenizer


def _bpe_vocabulary(merges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Token -> id in CLIP's layout (see `tokenizer_from_merges`)."""
    symbols = _byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(vocab)}


def _pad_splits_text(tokenizer: CLIPTokenizer) -> bool:
    """Whether the pad token is an ordinary BPE symbol registered as an added token."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pad = tokenizer.pad_token
    if backend is None or pad is None:
        return False
    return pad in tokenizer.get_added_vocab() and pad in backend.get_vocab(with_added_tokens=False)


def _read_open_clip_merges() -> list[tuple[str, str]]:
    """Reads the first `_NUM_MERGES` merges of open_clip's BPE file.

    The package is located without importing it (importing open_clip takes seconds).
    """
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec else []
    candidates = [Path(p) / _OPEN_CLIP_BPE_FILE for p in locations]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise TokenizerNotFoundError(
            f"open_clip's {_OPEN_CLIP_BPE_FILE} was not found; install open_clip_torch "
            "or load a checkpoint's tokenizer/ folder with load_tokenizer()."
        )
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    # Line 0 is a header ("...#version: 0.2"); each following line is one "a b" pair.
    merges = []
    for line in lines[1 : 1 + _NUM_MERGES]:
        first, second = line.split()
        merges.append((first, second))
    return merges


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE, in vocabulary order.

    Bytes that are printable Latin-1 characters stand for themselves and come first, in
    byte order; the rest (control characters, space, soft hyphen, ...) are mapped to
    code points from 256 upwards, in byte order.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    kept = set(printable)
    others = [b for b in range(256) if b not in kept]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]
