"""Benchmark fixtures: aMUSEd checkpoints in diffusers layout and in ours, same weights.

`prepare(name, cache)` builds, once per configuration, a diffusers folder with random
weights (`UVit2DModel`, `VQModel`, CLIP text encoder with projection, tokenizer,
`AmusedScheduler`, written by `AmusedPipeline.save_pretrained`, so
`AmusedPipeline.from_pretrained` loads it), converts it with `muse.convert` and writes a
random LoRA adapter file (rank 16, alpha 32, q/k/v; PEFT key names) that loads into
both implementations. Both sides therefore compute the same function. The result is
cached under `cache/<name>/` and reused while `fixture.json` matches.

The `zoo` configuration goes the other way: our side uses the embedded zoo folder as it
is (`styledrop.zoo.embedded.zoo_dir()`), and `export_diffusers` writes its committed
weights into a diffusers folder (the inverse of `muse.convert`'s layout transforms,
checked by converting the export back and comparing every tensor exactly). The cached
export is rebuilt when the zoo's weight hashes change.

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

from muse.config import SamplingConfig, TransformerConfig, VQConfig
from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR, TRANSFORMER_FILE, VQ_FILE

FIXTURE_VERSION = 1
RANDOM_CONFIGS = ("tiny", "amused_256", "amused_512")  # random weights made in diffusers
CONFIGS = (*RANDOM_CONFIGS, "zoo")
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
POSITION_EMBEDDING = "position_embedding"  # our U-ViT's optional parameter, not in diffusers
POOL_SIZE = 8  # token grids in the training pool (as `variants_per_image`)
# The zoo workloads follow the demo (`styledrop.demo`): its style image, caption,
# descriptor and subjects (a copy: importing `styledrop.demo` would load JAX here).
ZOO_STYLE_IMAGE = ("styledrop", "data", "demo_style_house_line_art.png")
ZOO_CAPTION = "a house"
ZOO_DESCRIPTOR = "in blue ink line drawing style"
ZOO_SUBJECTS = (
    "a cat", "a penguin", "a tree", "a rocket", "a teapot", "an owl", "a banana", "a car",
)  # fmt: skip
ZOO_BATCH = 8  # `styledrop finetune`'s default batch size
ZOO_VARIANTS = 8  # augmented crops of the style image (`variants_per_image`)


@dataclass(frozen=True)
class Fixture:
    """One prepared configuration.

    Attributes:
        name: Configuration name (one of `CONFIGS`).
        diffusers_dir: The diffusers-layout folder (`AmusedPipeline.from_pretrained`).
        native_dir: The same weights in our native folder (`muse.load`); for `zoo`
            the zoo folder itself.
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
        name: One of `RANDOM_CONFIGS`.

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
        raise ValueError(f"Unknown configuration {name!r}; choose from {RANDOM_CONFIGS}.")
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


def code_grid(cfg: TransformerConfig, batch: int, seed: int = 2) -> np.ndarray:
    """[batch, side, side] int64 codebook ids, no mask token (what the VQ decodes)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, cfg.codebook_size, (batch, cfg.sample_size, cfg.sample_size))


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
        name: One of `RANDOM_CONFIGS`.
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
    transformer = diffusers.UVit2DModel(**tcfg.diffusers_kwargs())
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


def zoo_style_image() -> Path:
    """The demo's style image, shipped with the package (a 64x64 line-art house)."""
    from importlib import resources

    package, *parts = ZOO_STYLE_IMAGE
    return Path(str(resources.files(package).joinpath(*parts)))


def style_crops(pixels: np.ndarray, size: int, count: int, seed: int = 0) -> np.ndarray:
    """The crops `styledrop.finetune` trains on, computed without JAX (for the reference).

    The same draws as `styledrop.dataset.augmented_crops` with `default_rng(seed)`, as
    `build_token_pool` makes them for a single style image: the centre square, then
    `count - 1` random square crops covering at least 0.8 of it, Lanczos-resized.

    Returns:
        [count, size, size, 3] uint8.
    """
    from PIL import Image

    from styledrop.inputs import center_square

    rng = np.random.default_rng(seed)
    base = center_square(pixels, max(size, min(pixels.shape[:2])))
    side = base.shape[0]
    out = [np.asarray(Image.fromarray(base).resize((size, size), Image.Resampling.LANCZOS))]
    for _ in range(count - 1):
        crop = round(side * rng.uniform(0.8, 1.0))
        top, left = rng.integers(0, side - crop + 1, size=2)
        patch = Image.fromarray(base[top : top + crop, left : left + crop])
        out.append(np.asarray(patch.resize((size, size), Image.Resampling.LANCZOS)))
    return np.stack(out)


def diffusers_sampling(native_dir: str | Path) -> dict[str, Any]:
    """A native model's sampling defaults as `AmusedPipeline.__call__` arguments.

    MaskGIT decoding ("maskgit": keep floor(U0 r) tokens masked, U0 the tokens unknown
    at the start, Gumbel temperature c (1 - (k + 1) / K) at step k) is aMUSEd's rule when
    decoding starts from a fully masked grid (U0 = L) with the temperatures
    linspace(c (K - 1) / K, 0, K), which is what `AmusedScheduler.set_timesteps` makes of
    the pair (c (K - 1) / K, 0).

    Returns:
        `num_inference_steps`, `guidance_scale`, `temperature` (a pair),
        `micro_conditioning_aesthetic_score` and `micro_conditioning_crop_coord`.
    """
    record = json.loads((Path(native_dir) / "model.json").read_text())
    sampling = SamplingConfig.from_dict(record["config"]["sampling"])
    steps = sampling.num_steps
    if sampling.decoding == "maskgit":
        temperature = (float(sampling.temperature) * (steps - 1) / steps, 0.0)
    elif isinstance(sampling.temperature, tuple | list):
        temperature = tuple(float(t) for t in sampling.temperature)
    else:  # a scalar start: `muse.schedule.temperatures` anneals it to 0.01
        temperature = (float(sampling.temperature), 0.01)
    return {
        "num_inference_steps": steps,
        "guidance_scale": float(sampling.guidance_scale),
        "temperature": temperature,
        "micro_conditioning_aesthetic_score": float(sampling.aesthetic_score),
        "micro_conditioning_crop_coord": tuple(int(c) for c in sampling.crop_coords),
    }


def add_position_embedding(transformer, values: np.ndarray) -> None:
    """Gives a diffusers `UVit2DModel` our optional position embedding, as ours adds it.

    `muse.transformer.UVit2D` adds a learned [cells, hidden] embedding to the output of
    `project_to_hidden` when `TransformerConfig.position_embedding` is set; diffusers has no
    such parameter. It is registered as the parameter `position_embedding` (so it goes into
    the state dict and `save_pretrained`'s file under the name ours uses) and added by a
    forward hook on `project_to_hidden`, so both sides compute the same function.

    Args:
        transformer: The diffusers U-ViT.
        values: [cells, hidden_size] embedding.
    """
    import torch

    weight = torch.nn.Parameter(torch.as_tensor(np.asarray(values, np.float32)))
    transformer.register_parameter(POSITION_EMBEDDING, weight)

    def add(module, inputs, output):  # output: [B, cells, hidden_size]
        return output + getattr(transformer, POSITION_EMBEDDING).to(output.dtype)

    transformer.project_to_hidden.register_forward_hook(add)


def load_position_embedding(diffusers_dir: str | Path) -> np.ndarray | None:
    """The position embedding a diffusers export holds beside the U-ViT's weights, if any.

    `AmusedPipeline.from_pretrained` leaves it out (diffusers knows no such parameter, and
    says so); `add_position_embedding` puts it back.
    """
    from muse.safetensors_file import SafetensorsFile

    path = Path(diffusers_dir) / "transformer" / "diffusion_pytorch_model.safetensors"
    with SafetensorsFile(path) as tensors:
        if POSITION_EMBEDDING not in tensors.shapes():
            return None
        return tensors.read(POSITION_EMBEDDING)


def torch_state(
    model, params: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], what: str
) -> dict[str, np.ndarray]:
    """Native parameters -> a PyTorch state dict: `muse.weights.from_torch_state` inverted.

    Every layout transform of `muse.weights` (transposes, reshapes) only moves elements,
    so its inverse is read off the transform applied to an index array: element `i` of
    the PyTorch tensor lands at the native position holding `i`.

    Args:
        model: The native module (abstract shapes are enough).
        params: Native name -> array, every parameter of `model`.
        shapes: PyTorch key -> shape, every tensor of the PyTorch module's state dict.
        what: A label for error messages.

    Returns:
        PyTorch key -> float32 array.

    Raises:
        muse.weights.WeightsError: when names or shapes do not correspond.
        ValueError: when a transform is not a pure rearrangement.
    """
    from muse import weights

    mapping = weights.check_torch_shapes(model, shapes, what)
    missing = sorted(set(mapping) - set(params))
    if missing:
        raise weights.WeightsError(f"The native {what} lacks {missing[:10]}")
    out = {}
    for name, (key, transform) in mapping.items():
        shape = tuple(shapes[key])
        size = int(np.prod(shape, dtype=np.int64))
        positions = np.asarray(transform(np.arange(size).reshape(shape))).reshape(-1)
        if not np.array_equal(np.sort(positions), np.arange(size)):
            raise ValueError(f"{what}: the layout transform of {key} is not a rearrangement.")
        flat = np.empty(size, np.float32)
        flat[positions] = np.asarray(params[name], np.float32).reshape(-1)
        out[key] = flat.reshape(shape)
    return out


def export_diffusers(native_dir: str | Path, root: Path) -> Path:
    """Writes a native model folder (the zoo) as a diffusers aMUSEd checkpoint.

    The U-ViT and the VQ model go through `torch_state` into `UVit2DModel` and `VQModel`
    of the same configuration (loaded strictly); the text encoder and tokenizer are
    already transformers models; the scheduler is an `AmusedScheduler` with the model's
    mask id and schedule. Written by `AmusedPipeline.save_pretrained` (float32), then
    checked: converting the export back gives every native tensor exactly.

    Args:
        native_dir: A folder `muse.load` reads.
        root: Destination folder (replaced).

    Returns:
        `root`.

    Raises:
        RuntimeError: when the round trip does not reproduce a tensor.
    """
    import diffusers
    import torch
    from flax import nnx
    from safetensors.numpy import load_file
    from transformers import CLIPTextModelWithProjection

    from muse import checkpoint, weights
    from muse.tokenizer import load_tokenizer
    from muse.transformer import UVit2D
    from muse.vq import VQModel

    native_dir = Path(native_dir)
    config = checkpoint.read_model_config(native_dir)
    transformer = diffusers.UVit2DModel(**config.transformer.diffusers_kwargs())
    if config.transformer.position_embedding:  # filled from the native weights below
        cells, width = config.transformer.layer_grid_cells, config.transformer.hidden_size
        add_position_embedding(transformer, np.zeros((cells, width)))
    vq = diffusers.VQModel(**config.vq.diffusers_kwargs())
    parts = (
        ("transformer", transformer, TRANSFORMER_FILE,
         lambda: UVit2D(config.transformer, rngs=nnx.Rngs(0))),
        ("vqvae", vq, VQ_FILE, lambda: VQModel(config.vq, rngs=nnx.Rngs(0))),
    )  # fmt: skip
    natives = {}
    for what, module, file_name, factory in parts:
        abstract = nnx.eval_shape(factory)
        natives[what] = (abstract, load_file(str(native_dir / file_name)))
        shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
        state = torch_state(abstract, natives[what][1], shapes, what)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    text_encoder = CLIPTextModelWithProjection.from_pretrained(
        native_dir / TEXT_ENCODER_DIR, local_files_only=True
    )
    scheduler = diffusers.AmusedScheduler(
        mask_token_id=config.sampling.mask_token_id,
        masking_schedule=config.sampling.masking_schedule,
    )
    pipe = diffusers.AmusedPipeline(
        vqvae=vq,
        tokenizer=load_tokenizer(native_dir / TOKENIZER_DIR),
        text_encoder=text_encoder.float(),
        transformer=transformer,
        scheduler=scheduler,
    )
    shutil.rmtree(root, ignore_errors=True)
    pipe.save_pretrained(root, safe_serialization=True)
    for what, (abstract, native) in natives.items():  # the round trip, as `convert` reads it
        tensors = load_file(str(root / what / "diffusion_pytorch_model.safetensors"))
        back = weights.from_torch_state(abstract, tensors, what)
        wrong = [n for n, v in native.items() if not np.array_equal(back[n], v.astype(np.float32))]
        if wrong or set(back) != set(native):
            raise RuntimeError(f"The diffusers export of the {what} differs at {wrong[:10]}")
    return root


def _record(name: str, seed: int, native_dir: Path | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"version": FIXTURE_VERSION, "config": name, "seed": seed}
    if native_dir is not None:  # an exported model: rebuilt when its weights change
        record["source"] = str(native_dir)
        record["sha256"] = json.loads((native_dir / "model.json").read_text())["sha256"]
    return record


def prepare(name: str, cache: str | Path, seed: int = 0, rebuild: bool = False) -> Fixture:
    """Returns the fixture of configuration `name`, building it under `cache` if needed.

    Args:
        name: One of `CONFIGS` ("zoo": the embedded zoo, exported to diffusers).
        cache: Folder holding one subfolder per configuration.
        seed: Seed of the random weights (and of the random LoRA file).
        rebuild: Build again even when a matching fixture exists.

    Returns:
        The fixture's paths.
    """
    from muse.convert import convert_diffusers

    folder = Path(cache).expanduser().resolve() / name
    native_dir = folder / "native"
    exported = None
    if name == "zoo":
        from styledrop.zoo.embedded import embedded_base

        native_dir = exported = embedded_base().resolve()
    fixture = Fixture(name, folder / "diffusers", native_dir, folder / "lora.safetensors")
    record = _record(name, seed, exported)
    marker = folder / "fixture.json"
    if not rebuild and marker.is_file():
        try:
            if json.loads(marker.read_text()) == record:
                return fixture
        except json.JSONDecodeError:
            pass
    marker.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    if exported is not None:
        export_diffusers(exported, fixture.diffusers_dir)
    else:
        write_diffusers_checkpoint(name, fixture.diffusers_dir, seed)
        convert_diffusers(fixture.diffusers_dir, fixture.native_dir, overwrite=True)
    write_lora_file(fixture.native_dir, fixture.lora_file, seed)
    marker.write_text(json.dumps(record) + "\n")  # last: marks it complete
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
