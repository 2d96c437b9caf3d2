"""The CLIP text tower that conditions aMUSEd, kept in PyTorch (transformers).

For a batch of prompts it returns what the U-ViT consumes:

* `hidden_states` [batch, 77, hidden]: the penultimate layer's output (`hidden_states[-2]`,
  before the final LayerNorm), used as cross-attention states;
* `pooled` [batch, projection]: the projected pooled embedding (`text_embeds`), used as
  the global condition.

The model runs without an attention mask, as in diffusers' aMUSEd pipeline: padded
positions carry real (pad-token) states, and the U-ViT attends to them.

Each distinct prompt is encoded once and then served from a bounded LRU cache, because
the same prompts come back constantly (every decoding step, the shared negative prompt
of every batch). Prompts missing from the cache are encoded together in one batch.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

from muse.tokenizer import CONTEXT_LENGTH, TokenizerNotFoundError, load_tokenizer, tokenize

# One CLIP-L entry holds 77 x 768 + 768 float32 values (about 234 KiB), so 512 entries
# stay near 120 MiB.
DEFAULT_CACHE_SIZE = 512

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def default_device() -> str:
    """The torch device the text tower runs on by default: "cuda" or "cpu".

    "cuda" only when JAX computes on a GPU and PyTorch sees one too: the embeddings go
    straight to the GPU's U-ViT then, while on a CPU run they stay on the CPU.
    """
    import jax

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


@dataclass(frozen=True, eq=False)
class TextEmbeddings:
    """Text conditioning for a batch of prompts (float32 numpy arrays).

    Attributes:
        hidden_states: Penultimate-layer states, [batch, 77, hidden].
        pooled: Projected pooled embeddings, [batch, projection].
    """

    hidden_states: np.ndarray  # [batch, 77, hidden]
    pooled: np.ndarray  # [batch, projection]

    def __len__(self) -> int:
        return self.pooled.shape[0]


class TextEncoder:
    """CLIP text encoder with projection, tokenizer and a per-prompt embedding cache.

    Thread-safe: concurrent `encode` calls are serialised.
    """

    def __init__(
        self,
        model: CLIPTextModelWithProjection,
        tokenizer: CLIPTokenizer,
        *,
        max_length: int = CONTEXT_LENGTH,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clean: bool = True,
    ):
        """Wraps an in-memory model.

        Args:
            model: The text tower; put in eval mode with gradients off.
            tokenizer: The matching CLIP tokenizer.
            max_length: Context length (at most the model's position embeddings).
            cache_size: Most prompts kept in the cache; 0 disables caching.
            clean: Clean prompts as CLIP's tokenizer does (see `muse.tokenizer.tokenize`).
        """
        if max_length > model.config.max_position_embeddings:
            raise ValueError(
                f"max_length {max_length} exceeds the model's "
                f"{model.config.max_position_embeddings} position embeddings"
            )
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.cache_size = cache_size
        self.clean = clean
        # prompt -> (hidden [77, hidden], pooled [projection]), least recently used first.
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        folder: str | Path,
        dtype: str | torch.dtype = "float32",
        device: str | torch.device = "cpu",
        *,
        tokenizer: CLIPTokenizer | str | Path | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> TextEncoder:
        """Loads the text encoder from a checkpoint folder, offline.

        Args:
            folder: A folder with `config.json` and `model.safetensors` (or only
                `model.fp16.safetensors`), e.g. `<checkpoint>/text_encoder`.
            dtype: Compute dtype: "float32", "bfloat16" or "float16" (or a torch dtype).
                Outputs are float32 whatever the compute dtype.
            device: Torch device to run on.
            tokenizer: A tokenizer or a tokenizer folder; by default the `tokenizer/`
                folder next to `folder`, as in a diffusers checkpoint.
            cache_size: Most prompts kept in the embedding cache.

        Returns:
            The encoder, in eval mode.

        Raises:
            FileNotFoundError: If the config, the weights or the tokenizer are missing.
            ValueError: If `dtype` is not recognised.
        """
        folder = Path(folder)
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
            dtype = _DTYPES[dtype]
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"No text encoder config at {folder / 'config.json'}")
        variant = _weights_variant(folder)

        if tokenizer is None:
            sibling = folder.parent / "tokenizer"
            if not sibling.is_dir():
                raise TokenizerNotFoundError(
                    f"No tokenizer folder next to {folder} (looked for {sibling}). Pass "
                    "tokenizer= a folder or muse.tokenizer.build_open_clip_tokenizer()."
                )
            tokenizer = sibling
        if not isinstance(tokenizer, CLIPTokenizer):
            tokenizer = load_tokenizer(tokenizer)

        model = CLIPTextModelWithProjection.from_pretrained(
            folder,
            dtype=dtype,
            variant=variant,
            use_safetensors=True,
            local_files_only=True,
        )
        model.to(device)
        return cls(model, tokenizer, cache_size=cache_size)

    @property
    def hidden_size(self) -> int:
        """Width of `hidden_states` (768 for CLIP-L)."""
        return self.model.config.hidden_size

    @property
    def projection_dim(self) -> int:
        """Width of `pooled` (768 for the aMUSEd CLIP-L)."""
        return self.model.config.projection_dim

    @property
    def device(self) -> torch.device:
        """The device the model runs on."""
        return next(self.model.parameters()).device

    def encode(self, prompts: Sequence[str]) -> TextEmbeddings:
        """Encodes prompts, running the model only for those not cached yet.

        Args:
            prompts: The prompts (repeats allowed; the empty string is the unconditional
                prompt).

        Returns:
            Embeddings with one row per prompt, in order.

        Raises:
            TypeError: If `prompts` is a single string.
        """
        if isinstance(prompts, str):
            raise TypeError("encode() takes a list of prompts, not a single string")
        prompts = list(prompts)
        with self._lock:
            found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for prompt in prompts:
                if prompt in self._cache and prompt not in found:
                    self._cache.move_to_end(prompt)
                    found[prompt] = self._cache[prompt]
            missing = list(dict.fromkeys(p for p in prompts if p not in found))
            if missing:
                hidden, pooled = self._run(missing)
                for i, prompt in enumerate(missing):
                    # Copies, so an evicted row does not keep its whole batch alive.
                    entry = (hidden[i].copy(), pooled[i].copy())
                    for array in entry:
                        array.flags.writeable = False
                    found[prompt] = entry
                    self._remember(prompt, entry)

        if not prompts:
            return TextEmbeddings(
                hidden_states=np.zeros((0, self.max_length, self.hidden_size), np.float32),
                pooled=np.zeros((0, self.projection_dim), np.float32),
            )
        return TextEmbeddings(
            hidden_states=np.stack([found[p][0] for p in prompts]),  # [batch, 77, hidden]
            pooled=np.stack([found[p][1] for p in prompts]),  # [batch, projection]
        )

    def clear_cache(self) -> None:
        """Forgets every cached prompt."""
        with self._lock:
            self._cache.clear()

    @property
    def cached_prompts(self) -> int:
        """Number of prompts currently cached."""
        return len(self._cache)

    def _remember(self, prompt: str, entry: tuple[np.ndarray, np.ndarray]) -> None:
        if self.cache_size == 0:
            return
        self._cache[prompt] = entry
        self._cache.move_to_end(prompt)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _run(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Runs the model on one batch; returns float32 hidden states and pooled embeddings."""
        ids = tokenize(self.tokenizer, prompts, self.max_length, clean=self.clean)
        input_ids = torch.from_numpy(ids).to(self.device)  # [batch, 77]
        with torch.inference_mode():
            outputs = self.model(input_ids=input_ids, output_hidden_states=True, return_dict=True)
            hidden = outputs.hidden_states[-2]  # [batch, 77, hidden], before the final norm
            pooled = outputs.text_embeds  # [batch, projection]
            hidden = hidden.float().cpu().numpy()
            pooled = pooled.float().cpu().numpy()
        return hidden, pooled


def _weights_variant(folder: Path) -> str | None:
    """Picks the safetensors file in `folder`: full precision first, then the fp16 variant."""
    for variant in (None, "fp16"):
        name = "model.safetensors" if variant is None else f"model.{variant}.safetensors"
        if (folder / name).is_file() or (folder / f"{name}.index.json").is_file():
            return variant
    raise FileNotFoundError(
        f"No model.safetensors or model.fp16.safetensors (or sharded index) in {folder}"
    )
