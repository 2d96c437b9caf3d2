"""Benchmark fixtures: random aMUSEd checkpoints in diffusers layout, converted to ours.

`prepare(name, cache)` builds, once per configuration, a diffusers folder with random
weights (`UVit2DModel`, `VQModel`, CLIP text encoder with projection, tokenizer,
`AmusedScheduler`, written by `AmusedPipeline.save_pretrained`, so
`AmusedPipeline.from_pretrained` loads it), converts it with `muse.convert` and writes a
random LoRA adapter file (rank 16, alpha 32, q/k/v; PEFT key names) that loads into
both implementations. Both sides therefore compute the same function. The result is
cached under `cache/<name>/` and reused while `fixture.json` matches.

This module also fixes the inputs every workload uses (prompts, token grids), so the two
sides see the same data. Its top level imports only the standard library, numpy and
`muse.config` (plain dataclasses): the reference process must not pay for JAX.

Run `python -m bench.fixtures CONFIG --cache DIR` to build one and print its paths as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from muse.config import TransformerConfig, VQConfig

FIXTURE_VERSION = 1
CONFIGS = ("tiny", "amused_256", "amused_512")
DESCRIPTOR = "in [V*] style"
PROMPTS = (
    "a red bus in the snow",
    "a cat wearing a straw hat",
    "a lighthouse at dusk",
    "a bowl of fruit on a wooden table",
)
TRAIN_PROMPT = f"a house {DESCRIPTOR}"
GUIDANCE_SCALE = 10.0  # aMUSEd's default classifier-free guidance scale
NUM_STEPS = 12  # aMUSEd's default number of decoding steps
LAMBDA_A, LAMBDA_B = 1.0, 5.0  # StyleDrop guidance (paper defaults)
LORA_RANK, LORA_ALPHA, LORA_TARGETS = 16, 32.0, ("to_q", "to_k", "to_v")
POOL_SIZE = 8  # token grids in the training pool (as `variants_per_image`)


@dataclass(frozen=True)
class Fixture:
    """One prepared configuration.

    Attributes:
        name: Configuration name ("tiny", "amused_256", "amused_512").
        diffusers_dir: The diffusers-layout folder (`AmusedPipeline.from_pretrained`).
        native_dir: The same weights converted to our native folder (`muse.load`).
        lora_file: A random LoRA adapter (our file format, PEFT keys) for both sides.
    """

    name: str
    diffusers_dir: Path
    native_dir: Path
    lora_file: Path

    def to_dict(self) -> dict[str, str]:
        """A JSON-serialisable dict."""
        return {key: str(value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, str]) -> Fixture:
        """Inverse of `to_dict`."""
        return cls(
            name=values["name"],
            diffusers_dir=Path(values["diffusers_dir"]),
            native_dir=Path(values["native_dir"]),
            lora_file=Path(values["lora_file"]),
        )


def model_configs(name: str) -> tuple[TransformerConfig, VQConfig, dict[str, Any]]:
    """Transformer, VQ and text-encoder sizes of a configuration.

    Args:
        name: One of `CONFIGS`.

    Returns:
        (transformer config, VQ config, `CLIPTextConfig` keyword arguments without the
        tokenizer-dependent ids).
    """
    if name == "tiny":
        tcfg, vcfg = TransformerConfig.tiny(), VQConfig.tiny()
        text = {"intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 2}
    elif name in ("amused_256", "amused_512"):
        tcfg = getattr(TransformerConfig, name)()
        vcfg = VQConfig.amused()
        # The CLIP-L/14 text tower of aMUSEd (laion DataComp.XL): 12 layers of width 768.
        text = {
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "hidden_act": "gelu",
        }
    else:
        raise ValueError(f"Unknown configuration {name!r}; choose from {CONFIGS}.")
    text.update(
        hidden_size=tcfg.encoder_hidden_size,
        projection_dim=tcfg.cond_embed_dim,
        max_position_embeddings=77,
    )
    return tcfg, vcfg, text


def prompts(batch: int) -> list[str]:
    """The first `batch` benchmark prompts (cycled if more are asked for)."""
    return [PROMPTS[i % len(PROMPTS)] for i in range(batch)]


def styled_prompts(batch: int) -> list[str]:
    """Benchmark prompts with the style descriptor (what StyleDrop sampling is given)."""
    return [f"{p} {DESCRIPTOR}" for p in prompts(batch)]


def token_grid(cfg: TransformerConfig, batch: int, seed: int = 0) -> np.ndarray:
    """[batch, side, side] int64 token ids, every third row partly masked (a mid-decode grid)."""
    rng = np.random.default_rng(seed)
    side = cfg.sample_size
    ids = rng.integers(0, cfg.codebook_size, (batch, side, side))
    ids[:, ::3, ::2] = cfg.mask_token_id
    return ids


def training_tokens(cfg: TransformerConfig, count: int = POOL_SIZE, seed: int = 1) -> np.ndarray:
    """[count, side, side] int64 token grids standing in for tokenized style images."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, cfg.codebook_size, (count, cfg.sample_size, cfg.sample_size))


def micro_conds(cfg: TransformerConfig, vcfg: VQConfig, rows: int) -> np.ndarray:
    """[rows, 5] float32 micro-conditions as both pipelines build them (size, size, 0, 0, 6)."""
    size = cfg.sample_size * vcfg.downscale_factor
    return np.tile(np.asarray([[size, size, 0, 0, 6]], np.float32), (rows, 1))


def _perturb_norms(model, scale: float = 0.3) -> None:
    """Moves norm weights and GRN gamma/beta off their init values (as the parity tests)."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "gamma" in name or "beta" in name:
                param.add_(scale * torch.randn_like(param))


def write_diffusers_checkpoint(name: str, root: Path, seed: int = 0) -> Path:
    """Writes a random aMUSEd checkpoint of configuration `name` in diffusers layout.

    Args:
        name: One of `CONFIGS`.
        root: Destination folder (replaced).
        seed: Torch seed of the random weights.

    Returns:
        `root`.
    """
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from muse.tokenizer import build_open_clip_tokenizer

    tcfg, vcfg, text = model_configs(name)
    torch.manual_seed(seed)
    transformer = diffusers.UVit2DModel(**tcfg.to_dict())
    _perturb_norms(transformer)
    vq = diffusers.VQModel(**vcfg.diffusers_kwargs())
    _perturb_norms(vq)
    with torch.no_grad():
        vq.quantize.embedding.weight.normal_()
    tokenizer = build_open_clip_tokenizer()
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **text,
        )
    )
    scheduler = diffusers.AmusedScheduler(mask_token_id=tcfg.mask_token_id)
    pipe = diffusers.AmusedPipeline(
        vqvae=vq,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=transformer,
        scheduler=scheduler,
    )
    shutil.rmtree(root, ignore_errors=True)
    pipe.save_pretrained(root, safe_serialization=True)
    return root


def write_lora_file(native_dir: Path, path: Path, seed: int = 0) -> Path:
    """Writes a LoRA adapter (r16, alpha 32, q/k/v) with random nonzero A and B.

    It is our adapter file (base hash recorded, so `attach_adapter` accepts it) with
    PEFT key names and diffusers' LoRA metadata, so `load_lora_adapter` reads it too.
    """
    import jax
    from flax import nnx

    from adapters import AdapterParam, AdapterSpec, adapter_state_dict, inject_adapter
    from adapters.files import save_adapter_file
    from muse import checkpoint
    from muse.transformer import current_adapter_gate

    _, transformer = checkpoint.load_transformer(native_dir)
    spec = AdapterSpec("lora", rank=LORA_RANK, alpha=LORA_ALPHA, lora_targets=LORA_TARGETS)
    index = inject_adapter(transformer, spec, rngs=nnx.Rngs(seed), gate_source=current_adapter_gate)
    flat = nnx.to_flat_state(nnx.state(transformer, AdapterParam))
    keys = jax.random.split(jax.random.key(seed), len(flat))
    for key, (_, variable) in zip(keys, flat, strict=True):
        value = variable.get_value()
        variable.set_value(0.05 * jax.random.normal(key, value.shape, value.dtype))
    nnx.update(transformer, nnx.from_flat_state(flat))
    metadata = {
        "base_model": f"bench/{native_dir.parent.name}",
        "base_model_sha256": checkpoint.base_model_hash(native_dir),
        "descriptor": DESCRIPTOR,
    }
    return save_adapter_file(path, adapter_state_dict(transformer, index), spec, metadata)


def _record(name: str, seed: int) -> dict[str, Any]:
    return {"version": FIXTURE_VERSION, "config": name, "seed": seed}


def prepare(name: str, cache: str | Path, seed: int = 0, rebuild: bool = False) -> Fixture:
    """Returns the fixture of configuration `name`, building it under `cache` if needed.

    Args:
        name: One of `CONFIGS`.
        cache: Folder holding one subfolder per configuration.
        seed: Seed of the random weights.
        rebuild: Build again even when a matching fixture exists.

    Returns:
        The fixture's paths.
    """
    from muse.convert import convert_diffusers

    folder = Path(cache).expanduser().resolve() / name
    fixture = Fixture(name, folder / "diffusers", folder / "native", folder / "lora.safetensors")
    marker = folder / "fixture.json"
    if not rebuild and marker.is_file():
        try:
            if json.loads(marker.read_text()) == _record(name, seed):
                return fixture
        except json.JSONDecodeError:
            pass
    marker.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_diffusers_checkpoint(name, fixture.diffusers_dir, seed)
    convert_diffusers(fixture.diffusers_dir, fixture.native_dir, overwrite=True)
    write_lora_file(fixture.native_dir, fixture.lora_file, seed)
    marker.write_text(json.dumps(_record(name, seed)) + "\n")  # last: marks it complete
    return fixture


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.fixtures CONFIG --cache DIR`: builds (or finds) and prints JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.fixtures", description=__doc__)
    parser.add_argument("config", choices=CONFIGS)
    parser.add_argument("--cache", type=Path, required=True, help="fixture cache folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached fixture")
    args = parser.parse_args(argv)
    fixture = prepare(args.config, args.cache, seed=args.seed, rebuild=args.rebuild)
    print(json.dumps(fixture.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
