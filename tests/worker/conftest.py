"""Fixtures for the service tests: a real redis-server, real worker processes, a store.

Every process started here is killed in teardown. Each test that talks to workers gets
its own Redis database number, so workers of one test never take another test's jobs.
Waits poll with generous deadlines instead of sleeping fixed times.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.redis_server import RedisServer
from worker.processes import stop_process

VISIBILITY_TIMEOUT = 3  # seconds: a killed worker's job comes back quickly
HEARTBEAT_SECONDS = 1  # a running job's heartbeat (worker.heartbeat)
READY_TIMEOUT = 120
JOB_TIMEOUT = 600  # first jobs of a worker load the model and compile
QUEUE_SERVICE_QUEUES = "training,generation"


def wait_for(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.1):
    """Polls `condition` until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout:g} s waiting for {what}.")
        time.sleep(poll)


class Worker:
    """A `styledrop worker` process (solo pool) with its log file."""

    def __init__(self, name: str, env: dict[str, str], folder: Path, queues: str, warm_up: bool):
        self.name = f"{name}@test"
        self.log = folder / f"worker-{name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--queues", queues,
             "--hostname", self.name, "--loglevel", "INFO",
             *([] if warm_up else ["--no-warm-up"])],
            env=env, cwd=folder, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Worker:
        """Waits for Celery's 'ready.' line (the worker consumes from then on)."""

        def ready() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"worker {self.name} exited:\n{self.output()[-4000:]}")
            return " ready." in self.output()

        wait_for(ready, timeout, f"worker {self.name} to be ready", poll=0.2)
        return self

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-job without acknowledging or cleaning up."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM, grace=5.0)


class Service:
    """One isolated service: a Redis database, a store folder, workers on them."""

    def __init__(self, redis_server: RedisServer, folder: Path, xla_cache: Path):
        from worker.app import make_app
        from worker.store import Store

        self.server = redis_server
        self.db = redis_server.new_database()
        self.broker = redis_server.url(self.db)
        self.redis = redis_server.client(self.db)
        self.folder = folder
        self.store = Store(folder / "store")
        self.app = make_app(broker=self.broker, visibility=VISIBILITY_TIMEOUT)
        self.workers: list[Worker] = []
        self.env = {
            **os.environ,
            "STYLEDROP_BROKER_URL": self.broker,
            "STYLEDROP_STORE": str(self.store.root),
            "STYLEDROP_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            # A killed worker's heartbeat is stale after 3 beats: another takes over soon.
            "STYLEDROP_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "JAX_PLATFORMS": "cpu",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            # Workers of the session share compiled programs (as workers of a machine do).
            "JAX_COMPILATION_CACHE_DIR": str(xla_cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        }

    def start_worker(self, name: str, queues: str = "training", warm_up: bool = True) -> Worker:
        worker = Worker(name, self.env, self.folder, queues, warm_up)
        self.workers.append(worker)
        return worker

    def live_worker(self, queues: str = QUEUE_SERVICE_QUEUES) -> Worker:
        """The newest live worker; one is started on `queues` when there is none."""
        alive = [w for w in self.workers if w.process.poll() is None]
        if alive:
            return alive[-1]
        return self.start_worker(f"w{len(self.workers) + 1}", queues=queues)

    def wait_job(self, job_id: str, timeout: float = JOB_TIMEOUT):
        """Waits for the job to end; fails the test with the record and worker logs if not."""
        from worker import client, jobs

        try:
            return client.wait(job_id, timeout=timeout, poll=0.2, store=self.store)
        except client.WaitTimeoutError:
            logs = "\n".join(w.output()[-3000:] for w in self.workers)
            pytest.fail(f"{job_id} did not end: {jobs.get(self.store, job_id)}\n{logs}")

    def queue_length(self, queue: str = "training") -> int:
        return int(self.redis.llen(queue))

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.app.close()
        self.redis.close()


@pytest.fixture(scope="session")
def xla_cache() -> Path:
    """The test run's XLA compilation cache (tests/conftest.py), shared with the workers."""
    return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])


@pytest.fixture
def service(redis_server, tmp_path, xla_cache) -> Iterator[Service]:
    """A fresh Redis database and store; workers started on it are killed afterwards."""
    svc = Service(redis_server, tmp_path, xla_cache)
    yield svc
    svc.close()


def _own_broker(tmp_path: Path, xla_cache: Path, persistent: bool) -> Iterator[Service]:
    """A service on a redis-server of its own (its `server` can be restarted)."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder, persistent=persistent)
    svc = Service(server, tmp_path, xla_cache)
    yield svc
    svc.close()
    server.stop()


@pytest.fixture
def persistent_service(tmp_path, xla_cache) -> Iterator[Service]:
    """Like `service`, on a redis-server of its own with the append-only file on.

    `persistent_service.server.restart()` restarts the broker; queued messages survive.
    """
    yield from _own_broker(tmp_path, xla_cache, persistent=True)


@pytest.fixture
def volatile_service(tmp_path, xla_cache) -> Iterator[Service]:
    """Like `persistent_service`, without persistence: a restart drops queued messages."""
    yield from _own_broker(tmp_path, xla_cache, persistent=False)


@pytest.fixture(params=["aof", "no-persistence"])
def own_broker_service(request, tmp_path, xla_cache) -> Iterator[Service]:
    """A service on a redis-server of its own, with and without the append-only file."""
    yield from _own_broker(tmp_path, xla_cache, persistent=request.param == "aof")


@pytest.fixture(scope="session")
def queue_service(redis_server, tmp_path_factory, xla_cache) -> Iterator[Service]:
    """Like `service`, shared by the end-to-end tests, with a first worker started at once.

    Session-scoped so that, requested before `tiny_zoo`, the worker warms up (imports JAX)
    while the tiny zoo is being built.
    """
    svc = Service(redis_server, tmp_path_factory.mktemp("service"), xla_cache)
    svc.start_worker("w1", queues=QUEUE_SERVICE_QUEUES)
    yield svc
    svc.close()


def write_style_image(path: Path, seed: int = 0, size: int = 48) -> Path:
    """A small striped PNG (a style image the tiny models can train on)."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[:, ::4] = rng.integers(0, 255, 3)
    pixels[::4, :] = rng.integers(0, 255, 3)
    pixels[size // 2 :, size // 2 :] = rng.integers(0, 255, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    """The `wait_for` helper, for test modules (conftest is not importable by name)."""
    return wait_for


@pytest.fixture(scope="session")
def style_image(tmp_path_factory) -> Path:
    return write_style_image(tmp_path_factory.mktemp("uploads") / "stripes.png")


@pytest.fixture(scope="session")
def subject_image(tmp_path_factory) -> Path:
    """Another small image (other colours), for a second adapter."""
    return write_style_image(tmp_path_factory.mktemp("subjects") / "pattern.png", seed=1)
