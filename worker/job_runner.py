"""The frame every job runs in: claim, run the job's body, record how it ended.

`run_job(store, job_id, worker, body)` is what the job modules (`worker.finetune_job`,
`worker.generate_job`, `worker.demo_job`) share:

1. Claim (`worker.claim`): a job that has ended, was cancelled before it started or ran
   out of attempts is not run; the task returns {"job_id", "status", "skipped": True}.
2. Run `body(store, job)`, which does the work and says how it ended as an `Outcome`
   (succeeded, or cancelled on request). An exception marks the job "failed" with the
   error's class and message, and is raised again (the task fails too). A worker shutdown
   that interrupts the body (`SystemExit`, `KeyboardInterrupt`: see `worker.solo_pool`)
   is not the job's failure: the job goes back to "queued", to resume from its last
   checkpoint when its message is delivered again, and the interruption goes on.
3. Finish: one write of the record under its lock: status, error, finish time, the
   outcome's artifacts added to the record's, and its final progress.

`CancelFlag` is the `should_stop` callback the bodies give to long loops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker import jobs
from worker.claim import claim, skipped
from worker.store import Store

log = logging.getLogger(__name__)

REMOTE_CANCEL_POLL = 2.0  # seconds between cancel-marker checks on a remote store


@dataclass
class Outcome:
    """How a job's body ended (a failure raises instead).

    Attributes:
        status: "succeeded" or "cancelled".
        artifacts: What it produced: {name: store key}, added to the record's.
        progress: The record's final progress (None: leave it as last written).
        error: How it was cancelled (None when it succeeded).
        result: Extra keys of the task's result ({"step": 120}, {"images": 8}).
    """

    status: str
    artifacts: dict[str, str] = field(default_factory=dict)
    progress: dict[str, Any] | None = None
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


class CancelFlag:
    """The `should_stop` callback: whether the job's cancel marker exists (polled cheaply).

    Args:
        store: The store holding the job.
        job_id: The job.
    """

    def __init__(self, store: Store, job_id: str):
        self.store, self.job_id = store, job_id
        self.interval = 0.0 if store.is_local else REMOTE_CANCEL_POLL
        self.last = float("-inf")
        self.requested = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.requested and now - self.last >= self.interval:
            self.last = now
            self.requested = jobs.is_cancel_requested(self.store, self.job_id)
        return self.requested


def finish(store: Store, job_id: str, outcome: Outcome) -> jobs.Job:
    """Records how the job ended, in one write under its lock.

    Returns:
        The record as written.
    """

    def change(record: jobs.Job) -> None:
        record.status, record.error, record.finished = outcome.status, outcome.error, jobs.utc_now()
        record.artifacts = {**record.artifacts, **outcome.artifacts}
        if outcome.progress is not None:
            record.progress = {**outcome.progress, "updated": record.finished}

    return jobs.update(store, job_id, change)


def hand_back(store: Store, job_id: str, worker: str) -> None:
    """Puts a job this worker was running back to "queued" (its worker is shutting down).

    Its heartbeat is cleared, so the next worker that receives it runs it at once.
    """

    def change(record: jobs.Job) -> None:
        if record.status == "running" and record.worker == worker:
            record.status, record.heartbeat = "queued", None
            step = record.progress.get("checkpoint_step")
            record.progress = {**record.progress, "interrupted": jobs.utc_now()}
            log.warning(
                "Job %s: worker %s is shutting down; the job goes back on the queue%s.",
                job_id, worker, f" (checkpoint at step {step})" if step else "",
            )  # fmt: skip

    try:
        jobs.update(store, job_id, change)
    except Exception:  # shutting down: the stale heartbeat hands it over anyway
        log.exception("Job %s: could not put the record back to queued.", job_id)


def run_job(
    store: Store,
    job_id: str,
    worker: str,
    body: Callable[[Store, jobs.Job], Outcome],
) -> dict[str, Any]:
    """Claims the job, runs `body` and records how it ended.

    Args:
        store: The store holding the job.
        job_id: The job.
        worker: Name of this worker (recorded in the job).
        body: Does the job's work on the claimed record; returns its `Outcome`.

    Returns:
        {"job_id", "status", **outcome.result}; {"job_id", "status", "skipped": True}
        when the job was not run.

    Raises:
        Exception: whatever made the job fail, after the record says "failed".
    """
    job = claim(store, job_id, worker)
    if job is None:
        result = skipped(store, job_id)
        log.info("Job %s is %s: nothing to do.", job_id, result["status"])
        return result
    log.info("Job %s: attempt %d on %s.", job_id, job.attempts, worker)
    try:
        outcome = body(store, job)
    except Exception as error:
        log.exception("Job %s failed.", job_id)
        jobs.mark_failed(store, job_id, error)
        raise
    except BaseException:
        hand_back(store, job_id, worker)
        raise
    finish(store, job_id, outcome)
    log.info("Job %s %s %s.", job_id, outcome.status, outcome.result or "")
    return {"job_id": job_id, "status": outcome.status, **outcome.result}
