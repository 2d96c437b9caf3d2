"""`styledrop zoo build`: the zoo's models in one run, sized to a wall-clock budget.

The stages, on whatever JAX backend is present (a lent GPU, or this CPU):

1. Render the emoji world from a data pack (`zoo_build.pack`): no fonts needed.
2. The text encoder: the committed zoo's (default), or another run folder, fine-tuned so
   that style words leave the subject readable (descriptor invariance with subject
   retention, `zoo_build.descriptor_invariance`), within a cap on its share of the
   budget; cut at the cap, the build goes on with the encoder as given.
3. The VQ tokenizer: a few probe steps time one step, the step count is set so the run
   fills its share of the time left, then it trains with a full warm-up + cosine schedule.
4. The base U-ViT on the new tokens, sized the same way to the rest of the budget.
5. Assemble the zoo folder (float16, manifest; the judge is the committed zoo's) and
   write it as safetensors shards of bounded size (`zoo_build.shards`).

The results folder (on a lent GPU: `$OUT`, which comes back even when the command is cut)
gets `build_log.jsonl` (one line per event, appended as it happens), `build_summary.json`
(rewritten after each event), the VQ's shards once it is trained (`vq-*.safetensors`) and
the zoo's shards at the end (`zoo-*.safetensors`), so a run cut short still returns what
it finished. Each trainer checkpoints in the work folder, so rerunning the same command
on the same folders resumes. A later build can continue the zoo an earlier one returned
(`init_dir`, `zoo_build.continuation`): it keeps that zoo's VQ and gives the whole budget
to its base.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muse.config import TransformerConfig, VQConfig
from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR, TRANSFORMER_FILE, VQ_FILE
from styledrop.images import make_grid, save_image
from styledrop.zoo.draws import DEFAULT_DRAWS
from styledrop.zoo.embedded import JUDGE_DIR, MANIFEST, zoo_dir
from zoo_build.continuation import (
    ContinuationError,
    EarlierZoo,
    check_continuable,
    read_earlier_zoo,
)
from zoo_build.machine import machine_description
from zoo_build.pack import pack_subjects, using_pack
from zoo_build.recognisability import SAMPLE_PROMPTS, SAMPLES_PER_PROMPT
from zoo_build.run_files import BASE_CONFIG_FILE, VQ_CONFIG_FILE, VQ_INFO_FILE, vq_config_dict
from zoo_build.shards import DEFAULT_MAX_SHARDS, DEFAULT_SHARD_BYTES, write_shards
from zoo_build.zoo_size import (
    COMMITTED_ZOO_LIMIT_BYTES,
    ZooSize,
    predicted_zoo_size,
    text_widths,
)

SAMPLES_FILE = "samples.png"
LOG_FILE = "build_log.jsonl"
SUMMARY_FILE = "build_summary.json"
WORLD_DIR = "world"
VQ_RUN, BASE_RUN, ZOO_DIR, PARTS_DIR = "vq", "base", "zoo", "parts"
VQ_OUTPUTS = (VQ_FILE, VQ_CONFIG_FILE, VQ_INFO_FILE)
PROBE_VQ, PROBE_BASE = "probe-vq", "probe-base"
XLA_CACHE_DIR = "xla-cache"
TEXT_RUN = "text"
TRANSPLANT_RUN = "base-transplant"
# The text stage's subject weight and retention phrases, as measured on CPU (docs/zoo.md,
# "The world's own styles", step 5), and the most of the budget the stage may take.
TEXT_SUBJECT_WEIGHT = 0.4
TEXT_RETENTION_PHRASES = "mixed"
TEXT_STAGE_SHARE = 0.15


class BuildConfigError(ValueError):
    """Build settings that cannot work together; the message says which and why."""


@dataclass(frozen=True)
class BuildConfig:
    """What `build_zoo` trains and how it spends its budget.

    Attributes:
        time_budget_s: Wall-clock seconds for the whole build, from the call on.
        size: Image side of the rendered world in pixels.
        draws: Draws per subject per split (None: the dataset's defaults).
        subjects: Subject ids to build (None: every subject in the pack).
        vq_channels: VQ encoder widths per level (n levels: tokens are size / 2^(n-1)).
        vq_codes: VQ codebook size.
        vq_batch: VQ images per step.
        vq_lr: VQ peak learning rate.
        vq_warmup: VQ warm-up steps.
        vq_max_steps: Upper bound on VQ steps (the budget may allow fewer).
        vq_share: Fraction of the time left after rendering that the VQ gets.
        base_width: Base U-ViT width (with 8 layers, 192 keeps the zoo under 32 MB).
        base_layers: Base U-ViT transformer layers.
        base_downsample: Run the base's transformer layers on the token grid halved by a
            2x2 convolution (aMUSEd 512's design; on 16x16 tokens it draws 0.8 s an image
            on 2 CPU cores against 3.0 s on the full grid, docs/zoo.md).
        base_position_embedding: Give the base a learned embedding of each grid position,
            so it can lay out a drawing from the text alone (not in aMUSEd).
        base_descriptor_pairs: Extra pairs per image captioned with a made-up style
            descriptor appended (`zoo_build.descriptors`), so unknown descriptors keep content.
        base_canonical_repeats: Extra copies of each subject's plain canonical draw in the
            base's pool (with 24 canonical draws, 7 keeps its share at a quarter).
        base_dtype: Base compute dtype: "float32", "bfloat16", or "auto" (bfloat16 on a
            GPU, float32 elsewhere).
        base_batch: Base (image, caption) pairs per step.
        base_lr: Base peak learning rate.
        base_warmup: Base warm-up steps.
        base_max_steps: Upper bound on base steps.
        base_transplant: A base's `transformer.safetensors` (the committed zoo's, say) with
            the base_width and base_layers asked for, whose transformer the new base starts
            from (`zoo_build.transplant`): first `base_transplant_steps` steps train only
            the tensors for the new tokenizer, then the base run trains everything (None:
            a random init).
        base_transplant_steps: Steps of that first run (its warm-up is a sixth of them).
        probe_steps: Steps timed before each trainer is sized (0: train the max steps).
        reserve_s: Seconds kept back for assembling, sharding and the sample grid.
        sample_prompts: Prompts of the sample grid drawn by the new zoo at the end.
        samples_per_prompt: Images per prompt in that grid (0: no grid).
        text_dir: Folder with text_encoder/ and tokenizer/ (None: the committed zoo's).
        text_retention_steps: Steps of the text stage, which fine-tunes that encoder for
            descriptor invariance with subject retention before the base trains on it (0:
            the encoder as given).
        text_batch: Captions per step of the text stage.
        judge_dir: Folder with judge/ (None: the committed zoo's).
        init_dir: A zoo an earlier build returned (`zoo unshard`), to continue: its VQ is
            kept (no VQ stage; the vq_* settings do not apply), its text encoder and judge
            are used unless others are given, and its base starts the base run
            (`zoo_build.continuation`).
        seed: Seed of the world's split and of every trainer (a continued base adds the
            number of base runs before it, so that it draws other batches).
        shard_bytes: Largest shard file.
        max_shards: Most files in the results folder (the device returns at most 8).
        max_zoo_bytes: Largest assembled zoo the build accepts, checked before anything
            trains (the repository commits at most 32 MB of zoo; 0: no limit).
    """

    time_budget_s: float = 420.0
    size: int = 64
    draws: dict[str, int] | None = None
    subjects: tuple[str, ...] | None = None
    vq_channels: tuple[int, ...] = (32, 64, 128)
    vq_codes: int = 1024
    vq_batch: int = 64
    vq_lr: float = 2e-3
    vq_warmup: int = 100
    vq_max_steps: int = 20_000
    vq_share: float = 0.35
    base_width: int = 192
    base_layers: int = 8
    base_downsample: bool = True
    base_position_embedding: bool = False
    base_descriptor_pairs: int = 2
    base_canonical_repeats: int = 3
    base_dtype: str = "auto"
    base_batch: int = 128
    base_lr: float = 1e-3
    base_warmup: int = 200
    base_max_steps: int = 50_000
    base_transplant: str | None = None
    base_transplant_steps: int = 300
    probe_steps: int = 20
    reserve_s: float = 30.0
    sample_prompts: tuple[str, ...] = SAMPLE_PROMPTS
    samples_per_prompt: int = SAMPLES_PER_PROMPT
    text_dir: str | None = None
    text_retention_steps: int = 400
    text_batch: int = 128
    judge_dir: str | None = None
    init_dir: str | None = None
    seed: int = 0
    shard_bytes: int = DEFAULT_SHARD_BYTES
    max_shards: int = DEFAULT_MAX_SHARDS
    max_zoo_bytes: int = COMMITTED_ZOO_LIMIT_BYTES

    def __post_init__(self):
        if self.time_budget_s <= 0:
            raise BuildConfigError("The time budget must be positive.")
        if self.base_dtype not in ("auto", "float32", "bfloat16"):
            raise BuildConfigError(
                f"base_dtype must be auto, float32 or bfloat16: {self.base_dtype}"
            )
        if self.text_retention_steps < 0 or self.text_batch < 1:
            raise BuildConfigError(
                "text_retention_steps must be 0 or more and text_batch at least 1."
            )
        if self.base_transplant is not None and self.init_dir is not None:
            raise BuildConfigError(
                "A continued zoo's base starts the base run: drop --base-transplant or --init."
            )
        if self.base_transplant_steps < 1:
            raise BuildConfigError("base_transplant_steps must be at least 1.")
        if not 0.0 < self.vq_share < 1.0:
            raise BuildConfigError("vq_share must lie strictly between 0 and 1.")
        if self.size % 2 ** (len(self.vq_channels) - 1):
            raise BuildConfigError(
                f"size {self.size} is not divisible by the VQ's downsampling"
                f" {2 ** (len(self.vq_channels) - 1)} (from {len(self.vq_channels)} levels)."
            )


class _Recorder:
    """Appends events to the log, keeps the summary file current, prints one line each."""

    def __init__(self, out_dir: Path, echo: Callable[[str], None]):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.echo = out_dir, echo
        self.started = time.monotonic()
        self.summary: dict[str, Any] = {"stages": {}}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def event(self, stage: str, **values: Any) -> None:
        record = {"stage": stage, "t_s": round(self.elapsed(), 2), **values}
        with (self.out_dir / LOG_FILE).open("a") as log:
            log.write(json.dumps(record) + "\n")
        self.summary["stages"].setdefault(stage, {}).update(values)
        self.write_summary()
        shown = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        self.echo(f"[{record['t_s']:7.1f} s] {stage}: {shown}")

    def write_summary(self) -> None:
        text = json.dumps(self.summary, indent=2, default=str) + "\n"
        (self.out_dir / SUMMARY_FILE).write_text(text)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _timed_steps(run: Callable[[Callable[[dict], None]], Any]) -> tuple[float, float]:
    """Runs a trainer with a progress hook; returns (first step's seconds, median step s)."""
    stamps: list[float] = []
    began = time.monotonic()
    run(lambda event: stamps.append(time.monotonic()) if "loss" in event else None)
    if len(stamps) < 3:
        raise RuntimeError("The probe ran fewer than 3 steps: raise probe_steps.")
    gaps = [b - a for a, b in itertools.pairwise(stamps[1:])]  # [steps - 2]
    return stamps[0] - began, statistics.median(gaps)


def _sized_steps(seconds: float, step_s: float, floor: int, ceiling: int) -> int:
    """Steps that fit in `seconds` at `step_s` each (5 % slack), within [floor, ceiling].

    `ceiling` wins over `floor` when they cross.
    """
    return min(ceiling, max(floor, int(0.95 * seconds / max(step_s, 1e-6))))


def _copy_part(source: Path, names: tuple[str, ...], dest: Path) -> Path:
    """Copies folders of a zoo (with its manifest: the parts' training records)."""
    for name in names:
        if not (source / name).is_dir():
            raise FileNotFoundError(f"{source} has no {name}/: point the build at a zoo folder.")
        shutil.rmtree(dest / name, ignore_errors=True)
        shutil.copytree(source / name, dest / name)
    if (source / MANIFEST).is_file():
        shutil.copy2(source / MANIFEST, dest / MANIFEST)
    return dest


def _keep_compiled_programs(folder: Path) -> None:
    """Keeps XLA's compiled programs in `folder`, unless a cache is set already.

    The base probe's compiled step then serves the run it sizes (the learning rate is fed
    per step, `zoo_build.schedule`), and a rerun of the build compiles nothing again.
    """
    import jax

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def build_zoo(
    pack: str | Path,
    out_dir: str | Path,
    config: BuildConfig,
    results_dir: str | Path | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Builds the zoo within `config.time_budget_s` seconds; see the module docstring.

    Args:
        pack: A data pack (`styledrop zoo pack`).
        out_dir: Work folder: world/, the trainers' run folders (checkpoints), zoo/.
        config: Sizes, steps and the budget.
        results_dir: Where the log, the summary and the shards go (default
            `out_dir/results`).
        echo: Receives one progress line per event.

    Returns:
        The assembled zoo folder (`out_dir/zoo`).
    """
    from flax import nnx

    from muse import weights
    from muse.checkpoint import sha256_file
    from muse.low_precision import default_compute_dtype
    from muse.text_encoder import TextEncoder, default_device
    from muse.vq import VQModel
    from zoo_build.assemble import assemble_zoo
    from zoo_build.dataset import build_dataset
    from zoo_build.train_base import BaseTrainConfig, build_pool, train_base

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _keep_compiled_programs(out_dir / XLA_CACHE_DIR)
    results = Path(results_dir) if results_dir is not None else out_dir / "results"
    rec = _Recorder(results, echo)
    deadline = config.time_budget_s
    rec.summary["config"] = dataclasses.asdict(config)
    rec.event("environment", **machine_description())
    earlier = _earlier_zoo(config)
    if earlier is not None:
        rec.event("continue", zoo=str(earlier.folder), base_runs=earlier.base_runs)
    given = zoo_dir() if earlier is None else earlier.folder
    text_source = Path(config.text_dir) if config.text_dir else given
    judge_source = Path(config.judge_dir) if config.judge_dir else zoo_dir()
    if config.judge_dir is None and earlier is not None and earlier.has_judge:
        judge_source = earlier.folder
    vq_sizes = planned_vq(config, earlier)
    position_embedding = _position_embedding(config, earlier)
    _check_transplant(config)
    _check_zoo_size(config, earlier, text_source, judge_source, rec)

    # 1. The world, rendered from the pack.
    world = out_dir / WORLD_DIR
    began = rec.elapsed()
    with using_pack(pack) as manifest:
        held = pack_subjects(manifest)
        chosen = held if config.subjects is None else [s for s in held if s.id in config.subjects]
        data = build_dataset(
            world, size=config.size, split_seed=config.seed,
            draws=config.draws or DEFAULT_DRAWS, subjects=chosen, heldout=False,
            processes=min(len(chosen), os.cpu_count() or 1),
        )  # fmt: skip
    rec.event("render", seconds=rec.elapsed() - began, images=data["counts"]["total"],
              subjects=data["subjects"], size=config.size)  # fmt: skip

    # 2. The text encoder (and the judge) of the zoo continued or else the committed zoo,
    # unless given; then the text stage on it.
    parts = out_dir / PARTS_DIR
    _copy_part(text_source, (TEXT_ENCODER_DIR, TOKENIZER_DIR), parts / "text")
    _copy_part(judge_source, (JUDGE_DIR,), parts / "judge")
    rec.event("text_encoder", source=str(text_source), judge=str(judge_source))
    if config.text_retention_steps:
        text_part = _text_stage(parts / "text", out_dir / TEXT_RUN, config, rec)
    else:
        text_part = parts / "text"

    # 3. The VQ tokenizer, unless the zoo continued has one.
    if earlier is not None:
        vq_dir, vq_shards = earlier.folder, []
        rec.event("vq", kept=str(earlier.folder), codes=vq_sizes.num_vq_embeddings)
    else:
        vq_dir = out_dir / VQ_RUN
        vq_shards = _vq_stage(world, out_dir, parts, results, vq_sizes, config, rec)

    # 4. The base U-ViT on the tokens.
    vq_cfg = VQConfig.from_dict(vq_config_dict(vq_dir))
    vq = nnx.eval_shape(lambda: VQModel(vq_cfg, rngs=nnx.Rngs(0)))
    weights.load_params(vq, vq_dir / VQ_FILE)
    text = TextEncoder.load(
        text_part / TEXT_ENCODER_DIR, tokenizer=text_part / TOKENIZER_DIR,
        device=default_device(),
    )  # fmt: skip
    dtype = default_compute_dtype() if config.base_dtype == "auto" else config.base_dtype
    init_weights = None if earlier is None else earlier.base_weights
    base_config = BaseTrainConfig(
        width=config.base_width, layers=config.base_layers, dtype=dtype,
        downsample=config.base_downsample, position_embedding=position_embedding,
        descriptor_pairs=config.base_descriptor_pairs,
        canonical_repeats=config.base_canonical_repeats, batch_size=config.base_batch,
        learning_rate=config.base_lr, warmup_steps=config.base_warmup,
        steps=config.base_max_steps, checkpoint_every=1000,
        # A continuation draws other batches, masks and made-up descriptors than the runs
        # before it.
        seed=config.seed + (0 if earlier is None else earlier.base_runs),
        init_from="" if init_weights is None else sha256_file(init_weights),
    )  # fmt: skip
    base_began = rec.elapsed()
    # Tokenized and encoded once, for the probe and the run.
    pool = build_pool(
        world, vq, text, base_config.captions_per_image, base_config.canonical_repeats,
        base_config.jittered_draws, base_config.descriptor_pairs, base_config.seed,
        base_config.descriptor_words,
    )  # fmt: skip
    stop_at = deadline - config.reserve_s
    if config.base_transplant is not None:
        init_weights = _transplant_stage(
            world, vq, text, out_dir / TRANSPLANT_RUN, base_config, config, pool,
            lambda: rec.elapsed() > stop_at, rec,
        )  # fmt: skip
        base_config = dataclasses.replace(base_config, init_from=sha256_file(init_weights))
    if config.probe_steps:
        probe = dataclasses.replace(base_config, steps=10**9, checkpoint_every=0)
        shutil.rmtree(out_dir / PROBE_BASE, ignore_errors=True)
        counter = {"steps": 0}

        def run_probe(hook):
            def count(event):
                counter["steps"] += 1
                hook(event)

            train_base(world, vq, text, out_dir / PROBE_BASE, probe, progress=count,
                       should_stop=lambda: counter["steps"] >= config.probe_steps,
                       init_weights=init_weights, pool=pool)  # fmt: skip

        first_s, step_s = _timed_steps(run_probe)
        left = deadline - config.reserve_s - rec.elapsed()
        steps = _sized_steps(left - first_s, step_s, 2 * config.base_warmup,
                             config.base_max_steps)  # fmt: skip
        rec.event("base_probe", first_step_s=first_s, step_s=step_s, steps=steps)
        base_config = dataclasses.replace(base_config, steps=steps)
    train_base(world, vq, text, out_dir / BASE_RUN, base_config,
               should_stop=lambda: rec.elapsed() > stop_at, init_weights=init_weights,
               pool=pool)  # fmt: skip
    base_info = json.loads((out_dir / BASE_RUN / BASE_CONFIG_FILE).read_text())
    rec.event("base", seconds=rec.elapsed() - base_began, steps=base_config.steps,
              steps_done=base_info.get("steps_done"),
              complete=base_info.get("complete"))  # fmt: skip

    # 5. Assemble and shard.
    zoo = assemble_zoo(
        out_dir / BASE_RUN, vq_dir, text_part, out_dir / ZOO_DIR,
        judge_dir=parts / "judge", data_recipe_version=data["recipe_version"],
        lineage_from=None if earlier is None else earlier.folder,
    )  # fmt: skip
    shards = write_shards(
        zoo, results, prefix="zoo", max_shard_bytes=config.shard_bytes,
        # What else the results folder holds: the VQ's shards, the log, the summary, samples.
        max_shards=config.max_shards - len(vq_shards) - 3,
    )  # fmt: skip
    rec.event("assemble", zoo=str(zoo), shards=len(shards),
              mib=round(sum(p.stat().st_size for p in shards) / 2**20, 2))  # fmt: skip

    # 6. What the new zoo draws.
    if config.samples_per_prompt and config.sample_prompts:
        began = rec.elapsed()
        grid = draw_samples(zoo, config.sample_prompts, config.samples_per_prompt, config.seed)
        save_image(grid, results / SAMPLES_FILE)
        rec.event("samples", seconds=rec.elapsed() - began, file=SAMPLES_FILE,
                  prompts=len(config.sample_prompts),
                  per_prompt=config.samples_per_prompt)  # fmt: skip
    return zoo


def _earlier_zoo(config: BuildConfig) -> EarlierZoo | None:
    """The zoo `config.init_dir` names, checked against the settings; None without one.

    Raises:
        BuildConfigError: it is not a zoo folder, or the settings cannot continue it.
    """
    if config.init_dir is None:
        return None
    try:
        earlier = read_earlier_zoo(config.init_dir)
        check_continuable(earlier, config.size, config.base_width, config.base_layers,
                          config.base_downsample)  # fmt: skip
    except ContinuationError as error:
        raise BuildConfigError(str(error)) from error
    return earlier


def _check_transplant(config: BuildConfig) -> None:
    """Refuses a transplant whose base has another transformer, before anything trains.

    Raises:
        BuildConfigError: the file is missing, or its width or layer count differ.
    """
    if config.base_transplant is None:
        return
    from zoo_build.transplant import TransplantError, check_transplantable

    try:
        check_transplantable(config.base_transplant, config.base_width, config.base_layers)
    except TransplantError as error:
        raise BuildConfigError(str(error)) from error


def _transplant_stage(
    world: Path, vq, text, run_dir: Path, base_config, config: BuildConfig, pool,
    should_stop: Callable[[], bool], rec: _Recorder,
) -> Path:  # fmt: skip
    """Trains the tensors a transplanted base lacks; returns the base run's initial weights."""
    from muse.checkpoint import sha256_file
    from zoo_build.train_base import train_base

    began = rec.elapsed()
    source = Path(config.base_transplant)
    steps = config.base_transplant_steps
    first = dataclasses.replace(
        base_config, steps=steps, warmup_steps=max(1, steps // 6), transplant=True,
        train_only_new=True, init_from=sha256_file(source), checkpoint_every=100,
    )  # fmt: skip
    train_base(world, vq, text, run_dir, first, should_stop=should_stop, init_weights=source,
               pool=pool)  # fmt: skip
    info = json.loads((run_dir / BASE_CONFIG_FILE).read_text())
    rec.event("base_transplant", seconds=rec.elapsed() - began, source=str(source),
              source_sha256=first.init_from, steps=steps, steps_done=info["steps_done"],
              trained=info["kept_init"])  # fmt: skip
    return run_dir / TRANSFORMER_FILE


def _vq_stage(
    world: Path, out_dir: Path, parts: Path, results: Path, vq_sizes: VQConfig,
    config: BuildConfig, rec: _Recorder,
) -> list[Path]:  # fmt: skip
    """Probes, sizes and trains the VQ in `out_dir`/vq; returns the VQ's shards in `results`."""
    from zoo_build.train_vq import VQTrainConfig, train_vq

    deadline = config.time_budget_s
    vq_config = VQTrainConfig(
        vq=vq_sizes, batch_size=config.vq_batch, learning_rate=config.vq_lr,
        steps=config.vq_max_steps, warmup_steps=config.vq_warmup, seed=config.seed,
        eval_every=0, checkpoint_every=500,
    )  # fmt: skip
    vq_budget = config.vq_share * (deadline - config.reserve_s - rec.elapsed())
    vq_began = rec.elapsed()
    if config.probe_steps:
        probe = dataclasses.replace(vq_config, steps=config.probe_steps, checkpoint_every=0)
        shutil.rmtree(out_dir / PROBE_VQ, ignore_errors=True)
        first_s, step_s = _timed_steps(
            lambda hook: train_vq(world, out_dir / PROBE_VQ, probe, progress=hook)
        )
        left = vq_budget - (rec.elapsed() - vq_began)
        steps = _sized_steps(left - first_s, step_s, 2 * vq_config.warmup_steps,
                             config.vq_max_steps)  # fmt: skip
        rec.event("vq_probe", first_step_s=first_s, step_s=step_s, steps=steps)
        vq_config = dataclasses.replace(vq_config, steps=steps)
    left = vq_budget - (rec.elapsed() - vq_began)
    train_vq(world, out_dir / VQ_RUN, vq_config, time_limit_s=max(left, 1.0))
    vq_info = json.loads((out_dir / VQ_RUN / VQ_INFO_FILE).read_text())
    for name in VQ_OUTPUTS:
        (parts / "vq").mkdir(parents=True, exist_ok=True)
        shutil.copy2(out_dir / VQ_RUN / name, parts / "vq" / name)
    vq_shards = write_shards(parts / "vq", results, prefix="vq",
                             max_shard_bytes=config.shard_bytes, max_shards=2)  # fmt: skip
    rec.event("vq", seconds=rec.elapsed() - vq_began, steps=vq_config.steps,
              eval_psnr=vq_info.get("eval", {}).get("psnr"),
              complete=vq_info.get("complete", True), shards=len(vq_shards))  # fmt: skip
    return vq_shards


def planned_vq(config: BuildConfig, earlier: EarlierZoo | None = None) -> VQConfig:
    """The tokenizer the build trains (or, continuing `earlier`, keeps)."""
    from zoo_build.vq_train_config import ZOO_VQ

    if earlier is not None:
        return earlier.vq
    return dataclasses.replace(
        ZOO_VQ, block_out_channels=tuple(config.vq_channels),
        num_vq_embeddings=config.vq_codes, sample_size=config.size,
    )  # fmt: skip


def planned_transformer(
    config: BuildConfig, earlier: EarlierZoo | None, text_hidden: int, text_projection: int
) -> TransformerConfig:
    """The base U-ViT the build trains, for a text encoder of the given widths."""
    from zoo_build.train_base import zoo_transformer_config

    vq = planned_vq(config, earlier)
    return zoo_transformer_config(
        vq.num_vq_embeddings, text_hidden, text_projection,
        grid=config.size // vq.downscale_factor, width=config.base_width,
        layers=config.base_layers, downsample=config.base_downsample,
        position_embedding=_position_embedding(config, earlier),
    )  # fmt: skip


def _position_embedding(config: BuildConfig, earlier: EarlierZoo | None) -> bool:
    """Whether the base has one: asked for, or kept from the base it continues."""
    return config.base_position_embedding or (
        earlier is not None and earlier.transformer.position_embedding
    )


def planned_zoo_size(
    config: BuildConfig, text_dir: Path, judge_dir: Path, earlier: EarlierZoo | None = None
) -> ZooSize:
    """The assembled zoo's bytes, predicted before anything trains (`zoo_build.zoo_size`).

    Args:
        config: The build's settings.
        text_dir: Folder with the text_encoder/ and tokenizer/ the zoo will hold.
        judge_dir: Folder with the judge/ it will hold.
        earlier: The zoo the build continues, if any.
    """
    transformer = planned_transformer(config, earlier, *text_widths(text_dir))
    return predicted_zoo_size(transformer, planned_vq(config, earlier), text_dir, judge_dir)


def _check_zoo_size(
    config: BuildConfig, earlier: EarlierZoo | None, text_dir: Path, judge_dir: Path,
    rec: _Recorder,
) -> None:  # fmt: skip
    """Logs the assembled zoo's predicted size; refuses sizes above `config.max_zoo_bytes`.

    Raises:
        BuildConfigError: the zoo would be larger than `config.max_zoo_bytes`.
    """
    size = planned_zoo_size(config, text_dir, judge_dir, earlier)
    rec.event("zoo_size", bytes=size.total, transformer=size.transformer, vq=size.vq,
              text=size.text, judge=size.judge, limit=config.max_zoo_bytes)  # fmt: skip
    if config.max_zoo_bytes and size.total > config.max_zoo_bytes:
        raise BuildConfigError(
            f"The zoo would be {size.describe()}, above --max-zoo-bytes"
            f" {config.max_zoo_bytes / 1e6:.1f} MB (the most the repository commits). Nothing"
            " was trained. Lower --base-width, --base-layers, --vq-codes or --vq-channels, or"
            " raise --max-zoo-bytes (0: no limit) for a zoo that will not be committed."
        )


def _text_stage(source: Path, run_dir: Path, config: BuildConfig, rec: _Recorder) -> Path:
    """Fine-tunes the encoder in `source` (`text_retention_steps` steps) into `run_dir`.

    Returns:
        The folder whose text_encoder/ and tokenizer/ the base trains on: `run_dir`, or
        `source` when the stage reached its share of the budget first (the checkpoint stays,
        so a rerun of the build resumes it).
    """
    from muse.checkpoint import sha256_file
    from muse.text_encoder import default_device
    from zoo_build.descriptor_invariance import InvarianceConfig, train_descriptor_invariance
    from zoo_build.run_files import TEXT_EVAL_FILE

    text_config = InvarianceConfig(
        steps=config.text_retention_steps, batch_size=config.text_batch,
        subject_weight=TEXT_SUBJECT_WEIGHT, retention_phrases=TEXT_RETENTION_PHRASES,
        seed=config.seed,
        init_from=sha256_file(source / TEXT_ENCODER_DIR / "model.safetensors"),
    )  # fmt: skip
    began = rec.elapsed()
    stop_at = began + TEXT_STAGE_SHARE * (config.time_budget_s - began)
    device = default_device()
    folder = train_descriptor_invariance(
        source, run_dir, text_config, should_stop=lambda: rec.elapsed() > stop_at, device=device
    )
    if folder is None:
        rec.event("text_retention", seconds=rec.elapsed() - began, complete=False,
                  device=device, used=str(source))  # fmt: skip
        return source
    figures = json.loads((run_dir / TEXT_EVAL_FILE).read_text())["descriptor_invariance"]
    rec.event(
        "text_retention", seconds=rec.elapsed() - began, complete=True, device=device,
        steps=config.text_retention_steps,
        world_style_subject_top1=figures["before"]["world_style_subject_top1"],
        world_style_subject_top1_after=figures["after"]["world_style_subject_top1"],
        heldout_pooled_cosine=figures["before"]["heldout_pooled_cosine"],
        heldout_pooled_cosine_after=figures["after"]["heldout_pooled_cosine"],
        heldout_subject_top1=figures["before"]["heldout_subject_top1"],
        heldout_subject_top1_after=figures["after"]["heldout_subject_top1"],
        world_pooled_error=figures["after"]["world_pooled_error"],
    )  # fmt: skip
    return run_dir


def draw_samples(zoo: Path, prompts: tuple[str, ...], per_prompt: int, seed: int):
    """A grid with one row per prompt, drawn with the zoo's own sampling settings.

    Returns:
        uint8 [rows * (size + pad), per_prompt * (size + pad), 3].
    """
    import muse

    pipe = muse.load(zoo)
    images = pipe.generate(list(prompts), num_images_per_prompt=per_prompt, seed=seed)
    return make_grid(images, columns=per_prompt)  # images: [P * n, H, W, 3]
