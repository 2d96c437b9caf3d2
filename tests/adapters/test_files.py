"""Adapter files: exact round trip, provenance in the header, refusal of foreign files."""

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from adapters.files import AdapterFileError, read_adapter_file, save_adapter_file
from adapters.params import AdapterSpec

BASE_HASH = "a" * 64


def _metadata(**overrides) -> dict:
    values = {
        "base_model": "amused/amused-256",
        "base_model_sha256": BASE_HASH,
        "descriptor": "in watercolor painting style",
        "training_prompts": [
            "A house in watercolor painting style",
            "A cat in watercolor painting style",
        ],
        "source_images": [{"name": "house.png", "sha256": "b" * 64}],
        "round": 2,
        "steps": 1000,
        "learning_rate": 3e-5,
        "seed": 7,
        "batch_size": 8,  # extra keys are kept
    }
    return {**values, **overrides}


def _tensors(rng, kind: str) -> dict[str, np.ndarray]:
    if kind == "lora":
        prefix = "transformer.transformer_layers.0.attn1.to_q"
        return {
            f"{prefix}.lora_A.weight": rng.standard_normal((16, 32)).astype(np.float32),
            f"{prefix}.lora_B.weight": rng.standard_normal((32, 16)).astype(np.float32),
        }
    return {
        "transformer.adapter_attn.down": rng.standard_normal((32, 4)).astype(np.float32),
        "transformer.transformer_layers.0.adapter_attn.up_offset": rng.standard_normal(32).astype(
            np.float32
        ),
    }


def _header(path) -> dict[str, str]:
    with safe_open(str(path), framework="np") as reader:
        return reader.metadata()


@pytest.mark.parametrize("kind", ["r1", "r2", "lora"])
def test_round_trip_is_exact_and_keeps_provenance(tmp_path, rng, kind):
    spec = AdapterSpec(kind)
    tensors = _tensors(rng, kind)
    path = save_adapter_file(tmp_path / "style" / "adapter.safetensors", tensors, spec, _metadata())
    assert [p.name for p in path.parent.iterdir()] == ["adapter.safetensors"]  # no temp left
    loaded = read_adapter_file(path, expected_base_hash=BASE_HASH)
    assert loaded.spec == spec
    assert sorted(loaded.tensors) == sorted(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(loaded.tensors[name], value)
        assert loaded.tensors[name].dtype == value.dtype
    meta = loaded.metadata
    for key, value in _metadata().items():
        assert meta[key] == value, key
    assert meta["created_at"].endswith("+00:00")  # filled in, UTC
    assert meta["adapter_kind"] == kind and meta["format_version"] == 1
    assert meta["parameter_count"] == sum(t.size for t in tensors.values())


def test_header_holds_every_field_as_strings(tmp_path, rng):
    spec = AdapterSpec("r1")
    path = save_adapter_file(
        tmp_path / "a.safetensors",
        _tensors(rng, "r1"),
        spec,
        {"base_model": "amused/amused-256", "base_model_sha256": BASE_HASH},
    )
    header = _header(path)
    assert all(isinstance(v, str) for v in header.values())
    for key in (
        "format_version",
        "base_model",
        "base_model_sha256",
        "adapter_kind",
        "adapter_spec",
        "parameter_count",
        "descriptor",
        "training_prompts",
        "source_images",
        "round",
        "steps",
        "learning_rate",
        "seed",
        "created_at",
    ):
        assert f"styledrop.{key}" in header, key  # defaults fill what the caller left out
    assert header["styledrop.base_model_sha256"] == BASE_HASH
    assert json.loads(header["styledrop.adapter_spec"])["bottleneck"] == 4
    assert header["styledrop.parameter_count"] == str(32 * 4 + 32)
    assert "lora_adapter_metadata" not in header


def test_lora_header_carries_diffusers_lora_metadata(tmp_path, rng):
    spec = AdapterSpec("lora", rank=16, alpha=32.0)
    path = save_adapter_file(tmp_path / "l.safetensors", _tensors(rng, "lora"), spec, _metadata())
    header = _header(path)
    lora = json.loads(header["lora_adapter_metadata"])
    assert lora["transformer.r"] == 16
    assert lora["transformer.lora_alpha"] == 32.0
    assert lora["transformer.target_modules"] == ["to_k", "to_q", "to_v"]
    assert header["format"] == "pt"


def test_another_base_hash_is_refused_with_the_training_base(tmp_path, rng):
    path = save_adapter_file(
        tmp_path / "a.safetensors", _tensors(rng, "r2"), AdapterSpec("r2"), _metadata()
    )
    with pytest.raises(AdapterFileError, match="amused/amused-256") as info:
        read_adapter_file(path, expected_base_hash="c" * 64)
    assert BASE_HASH in str(info.value)


def test_damaged_and_foreign_files_are_refused(tmp_path, rng):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(AdapterFileError, match="not a readable safetensors"):
        read_adapter_file(garbage)
    good = save_adapter_file(
        tmp_path / "good.safetensors", _tensors(rng, "r2"), AdapterSpec("r2"), _metadata()
    )
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(AdapterFileError, match="not a readable safetensors"):
        read_adapter_file(truncated)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"encoder_proj.weight": np.zeros((2, 2), np.float32)}, str(foreign))
    with pytest.raises(AdapterFileError, match="not a StyleDrop adapter"):
        read_adapter_file(foreign)
    with pytest.raises(AdapterFileError, match="No adapter file"):
        read_adapter_file(tmp_path / "missing.safetensors")


def test_saving_checks_the_metadata(tmp_path, rng):
    def save(metadata):
        save_adapter_file(
            tmp_path / "a.safetensors", _tensors(rng, "r2"), AdapterSpec("r2"), metadata
        )

    with pytest.raises(ValueError, match="base_model_sha256"):
        save({"base_model": "amused/amused-256"})
    with pytest.raises(ValueError, match="written by save_adapter_file"):
        save(_metadata(adapter_kind="r1"))
    with pytest.raises(ValueError, match="descriptor"):
        save(_metadata(descriptor=3))
    with pytest.raises(ValueError, match="JSON"):
        save(_metadata(seed=object()))
    assert not list(tmp_path.iterdir())  # nothing half-written
