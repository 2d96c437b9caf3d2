"""Conversion of diffusers-layout aMUSEd checkpoints into the native model folder.

A diffusers folder holds `transformer/`, `vqvae/`, `text_encoder/`, `tokenizer/` and
`scheduler/`, each with a `config.json` (the scheduler: `scheduler_config.json`) and
safetensors weights, full precision or an `.fp16` variant. The source is a local
folder, or a Hugging Face repo id: its snapshot in the local cache, downloaded there first
when missing unless downloads are off (`offline`, HF_HUB_OFFLINE=1; see `muse.hub`).

Every tensor is checked: a missing, unexpected or misshapen tensor is an error that
names the keys, before anything is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from flax import nnx
from safetensors.numpy import load_file, save_file

from muse import checkpoint, weights
from muse.config import ModelConfig, SamplingConfig, TransformerConfig, VQConfig
from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR, TRANSFORMER_FILE, VQ_FILE
from muse.hub import SnapshotUnavailableError, fetch_snapshot
from muse.tokenizer import load_tokenizer
from muse.transformer import UVit2D
from muse.vq import VQModel

COMPONENTS = ("transformer", "vqvae", "text_encoder", "tokenizer", "scheduler")


class ConversionError(ValueError):
    """The source is not a usable diffusers aMUSEd checkpoint."""


def resolve_source(source: str | Path, *, offline: bool = False) -> Path:
    """Finds a diffusers checkpoint folder: a local path, or a repo id's cached snapshot.

    Args:
        source: A folder, or a repo id such as "amused/amused-256".
        offline: Never download a repo id's files: the cache only (as HF_HUB_OFFLINE=1).

    Raises:
        ConversionError: if the folder does not exist, or the repo can neither be found in
            the cache nor downloaded (the message says what to do).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"{path} is a file; give the checkpoint folder instead.")
    if str(source).count("/") == 1 and not str(source).startswith((".", "/")):
        try:
            return fetch_snapshot(str(source), offline=offline)
        except SnapshotUnavailableError as error:
            raise ConversionError(str(error)) from error
    raise ConversionError(f"No checkpoint folder at {path}.")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConversionError(f"Missing {path}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConversionError(f"{path} is not valid JSON: {error}") from error


def _weights_file(folder: Path, stem: str) -> Path:
    """The full-precision safetensors file, or else its fp16 variant."""
    for name in (f"{stem}.safetensors", f"{stem}.fp16.safetensors"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise ConversionError(
        f"No {stem}.safetensors (or {stem}.fp16.safetensors) in {folder}; found {found}."
        " Only safetensors weights are read (no pickled .bin files)."
    )


def _load_tensors(path: Path) -> dict[str, np.ndarray]:
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises several types for corrupt files
        raise ConversionError(f"Cannot read {path}: {error}") from error


def read_configs(root: Path) -> ModelConfig:
    """Reads the component configs of a diffusers folder into a `ModelConfig`."""
    missing = [name for name in COMPONENTS if not (root / name).is_dir()]
    if missing:
        raise ConversionError(
            f"{root} is not a diffusers aMUSEd folder: missing {', '.join(missing)}/"
            f" (expected {', '.join(COMPONENTS)})."
        )
    transformer = _read_json(root / "transformer" / "config.json")
    if transformer.get("_class_name", "UVit2DModel") != "UVit2DModel":
        raise ConversionError(
            f"transformer/config.json describes a {transformer['_class_name']}, not UVit2DModel."
        )
    vq = _read_json(root / "vqvae" / "config.json")
    if vq.get("mid_block_add_attention", True):
        raise ConversionError("vqvae/config.json: only VQ models without mid-block attention.")
    scheduler = _read_json(root / "scheduler" / "scheduler_config.json")
    sampling = SamplingConfig(
        mask_token_id=int(scheduler["mask_token_id"]),
        masking_schedule=scheduler.get("masking_schedule", "cosine"),
    )
    transformer_cfg = TransformerConfig.from_dict(transformer)
    if sampling.mask_token_id != transformer_cfg.mask_token_id:
        raise ConversionError(
            f"scheduler mask_token_id {sampling.mask_token_id} is not the last embedding row"
            f" ({transformer_cfg.mask_token_id}) of the transformer."
        )
    return ModelConfig(
        transformer=transformer_cfg, vq=VQConfig.from_dict(vq), sampling=sampling, source=""
    )


def _convert_text_encoder(root: Path, staging: Path) -> None:
    """Checks the text encoder loads strictly, then stores it in float32 safetensors."""
    from transformers import CLIPTextModelWithProjection

    folder = root / "text_encoder"
    weights_path = _weights_file(folder, "model")
    variant = "fp16" if weights_path.name.endswith(".fp16.safetensors") else None
    try:
        model, info = CLIPTextModelWithProjection.from_pretrained(
            folder, local_files_only=True, variant=variant, output_loading_info=True
        )
    except (OSError, ValueError) as error:
        raise ConversionError(f"Cannot load the text encoder from {folder}: {error}") from error
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "mismatched_keys")}
    if bad:
        raise ConversionError(f"text encoder weights do not fit its config: {bad}")
    model.float().save_pretrained(staging / TEXT_ENCODER_DIR, safe_serialization=True)


def convert_diffusers(
    source: str | Path, destination: str | Path, *, overwrite: bool = False, offline: bool = False
) -> Path:
    """Converts a diffusers aMUSEd checkpoint into a native model folder.

    Args:
        source: Local diffusers folder, or a Hub repo id (taken from the Hugging Face
            cache, downloaded into it first when missing).
        destination: Output folder (created; written atomically).
        overwrite: Replace an existing destination.
        offline: Never download: a repo id must be in the cache (as HF_HUB_OFFLINE=1).

    Returns:
        The destination path.

    Raises:
        ConversionError / WeightsError: with the offending files or tensor keys.
    """
    destination = Path(destination)
    if destination.exists() and not overwrite:  # before a download that would be wasted
        raise ConversionError(f"{destination} exists; pass --overwrite to replace it.")
    root = resolve_source(source, offline=offline)
    config = read_configs(root)
    config = ModelConfig(config.transformer, config.vq, config.sampling, source=str(source))

    staging = destination.with_name(destination.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        parts = (
            ("transformer", "diffusion_pytorch_model", TRANSFORMER_FILE,
             lambda: UVit2D(config.transformer, rngs=nnx.Rngs(0))),
            ("vqvae", "diffusion_pytorch_model", VQ_FILE,
             lambda: VQModel(config.vq, rngs=nnx.Rngs(0))),
        )  # fmt: skip
        for component, stem, out_name, factory in parts:
            tensors = _load_tensors(_weights_file(root / component, stem))
            abstract = nnx.eval_shape(factory)
            native = weights.from_torch_state(abstract, tensors, component)
            del tensors
            save_file(native, str(staging / out_name))
            del native
        _convert_text_encoder(root, staging)
        tokenizer = load_tokenizer(root / "tokenizer")
        tokenizer.save_pretrained(staging / TOKENIZER_DIR)
        checkpoint.write_model_json(staging, config)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    checkpoint.replace_folder(staging, destination)
    return destination
