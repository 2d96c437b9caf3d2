"""Running one generation job: prompts x N images in a style adapter's style, into the store.

`run_generate_job(store, job_id, worker)` is the body of the `styledrop.generate` task.
It claims the job (`worker.claim`), attaches the adapter to the cached base model,
samples with StyleDrop guidance, writes every image and a grid into the job's folder
and records them as artifacts. Generation is deterministic in the seed, so a job
delivered again simply runs again. Cancelling stops it after the current batch.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from worker import jobs
from worker.claim import claim
from worker.generate_spec import GenerateSpec
from worker.store import Store, job_key

log = logging.getLogger(__name__)

IMAGES = "images"
GRID = "grid.png"


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
    job = claim(store, job_id, worker)
    if job is None:
        return {"job_id": job_id, "status": jobs.get(store, job_id).status, "skipped": True}
    pipe = None
    try:
        from styledrop.adapted import attach_adapter, generate_styled
        from styledrop.guidance import GuidanceScales
        from styledrop.images import make_grid, save_image
        from worker.models import base_pipeline

        spec = GenerateSpec.from_dict(job.inputs)
        defaults = GuidanceScales()
        scales = GuidanceScales(
            lambda_a=defaults.lambda_a if spec.lambda_a is None else spec.lambda_a,
            lambda_b=defaults.lambda_b if spec.lambda_b is None else spec.lambda_b,
        )
        folder = store.pull(job_id)
        pipe = base_pipeline(spec.base)
        style = attach_adapter(pipe, store.fetch(spec.adapter))
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
            progress=progress,
        )  # fmt: skip
        artifacts = {"grid": job_key(job_id, GRID)}
        save_image(make_grid(images, columns=spec.num_images), folder / GRID)
        for index, image in enumerate(images):
            name = f"{index:03d}.png"
            save_image(image, folder / IMAGES / name)
            artifacts[f"image-{index:03d}"] = job_key(job_id, IMAGES, name)
        store.push(job_id)
    except _CancelledError:
        jobs.update(
            store, job_id, status="cancelled", finished=jobs.utc_now(),
            error="Cancelled by request before all images were made.",
        )  # fmt: skip
        return {"job_id": job_id, "status": "cancelled"}
    except Exception as error:
        log.exception("Job %s failed.", job_id)
        message = f"{error.__class__.__name__}: {error}"
        jobs.update(store, job_id, status="failed", error=message, finished=jobs.utc_now())
        raise
    finally:
        if pipe is not None:
            from worker.models import release

            release(pipe)

    def finish(record: jobs.Job) -> None:
        record.status, record.error, record.finished = "succeeded", None, jobs.utc_now()
        record.artifacts = {**record.artifacts, **artifacts}
        record.progress = {"done": len(images), "total": spec.total, "updated": record.finished}

    jobs.update(store, job_id, finish)
    return {"job_id": job_id, "status": "succeeded", "images": len(images)}
