"""The Celery application: Redis broker, JSON messages only, late acknowledgement.

Broker and result backend: `$STYLEDROP_BROKER_URL` (default `redis://localhost:6379/0`).
Messages carry job ids only (inputs and outputs live in the store, see `worker.store`).

Reliability settings, for jobs that run for hours on one accelerator:
- `task_acks_late` + `worker_prefetch_multiplier=1`: a job is acknowledged when it ends,
  and a worker holds one job at a time, so a job whose worker dies is delivered again;
  the fine-tune task resumes from its checkpoint, so redelivery is safe.
- `task_reject_on_worker_lost`: the same when a pool child process dies.
- Redis redelivers an unacknowledged message after the visibility timeout; it must exceed
  the longest job (default 6 h; `$STYLEDROP_VISIBILITY_TIMEOUT` seconds overrides it, and
  tests use a few seconds to see a killed worker's job come back quickly).
- JSON only: a pickled message (which could run code when loaded) is refused.

Workers run the solo pool (`worker.solo_pool`): JAX is multithreaded and not fork-safe,
and one process per accelerator keeps the loaded model in memory. Its cold shutdown
hands the running job back to the queue instead of failing it.

Messages are read through `worker.redis_transport` (for redis:// and rediss:// brokers):
a malformed queue item is set aside and logged instead of stopping the worker.

This module imports no task code: workers load `worker.tasks` through `include`, clients
send tasks by name (`worker.client`), so submitting a job never imports JAX.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

from worker.redis_transport import TRANSPORT
from worker.solo_pool import POOL

BROKER_ENV = "STYLEDROP_BROKER_URL"
DEFAULT_BROKER = "redis://localhost:6379/0"
VISIBILITY_ENV = "STYLEDROP_VISIBILITY_TIMEOUT"
DEFAULT_VISIBILITY_TIMEOUT = 6 * 3600
QUEUES = ("training", "generation")
FINETUNE_TASK = "styledrop.finetune"
GENERATE_TASK = "styledrop.generate"
DEMO_TASK = "styledrop.demo"
KIND_TASKS = {"finetune": FINETUNE_TASK, "generate": GENERATE_TASK, "demo": DEMO_TASK}
TASK_ROUTES = {
    FINETUNE_TASK: {"queue": "training"},
    GENERATE_TASK: {"queue": "generation"},
    DEMO_TASK: {"queue": "training"},
}


def broker_url() -> str:
    """The broker URL in effect (`$STYLEDROP_BROKER_URL` or the local default)."""
    return os.environ.get(BROKER_ENV) or DEFAULT_BROKER


def visibility_timeout() -> int:
    """Seconds before Redis redelivers an unacknowledged job (`$STYLEDROP_VISIBILITY_TIMEOUT`).

    Raises:
        ValueError: when the variable is not a positive whole number.
    """
    raw = os.environ.get(VISIBILITY_ENV)
    if not raw:
        return DEFAULT_VISIBILITY_TIMEOUT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{VISIBILITY_ENV} must be a whole number of seconds >= 1, got {raw!r}.")
    return value


def make_app(broker: str | None = None, visibility: int | None = None) -> Celery:
    """Builds the Celery app.

    Args:
        broker: Broker and result backend URL (default: `broker_url()`).
        visibility: Visibility timeout in seconds (default: `visibility_timeout()`).
    """
    broker = broker or broker_url()
    visibility = visibility or visibility_timeout()
    # Redis scans for unacknowledged messages to restore every interval * throttle seconds;
    # keep that well under the visibility timeout so a lost job returns promptly.
    restore_interval = max(1, min(10, visibility // 4))
    transport = {
        "visibility_timeout": visibility,
        "unacked_restore_interval": restore_interval,
        "unacked_restore_throttle": 1 if visibility < 600 else 10,
    }
    app = Celery("styledrop", broker=broker, backend=broker, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_acks_on_failure_or_timeout=True,  # a job that raised is not delivered again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        result_expires=7 * 24 * 3600,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="generation",
        task_routes=TASK_ROUTES,
        worker_send_task_events=False,
        worker_pool=POOL,
        timezone="UTC",
    )
    if broker.split("://", 1)[0] in ("redis", "rediss"):
        app.conf.broker_transport = TRANSPORT
    return app


app = make_app()
