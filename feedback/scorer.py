"""CLIP scoring on open_clip: text score, style score and zero-shot classification.

The StyleDrop paper reports raw cosine similarities of CLIP embeddings: the text score is
cos(image, prompt) and the style score is cos(image, style reference image). Both are
computed here in float32, in eval mode, image by image independent of batching. Text and
reference-image embeddings are cached, so scoring many samples against a few prompts and
references embeds each of those once.

Models: an open_clip `local-dir:` folder (the embedded judge, loaded offline), or any
open_clip architecture with weights from a local file or a published pretrained tag
("ViT-B-32" + "openai"), taken from its cache or downloaded into it unless downloads are
off (`offline=True`, the `--offline` option, or HF_HUB_OFFLINE=1; `feedback.clip_weights`).
The model runs on the GPU when PyTorch sees one (`default_device`), else on the CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from feedback.clip_weights import ClipWeightsError, pretrained_file, tag_settings

LOCAL_DIR_CONFIG = "open_clip_config.json"


class ScorerLoadError(ValueError):
    """A CLIP model or its weights cannot be had; the message says what to pass or do instead."""


def default_device() -> str:
    """The torch device scoring runs on by default: "cuda" when PyTorch sees a GPU, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Makes huggingface_hub resolve from its cache only, for the duration.

    huggingface_hub reads HF_HUB_OFFLINE once, when imported, so its constant is set too.
    """
    from huggingface_hub import constants

    saved = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved[0]
        constants.HF_HUB_OFFLINE = saved[1]


def _image_key(image: np.ndarray) -> str:
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256(array.tobytes())
    digest.update(str((array.shape, array.dtype.str)).encode())
    return digest.hexdigest()


class ClipScorer:
    """Scores images against prompts and reference images with one open_clip model.

    Args:
        model: An open_clip CLIP.
        tokenizer: open_clip tokenizer (prompts -> int64 [B, context]).
        name: What the model is, for provenance ("local-dir:...", "ViT-B-32 + file").
        batch_size: Images or prompts per forward pass.
        device: Torch device to run on (default: `default_device()`); embeddings come
            back as float32 numpy arrays wherever the model runs.
    """

    def __init__(
        self,
        model,
        tokenizer,
        name: str = "open_clip",
        batch_size: int = 64,
        device: str | torch.device | None = None,
    ):
        import open_clip

        self.device = torch.device(device or default_device())
        self.model = model.float().eval().to(self.device)
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self.embed_dim = int(model.visual.output_dim)
        self._text_cache: dict[str, np.ndarray] = {}
        self._image_cache: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------------------------------
    # Loading.

    @classmethod
    def load(
        cls,
        clip: str | Path,
        weights: str | Path | None = None,
        batch_size: int = 64,
        *,
        offline: bool = False,
        cache_dir: str | Path | None = None,
        device: str | torch.device | None = None,
    ) -> ClipScorer:
        """Loads a scorer.

        Args:
            clip: An open_clip `local-dir` folder (holding open_clip_config.json), or an
                open_clip architecture name such as "ViT-B-32".
            weights: With an architecture: a local checkpoint file, or a pretrained tag
                ("openai", "laion2b_s34b_b79k"), downloaded into its cache if missing.
            batch_size: Images or prompts per forward pass.
            offline: Never download: a tag's weights must be in the cache already
                (HF_HUB_OFFLINE=1 does the same).
            cache_dir: Where a tag's weights are cached (default: the Hugging Face
                cache, see `feedback.clip_weights.pretrained_file`).
            device: Torch device (default: `default_device()`).

        Raises:
            ScorerLoadError: when the model or its weights cannot be had; the message
                says what to pass or do instead.
        """
        import open_clip

        folder = Path(clip)
        if (folder / LOCAL_DIR_CONFIG).is_file():
            if weights is not None:
                raise ScorerLoadError(
                    f"{folder} is a complete open_clip folder; drop --clip-weights."
                )
            spec = f"local-dir:{folder.resolve()}"
            with _hub_offline():
                model = open_clip.create_model(spec)
                tokenizer = open_clip.get_tokenizer(spec)
            name = f"local-dir:{folder.name}"
            return cls(model, tokenizer, name=name, batch_size=batch_size, device=device)
        if folder.exists() or str(clip) not in open_clip.list_models():
            raise ScorerLoadError(
                f"{clip!r} is neither an open_clip folder (no {LOCAL_DIR_CONFIG}) nor an"
                " open_clip architecture; see open_clip.list_models() for the names."
            )
        if weights is None:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(str(clip))[:6])
            raise ScorerLoadError(
                f"Architecture {clip!r} needs --clip-weights: a local checkpoint file or a"
                f" pretrained tag ({tags or 'see open_clip.list_pretrained()'})."
            )
        arch, source = str(clip), str(weights)
        is_file = Path(source).is_file()
        if not is_file and source not in open_clip.list_pretrained_tags_by_model(arch):
            raise ScorerLoadError(
                f"--clip-weights {source!r} is not a file, nor a pretrained tag of {arch}."
            )
        checkpoint, options = source, {}
        if not is_file:  # a tag: its file from the cache or the network, as open_clip would
            try:
                options = tag_settings(arch, source)
                file = pretrained_file(arch, source, offline=offline, cache_dir=cache_dir)
            except ClipWeightsError as error:
                raise ScorerLoadError(str(error)) from error
            checkpoint = str(file)
        try:
            with _hub_offline():
                model = open_clip.create_model(
                    arch, pretrained=checkpoint, require_pretrained=True, **options
                )
                tokenizer = open_clip.get_tokenizer(arch)
        except (OSError, RuntimeError, ValueError) as error:
            raise ScorerLoadError(
                f"Could not load {arch} weights from {checkpoint}: {error}"
            ) from error
        name = f"{arch}:{Path(source).name if is_file else source}"
        return cls(model, tokenizer, name=name, batch_size=batch_size, device=device)

    # ----------------------------------------------------------------------------------------
    # Embeddings.

    def pixels(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (or [0, 1] float) [N, H, W, 3] -> normalised float32 [N, 3, h, w].

        Images are resized (shortest side, bicubic, antialiased) and centre-cropped to the
        model's input size, as open_clip's own preprocessing does.
        """
        array = np.asarray(images)
        x = torch.as_tensor(array).permute(0, 3, 1, 2).float()
        if array.dtype == np.uint8:
            x = x / 255.0
        height, width = self.image_size
        if tuple(x.shape[-2:]) != (height, width):
            scale = max(height / x.shape[-2], width / x.shape[-1])
            size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
            top, left = (size[0] - height) // 2, (size[1] - width) // 2
            x = x[..., top : top + height, left : left + width].clamp(0.0, 1.0)
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    @torch.no_grad()
    def image_embeddings(self, images: np.ndarray) -> np.ndarray:
        """float32 [N, D] unit embeddings of images (uint8 or [0, 1] floats [N, H, W, 3])."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"Expected images [N, H, W, 3], got shape {images.shape}.")
        out = []
        # One image per forward keeps every score independent of batch size and order
        # (batched matmuls may round differently); batch_size chunks only bound memory.
        for start in range(0, len(images), self.batch_size):
            chunk = self.pixels(images[start : start + self.batch_size]).to(self.device)
            rows = [self.model.encode_image(row[None], normalize=True) for row in chunk]
            out.append(torch.cat(rows).float().cpu().numpy())  # [chunk, D]
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    @torch.no_grad()
    def text_embeddings(self, prompts: Sequence[str]) -> np.ndarray:
        """float32 [N, D] unit embeddings of prompts (cached per prompt)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        for prompt in missing:
            ids = self.tokenizer([prompt]).to(self.device)  # [1, context]
            embedding = self.model.encode_text(ids, normalize=True).float().cpu().numpy()[0]
            self._text_cache[prompt] = embedding
        if not prompts:
            return np.zeros((0, self.embed_dim), np.float32)
        return np.stack([self._text_cache[p] for p in prompts])

    def reference_embeddings(self, references: np.ndarray) -> np.ndarray:
        """Like `image_embeddings`, cached per image content (style references recur)."""
        keys = [_image_key(image) for image in references]
        todo = [i for i, key in enumerate(keys) if key not in self._image_cache]
        if todo:
            fresh = self.image_embeddings(np.asarray(references)[todo])
            for row, i in enumerate(todo):
                self._image_cache[keys[i]] = fresh[row]
        return np.stack([self._image_cache[key] for key in keys])

    # ----------------------------------------------------------------------------------------
    # Scores.

    def text_scores(self, images: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """float32 [N]: cos(image_i, prompt_i), the paper's CLIP text score."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts.")
        return np.sum(self.image_embeddings(images) * self.text_embeddings(prompts), axis=-1)

    def style_scores(self, images: np.ndarray, references: np.ndarray) -> np.ndarray:
        """float32 [N]: mean over references of cos(image, reference), the style score.

        Args:
            images: The samples [N, H, W, 3].
            references: The style reference images [R, H', W', 3] (one or a few).
        """
        ref = self.reference_embeddings(references)  # [R, D]
        return (self.image_embeddings(images) @ ref.T).mean(axis=1)

    def classify(
        self, images: np.ndarray, class_prompts: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Zero-shot classification: each class is the mean of its prompts' embeddings.

        Args:
            images: [N, H, W, 3].
            class_prompts: For each class, its prompts ("a penguin", "penguin", ...).

        Returns:
            (int64 [N] best class per image, float32 [N, classes] cosine similarities).
        """
        classes = []
        for prompts in class_prompts:
            mean = self.text_embeddings(list(prompts)).mean(axis=0)
            classes.append(mean / np.linalg.norm(mean))
        sims = self.image_embeddings(images) @ np.stack(classes).T  # [N, classes]
        return sims.argmax(axis=1), sims
