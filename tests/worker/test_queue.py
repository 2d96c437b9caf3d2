"""End to end on a real Redis and real worker processes: train, cancel, survive a SIGKILL.

The tests of this module share one service (Redis database + store) and one worker at a
time: the SIGKILL test kills the current worker and starts the next, which any later
test uses. Each test asks for `queue_service` before `tiny_zoo`, so the first worker
starts while the zoo is built. Jobs are small (tiny zoo, batch 2, 2 crops per image).
"""

from __future__ import annotations

import json

import pytest

from worker import client, jobs
from worker.finetune_spec import FinetuneOptions

JOB = {"adapter": "r1", "batch_size": 2, "variants_per_image": 2}
JOB_TIMEOUT = 600  # first jobs of a worker load the model and compile the step


def _live_worker(service):
    """The service's live worker; one is started when there is none."""
    alive = [w for w in service.workers if w.process.poll() is None]
    if alive:
        return alive[-1]
    return service.start_worker(f"w{len(service.workers) + 1}", queues="training,generation")


@pytest.fixture
def worker(queue_service):
    return _live_worker(queue_service)


@pytest.fixture(scope="module")
def trained(queue_service, style_image, tiny_zoo):
    """A fine-tune job that ran to the end: (record, name of the worker that ran it)."""
    ran_on = _live_worker(queue_service).name
    job = _submit(queue_service, style_image, tiny_zoo, steps=4)
    return _wait(queue_service, job.id), ran_on


def _submit(service, image, base, steps, **options):
    options = FinetuneOptions("in stripes style", base=base, steps=steps, **{**JOB, **options})
    return client.submit(
        [image], options, captions={image.name: "a grid"}, store=service.store, app=service.app
    )


def _wait(service, job_id, timeout=JOB_TIMEOUT):
    try:
        return client.wait(job_id, timeout=timeout, poll=0.2, store=service.store)
    except client.WaitTimeoutError:
        logs = "\n".join(w.output()[-3000:] for w in service.workers)
        pytest.fail(f"{job_id} did not end: {jobs.get(service.store, job_id)}\n{logs}")


def _log_steps(service, job_id):
    path = service.store.job_dir(job_id) / "train_log.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_a_finetune_job_succeeds_with_an_adapter(queue_service, trained):
    from adapters.files import read_adapter_file

    done, ran_on = trained
    job = done
    assert done.status == "succeeded", done.error
    assert (done.attempts, done.worker, done.error) == (1, ran_on, None)
    assert done.device == "cpu:cpu (float32)"  # what computed it: auto is float32 on a CPU
    assert done.progress["step"] == done.progress["total"] == 4
    assert done.progress["eta_seconds"] == 0 and done.progress["loss"] > 0
    assert done.started and done.finished and done.finished >= done.started
    assert done.artifacts["adapter"] == f"jobs/{job.id}/adapter.safetensors"
    adapter = read_adapter_file(queue_service.store.fetch(done.artifacts["adapter"]))
    assert adapter.spec.kind == "r1"
    assert adapter.metadata["descriptor"] == "in stripes style"
    assert adapter.metadata["source_images"][0]["name"] == "stripes.png"
    assert _log_steps(queue_service, job.id) == [1, 2, 3, 4]


def test_a_generate_job_makes_images_in_the_adapters_style(queue_service, trained):
    from PIL import Image

    source, _ = trained
    job = client.submit_generate(
        source.id, ["a house", "a dog"], num_images=2, seed=3,
        store=queue_service.store, app=queue_service.app,
    )  # fmt: skip
    assert job.parent == source.id and job.inputs["adapter"] == source.artifacts["adapter"]
    done = _wait(queue_service, job.id)
    assert done.status == "succeeded", done.error
    assert done.progress == {**done.progress, "done": 4, "total": 4}
    names = sorted(name for name in done.artifacts if name.startswith("image-"))
    assert names == ["image-000", "image-001", "image-002", "image-003"]
    with Image.open(queue_service.store.fetch(done.artifacts["image-000"])) as image:
        assert image.size[0] == image.size[1] > 0
    assert queue_service.store.exists(done.artifacts["grid"])


def test_cancel_checkpoints_a_running_job_and_ends_a_queued_one(
    queue_service, worker, style_image, tiny_zoo, wait_for
):
    store = queue_service.store
    running = _submit(queue_service, style_image, tiny_zoo, steps=5000, checkpoint_every=5)
    wait_for(
        lambda: jobs.get(store, running.id).progress.get("step", 0) >= 2,
        JOB_TIMEOUT, "the long job to train a few steps",
    )  # fmt: skip
    queued = _submit(queue_service, style_image, tiny_zoo, steps=3)  # the worker is busy
    assert client.cancel(queued.id, store=store, app=queue_service.app).status == "cancelled"
    assert client.cancel(running.id, store=store, app=queue_service.app).status == "running"
    done = _wait(queue_service, running.id, timeout=120)
    assert done.status == "cancelled" and "Cancelled by request" in done.error
    step = done.progress["step"]
    assert 2 <= step < 5000 and done.progress["checkpoint_step"] == step
    assert store.checkpoint_step(running.id) == step  # resumable from where it stopped
    assert "adapter" not in done.artifacts
    # The cancelled queued job's message is dropped or skipped, never trained.
    wait_for(lambda: queue_service.queue_length() == 0, 60, "the queue to drain")
    skipped = jobs.get(store, queued.id)
    assert (skipped.status, skipped.attempts, skipped.started) == ("cancelled", 0, None)


# A 200-step job, a worker killed mid-job and a second worker (35 s on 2 cores): CI's
# second step, with the other faults of tests/worker/test_faults_e2e.py.
@pytest.mark.e2e
def test_a_killed_workers_job_is_redelivered_and_resumes(
    queue_service, worker, style_image, tiny_zoo, wait_for
):
    store = queue_service.store
    steps, every = 200, 10
    job = _submit(queue_service, style_image, tiny_zoo, steps=steps, checkpoint_every=every)
    wait_for(lambda: store.checkpoint_step(job.id) >= every, JOB_TIMEOUT,
             "the first checkpoint", poll=0.05)  # fmt: skip
    worker.kill()
    killed_at = store.checkpoint_step(job.id)
    lost = jobs.get(store, job.id)
    assert (lost.status, lost.attempts, lost.worker) == ("running", 1, worker.name)
    assert lost.progress["step"] < steps, "the job ended before the worker was killed"
    second = _live_worker(queue_service)
    done = _wait(queue_service, job.id)
    assert done.status == "succeeded", done.error
    assert (done.attempts, done.worker) == (2, second.name)
    assert done.progress["step"] == steps and done.progress["resumed_from"] == killed_at
    logged = _log_steps(queue_service, job.id)
    assert logged[-1] == steps
    # The first attempt may have logged a few steps past its checkpoint before the kill;
    # the second attempt's first step is the last time killed_at + 1 appears.
    resumed = len(logged) - 1 - logged[::-1].index(killed_at + 1)
    assert logged[resumed:] == list(range(killed_at + 1, steps + 1))
    assert logged[:killed_at] == list(range(1, killed_at + 1))
    assert "adapter" in done.artifacts
