"""Assembling the trained zoo parts into one native model folder, with a manifest.

The base U-ViT, the VQ tokenizer, the text encoder and the judge are trained separately
(each resumable); this step copies their final files into the native layout that
`muse.load` reads (see `muse.checkpoint`), with the zoo's decoding defaults (MaskGIT
re-masking, 36 steps, choice temperature 1, token temperature 0.5), stores the U-ViT and
VQ weights in float16 (they load back into float32 parameters) so the committed zoo stays
small, and writes `manifest.json`: the sha256 of every file, each part's training config
and evaluation, and the data recipe version, so a rebuild can be checked.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from muse import checkpoint
from muse.config import ModelConfig, SamplingConfig, TransformerConfig, VQConfig
from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR, TRANSFORMER_FILE, VQ_FILE
from styledrop.zoo.embedded import JUDGE_DIR, MANIFEST, ZOO_SOURCE
from zoo_build.run_files import (
    BASE_CONFIG_FILE,
    JUDGE_EVAL_FILE,
    TEXT_EVAL_FILE,
    VQ_INFO_FILE,
    part_record,
    vq_config_dict,
)

# Classifier-free guidance of the zoo base. Its unconditional branch is weak (masked-token
# accuracy 0.06 with no prompt against 0.45 with the caption, fully masked), so large scales
# push samples off the data: t2i_top1 over 128 subjects was 0.09 at 3 and 0.07 at 5 (seed 0),
# 0.27 at 1 (no guidance; two seeds) and 0.29 at 1.5 (three seeds).
ZOO_GUIDANCE_SCALE = 1.5
# The zoo base samples nearer its modes than the paper's MaskGIT settings (choice temperature
# 4.5, tokens at softmax temperature 1): it is too small to draw a subject from a random
# unmasking order. On the base of the open-descriptor step, all 402 subjects, seeds 0 and 1,
# t2i_top1 was 0.604 and 0.565 with the paper's; 0.627 and 0.674 with choice temperature 1
# and token temperature 0.5 (docs/zoo.md, "Sampling").
ZOO_CHOICE_TEMPERATURE = 1.0
ZOO_TOKEN_TEMPERATURE = 0.5
# The fraction of decoding steps StyleDrop draws on the zoo give the content prompt alone
# (`styledrop.guidance.GuidanceScales.content_first`). Measured on the committed zoo
# (docs/experiments.md, "Content first"): at 0.75 a round-1 adapter keeps the subjects the
# paper's rule (0) loses, with more of the style than the base with the descriptor.
ZOO_CONTENT_FIRST = 0.75


def zoo_sampling(
    mask_token_id: int,
    guidance_scale: float = ZOO_GUIDANCE_SCALE,
    styledrop_lambda_b: float | None = None,
    styledrop_content_first: float = ZOO_CONTENT_FIRST,
) -> SamplingConfig:
    """MaskGIT decoding (36 steps, as the StyleDrop paper) at the zoo base's temperatures.

    `styledrop_lambda_b` is the StyleDrop guidance lambda_B stored with the zoo (None: the
    paper's 5). `guidance_scale - 1` is the base's own strength: an adapter that changes
    nothing then draws from the base's own logits. Measured on the watercolor target
    (docs/experiments.md, "Guidance strength on the zoo"): the 16x16 zoo keeps its subjects
    at 0.5 and loses most of them at 5; the committed 8x8 zoo does better at 5.
    `styledrop_content_first` is the zoo's `SamplingConfig.styledrop_content_first`.
    """
    return SamplingConfig(
        mask_token_id=mask_token_id,
        decoding="maskgit",
        num_steps=36,
        temperature=ZOO_CHOICE_TEMPERATURE,
        token_temperature=ZOO_TOKEN_TEMPERATURE,
        guidance_scale=guidance_scale,
        styledrop_lambda_b=styledrop_lambda_b,
        styledrop_content_first=styledrop_content_first,
        aesthetic_score=6.0,
    )


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"Missing {path}: train that part first (styledrop zoo train).")
    return json.loads(path.read_text())


def _optional_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def copy_as_float16(source: Path, dest: Path) -> None:
    """Copies a safetensors file, storing floating-point tensors as float16."""
    tensors = load_file(str(source))
    cast = {
        name: (array.astype(np.float16) if np.issubdtype(array.dtype, np.floating) else array)
        for name, array in tensors.items()
    }
    save_file(cast, str(dest))


def _warm_start_lineage(base_entry: dict, zoo_dir: Path) -> dict:
    """The earlier base training records to keep, from the zoo in `zoo_dir`.

    A base warm-started from that zoo's transformer (`zoo train base --init`) gets
    {"init": that zoo's base record}, so the manifest keeps the whole recipe. The same base
    run assembled again (same training settings, so the same start; with another part
    changed, a fine-tuned text encoder, say, or its record rewritten by a rerun of the
    finished run) keeps the lineage it had. Any other base gets {}.

    Args:
        base_entry: The base run's record (without its transformer config).
        zoo_dir: The zoo folder about to be replaced, or the one the base continued.
    """
    previous = _optional_json(zoo_dir / MANIFEST)
    previous_base = previous.get("training", {}).get("base", {})
    init_from = base_entry.get("train", {}).get("init_from", "")
    if init_from and previous.get("files", {}).get(TRANSFORMER_FILE) == init_from:
        return {"init": previous_base}
    if "init" in previous_base and previous_base.get("train") == base_entry.get("train"):
        return {"init": previous_base["init"]}
    return {}


def _earlier_runs_lineage(base_entry: dict, earlier_runs: Sequence[Path], zoo_dir: Path) -> None:
    """Nests the records of the base runs a base continued under `init`, checked by sha256.

    A base trained in pieces (`zoo train base --init RUN/transformer.safetensors`, one
    piece per CPU session) records only the start of its last piece. Given the earlier
    runs, newest first, each one's record becomes the `init` of the piece after it, and
    the oldest gets the lineage of the zoo in `zoo_dir` (`_warm_start_lineage`).

    Args:
        base_entry: The last piece's record (changed in place).
        earlier_runs: The earlier pieces' run folders, newest first.
        zoo_dir: The zoo the oldest piece was warm-started from.

    Raises:
        ValueError: a run's transformer is not where the piece after it started.
    """
    entry = base_entry
    for run in earlier_runs:
        started_from = entry.get("train", {}).get("init_from", "")
        found = checkpoint.sha256_file(run / TRANSFORMER_FILE)
        if found != started_from:
            raise ValueError(
                f"{run}/{TRANSFORMER_FILE} (sha256 {found[:12]}) is not where the base run"
                f" after it started (init_from {started_from[:12] or 'none'}): list the base"
                " runs it continued, newest first."
            )
        record = {k: v for k, v in _read_json(run / BASE_CONFIG_FILE).items() if k != "transformer"}
        entry["init"] = record
        entry = record
    entry.update(_warm_start_lineage(entry, zoo_dir))


def assemble_zoo(
    base_dir: str | Path,
    vq_dir: str | Path,
    text_dir: str | Path,
    out_dir: str | Path,
    *,
    judge_dir: str | Path | None = None,
    data_recipe_version: str = "",
    guidance_scale: float = ZOO_GUIDANCE_SCALE,
    styledrop_lambda_b: float | None = None,
    styledrop_content_first: float = ZOO_CONTENT_FIRST,
    lineage_from: str | Path | None = None,
    earlier_base_runs: Sequence[str | Path] = (),
) -> Path:
    """Writes the native model folder of the zoo from the training run folders.

    Args:
        base_dir: Base U-ViT run (transformer.safetensors, transformer_config.json).
        vq_dir: VQ run (vqvae.safetensors, vq_config.json), or a zoo folder (its tokenizer
            and its manifest's record of it are kept).
        text_dir: Text-encoder run (text_encoder/, tokenizer/), or a zoo folder (its
            manifest's record of the text encoder is kept).
        out_dir: Destination (replaced atomically). When the base run was warm-started from
            the transformer of the zoo already there, that zoo's base training record is
            kept in the new manifest under `training.base.init`.
        judge_dir: Judge run (judge/), or a zoo folder; copied to `out_dir/judge/` when
            given.
        data_recipe_version: The dataset recipe the parts were trained on.
        guidance_scale: Default classifier-free guidance scale of the base.
        styledrop_lambda_b: StyleDrop guidance lambda_B stored with the zoo (None: the
            paper's 5 applies).
        styledrop_content_first: The fraction of decoding steps StyleDrop draws give the
            content prompt alone, stored with the zoo (0: the paper's rule).
        lineage_from: The zoo whose base the base run was warm-started from, when it is
            not the one in `out_dir` (`zoo build --init`); its base record is kept the same
            way.
        earlier_base_runs: The base runs that `base_dir` continued, newest first (a base
            trained in pieces); their records are kept nested under `init`, each checked
            against where the next piece started.

    Returns:
        `out_dir`.
    """
    base_dir, vq_dir, text_dir, out_dir = map(Path, (base_dir, vq_dir, text_dir, out_dir))
    judge_dir = None if judge_dir is None else Path(judge_dir)
    if judge_dir is not None and not (judge_dir / JUDGE_DIR).is_dir():
        missing = judge_dir / JUDGE_DIR
        raise FileNotFoundError(f"Missing {missing}: run `styledrop zoo train judge`.")
    base_info = _read_json(base_dir / BASE_CONFIG_FILE)
    vq = VQConfig.from_dict(vq_config_dict(vq_dir))
    vq_info = part_record(vq_dir, VQ_INFO_FILE, "vq")
    transformer = TransformerConfig.from_dict(base_info["transformer"])
    config = ModelConfig(
        transformer=transformer,
        vq=vq,
        sampling=zoo_sampling(
            transformer.mask_token_id,
            guidance_scale,
            styledrop_lambda_b,
            styledrop_content_first,
        ),
        source=ZOO_SOURCE,
    )
    base_entry = {k: v for k, v in base_info.items() if k != "transformer"}
    lineage_zoo = out_dir if lineage_from is None else Path(lineage_from)
    _earlier_runs_lineage(base_entry, [Path(run) for run in earlier_base_runs], lineage_zoo)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    copy_as_float16(base_dir / TRANSFORMER_FILE, staging / TRANSFORMER_FILE)
    copy_as_float16(vq_dir / VQ_FILE, staging / VQ_FILE)
    for name in (TEXT_ENCODER_DIR, TOKENIZER_DIR):
        shutil.copytree(text_dir / name, staging / name)
    if judge_dir is not None:
        shutil.copytree(judge_dir / JUDGE_DIR, staging / JUDGE_DIR)
    checkpoint.write_model_json(staging, config)
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    text_info = part_record(text_dir, TEXT_EVAL_FILE, "text")
    judge_info = {} if judge_dir is None else part_record(judge_dir, JUDGE_EVAL_FILE, "judge")
    manifest = {
        "source": ZOO_SOURCE,
        "data_recipe_version": data_recipe_version,
        "files": {str(p.relative_to(staging)): checkpoint.sha256_file(p) for p in files},
        "bytes": sum(p.stat().st_size for p in files),
        "training": {
            "base": base_entry,
            "vq": vq_info,
            "text": text_info,
            "judge": judge_info,
        },
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    checkpoint.replace_folder(staging, out_dir)
    return out_dir
