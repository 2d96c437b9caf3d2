"""Safetensors shards of a folder: bounded sizes, byte-exact round trip, clear refusals.

Needs no fonts and no accelerator: the GPU zoo build script runs it first on the lent
machine.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from safetensors import safe_open

from zoo_build.shards import HEADER_ALLOWANCE, ShardError, read_shards, write_shards

LIMIT = HEADER_ALLOWANCE + 4096  # 4 KiB of payload per shard


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "zoo"
    (root / "judge").mkdir(parents=True)
    (root / "model.json").write_text('{"source": "test"}\n')
    (root / "empty.txt").write_bytes(b"")
    (root / "judge" / "weights.bin").write_bytes(rng.bytes(10_000))  # spans three shards
    (root / "tokens.bin").write_bytes(rng.bytes(1_000))
    return root


def _digests(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_round_trip_is_byte_exact_and_each_shard_within_the_limit(folder, tmp_path):
    paths = write_shards(folder, tmp_path / "out", max_shard_bytes=LIMIT, max_shards=8)
    assert len(paths) == 3  # 12,025 payload bytes at 4,096 per shard
    assert all(p.stat().st_size <= LIMIT for p in paths)
    assert [p.name for p in paths] == [f"zoo-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    with safe_open(str(paths[0]), framework="numpy") as handle:
        assert all(handle.get_tensor(key).dtype == np.uint8 for key in handle.keys())  # noqa: SIM118
    back = read_shards(tmp_path / "out", tmp_path / "back")
    assert _digests(back) == _digests(folder)


def test_too_many_shards_are_refused_before_anything_is_written(folder, tmp_path):
    with pytest.raises(ShardError, match="more than 2"):
        write_shards(folder, tmp_path / "out", max_shard_bytes=LIMIT, max_shards=2)
    assert not (tmp_path / "out").exists()


def test_a_rewrite_replaces_the_old_set(folder, tmp_path):
    write_shards(folder, tmp_path / "out", max_shard_bytes=LIMIT)
    (folder / "judge" / "weights.bin").unlink()
    paths = write_shards(folder, tmp_path / "out", max_shard_bytes=LIMIT)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    assert "judge/weights.bin" not in _digests(read_shards(tmp_path / "out", tmp_path / "back"))


def test_missing_mixed_or_damaged_shards_are_refused(folder, tmp_path):
    paths = write_shards(folder, tmp_path / "out", max_shard_bytes=LIMIT)
    with pytest.raises(ShardError, match="No zoo"):
        read_shards(tmp_path / "nothing-here", tmp_path / "back")
    paths[1].unlink()
    with pytest.raises(ShardError, match="2 of 3"):
        read_shards(tmp_path / "out", tmp_path / "back")
    (folder / "model.json").write_text("{}\n")  # another write: another index
    other = write_shards(folder, tmp_path / "other", max_shard_bytes=LIMIT)
    other[1].rename(paths[1])
    with pytest.raises(ShardError, match="different writes"):
        read_shards(tmp_path / "out", tmp_path / "back")


def test_changed_bytes_fail_the_sha256_check(folder, tmp_path):
    from safetensors.numpy import save_file

    paths = write_shards(folder, tmp_path / "out", max_shard_bytes=LIMIT)
    with safe_open(str(paths[0]), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key).copy() for key in handle.keys()}  # noqa: SIM118
    key = next(k for k, v in tensors.items() if v.size)
    tensors[key][0] ^= 0xFF
    save_file(tensors, str(paths[0]), metadata=metadata)
    with pytest.raises(ShardError, match="sha256"):
        read_shards(tmp_path / "out", tmp_path / "back")
