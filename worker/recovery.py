"""Reconciling the store with the queue: jobs whose message was lost are queued again.

The store says what should run; the broker holds the messages that make it run. They
drift apart when the broker loses data (a Redis restart without persistence drops the
queued messages), when a message was never sent, or when a broker fault failed a job
that has a checkpoint to resume from. `find_lost(store, app)` lists such jobs,
`recover(store, app)` queues each again (a new message; the record goes back to
"queued"), and a fine-tune job resumes from its checkpoint when a worker takes it.

A job is lost when:
- it is "queued", older than `min_age` seconds, and no message for it is in the broker
  (in a queue, or delivered to a worker and not yet acknowledged);
- it is "running" but its worker's heartbeat is stale (`worker.heartbeat`) and no
  message for it is in the broker;
- it "failed" because the broker could not be reached (its error names a connection
  error) and it is a fine-tune job with a checkpoint; with `include_failed`, any failed
  fine-tune job with a checkpoint (after fixing what failed it).

A message sent twice is harmless: a worker claims a job once (`worker.claim`).
`styledrop jobs recover` runs this, and `styledrop worker` runs it at start-up.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from celery import Celery

from worker import heartbeat, jobs
from worker.app import KIND_TASKS, QUEUES, TASK_ROUTES
from worker.store import Store

log = logging.getLogger(__name__)

MIN_AGE_ENV = "STYLEDROP_RECOVER_MIN_AGE"
DEFAULT_MIN_AGE = 60.0  # seconds a queued job may wait for its message to be sent
BROKER_FAULTS = ("ConnectionError", "OperationalError", "TimeoutError", "Could not be queued")


def min_age() -> float:
    """Seconds a queued job may be without a message (`$STYLEDROP_RECOVER_MIN_AGE`, 60).

    Raises:
        ValueError: when the variable is not a number >= 0.
    """
    raw = os.environ.get(MIN_AGE_ENV)
    try:
        value = float(raw) if raw else DEFAULT_MIN_AGE
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{MIN_AGE_ENV} must be a number of seconds >= 0, got {raw!r}.")
    return value


@dataclass(frozen=True)
class LostJob:
    """A job to queue again.

    Attributes:
        job: Its record as found.
        reason: Why it counts as lost, in words.
    """

    job: jobs.Job
    reason: str


def broker_task_ids(app: Celery) -> set[str]:
    """Ids of the task messages the broker holds: queued, or delivered and unacknowledged."""
    messages: list[object] = []
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        client = channel.client
        for queue in QUEUES:
            for priority in channel.priority_steps:
                key = channel._q_for_pri(queue, priority)  # kombu's list of that priority
                messages.extend(_parsed(item) for item in client.lrange(key, 0, -1))
        for entry in client.hvals(channel.unacked_key):  # [message, exchange, routing key]
            unacked = _parsed(entry)
            messages.append(unacked[0] if isinstance(unacked, list) and unacked else None)
    found = set()
    for message in messages:
        try:
            task_id = message["headers"]["id"]
        except (KeyError, TypeError):
            continue  # not a task message (the workers set those aside)
        if isinstance(task_id, str):
            found.add(task_id)
    return found


def _parsed(raw: bytes | str) -> object:
    """A broker item decoded from JSON, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _age_seconds(timestamp: str | None) -> float:
    if not timestamp:
        return float("inf")
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (datetime.now(UTC) - then).total_seconds()


def _broker_fault(error: str | None) -> bool:
    return bool(error) and any(name in error for name in BROKER_FAULTS)


def find_lost(
    store: Store,
    app: Celery,
    *,
    min_age: float = DEFAULT_MIN_AGE,
    include_failed: bool = False,
) -> list[LostJob]:
    """The jobs of the store that no message will run (see the module), oldest first.

    Args:
        store: The store.
        app: The Celery app of the broker.
        min_age: Seconds a queued job may be without a message (its client may be about
            to send it).
        include_failed: Also every failed fine-tune job that has a checkpoint.

    Raises:
        Exception: the broker's connection error when it does not answer.
    """
    in_broker = broker_task_ids(app)
    lost = []
    for job in reversed(jobs.list_jobs(store)):
        missing = job.task_id not in in_broker
        reason = None
        if job.status == "queued" and missing and _age_seconds(job.created) >= min_age:
            reason = "queued, but no message for it is in the broker"
        elif job.status == "running" and missing:
            quiet = heartbeat.age_seconds(job)
            if quiet >= heartbeat.STALE_BEATS * heartbeat.interval():
                reason = f"running on {job.worker}, silent for {quiet:.0f} s, and no message"
        elif job.status == "failed" and job.kind == "finetune":
            step = store.checkpoint_step(job.id)
            if step > 0 and (include_failed or _broker_fault(job.error)):
                reason = f"failed ({job.error}); resumes from its checkpoint at step {step}"
        if reason is not None:
            lost.append(LostJob(job, reason))
    return lost


def requeue(store: Store, app: Celery, job: jobs.Job) -> jobs.Job:
    """Sends a new message for the job and puts its record back to "queued".

    A failed job gets its attempts back (its workers were not lost; the broker was).

    Returns:
        The record as written.
    """
    task = KIND_TASKS[job.kind]
    result = app.send_task(task, args=[job.id], queue=TASK_ROUTES[task]["queue"])

    def change(record: jobs.Job) -> None:
        if record.status == "failed":
            record.attempts = 0
        record.status, record.error, record.finished = "queued", None, None
        record.heartbeat, record.task_id = None, result.id

    return jobs.update(store, job.id, change)


def recover(
    store: Store,
    app: Celery,
    *,
    min_age: float = DEFAULT_MIN_AGE,
    include_failed: bool = False,
    dry_run: bool = False,
) -> list[LostJob]:
    """Queues again every lost job (see `find_lost`); returns them.

    Args:
        store: The store.
        app: The Celery app of the broker.
        min_age: See `find_lost`.
        include_failed: See `find_lost`.
        dry_run: Only list them.
    """
    lost = find_lost(store, app, min_age=min_age, include_failed=include_failed)
    for item in lost:
        if not dry_run:
            requeue(store, app, item.job)
        what = "Lost" if dry_run else "Queued again"
        log.warning("%s job %s: %s.", what, item.job.id, item.reason)
    return lost
