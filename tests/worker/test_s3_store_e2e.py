"""Many machines for real: workers with separate caches on one `s3://` store (`e2e`).

The store is served by moto's S3 server: a separate HTTP server process on loopback that
speaks the S3 protocol, reached through s3fs as a real bucket would be. Each worker has a
cache folder of its own, as on separate machines, and the client another. A job
submitted by the client runs on a worker and its adapter is read back by the client; then
50 tiny jobs on 2 workers each run exactly once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from worker import client, jobs
from worker.finetune_spec import FinetuneOptions
from worker.local_redis import free_port
from worker.store import Store

pytestmark = pytest.mark.e2e
LOAD_JOBS = 50


@pytest.fixture
def s3_endpoint(tmp_path, monkeypatch, wait_for):
    """moto's S3 server on a free loopback port, with a bucket; the AWS env points at it."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    port = free_port()
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in (
        ("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1"),
    ):  # fmt: skip
        monkeypatch.setenv(name, value)

    def bucket_made() -> bool:
        import s3fs

        try:
            s3fs.S3FileSystem(skip_instance_cache=True).mkdir("styledrop-test")
        except Exception:
            return server.poll() is not None  # fails the wait below if the server died
        return True

    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # an instance made for an earlier endpoint
    wait_for(bucket_made, 60, "moto's S3 server")
    assert server.poll() is None, (tmp_path / "moto.log").read_text()
    yield "s3://styledrop-test/store"
    server.terminate()
    server.wait(10)


def _s3_service(service, url, tmp_path):
    """Points the service's client and workers at the S3 store, each with its own cache."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        service.env[name] = os.environ[name]
    service.env["AWS_DEFAULT_REGION"] = "us-east-1"
    service.env["STYLEDROP_STORE"] = url
    service.store = Store(url, cache_dir=tmp_path / "client-cache")
    return service


def _start(service, name, tmp_path):
    service.env["STYLEDROP_CACHE"] = str(tmp_path / f"cache-{name}")
    worker = service.start_worker(name, queues="training", warm_up=False)
    return worker


def test_a_job_submitted_here_runs_on_another_machine_and_comes_back(
    service, s3_endpoint, style_image, tiny_zoo, tmp_path
):
    service = _s3_service(service, s3_endpoint, tmp_path)
    worker = _start(service, "remote", tmp_path).wait_ready()
    options = FinetuneOptions(
        "in stripes style", base=tiny_zoo, steps=4, batch_size=2, variants_per_image=2,
        checkpoint_every=2,
    )  # fmt: skip
    job = client.submit([style_image], options, store=service.store, app=service.app)
    done = service.wait_job(job.id)
    assert done.status == "succeeded", done.error
    assert done.worker == worker.name
    adapter = service.store.fetch(done.artifacts["adapter"])  # downloaded to the client
    assert adapter.stat().st_size > 0 and adapter.is_relative_to(tmp_path / "client-cache")
    assert (tmp_path / "cache-remote" / "jobs" / job.id / "adapter.safetensors").is_file()
    assert service.store.checkpoint_step(job.id) == 4


def test_fifty_jobs_on_two_workers_each_run_once(
    service, s3_endpoint, style_image, tiny_zoo, tmp_path, record_property
):
    service = _s3_service(service, s3_endpoint, tmp_path)
    workers = [_start(service, name, tmp_path) for name in ("a", "b")]
    for worker in workers:
        worker.wait_ready()
    options = FinetuneOptions(
        "in stripes style", base=tiny_zoo, steps=1, batch_size=1, variants_per_image=1
    )
    began = time.monotonic()
    submitted = [
        client.submit([style_image], options, store=service.store, app=service.app)
        for _ in range(LOAD_JOBS)
    ]
    done = [service.wait_job(job.id, timeout=1200) for job in submitted]
    elapsed = time.monotonic() - began
    names = {worker.name for worker in workers}
    assert all(record.status == "succeeded" for record in done), [r.error for r in done]
    assert all(record.attempts == 1 and record.worker in names for record in done)
    for record in done:  # each ran once: exactly one worker started it, once
        starts = sum(w.output().count(f"Job {record.id}: attempt") for w in workers)
        assert starts == 1, record.id
    assert {record.worker for record in done} == names
    assert service.queue_length("training") == 0
    assert len(jobs.list_jobs(service.store)) == LOAD_JOBS
    record_property("seconds_for_50_jobs", round(elapsed, 1))
    print(f"{LOAD_JOBS} jobs on 2 workers over S3: {elapsed:.1f} s")
    for name in ("a", "b", "remote"):
        shutil.rmtree(tmp_path / f"cache-{name}", ignore_errors=True)
