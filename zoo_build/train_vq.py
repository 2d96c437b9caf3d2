"""Training the embedded VQ tokenizer on the emoji world (VQ-VAE with an EMA codebook).

The model is the project's `muse.vq.VQModel` (the aMUSEd VQ-GAN architecture) in a small
size (`vq_train_config.ZOO_VQ`): 64 px images -> an 8 x 8 grid of codebook ids. The step
(straight-through quantizer, Adam, EMA codebook with dead-code restarts) is
`zoo_build.vq_step`; the metrics are `zoo_build.vq_metrics`. This module runs the loop:
it initialises or restores the state, logs every step, evaluates on the "eval" split,
checkpoints, stops on request or at a time limit, and writes the weights, `vq_config.json`
and `train_info.json`.

Checkpoints hold the parameters, the codebook, its EMA statistics and the optimizer state,
and everything random in step s comes from `fold_in(key(seed), s)`, so a resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from muse import weights
from muse.config import VQConfig
from muse.folder_layout import VQ_FILE
from muse.vq import VQModel
from styledrop import train_checkpoint
from zoo_build.dataset import load_dataset, recipe_version
from zoo_build.machine import machine_description
from zoo_build.run_files import TRAIN_LOG_FILE, VQ_CONFIG_FILE, VQ_INFO_FILE, vq_config_dict
from zoo_build.step_rate import StepRate
from zoo_build.vq_metrics import evaluate_vq
from zoo_build.vq_step import compiled_vq_step, init_ema, split_model
from zoo_build.vq_train_config import VQTrainConfig


def load_training_images(data_dir: str | Path, splits: Sequence[str]) -> np.ndarray:
    """uint8 [N, H, W, 3]: the images of `splits` (never "eval", never held-out styles)."""
    if "eval" in splits:
        raise ValueError("The eval split is for measuring the tokenizer, not for training it.")
    return np.concatenate([load_dataset(data_dir, split=s)[0] for s in splits])


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Normal samples redrawn outside 2 sigma, rescaled so their std is `std` (as flax)."""
    out = rng.standard_normal(shape)
    while (bad := np.abs(out) > 2.0).any():
        out[bad] = rng.standard_normal(int(bad.sum()))
    return (out * std / 0.87962566103423978).astype(np.float32)


def init_model(vq_config: VQConfig, seed: int) -> VQModel:
    """A randomly initialised model, drawn with numpy from `seed`.

    The distributions are flax's defaults (LeCun truncated-normal kernels and code vectors,
    zero biases, unit norm scales); drawing them with numpy avoids compiling one XLA
    program per parameter shape, which eager JAX initialisation costs (seconds on a CPU).
    """
    model = nnx.eval_shape(lambda: VQModel(vq_config, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in sorted(weights.flat_params(model, abstract=True).items()):
        shape = tuple(shape.shape)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "kernel":  # conv [kh, kw, in, out]: fan_in = kh * kw * in
            values[name] = _truncated_normal(rng, shape, math.sqrt(1.0 / np.prod(shape[:-1])))
        elif leaf == "embedding":  # codebook [K, D]
            values[name] = _truncated_normal(rng, shape, math.sqrt(1.0 / shape[-1]))
        elif leaf == "scale":
            values[name] = np.ones(shape, np.float32)
        else:
            values[name] = np.zeros(shape, np.float32)
    weights.assign(model, values, "init")
    return model


def _restore(out_dir: Path, config: VQTrainConfig):
    """A fresh model and training state, or the checkpoint's; and the jitted step.

    Returns:
        (model, codebook, params, rest, ema, opt_state, step reached, step_fn).
    """
    model = init_model(config.vq, config.seed)
    graphdef, codebook, params, rest = split_model(model)
    # Steps do not depend on how often a run checkpoints or evaluates.
    cache_key = dataclasses.replace(config, checkpoint_every=0, eval_every=0, eval_images=0)
    tx, step_fn = compiled_vq_step(graphdef, cache_key)
    ema = init_ema(codebook)
    opt_state = tx.init(params)
    start = 0
    saved = train_checkpoint.restore(
        out_dir, (params, codebook, ema, opt_state), config.fingerprint()
    )
    if saved is not None:
        (params, codebook, ema, opt_state), start = saved
    return model, codebook, params, rest, ema, opt_state, start, step_fn


def _write_outputs(
    model: VQModel,
    out_dir: Path,
    data_dir: Path,
    config: VQTrainConfig,
    step: int,
    num_train: int,
    eval_images: np.ndarray,
) -> Path:
    """Writes the weights, `vq_config.json` and `train_info.json` (eval metrics, the machine)."""
    final = evaluate_vq(model, eval_images)
    path = out_dir / VQ_FILE
    weights.save_params(model, path)
    (out_dir / VQ_CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    num_params = sum(int(np.prod(v.shape)) for v in weights.flat_params(model).values())
    info = {
        "train": config.record(),
        "steps_done": step,
        "complete": step >= config.steps,
        "data_recipe_version": recipe_version(data_dir),
        "train_images": num_train,
        "eval_images": len(eval_images),
        "eval": final,
        "parameters": num_params,
        "machine": machine_description(),
    }
    (out_dir / VQ_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    with (out_dir / TRAIN_LOG_FILE).open("a") as log:
        log.write(json.dumps({"step": step, "final_eval": final}) + "\n")
    return path


def train_vq(
    data_dir: str | Path,
    out_dir: str | Path,
    config: VQTrainConfig,
    progress: Callable[[dict], None] | None = None,
    *,
    images: np.ndarray | None = None,
    eval_images: np.ndarray | None = None,
    stop_after: int | None = None,
    time_limit_s: float | None = None,
) -> Path | None:
    """Trains (or resumes) the VQ tokenizer; writes `vqvae.safetensors` and `vq_config.json`.

    A checkpoint in `out_dir` written by a run with the same settings is resumed from;
    one written with other settings raises `CheckpointMismatchError`. `train_info.json`
    records the settings, the data recipe version, the parameter count and the final
    evaluation on the "eval" split.

    Args:
        data_dir: An emoji-world dataset folder (`styledrop zoo data`).
        out_dir: Run folder: checkpoint/, train_log.jsonl, the final weights and configs.
        config: Model size and hyperparameters.
        progress: Called after each step with a dict: step, steps, loss, recon, commit,
            psnr (batch, dB), usage (fraction of live codes), steps_per_s, eta_s; and after
            each periodic evaluation with step and eval_psnr, eval_usage.
        images: Training images uint8 [N, H, W, 3] instead of the dataset's `config.splits`.
        eval_images: Images for the periodic and final evaluations instead of the dataset's
            "eval" split.
        stop_after: Stop (with a checkpoint, without final weights) once this step is done;
            for interrupting a run on purpose.
        time_limit_s: Stop after this many seconds of training in this call, with a
            checkpoint, and export the weights reached so far (`train_info.json` says
            "complete": false); a later call resumes.

    Returns:
        Path of the weights, or None when stopped by `stop_after`.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if images is None:
        images = load_training_images(data_dir, config.splits)
    if eval_images is None:
        eval_images = load_dataset(data_dir, split="eval")[0]
    model, codebook, params, rest, ema, opt_state, start, step_fn = _restore(out_dir, config)
    rate = StepRate(start, config.steps)
    log_path = out_dir / TRAIN_LOG_FILE
    train_checkpoint.trim_log(log_path, start)
    data = jnp.asarray(images)  # [N, H, W, 3] uint8
    key = jax.random.key(config.seed)
    last = config.steps if stop_after is None else min(stop_after, config.steps)

    def evaluate(subset: np.ndarray) -> dict[str, float]:
        nnx.update(model, codebook, params)
        return evaluate_vq(model, subset)

    done, timed_out = start, False
    with log_path.open("a") as log:
        for step in range(start, last):
            params, codebook, ema, opt_state, metrics = step_fn(
                params, codebook, ema, opt_state, rest, data, jnp.int32(step), key
            )
            record = {"step": step + 1, **{k: float(v) for k, v in metrics.items()}}
            log.write(json.dumps(record) + "\n")
            done = step + 1
            if config.checkpoint_every and done % config.checkpoint_every == 0:
                state = (params, codebook, ema, opt_state)
                train_checkpoint.save(out_dir, state, done, config.fingerprint())
                log.flush()
            if progress is not None:
                progress({**record, "steps": config.steps, **rate(done)})
            if config.eval_every and done % config.eval_every == 0 and done < config.steps:
                result = evaluate(eval_images[: config.eval_images])
                event = {"step": done, "eval_psnr": result["psnr"],
                         "eval_usage": result["codebook_usage"]}  # fmt: skip
                log.write(json.dumps(event) + "\n")
                if progress is not None:
                    progress(event)
            if time_limit_s is not None and rate.elapsed() >= time_limit_s and done < last:
                timed_out = True
                break
    train_checkpoint.save(out_dir, (params, codebook, ema, opt_state), done, config.fingerprint())
    if done < config.steps and not timed_out:
        return None  # stopped on purpose by `stop_after`
    nnx.update(model, codebook, params)
    return _write_outputs(model, out_dir, data_dir, config, done, len(images), eval_images)


def export_vq(data_dir: str | Path, out_dir: str | Path, config: VQTrainConfig) -> Path:
    """Writes weights, configs and the eval metrics from the run folder's checkpoint.

    For a run that was interrupted (`train_info.json` then records the step reached).

    Raises:
        FileNotFoundError: if the run folder has no checkpoint.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not train_checkpoint.has_checkpoint(out_dir):
        raise FileNotFoundError(f"No checkpoint in {out_dir}.")
    model, codebook, params, _, _, _, step, _ = _restore(out_dir, config)
    nnx.update(model, codebook, params)
    num_train = len(load_training_images(data_dir, config.splits))
    eval_images = load_dataset(data_dir, split="eval")[0]
    return _write_outputs(model, out_dir, data_dir, config, step, num_train, eval_images)


def load_vq(folder: str | Path) -> VQModel:
    """Loads a trained tokenizer from a VQ run folder or a zoo folder (see `vq_config_dict`)."""
    folder = Path(folder)
    config = VQConfig.from_dict(vq_config_dict(folder))
    model = nnx.eval_shape(lambda: VQModel(config, rngs=nnx.Rngs(0)))
    weights.load_params(model, folder / VQ_FILE)
    return model
