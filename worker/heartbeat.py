"""Heartbeats: how a worker tells that a "running" job is alive on another worker.

Redis hands an unacknowledged message to another worker once it is older than the
visibility timeout, even while its first worker is still running the job (a job longer
than the timeout, or a test's short timeout). A running job's record therefore carries
`heartbeat`, refreshed every `interval()` seconds by a thread of the worker that runs it.
A worker that is handed a job that runs elsewhere with a fresh heartbeat waits
(`wait_while_alive_elsewhere`): when the job ends it has nothing to do, and when the
heartbeat goes stale (that worker died) it takes the job over and resumes it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime

from worker import jobs
from worker.store import Store

log = logging.getLogger(__name__)

HEARTBEAT_ENV = "STYLEDROP_HEARTBEAT_SECONDS"
DEFAULT_INTERVAL = 30.0
STALE_BEATS = 3  # a heartbeat older than this many intervals means the worker is gone


def interval() -> float:
    """Seconds between heartbeats (`$STYLEDROP_HEARTBEAT_SECONDS`, default 30)."""
    raw = os.environ.get(HEARTBEAT_ENV)
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ValueError(f"{HEARTBEAT_ENV} must be a positive number of seconds, got {raw!r}.")
    return value


def age_seconds(job: jobs.Job, now: datetime | None = None) -> float:
    """Seconds since the job's last heartbeat (infinite when it has none)."""
    if not job.heartbeat:
        return float("inf")
    beat = datetime.fromisoformat(job.heartbeat)
    return ((now or datetime.now(UTC)) - beat).total_seconds()


def alive_elsewhere(job: jobs.Job, worker: str) -> bool:
    """Whether another worker runs the job and its heartbeat is fresh."""
    return (
        job.status == "running"
        and job.worker != worker
        and age_seconds(job) < STALE_BEATS * interval()
    )


def wait_while_alive_elsewhere(store: Store, job_id: str, worker: str) -> jobs.Job:
    """Blocks while another live worker runs the job; returns the record then."""
    job = jobs.get(store, job_id)
    if alive_elsewhere(job, worker):
        log.info("Job %s runs on %s: standing by until it ends or goes quiet.", job_id, job.worker)
    while alive_elsewhere(job, worker):
        time.sleep(min(interval(), 5.0))
        job = jobs.get(store, job_id)
    return job


def start(store: Store, job_id: str, worker: str) -> threading.Thread:
    """Starts the heartbeat thread of a job this worker has claimed.

    The thread refreshes `heartbeat` until the job ends or another worker owns it; it is
    a daemon, so a dying worker's heartbeat stops with it.
    """
    ended = {"stop": False}

    def refresh(job: jobs.Job) -> None:
        if job.status != "running" or job.worker != worker:  # ended, handed back or over
            ended["stop"] = True
        else:
            job.heartbeat = jobs.utc_now()

    def beat() -> None:
        period = interval()
        while not ended["stop"]:
            time.sleep(period)
            try:
                jobs.update(store, job_id, refresh)
            except Exception:  # a store hiccup: try again next beat
                log.exception("Heartbeat of job %s failed.", job_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    return thread
