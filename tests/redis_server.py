"""The test run's redis-server: one per test process, a fresh database per test."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from worker.local_redis import LocalRedis, free_port

DATABASES = 64


class RedisServer(LocalRedis):
    """The service's own `LocalRedis` on a free port, with 64 databases (one per test).

    Without persistence by default; `persistent=True` keeps the append-only file, so the
    server `restart` starts on the same port and folder has the data of the one it stopped
    (SIGTERM makes redis write its data out before exiting).
    """

    def __init__(self, folder: Path, persistent: bool = False):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (make system-packages installs it)")
        super().__init__(folder, port=free_port(), persistent=persistent, databases=DATABASES)
        self._databases = itertools.count(1)  # 0 stays unused: redis-cli's default
        self.start()

    def new_database(self) -> int:
        """A database number no other test of this server has had."""
        number = next(self._databases)
        if number >= DATABASES:
            raise RuntimeError(f"All {DATABASES} databases are taken; raise DATABASES.")
        return number

    def restart(self) -> int | None:
        """Stops the server and starts it again on the same port and folder.

        Returns:
            The exit code of the stopped server.
        """
        code = self.stop(grace=30)
        self.start()
        return code
