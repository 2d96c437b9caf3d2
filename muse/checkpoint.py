"""The project's native model folder: what `styledrop convert` writes and `muse.load` reads.

Layout::

    model.json                 format version, ModelConfig, sha256 of each weights file
    transformer.safetensors    U-ViT parameters under their NNX names (float32)
    vqvae.safetensors          VQ parameters under their NNX names (float32)
    text_encoder/              transformers CLIPTextModelWithProjection (config + safetensors)
    tokenizer/                 CLIPTokenizer files (vocab.json, merges.txt, ...)

The sha256 of `transformer.safetensors` identifies the base model: adapter files record
it, so an adapter cannot silently be applied to another base.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import jax.numpy as jnp
from flax import nnx

from muse import weights
from muse.config import ModelConfig
from muse.folder_layout import (
    MODEL_JSON,
    TRANSFORMER_FILE,
    VQ_FILE,
)
from muse.safetensors_file import SafetensorsFormatError
from muse.transformer import UVit2D
from muse.vq import VQModel

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A model folder is missing, incomplete, corrupt or of an unknown format."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_model_json(folder: Path, config: ModelConfig, extra: dict[str, Any] | None = None):
    """Writes `model.json` with the config and the hashes of the weights files in `folder`."""
    hashes = {name: sha256_file(folder / name) for name in (TRANSFORMER_FILE, VQ_FILE)}
    record = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "sha256": hashes,
        **(extra or {}),
    }
    (folder / MODEL_JSON).write_text(json.dumps(record, indent=2) + "\n")


def read_model_json(folder: str | Path) -> dict[str, Any]:
    """Reads and validates `model.json` of a native model folder.

    Raises:
        CheckpointError: if the folder is not a converted model.
    """
    folder = Path(folder)
    path = folder / MODEL_JSON
    if not path.is_file():
        hint = ""
        if (folder / "transformer" / "config.json").is_file():
            hint = f" It looks like a diffusers folder: run `styledrop convert {folder} OUT` first."
        raise CheckpointError(f"{folder} is not a converted model folder (no {MODEL_JSON}).{hint}")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    version = record.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {version}; this code reads version {FORMAT_VERSION}."
            " Convert the model again with this version of `styledrop convert`."
        )
    return record


def read_model_config(folder: str | Path) -> ModelConfig:
    """The model's configuration (`model.json`), without loading any weights.

    Raises:
        CheckpointError: if the folder is not a converted model.
    """
    return ModelConfig.from_dict(read_model_json(folder)["config"])


def base_model_hash(folder: str | Path) -> str:
    """The sha256 of the transformer weights, as recorded in `model.json`."""
    return read_model_json(folder)["sha256"][TRANSFORMER_FILE]


def _load_into(factory, path: Path, what: str) -> nnx.Module:
    if not path.is_file():
        raise CheckpointError(f"Missing weights file {path}.")
    model = nnx.eval_shape(factory)
    try:
        weights.load_params(model, path, what)
    except (SafetensorsFormatError, OSError) as error:  # truncated, corrupt, unreadable
        raise CheckpointError(f"Cannot read {path}: {error}") from error
    return model


def load_transformer(folder: str | Path, dtype=jnp.float32) -> tuple[ModelConfig, UVit2D]:
    """Loads the U-ViT of a native model folder.

    Args:
        folder: A folder written by `styledrop convert` (or the model zoo).
        dtype: Compute dtype, float32 or bfloat16 (parameters stay float32).
    """
    folder = Path(folder)
    config = read_model_config(folder)
    model = _load_into(
        lambda: UVit2D(config.transformer, dtype=dtype, rngs=nnx.Rngs(0)),
        folder / TRANSFORMER_FILE,
        "transformer",
    )
    return config, model


def load_vq(folder: str | Path, dtype=jnp.float32) -> VQModel:
    """Loads the VQ tokenizer of a native model folder."""
    folder = Path(folder)
    config = read_model_config(folder)
    return _load_into(
        lambda: VQModel(config.vq, rngs=nnx.Rngs(0), dtype=dtype), folder / VQ_FILE, "VQ"
    )


def replace_folder(staging: Path, folder: Path) -> None:
    """Moves a finished staging folder to `folder`, replacing what was there."""
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old)
    else:
        staging.rename(folder)
