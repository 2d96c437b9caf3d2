"""The plain-read safetensors reader and the streamed weight loading built on it."""

import shutil

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch_file

from muse import checkpoint, weights
from muse.folder_layout import TRANSFORMER_FILE
from muse.safetensors_file import SafetensorsFile, SafetensorsFormatError


def _tensors(rng) -> dict[str, np.ndarray]:
    return {
        "w": rng.standard_normal((3, 5)).astype(np.float32),
        "half": rng.standard_normal((4,)).astype(np.float16),
        "ids": rng.integers(0, 100, (2, 2, 2)).astype(np.int64),
        "scalar": np.array(1.5, np.float64),
        "empty": np.zeros((0, 7), np.float32),
        "mask": np.array([True, False, True]),
    }


def test_reads_what_the_safetensors_library_reads(tmp_path, rng):
    tensors = _tensors(rng)
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path), metadata={"format": "np"})
    reference = load_file(str(path))
    with SafetensorsFile(path) as stored:
        assert sorted(stored) == sorted(tensors)
        assert stored.shapes() == {k: v.shape for k, v in tensors.items()}
        assert stored.metadata == {"format": "np"}
        for name in tensors:
            got = stored.read(name)
            assert got.dtype == reference[name].dtype
            np.testing.assert_array_equal(got, reference[name])


def test_reads_bfloat16(tmp_path):
    values = torch.tensor([[1.0, -2.5], [3.25, 1e-3]], dtype=torch.bfloat16)
    path = tmp_path / "bf16.safetensors"
    save_torch_file({"x": values}, str(path))
    with SafetensorsFile(path) as stored:
        got = stored.read("x")
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.astype(np.float32), values.float().numpy())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:5], "shorter than a safetensors header"),
        (lambda b: (10**12).to_bytes(8, "little") + b[8:], "header length"),
        (lambda b: b[:8] + b"{" * (len(b) - 8), "not JSON"),
        (lambda b: b[:-4], "truncated or corrupt"),
    ],
)
def test_damaged_files_are_named(tmp_path, rng, damage, message):
    path = tmp_path / "t.safetensors"
    save_file(_tensors(rng), str(path))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SafetensorsFormatError, match=message):
        SafetensorsFile(path)


def test_streamed_load_reads_each_tensor_once_without_mapping_the_file(tiny_model_dir, monkeypatch):
    """Loading reads tensors one at a time through the reader; the file is never mapped
    into memory (a mapped file's pages would count towards the load's peak memory)."""
    path = tiny_model_dir / TRANSFORMER_FILE
    original, reads = SafetensorsFile.read, []

    def checked_read(self, name):
        with open("/proc/self/maps") as maps:
            assert str(path.resolve()) not in maps.read()
        reads.append(name)
        return original(self, name)

    monkeypatch.setattr(SafetensorsFile, "read", checked_read)
    _, model = checkpoint.load_transformer(tiny_model_dir)
    saved = load_file(str(path))
    loaded = weights.flat_params(model)
    assert sorted(reads) == sorted(saved) == sorted(loaded)
    for name, value in saved.items():
        np.testing.assert_array_equal(loaded[name], value)
        assert loaded[name].dtype == np.float32


def test_damaged_checkpoint_is_a_checkpoint_error(tmp_path, tiny_model_dir):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    path = folder / TRANSFORMER_FILE
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt"):
        checkpoint.load_transformer(folder)


def test_float16_file_loads_as_float32(tmp_path, tiny_model_dir):
    """The zoo ships float16 files; parameters keep the model's float32."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    path = folder / TRANSFORMER_FILE
    half = {k: v.astype(np.float16) for k, v in load_file(str(path)).items()}
    save_file(half, str(path))
    _, model = checkpoint.load_transformer(folder)
    for name, value in weights.flat_params(model).items():
        assert value.dtype == jnp.float32
        np.testing.assert_array_equal(value, half[name].astype(np.float32))
