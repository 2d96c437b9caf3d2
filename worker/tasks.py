"""The Celery tasks: thin wrappers that receive a job id and run the job from the store.

Messages carry the job id only; everything else (images, settings, the base folder) is
in the job record (`worker.jobs`), and everything a job makes goes into the store. The
tasks import no JAX at import time: the fine-tune code and the base model are loaded
inside the task, once per worker process (`worker.models`).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from worker.app import DEMO_TASK, FINETUNE_TASK, GENERATE_TASK, app
from worker.store import default_store

log = logging.getLogger(__name__)


@app.task(name=FINETUNE_TASK, bind=True)
def finetune_task(self, job_id: str) -> dict[str, Any]:
    """Runs, or resumes after a lost worker, the fine-tune job `job_id`.

    Args:
        self: The bound task (its request names the worker).
        job_id: The job in the store (`$STYLEDROP_STORE`).

    Returns:
        {"job_id", "status", "step"} (see `worker.finetune_job.run_finetune_job`).
    """
    from worker.finetune_job import run_finetune_job

    worker = self.request.hostname or socket.gethostname()

    def on_progress(progress: dict[str, Any]) -> None:
        # Best effort: the record in the store is the job's progress; the result backend
        # (Redis) may be restarting, and a lost progress write must not fail the job.
        if not self.request.id:
            return
        try:
            self.update_state(state="PROGRESS", meta={"job_id": job_id, **progress})
        except Exception as error:
            log.warning("Job %s: progress not sent to the result backend (%s).", job_id, error)

    return run_finetune_job(default_store(), job_id, worker, on_progress=on_progress)


@app.task(name=GENERATE_TASK, bind=True)
def generate_task(self, job_id: str) -> dict[str, Any]:
    """Runs the generation job `job_id` (images in a style adapter's style).

    Args:
        self: The bound task (its request names the worker).
        job_id: The job in the store (`$STYLEDROP_STORE`).

    Returns:
        {"job_id", "status", "images"} (see `worker.generate_job.run_generate_job`).
    """
    from worker.generate_job import run_generate_job

    worker = self.request.hostname or socket.gethostname()
    return run_generate_job(default_store(), job_id, worker)


@app.task(name=DEMO_TASK, bind=True)
def demo_task(self, job_id: str) -> dict[str, Any]:
    """Runs, or resumes after a lost worker, the demo job `job_id` (`styledrop demo`).

    Args:
        self: The bound task (its request names the worker).
        job_id: The job in the store (`$STYLEDROP_STORE`).

    Returns:
        {"job_id", "status"} (see `worker.demo_job.run_demo_job`).
    """
    from worker.demo_job import run_demo_job

    worker = self.request.hostname or socket.gethostname()
    return run_demo_job(default_store(), job_id, worker)
