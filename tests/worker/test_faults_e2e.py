"""Faults in the middle of a running job, on real redis-servers and real workers (`e2e`).

- The broker restarts mid-job, with and without its append-only file: the job goes on
  (progress writes are best effort) and succeeds, every step trained once.
- The worker is shut down cold mid-job (SIGQUIT: what `serve` sends on Ctrl-C): the job
  goes back to "queued" with its message, and the next worker resumes it from its
  checkpoint; at most the steps since that checkpoint are trained again.
- A broker restart without persistence drops the queued messages: the next worker finds
  the lost jobs at start-up and runs them.
"""

from __future__ import annotations

import json
import signal

import pytest

from worker import client, jobs

STEPS, CHECKPOINT_EVERY = 300, 25
pytestmark = pytest.mark.e2e


def _submit(service, image, base, steps=STEPS):
    from worker.finetune_spec import FinetuneOptions

    options = FinetuneOptions(
        "in stripes style", base=base, adapter="r1", steps=steps, batch_size=2,
        variants_per_image=2, checkpoint_every=CHECKPOINT_EVERY,
    )  # fmt: skip
    return client.submit([image], options, store=service.store, app=service.app)


def _step(service, job_id) -> int:
    return int(jobs.get(service.store, job_id).progress.get("step", 0))


def _logged_steps(service, job_id) -> list[int]:
    path = service.store.job_dir(job_id) / "train_log.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_a_broker_restart_mid_job_does_not_fail_it(
    own_broker_service, style_image, tiny_zoo, wait_for
):
    service = own_broker_service
    worker = service.start_worker("steady")
    job = _submit(service, style_image, tiny_zoo)
    wait_for(lambda: _step(service, job.id) >= 20, 300, "the job to be training")
    service.server.restart()
    assert _step(service, job.id) < STEPS, "the job ended before the restart: make it longer"
    done = service.wait_job(job.id)
    assert done.status == "succeeded", done.error
    assert done.attempts == 1 and worker.process.poll() is None
    assert _logged_steps(service, job.id) == list(range(1, STEPS + 1))


def test_a_cold_shutdown_mid_job_hands_it_back_and_it_resumes(
    service, style_image, tiny_zoo, wait_for
):
    first = service.start_worker("first")
    job = _submit(service, style_image, tiny_zoo)
    wait_for(lambda: _step(service, job.id) > CHECKPOINT_EVERY + 5, 300, "a checkpoint")
    first.process.send_signal(signal.SIGQUIT)
    assert first.process.wait(60) is not None
    record = jobs.get(service.store, job.id)
    assert record.status == "queued" and record.error is None, record
    assert "NotImplementedError" not in first.output()
    checkpoint = service.store.checkpoint_step(job.id)
    assert checkpoint >= CHECKPOINT_EVERY
    wait_for(lambda: service.queue_length() == 1, 30, "the message back on the queue")

    service.start_worker("second")
    done = service.wait_job(job.id)
    assert done.status == "succeeded", done.error
    assert (done.worker, done.attempts) == ("second@test", 2)
    assert done.progress["resumed_from"] == checkpoint
    steps = _logged_steps(service, job.id)
    assert steps == list(range(1, STEPS + 1))  # replayed steps are logged once


def test_jobs_lost_in_a_broker_restart_run_when_a_worker_starts(
    volatile_service, style_image, tiny_zoo
):
    service = volatile_service
    submitted = [_submit(service, style_image, tiny_zoo, steps=3) for _ in range(2)]
    service.server.restart()  # no persistence: the queued messages are gone
    assert service.queue_length() == 0
    service.env["STYLEDROP_RECOVER_MIN_AGE"] = "0"
    worker = service.start_worker("recovering")
    for job in submitted:
        done = service.wait_job(job.id)
        assert done.status == "succeeded", done.error
    assert "Queued again 2 lost job(s)" in worker.output()
