"""A private Redis broker for one machine: what `styledrop serve` starts when none is set.

The server listens on loopback only, requires a freshly generated password, and keeps an
append-only file in its data folder, so jobs still queued when it stops are there again
when it starts next (on the same folder). `LocalRedis.start()` waits until it answers;
`stop()` asks it to save and exit (SIGTERM), killing it only if it does not.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from worker.processes import stop_process

READY_TIMEOUT = 30.0  # seconds for a new server to answer PING


class LocalRedisError(RuntimeError):
    """redis-server is missing, or exited or did not answer when started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class LocalRedis:
    """One redis-server process on 127.0.0.1 with a generated password.

    Args:
        folder: Its data folder (append-only file, log, `redis.conf`); created if missing.
        port: TCP port (None: 6379 when free, else any free port).
        password: The password clients must give (None: a new random one).
        persistent: Keep the append-only file, so queued jobs survive a restart.
        databases: How many numbered databases the server offers.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        folder: str | Path,
        port: int | None = None,
        password: str | None = None,
        *,
        persistent: bool = True,
        databases: int = 16,
    ):
        self.folder = Path(folder).expanduser().resolve()
        if port is None:
            port = 6379 if _port_is_free(self.host, 6379) else free_port(self.host)
        self.port = port
        self.password = password or secrets.token_urlsafe(24)
        self.persistent = persistent
        self.databases = databases
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.folder / "redis.log"

    def url(self, db: int = 0) -> str:
        """The broker URL (with the password) of database `db`."""
        return f"redis://:{self.password}@{self.host}:{self.port}/{db}"

    def _write_config(self) -> Path:
        # The password goes into a config file readable by this user only, not onto the
        # command line, where every user of the machine could read it (ps).
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "redis.conf"
        lines = [
            f"bind {self.host}",
            "protected-mode yes",
            f"port {self.port}",
            f'requirepass "{self.password}"',
            f'dir "{self.folder}"',
            f"appendonly {'yes' if self.persistent else 'no'}",
            f"databases {self.databases}",
            'save ""',
            f'logfile "{self.log_path}"',
        ]
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self, timeout: float = READY_TIMEOUT) -> LocalRedis:
        """Starts the server and waits until it answers.

        Raises:
            LocalRedisError: redis-server is not installed, exited, or did not answer.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise LocalRedisError(
                "redis-server is not installed: run `make system-packages` (Debian package"
                " redis-server), or set STYLEDROP_BROKER_URL to a Redis you already run."
            )
        config = self._write_config()
        self.process = subprocess.Popen(
            [binary, str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches `serve`, which stops it in order
        )  # fmt: skip
        import redis

        client = redis.Redis(
            host=self.host, port=self.port, password=self.password, socket_connect_timeout=1
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise LocalRedisError(
                    f"redis-server exited with code {self.process.returncode}; its log:"
                    f" {self.log_path} (is port {self.port} taken?)"
                )
            try:
                if client.ping():
                    return self
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise LocalRedisError(f"redis-server did not answer within {timeout:g} s.")
            time.sleep(0.1)

    def client(self, db: int = 0):
        """A redis-py client of database `db`."""
        import redis

        return redis.Redis(host=self.host, port=self.port, password=self.password, db=db)

    def stop(self, grace: float = 10.0) -> int | None:
        """Asks the server to save and exit; kills it after `grace` seconds.

        Returns:
            The server's exit code (None when it was not running).
        """
        process, self.process = self.process, None
        if process is None:
            return None
        stop_process(process, signal.SIGTERM, grace)
        return process.returncode
