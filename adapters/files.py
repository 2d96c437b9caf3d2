"""Adapter files: one `.safetensors` file per adapter, with its provenance in the header.

The tensors are `adapters.adapter_state_dict` output. The caller's provenance is a plain
mapping; every entry goes into the safetensors header (string metadata) under
`styledrop.<key>`, strings as they are and other values as JSON:

| key | value |
|---|---|
| `base_model`, `base_model_sha256` | the base it was trained on (required) |
| `descriptor` | style descriptor, e.g. "in watercolor painting style" ("" default) |
| `training_prompts` | JSON list of the training prompts ([] default) |
| `source_images` | JSON: source image hashes, e.g. [{"name", "sha256"}] ([] default) |
| `round`, `steps`, `learning_rate`, `seed` | the training run (1, 0, 0.0, 0 default) |
| `created_at` | UTC ISO 8601 time of writing (filled in unless given) |
| any other key (e.g. `batch_size`) | JSON |

`save_adapter_file` adds `format_version`, `adapter_kind`, `adapter_spec` (the
`AdapterSpec` as JSON) and `parameter_count` (an integrity check). LoRA files also
carry diffusers' `lora_adapter_metadata` (PEFT `LoraConfig` fields under the component
prefix, as diffusers' `save_lora_weights` writes them) so that
`UVit2DModel.load_lora_adapter(..., prefix="transformer")` gets rank and alpha, and
`format: pt` since their tensors are in PyTorch layout.
"""

from __future__ import annotations

import datetime
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from adapters.params import AdapterSpec

FORMAT_VERSION = 1
LORA_METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base's key
_NS = "styledrop."
REQUIRED = ("base_model", "base_model_sha256")
DEFAULTS: dict[str, Any] = {
    "descriptor": "",
    "training_prompts": [],
    "source_images": [],
    "round": 1,
    "steps": 0,
    "learning_rate": 0.0,
    "seed": 0,
}
# Written by `save_adapter_file` itself.
_RESERVED = ("format_version", "adapter_kind", "adapter_spec", "parameter_count")
# Stored as plain strings; every other value is JSON.
_STRINGS = ("base_model", "base_model_sha256", "descriptor", "created_at", "adapter_kind")


class AdapterFileError(ValueError):
    """An adapter file cannot be used: unreadable, not an adapter, or for another base."""


@dataclass(frozen=True)
class AdapterFile:
    """A read adapter file.

    Attributes:
        spec: Kind and sizes, to inject a matching adapter before loading the tensors.
        tensors: Name -> array, as saved.
        metadata: Provenance (the table in the module docstring), values decoded.
    """

    spec: AdapterSpec
    tensors: dict[str, np.ndarray] = field(repr=False)
    metadata: dict[str, Any]


def lora_config_metadata(spec: AdapterSpec, prefix: str = "transformer") -> dict[str, object]:
    """PEFT `LoraConfig` fields under the component prefix, as diffusers saves them."""
    config = {
        "r": spec.rank,
        "lora_alpha": spec.alpha,
        "target_modules": sorted(spec.lora_targets),
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
    }
    return {f"{prefix}.{key}" if prefix else key: value for key, value in config.items()}


def _encode(key: str, value: Any) -> str:
    if key in _STRINGS:
        if not isinstance(value, str):
            raise ValueError(f"Adapter metadata {key!r} must be a string, got {value!r}.")
        return value
    try:
        return json.dumps(value, sort_keys=True)
    except TypeError as err:
        raise ValueError(f"Adapter metadata {key!r} is not JSON-serialisable: {err}") from err


def _header(
    tensors: Mapping[str, np.ndarray], spec: AdapterSpec, metadata: Mapping[str, Any], prefix: str
) -> dict[str, str]:
    missing = [key for key in REQUIRED if key not in metadata]
    if missing:
        raise ValueError(f"Adapter metadata needs {missing}: adapters fit only their base.")
    reserved = sorted(set(_RESERVED) & set(metadata))
    if reserved:
        raise ValueError(f"Adapter metadata keys {reserved} are written by save_adapter_file.")
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    values = {
        **DEFAULTS,
        "created_at": now,
        **metadata,
        "format_version": FORMAT_VERSION,
        "adapter_kind": spec.kind,
        "adapter_spec": spec.to_dict(),
        "parameter_count": sum(int(np.size(t)) for t in tensors.values()),
    }
    header = {_NS + key: _encode(key, value) for key, value in values.items()}
    if spec.kind == "lora":
        header["format"] = "pt"
        header[LORA_METADATA_KEY] = json.dumps(
            lora_config_metadata(spec, prefix), indent=2, sort_keys=True
        )
    return header


def save_adapter_file(
    path: str | Path,
    tensors: Mapping[str, np.ndarray],
    spec: AdapterSpec,
    metadata: Mapping[str, Any],
    prefix: str = "transformer",
) -> Path:
    """Writes an adapter file atomically (a temporary file renamed into place).

    Args:
        path: Destination `.safetensors` path (parent folders are created).
        tensors: `adapters.adapter_state_dict(model, k)` output.
        spec: The adapter's spec.
        metadata: Provenance (the table in the module docstring); `base_model` and
            `base_model_sha256` are required. An empty hash is allowed (a base that
            was never saved) but then no base check can accept the adapter.
        prefix: The tensors' component prefix (for the LoRA metadata).

    Returns:
        The path written.
    """
    path = Path(path)
    if not tensors:
        raise ValueError("An adapter file needs at least one tensor.")
    arrays = {name: np.ascontiguousarray(np.asarray(t)) for name, t in tensors.items()}
    header = _header(arrays, spec, metadata, prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder so the rename is atomic; a unique name so concurrent writers never clash.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        save_file(arrays, str(tmp), metadata=header)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _parse(header: Mapping[str, str], path: Path) -> tuple[AdapterSpec, dict[str, Any]]:
    if _NS + "format_version" not in header:
        raise AdapterFileError(
            f"{path} is a safetensors file but not a StyleDrop adapter (no"
            f" {_NS}format_version in its header). Base checkpoints and foreign LoRA files"
            " cannot be used here; pick an adapter written by training."
        )
    metadata = {
        key[len(_NS) :]: value if key[len(_NS) :] in _STRINGS else json.loads(value)
        for key, value in header.items()
        if key.startswith(_NS)
    }
    if int(metadata["format_version"]) > FORMAT_VERSION:
        raise AdapterFileError(
            f"{path} has adapter format {metadata['format_version']}; this version reads up"
            f" to {FORMAT_VERSION}. Upgrade the software to use it."
        )
    missing = [key for key in (*REQUIRED, *_RESERVED) if key not in metadata]
    if missing:
        raise KeyError(f"missing {missing}")
    return AdapterSpec.from_dict(metadata["adapter_spec"]), metadata


def read_adapter_file(path: str | Path, expected_base_hash: str | None = None) -> AdapterFile:
    """Reads and checks an adapter file written by `save_adapter_file`.

    Args:
        path: The `.safetensors` file.
        expected_base_hash: sha256 of the loaded base model; when given, an adapter
            trained on another base is refused.

    Returns:
        The spec, the tensors (as saved) and the provenance.

    Raises:
        AdapterFileError: the file is missing, unreadable, not an adapter, damaged, or
            (with `expected_base_hash`) trained on another base model.
    """
    path = Path(path)
    if not path.is_file():
        raise AdapterFileError(f"No adapter file at {path}.")
    try:
        with safe_open(str(path), framework="np") as reader:
            header = dict(reader.metadata() or {})
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterFileError(
            f"{path} is not a readable safetensors file ({err}). It may be truncated or"
            " corrupt: copy it again or re-train the adapter."
        ) from err
    try:
        spec, metadata = _parse(header, path)
        count = int(metadata["parameter_count"])
    except AdapterFileError:
        raise
    except (KeyError, ValueError, TypeError) as err:
        raise AdapterFileError(
            f"{path} has a damaged adapter header ({type(err).__name__}: {err});"
            " re-train or re-export the adapter."
        ) from err
    if sum(int(t.size) for t in tensors.values()) != count:
        raise AdapterFileError(
            f"{path} holds a different number of weights than its header records ({count});"
            " the file was altered. Re-train or re-export the adapter."
        )
    trained_on = metadata["base_model_sha256"]
    if expected_base_hash is not None and trained_on != expected_base_hash:
        raise AdapterFileError(
            f"{path} was trained on base model {metadata['base_model']!r} (sha256"
            f" {trained_on or 'not recorded'}), not on the loaded base (sha256"
            f" {expected_base_hash}). Load that base model to use this adapter."
        )
    return AdapterFile(spec=spec, tensors=tensors, metadata=metadata)
