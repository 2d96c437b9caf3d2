"""A resumable decoder refit of a trained tokenizer (`styledrop zoo refit-decoder`).

A tokenizer trained for a short time (the 16x16 one of a `zoo build`, 20 minutes of a CPU)
reconstructs worse than its codes allow, but a base trained on its codes pins them: a
longer training of the whole tokenizer would change the tokens and the base with them.
This run trains only the decoder (`zoo_build.refit_decoder`), so every image keeps its
tokens and the base stays valid, in pieces: it checkpoints the decoder's parameters and
Adam's state, stops at a time limit with the weights reached so far, and a later call with
the same settings resumes bit-identically (batches come from `fold_in(key(seed), step)`).

The output folder is a VQ run folder `zoo assemble --vq` takes: `vqvae.safetensors`,
`vq_config.json`, and `train_info.json` holding the source's record with the refit's under
"decoder_refit" and the new figures on the "eval" split under "eval". A refit of a refitted
tokenizer keeps the earlier refit's record under "decoder_refit.continues".
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from muse import checkpoint as model_checkpoint
from muse import weights
from muse.folder_layout import VQ_FILE
from styledrop import train_checkpoint
from styledrop.fingerprint import settings_fingerprint
from zoo_build.dataset import load_dataset
from zoo_build.machine import machine_description
from zoo_build.refit_decoder import RefitConfig, prepare_refit
from zoo_build.run_files import (
    TRAIN_LOG_FILE,
    VQ_CONFIG_FILE,
    VQ_INFO_FILE,
    part_record,
)
from zoo_build.step_rate import StepRate
from zoo_build.train_vq import load_training_images, load_vq
from zoo_build.vq_metrics import evaluate_vq

# The splits a tokenizer trains on when its record does not say (`zoo train vq`'s default).
DEFAULT_SPLITS = ("vq", "base")


def source_splits(record: dict) -> tuple[str, ...]:
    """The dataset splits the source tokenizer was trained on, from its training record."""
    return tuple(record.get("train", {}).get("splits", DEFAULT_SPLITS))


def refit_run(
    vq_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    config: RefitConfig,
    *,
    splits: Sequence[str] | None = None,
    checkpoint_every: int = 500,
    progress: Callable[[dict], None] | None = None,
    stop_after: int | None = None,
    time_limit_s: float | None = None,
) -> Path | None:
    """Refits (or resumes refitting) a tokenizer's decoder; writes a VQ run folder.

    Args:
        vq_dir: The tokenizer: a `zoo train vq` run folder or a zoo folder (the committed
            one, say).
        data_dir: The emoji-world dataset it was trained on.
        out_dir: The run folder: checkpoint/, train_log.jsonl, then the weights and records.
        config: Steps, batch, learning rate, mirroring and seed of the refit.
        splits: The dataset splits to fit (never "eval"); None: those the source was
            trained on.
        checkpoint_every: Steps between checkpoints (0: only at the end or the time limit).
        progress: Called after each step with step, steps, loss, steps_per_s and eta_s.
        stop_after: Stop (with a checkpoint, without final weights) once this step is done.
        time_limit_s: Stop after this many seconds of steps in this call, with a checkpoint,
            and write the weights reached so far (`decoder_refit.complete` is false).

    Returns:
        The weights file, or None when stopped by `stop_after`.

    Raises:
        ValueError: `splits` includes "eval".
        FileNotFoundError: `vq_dir` holds no tokenizer.
        CheckpointMismatchError: `out_dir` holds a checkpoint of a refit with other
            settings or of another tokenizer.
    """
    vq_dir, data_dir, out_dir = Path(vq_dir), Path(data_dir), Path(out_dir)
    model = load_vq(vq_dir)
    record = part_record(vq_dir, VQ_INFO_FILE, "vq")
    splits = source_splits(record) if splits is None else tuple(splits)
    images = load_training_images(data_dir, splits)  # [N, H, W, 3] uint8
    source_sha256 = model_checkpoint.sha256_file(vq_dir / VQ_FILE)
    fingerprint = settings_fingerprint(
        {**dataclasses.asdict(config), "splits": list(splits), "source_sha256": source_sha256}
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    state = prepare_refit(model, images, config)
    params, opt_state, start = state.params, state.opt_state, 0
    saved = train_checkpoint.restore(out_dir, (params, opt_state), fingerprint)
    if saved is not None:
        (params, opt_state), start = saved
    log_path = out_dir / TRAIN_LOG_FILE
    train_checkpoint.trim_log(log_path, start)
    rate = StepRate(start, config.steps)
    key = jax.random.key(config.seed)
    last = config.steps if stop_after is None else min(stop_after, config.steps)
    done, timed_out = start, False
    with log_path.open("a") as log:
        for index in range(start, last):
            params, opt_state, loss = state.step_fn(
                params, opt_state, state.rest, state.images, state.grids, index, key
            )
            done = index + 1
            event = {"step": done, "loss": float(loss)}
            log.write(json.dumps(event) + "\n")
            if checkpoint_every and done % checkpoint_every == 0:
                train_checkpoint.save(out_dir, (params, opt_state), done, fingerprint)
                log.flush()
            if progress is not None:
                progress({**event, "steps": config.steps, **rate(done)})
            if time_limit_s is not None and rate.elapsed() >= time_limit_s and done < last:
                timed_out = True
                break
    train_checkpoint.save(out_dir, (params, opt_state), done, fingerprint)
    if done < config.steps and not timed_out:
        return None  # stopped on purpose by `stop_after`
    eval_images = load_dataset(data_dir, split="eval")[0]
    before = evaluate_vq(model, eval_images)  # `model` still holds the source's decoder
    nnx.update(model, params)
    refit = {
        "settings": dataclasses.asdict(config),
        "splits": list(splits),
        "train_images": len(images),
        "source_sha256": source_sha256,
        "steps_done": done,
        "complete": done >= config.steps,
        "eval_before": before,
        "machine": machine_description(),
    }
    if "decoder_refit" in record:  # the source was refitted before: keep that record too
        refit["continues"] = record["decoder_refit"]
    return _write_outputs(model, out_dir, record, refit, eval_images)


def _write_outputs(
    model, out_dir: Path, record: dict, refit: dict, eval_images: np.ndarray
) -> Path:
    """Writes the weights, `vq_config.json` and `train_info.json` (source record + refit)."""
    final = evaluate_vq(model, eval_images)
    path = out_dir / VQ_FILE
    weights.save_params(model, path)
    (out_dir / VQ_CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    info = {**record, "decoder_refit": refit, "eval": final}
    (out_dir / VQ_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    with (out_dir / TRAIN_LOG_FILE).open("a") as log:
        log.write(json.dumps({"step": refit["steps_done"], "final_eval": final}) + "\n")
    return path
