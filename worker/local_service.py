"""The queue on one machine: a broker (started when none is given) and worker processes.

`LocalService` is what `styledrop serve` and `styledrop demo` start: with no broker URL it
starts a private Redis (`worker.local_redis`), then `styledrop worker` processes on it,
each in its own session so a Ctrl-C reaches only the program that started them, which
stops them in order: workers first (Celery's cold shutdown: a running job goes back on
the queue and resumes from its checkpoint), then Redis.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

from worker.app import BROKER_ENV
from worker.local_redis import LocalRedis
from worker.processes import stop_process
from worker.store import DEFAULT_STORE, STORE_ENV
from worker.torch_threads import with_core_share


def store_root(store: str | None) -> str:
    """The store in effect (`store`, `$STYLEDROP_STORE` or the default); local ones absolute."""
    root = store or os.environ.get(STORE_ENV) or DEFAULT_STORE
    return root if "://" in root else str(Path(root).expanduser().resolve())


class LocalService:
    """A broker and workers for the lifetime of a `with` block.

    Args:
        store: Store folder or fsspec URL (default: `$STYLEDROP_STORE`, else `runs/store`).
        broker: An existing Redis URL (default: `$STYLEDROP_BROKER_URL`, else start one).
        workers: Worker processes to start.
        queues: Comma-separated queues the workers take jobs from.
        redis_dir: Data folder of a started Redis (default: STORE/.redis for a local store).
        redis_port: Port of a started Redis (default: 6379 when free).
        worker_output: Where the workers' output goes (None: this process's).
        name: Worker node names are `<name>-<index>@<host>`.
    """

    def __init__(
        self,
        *,
        store: str | None = None,
        broker: str | None = None,
        workers: int = 1,
        queues: str = "training,generation",
        redis_dir: str | Path | None = None,
        redis_port: int | None = None,
        worker_output: IO | None = None,
        name: str = "local",
    ):
        if workers < 0:
            raise ValueError("The number of workers must be 0 or more.")
        self.store = store_root(store)
        self.broker = broker or os.environ.get(BROKER_ENV)
        self.worker_count, self.queues, self.name = workers, queues, name
        if redis_dir is None:
            local = "://" not in self.store
            redis_dir = (
                Path(self.store) / ".redis" if local else Path.home() / ".cache/styledrop/redis"
            )
        self.redis_dir, self.redis_port = Path(redis_dir), redis_port
        self.worker_output = worker_output
        self.redis: LocalRedis | None = None
        self.workers: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        """The environment of processes that use this service (store and broker set)."""
        env = {**os.environ, STORE_ENV: self.store}
        if self.broker:
            env[BROKER_ENV] = self.broker
        return env

    @property
    def worker_env(self) -> dict[str, str]:
        """The workers' environment: `env`, with each worker's share of the cores for torch.

        Several workers scoring with CLIP would otherwise wait for each other's threads
        (`worker.torch_threads`).
        """
        return with_core_share(self.env, self.worker_count)

    def start(self) -> LocalService:
        """Starts Redis (when no broker is given) and the workers.

        Raises:
            LocalRedisError: Redis is not installed or did not start.
        """
        if self.broker is None:
            self.redis = LocalRedis(self.redis_dir, port=self.redis_port).start()
            self.broker = self.redis.url()
        host = socket.gethostname()
        for index in range(self.worker_count):
            command = [sys.executable, "-m", "cli", "worker", "--queues", self.queues,
                       "--hostname", f"{self.name}-{index}@{host}"]  # fmt: skip
            output = self.worker_output
            errors = subprocess.STDOUT if output is not None else None
            process = subprocess.Popen(
                command,
                env=self.worker_env,
                start_new_session=True,
                stdout=output,
                stderr=errors,
            )
            self.workers.append(process)
        return self

    def dead_worker(self) -> subprocess.Popen | None:
        """A worker process that has exited, if any."""
        return next((w for w in self.workers if w.poll() is not None), None)

    def stop(self) -> None:
        """Stops the workers (cold shutdown), then the Redis this service started."""
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT)
        for process in self.workers:
            stop_process(process, signal.SIGQUIT)
        self.workers = []
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def __enter__(self) -> LocalService:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
