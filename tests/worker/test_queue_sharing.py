"""The queue under load and under failure: two workers on one queue, a broker restart.

Real redis-server and worker processes. Both tests start their own workers (each test
has its own Redis database and store); the restart test also has its own redis-server,
with the append-only file on, so the queued job survives the restart. Both are `e2e` (about
25 s each): the default run keeps one worker's queue path (test_queue.py).
"""

from __future__ import annotations

import pytest

from worker import client, jobs
from worker.finetune_spec import FinetuneOptions

JOB = {"adapter": "r1", "batch_size": 2, "variants_per_image": 2, "steps": 3}


def _submit(service, image, base):
    return client.submit(
        [image], FinetuneOptions("in stripes style", base=base, **JOB),
        captions={image.name: "a grid"}, store=service.store, app=service.app,
    )  # fmt: skip


@pytest.mark.e2e
def test_two_workers_share_one_queue(service, style_image, tiny_zoo):
    # The visibility timeout (3 s) is shorter than these jobs: an idle worker puts back
    # the other's unacknowledged message, receives it, sees the job's fresh heartbeat and
    # stands by instead of running it a second time.
    workers = [service.start_worker(name, queues="training") for name in ("a", "b")]
    for worker in workers:
        worker.wait_ready()  # both consume before anything is queued
    submitted = [_submit(service, style_image, tiny_zoo) for _ in range(3)]
    done = [service.wait_job(job.id) for job in submitted]
    names = {worker.name for worker in workers}
    for record in done:
        assert record.status == "succeeded", record.error
        assert record.attempts == 1 and record.worker in names  # it ran once
        started = [w.name for w in workers if f"Job {record.id}: attempt" in w.output()]
        assert started == [record.worker]
    assert {record.worker for record in done} == names  # both workers ran jobs
    assert service.queue_length("training") == 0


@pytest.mark.e2e
def test_a_queued_job_survives_a_broker_restart(
    persistent_service, style_image, tiny_zoo, wait_for
):
    service = persistent_service
    job = _submit(service, style_image, tiny_zoo)  # no worker yet: it stays queued
    assert service.queue_length() == 1
    # SIGTERM: redis writes the append-only file out and exits; then it starts again.
    assert service.server.restart() == 0, (service.server.folder / "redis.log").read_text()
    assert service.queue_length() == 1, "the queued message was lost in the restart"
    assert jobs.get(service.store, job.id).status == "queued"
    service.start_worker("after-restart").wait_ready()
    done = service.wait_job(job.id)
    assert done.status == "succeeded", done.error
    assert (done.attempts, done.worker) == (1, "after-restart@test")
    wait_for(lambda: service.queue_length() == 0, 30, "the queue to be empty")
    # The client's app, made before the restart, reconnects: the next job runs too.
    later = _submit(service, style_image, tiny_zoo)
    assert service.wait_job(later.id).status == "succeeded"
