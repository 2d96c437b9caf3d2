"""Shrinking a trained VQ tokenizer's codebook by k-means on its own encoder outputs.

The EMA tokenizer of `train_vq` keeps every code alive with dead-code restarts, so its
1024 codes end up as many near-copies of the same few looks: a plain white image maps to
11 different codes, and 128 k-means centroids reconstruct the eval renders within 0.25 dB
of all 1024. For the base U-ViT those copies are noise it has to learn to predict.
Compaction replaces the codebook by K centroids of the encoder outputs of the
tokenizer's own training images (Lloyd's algorithm, started from the K most-used codes,
a fixed number of iterations, so the result is deterministic); the encoder and decoder
are kept as they are.

`styledrop zoo compact-vq --vq RUN --data DIR --codes K --out DIR` writes a folder that
`zoo train base` and `zoo assemble` take like a `zoo train vq` run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from muse import checkpoint as model_checkpoint
from muse import weights
from muse.folder_layout import VQ_FILE
from muse.vq import VQModel
from zoo_build.dataset import load_dataset
from zoo_build.refit_decoder import RefitConfig, refit_decoder
from zoo_build.run_files import VQ_CONFIG_FILE, VQ_INFO_FILE
from zoo_build.train_vq import load_training_images, load_vq
from zoo_build.vq_metrics import evaluate_vq, map_batches

DEFAULT_CODES = 128
DEFAULT_ITERATIONS = 25
_CHUNK = 16384  # encoder outputs per distance block


def encode_all(model: VQModel, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Encoder outputs (before quantization) of uint8 images: [N, h, w, D] float32."""
    return map_batches(
        jax.jit(lambda x: model.encode(x.astype(jnp.float32) / 255.0)), images, batch_size
    )


def nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) of every point: [N, D], [K, D] -> [N]."""
    centre_sq = np.sum(centres * centres, axis=1)  # [K]
    out = np.empty(len(points), np.int64)
    for start in range(0, len(points), _CHUNK):
        block = points[start : start + _CHUNK]  # [n, D]
        # |p|^2 is the same for every centre, so it does not change the argmin.
        out[start : start + _CHUNK] = np.argmin(centre_sq - 2.0 * block @ centres.T, axis=1)
    return out


def kmeans(
    points: np.ndarray,
    init: np.ndarray,
    iterations: int,
    progress: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    """Lloyd's algorithm from given centres; an emptied centre moves to the worst-fit point.

    Args:
        points: [N, D] float32.
        init: [K, D] starting centres.
        iterations: Assignment + update rounds.
        progress: Called with (iteration, mean squared distance) after each round.

    Returns:
        [K, D] float32 centres.
    """
    centres = np.array(init, np.float64)
    for iteration in range(iterations):
        ids = nearest(points, centres.astype(np.float32))
        counts = np.bincount(ids, minlength=len(centres))  # [K]
        sums = np.zeros_like(centres)
        np.add.at(sums, ids, points)
        errors = np.sum((points - centres[ids]) ** 2, axis=1)  # [N]
        live = counts > 0
        centres[live] = sums[live] / counts[live, None]
        empty = np.flatnonzero(~live)
        if len(empty):  # reseed on the points the current centres fit worst
            centres[empty] = points[np.argsort(-errors)[: len(empty)]]
        if progress is not None:
            progress(iteration + 1, float(errors.mean()))
    return centres.astype(np.float32)


def compact_vq(
    vq_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    codes: int = DEFAULT_CODES,
    iterations: int = DEFAULT_ITERATIONS,
    log: Callable[[str], None] = print,
    refit: RefitConfig | None = None,
) -> Path:
    """Writes a copy of a trained tokenizer with a K-code codebook.

    Args:
        vq_dir: A `zoo train vq` run folder (vqvae.safetensors, vq_config.json,
            train_info.json naming the training splits).
        data_dir: The emoji-world dataset it was trained on.
        out_dir: Where to write vqvae.safetensors, vq_config.json and train_info.json.
        codes: The new codebook size K (at most the old one).
        iterations: k-means rounds.
        log: Receives progress lines.
        refit: Then refit the decoder to the new codes (`refit_decoder`); None or 0
            steps: keep the decoder as it is.

    Returns:
        The new weights file.

    Raises:
        ValueError: K is not between 2 and the current codebook size.
    """
    vq_dir, data_dir, out_dir = Path(vq_dir), Path(data_dir), Path(out_dir)
    source = load_vq(vq_dir)
    old = int(source.config.num_vq_embeddings)
    if not 2 <= codes <= old:
        raise ValueError(f"--codes must be between 2 and the current codebook size {old}.")
    info_path = vq_dir / VQ_INFO_FILE
    source_info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    splits = tuple(source_info.get("train", {}).get("splits", ("vq", "base")))
    images = load_training_images(data_dir, splits)
    log(f"encoding {len(images)} training images ({', '.join(splits)})")
    dim = source.config.embed_dim
    points = encode_all(source, images).reshape(-1, dim)  # [N * h * w, D]
    codebook = np.asarray(source.quantize.codebook)  # [old, D]
    usage = np.bincount(nearest(points, codebook), minlength=old)
    init = codebook[np.argsort(-usage, kind="stable")[:codes]]  # the K most-used codes

    def show(iteration: int, error: float) -> None:
        log(f"k-means {iteration}/{iterations}: mean squared distance {error:.5f}")

    centres = kmeans(points, init, iterations, progress=show)
    config = dataclasses.replace(source.config, num_vq_embeddings=codes)
    model = nnx.eval_shape(lambda: VQModel(config, rngs=nnx.Rngs(0)))
    values = weights.flat_params(source)
    values["quantize.embedding.embedding"] = centres
    weights.assign(model, values, "compacted VQ")
    eval_images = load_dataset(data_dir, split="eval")[0]
    compaction = {
        "from_codes": old,
        "codes": codes,
        "iterations": iterations,
        "source_sha256": model_checkpoint.sha256_file(vq_dir / VQ_FILE),
    }
    if refit is not None and refit.steps > 0:
        compaction["eval_before_refit"] = evaluate_vq(model, eval_images)
        log(f"refitting the decoder: {refit.steps} steps on {len(images)} images")
        every = max(1, refit.steps // 10)

        def report(step: int, loss: float) -> None:
            if step % every == 0 or step == refit.steps:
                log(f"refit {step}/{refit.steps}: loss {loss:.4f}")

        refit_decoder(model, images, refit, progress=report)
        compaction["refit"] = dataclasses.asdict(refit)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / VQ_FILE
    weights.save_params(model, path)
    (out_dir / VQ_CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    # `zoo train vq` recorded the source's figures on this same split; measure only without.
    before = source_info.get("eval") or evaluate_vq(source, eval_images)
    info = {
        **source_info,
        "compaction": {**compaction, "eval_before": before},
        "eval": evaluate_vq(model, eval_images),
    }
    (out_dir / VQ_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    log(
        f"eval PSNR {before['psnr']:.2f} dB with {old} codes -> {info['eval']['psnr']:.2f} dB"
        f" with {codes}"
    )
    return path
