"""Running one generation job: prompts x N images in a style adapter's style, into the store.

`run_generate_job(store, job_id, worker)` is the body of the `styledrop.generate` task.
In the frame of `worker.job_runner` (claim, record a failure, finish), it attaches the
style adapter (and the subject adapter, for style + subject composition) to the cached
base model, samples with StyleDrop guidance, writes every image and a grid into the
job's folder and records them as artifacts. Unless the spec says `score=False`, every
image is then scored with the CLIP judge (`worker.models.judge_scorer`) and
`scores.json` lists, per image, {"id", "key", "prompt", "text_score", "style_score"}:
the text score against its content prompt (without the descriptor), the style score
(mean cosine) against the style images of the source fine-tune job, null when there is
none. Generation is deterministic in the seed, so a job delivered again simply runs
again. Cancelling stops it after the current batch.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from styledrop.adapted import attach_adapter, generate_styled
from styledrop.guidance import model_guidance
from styledrop.images import make_grid, save_image, to_uint8
from styledrop.inputs import load_image_bytes
from styledrop.terms import without_descriptor
from worker import jobs
from worker.finetune_spec import FinetuneSpec
from worker.generate_spec import SCORES_FILE, GenerateSpec
from worker.job_runner import Outcome, run_job
from worker.models import base_pipeline, device_label, judge_scorer, release
from worker.store import Store, job_key

log = logging.getLogger(__name__)

IMAGES = "images"
GRID = "grid.png"
SCORES = "scores"  # the artifact name of scores.json


def image_name(index: int) -> str:
    """The file name (and candidate id) of the job's image `index`: "000.png"."""
    return f"{index:03d}.png"


def style_references(store: Store, source_job: str | None) -> list[np.ndarray]:
    """The style images of the fine-tune job `source_job` ([H, W, 3] uint8 each).

    Returns:
        An empty list when there is no source job, or it no longer exists.
    """
    if source_job is None:
        return []
    try:
        source = jobs.get(store, source_job)
    except jobs.JobNotFoundError:
        log.warning("Source job %s is gone: no style scores.", source_job)
        return []
    spec = FinetuneSpec.from_dict(source.inputs)
    return [load_image_bytes(store.read_bytes(i.key), i.name).pixels for i in spec.images]


def score_images(
    scorer: Any, images: np.ndarray, prompts: list[str], references: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """CLIP text and style scores of generated images (`feedback.scorer` definitions).

    Args:
        scorer: A `feedback.scorer.ClipScorer`.
        images: [N, H, W, 3] uint8 images (or floats in [0, 1]).
        prompts: The content prompt of each image.
        references: Style images, any sizes (none: style scores are NaN).

    Returns:
        (text scores [N], style scores [N]): cos(image, prompt), and the mean over the
        references of cos(image, reference).
    """
    embedded = scorer.image_embeddings(images)  # once, for both scores
    text = np.sum(embedded * scorer.text_embeddings(prompts), axis=-1)
    if not references:
        return text, np.full(len(images), np.nan, np.float32)
    refs = np.concatenate([scorer.reference_embeddings(ref[None]) for ref in references])
    return text, (embedded @ refs.T).mean(axis=1)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class _CancelledError(Exception):
    """Raised from the progress callback to stop sampling."""


def run_generate_job(store: Store, job_id: str, worker: str) -> dict[str, Any]:
    """Runs a generation job and records how it ended.

    Args:
        store: The store holding the job.
        job_id: The job.
        worker: Name of this worker (recorded in the job).

    Returns:
        {"job_id", "status", "images"}; `"skipped": True` when the job was not run.

    Raises:
        Exception: whatever made the job fail, after the record says "failed".
    """
    return run_job(store, job_id, worker, _generate)


def _generate(store: Store, job: jobs.Job) -> Outcome:
    """The generation job's body: samples, saves and scores the images."""
    job_id = job.id
    spec = GenerateSpec.from_dict(job.inputs)
    # The judge and the references load before sampling: a missing judge fails fast.
    scorer = judge_scorer() if spec.score else None
    references = style_references(store, spec.source_job) if spec.score else []
    folder = store.pull(job_id)
    pipe = base_pipeline(spec.base)
    scales = model_guidance(pipe.config.sampling, spec.lambda_a, spec.lambda_b, spec.content_first)
    decode = pipe.decode_config(
        temperature=spec.temperature, token_temperature=spec.token_temperature
    )
    used = {"temperature": decode.temperature, "token_temperature": decode.token_temperature}
    used = json.loads(json.dumps(used))  # a (start, end) schedule as the record reads it
    jobs.update(store, job.id, device=device_label(), guidance=asdict(scales), decoding=used)
    try:
        style = attach_adapter(pipe, store.fetch(spec.adapter))
        subject = None
        if spec.subject_adapter is not None:  # a second index; `release` removes both
            subject = attach_adapter(pipe, store.fetch(spec.subject_adapter))
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if jobs.is_cancel_requested(store, job_id):
                raise _CancelledError
            now = time.monotonic()
            if now - last[0] >= 1.0 or done == total:
                last[0] = now
                data = {"done": done, "total": total, "updated": jobs.utc_now()}
                jobs.update(store, job_id, progress=data)

        images = generate_styled(
            pipe, style, list(spec.prompts), num_images_per_prompt=spec.num_images,
            seed=spec.seed, scales=scales, negative_prompt=spec.negative_prompt,
            subject=subject, gamma=spec.gamma, progress=progress,
            temperature=spec.temperature, token_temperature=spec.token_temperature,
        )  # fmt: skip
    except _CancelledError:
        return Outcome("cancelled", error="Cancelled by request before all images were made.")
    finally:
        release(pipe)  # takes out the style and the subject adapter
    images = to_uint8(images)  # as saved: scores.json scores the stored files
    artifacts = {"grid": job_key(job_id, GRID)}
    save_image(make_grid(images, columns=spec.num_images), folder / GRID)
    for index, image in enumerate(images):
        save_image(image, folder / IMAGES / image_name(index))
        artifacts[f"image-{index:03d}"] = job_key(job_id, IMAGES, image_name(index))
    if scorer is not None:
        prompts = [without_descriptor(p, style.descriptor) for p in spec.image_prompts()]
        text, style_scores = score_images(scorer, images, prompts, references)
        entries = [
            {
                "id": image_name(index),
                "key": artifacts[f"image-{index:03d}"],
                "prompt": prompts[index],
                "text_score": float(text[index]),
                "style_score": _finite(style_scores[index]),
            }
            for index in range(len(images))
        ]
        (folder / SCORES_FILE).write_text(json.dumps(entries, indent=2) + "\n")
        artifacts[SCORES] = job_key(job_id, SCORES_FILE)
    store.push(job_id)
    progress_data = {"done": len(images), "total": spec.total}
    return Outcome("succeeded", artifacts, progress_data, result={"images": len(images)})
