"""A folder as safetensors shards of bounded size, and back, byte for byte.

A lent GPU machine returns at most a few files of at most 16 MiB each, so the zoo build
writes its results (the model folder: weights, configs, tokenizer files, manifest) as
shards: every file's bytes, cut into uint8 tensors where a file crosses a shard's
limit, with an index in each shard's metadata (file path, size, sha256, where its pieces
are). `read_shards` puts the folder back and checks every file's sha256, so a manifest
written before sharding still holds after.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

MIB = 1 << 20
DEFAULT_SHARD_BYTES = 16 * MIB
DEFAULT_MAX_SHARDS = 8
HEADER_ALLOWANCE = 256 * 1024  # safetensors header + index metadata, kept out of each shard
INDEX_KEY = "styledrop_shard_index"


class ShardError(ValueError):
    """Shards that cannot be written within the limits, or cannot be read back."""


def write_shards(
    folder: str | Path,
    out_dir: str | Path,
    *,
    prefix: str = "zoo",
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    max_shards: int = DEFAULT_MAX_SHARDS,
) -> list[Path]:
    """Writes every file under `folder` into `prefix-0000i-of-0000n.safetensors` shards.

    Old shards with the same prefix in `out_dir` are removed first, so a rerun after a
    later stage replaces the earlier results.

    Args:
        folder: The folder to store (every file below it, recursively).
        out_dir: Where the shards go (created).
        prefix: Shard file name prefix.
        max_shard_bytes: Upper bound on each shard file's size.
        max_shards: Upper bound on the number of shards.

    Returns:
        The shard paths, in order.

    Raises:
        ShardError: The folder does not fit in `max_shards` shards of `max_shard_bytes`.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    capacity = max_shard_bytes - HEADER_ALLOWANCE
    if capacity <= 0:
        raise ShardError(f"max_shard_bytes must exceed {HEADER_ALLOWANCE} bytes.")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    shards: list[dict[str, np.ndarray]] = [{}]
    used = [0]
    index: dict[str, dict] = {}
    for path in files:
        data = np.frombuffer(path.read_bytes(), np.uint8)  # [bytes]
        name = path.relative_to(folder).as_posix()
        entry = {"bytes": int(data.size), "sha256": hashlib.sha256(data).hexdigest(), "parts": []}
        start = 0
        while start < data.size or not entry["parts"]:
            if used[-1] >= capacity:
                shards.append({})
                used.append(0)
            take = min(capacity - used[-1], data.size - start)
            key = f"{name}#{len(entry['parts'])}"
            shards[-1][key] = data[start : start + take]
            entry["parts"].append([len(shards) - 1, key])
            used[-1] += take
            start += take
        index[name] = entry
    if len(shards) > max_shards:
        total = sum(used) / MIB
        raise ShardError(
            f"{folder} ({total:.1f} MiB) needs {len(shards)} shards of"
            f" {max_shard_bytes / MIB:.0f} MiB, more than {max_shards}: store the weights in"
            " float16 or build a smaller model."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(f"{prefix}-*-of-*.safetensors"):
        old.unlink()
    count = len(shards)
    metadata = {INDEX_KEY: json.dumps({"shards": count, "files": index}, sort_keys=True)}
    paths = []
    for number, tensors in enumerate(shards):
        path = out_dir / f"{prefix}-{number + 1:05d}-of-{count:05d}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        paths.append(path)
    return paths


def read_shards(shard_dir: str | Path, out_folder: str | Path, *, prefix: str = "zoo") -> Path:
    """Rebuilds the folder stored by `write_shards` and checks every file's sha256.

    Args:
        shard_dir: The folder with the shards.
        out_folder: Where the files go (created; files of the same names are replaced).
        prefix: Shard file name prefix.

    Returns:
        `out_folder`.

    Raises:
        ShardError: Shards missing, of different sets, or a file whose bytes do not match.
    """
    shard_dir, out_folder = Path(shard_dir), Path(out_folder)
    paths = sorted(shard_dir.glob(f"{prefix}-*-of-*.safetensors"))
    if not paths:
        raise ShardError(f"No {prefix}-*-of-*.safetensors shards in {shard_dir}.")
    handles = [safe_open(str(p), framework="numpy") for p in paths]
    indexes = {h.metadata().get(INDEX_KEY) for h in handles}
    if len(indexes) != 1 or None in indexes:
        raise ShardError(f"The shards in {shard_dir} come from different writes: keep one set.")
    index = json.loads(indexes.pop())
    if index["shards"] != len(paths):
        raise ShardError(f"{shard_dir} holds {len(paths)} of {index['shards']} shards.")
    for name, entry in index["files"].items():
        pieces = [handles[shard].get_tensor(key) for shard, key in entry["parts"]]
        data = np.concatenate(pieces).tobytes() if pieces else b""
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ShardError(f"{name} does not match its recorded sha256 in {shard_dir}.")
        target = out_folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return out_folder
