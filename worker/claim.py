"""Claiming a delivered job: the step that makes redelivery (late acknowledgement) safe.

Under the job's lock, a queued or running job becomes running on this worker with one
more attempt. A job that has ended is not run again (its message was delivered twice),
a job asked to cancel before it ran ends "cancelled", and a job whose workers were lost
`MAX_ATTEMPTS` times ends "failed" instead of taking down worker after worker.

A job handed over while another worker still runs it (its heartbeat is fresh: see
`worker.heartbeat`) is waited for first, so it never runs twice at once.
"""

from __future__ import annotations

from typing import Any

from worker import heartbeat, jobs
from worker.store import Store

MAX_ATTEMPTS = 3


def claim(store: Store, job_id: str, worker: str) -> jobs.Job | None:
    """Marks the job running on this worker, or returns None when it must not run.

    Returns:
        The updated record, or None for a job that has ended (or is ended here: asked to
        cancel before it started, or out of attempts).
    """
    heartbeat.wait_while_alive_elsewhere(store, job_id, worker)
    outcome: dict[str, bool] = {"run": False}

    def change(job: jobs.Job) -> None:
        if job.is_terminal or heartbeat.alive_elsewhere(job, worker):
            return  # ended, or taken by another worker since the wait
        now = jobs.utc_now()
        if jobs.is_cancel_requested(store, job_id):
            job.status, job.finished = "cancelled", now
            job.error = job.error or "Cancelled before it started."
            return
        if job.attempts >= MAX_ATTEMPTS:
            job.status, job.finished = "failed", now
            job.error = (
                f"Gave up after {job.attempts} attempts: the worker running it was lost each"
                " time (out of memory? killed?). See the worker logs."
            )
            return
        job.status, job.started, job.worker, job.heartbeat = "running", now, worker, now
        job.attempts += 1
        job.error = None
        outcome["run"] = True

    job = jobs.update(store, job_id, change)
    if not outcome["run"]:
        return None
    heartbeat.start(store, job_id, worker)
    return job


def skipped(store: Store, job_id: str) -> dict[str, Any]:
    """A task's result for a job `claim` declined: {"job_id", "status", "skipped": True}."""
    return {"job_id": job_id, "status": jobs.get(store, job_id).status, "skipped": True}
