"""`styledrop serve`: the whole service on one machine (Redis, a worker, the web app).

Without `$STYLEDROP_BROKER_URL` (or `--broker`) it starts a private Redis on loopback
with a generated password and an append-only file (queued jobs survive a restart), then
`--workers` worker processes and the Streamlit app, and stops them in reverse order on
Ctrl-C or SIGTERM. The broker's password is never printed: the started Redis's URL is in
a file readable by this user only, and the printed hint reads it from there. Serving the
app beyond loopback needs `--password-file` (a shared secret, `ui.access`).

A job still running at Ctrl-C is put back on the queue by its worker's shutdown and
resumes from its last checkpoint at the next start.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cli.errors import UserError


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "serve",
        help="Run Redis (if none is set), a worker and the web app on this machine.",
        description=(
            "Starts the StyleDrop service: a private Redis on 127.0.0.1 with a generated"
            " password unless $STYLEDROP_BROKER_URL or --broker names one, worker"
            " processes on it, and the Streamlit app. Ctrl-C stops all of them."
        ),
    )
    parser.add_argument("--port", type=int, default=8501, help="web app port (default 8501)")
    parser.add_argument(
        "--address", default="127.0.0.1",
        help="web app address (default 127.0.0.1; any other needs --password-file)",
    )  # fmt: skip
    parser.add_argument(
        "--password-file", type=Path,
        help="file (mode 600) holding the secret every app session must give; required to"
        " serve beyond loopback (default: $STYLEDROP_APP_PASSWORD_FILE)",
    )  # fmt: skip
    parser.add_argument("--broker", help="an existing Redis URL (default: start one)")
    parser.add_argument("--store", help="store folder or fsspec URL (sets $STYLEDROP_STORE)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (0: none)")
    parser.add_argument(
        "--queues", default="training,generation",
        help="queues the workers take jobs from",
    )  # fmt: skip
    parser.add_argument(
        "--redis-dir", type=Path,
        help="data folder of the started Redis (default: STORE/.redis for a local store)",
    )  # fmt: skip
    parser.add_argument("--redis-port", type=int, help="port of the started Redis")
    parser.set_defaults(run=run)


def _wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(f"The web app exited with code {process.returncode} at start-up.")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise UserError(f"The web app did not open port {port} within {timeout:g} s.")


class _StopRequestedError(Exception):
    """Raised by the SIGTERM handler to leave the wait loop."""


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _password_file(args) -> Path | None:
    """The app's password file (checked), or None; refuses a network address without one."""
    from ui.access import PASSWORD_FILE_ENV, read_secret

    path = args.password_file or os.environ.get(PASSWORD_FILE_ENV)
    if path is None:
        if not _is_loopback(args.address):
            raise UserError(
                f"--address {args.address} serves the app to the network, and anyone who"
                " reaches it can run jobs on the workers. Give a shared secret: put it in a"
                " file, `chmod 600` it, and pass --password-file FILE."
            )
        return None
    try:
        read_secret(path)
    except ValueError as error:
        raise UserError(str(error)) from None
    return Path(path).expanduser().resolve()


def _join_hint(service) -> str:
    """How workers join, without the broker's password (it is in a 0600 file, or the env)."""
    if service.redis is None:
        return "Workers join with the same STYLEDROP_BROKER_URL and --store."
    url_file = service.redis.folder / "broker-url"
    url_file.touch(mode=0o600)
    url_file.chmod(0o600)
    url_file.write_text(service.broker + "\n")
    return (
        "Workers on this machine join with:"
        f' STYLEDROP_BROKER_URL="$(cat {url_file})" styledrop worker --store {service.store}'
    )


def run(args) -> int:
    """Starts the processes, waits for Ctrl-C or for one of them to die, stops them all."""
    import ui
    from styledrop.inputs import MAX_BYTES
    from ui.access import PASSWORD_FILE_ENV
    from worker.local_redis import LocalRedisError
    from worker.local_service import LocalService
    from worker.processes import stop_process

    if args.workers < 0:
        raise UserError("--workers takes 0 or more.")
    password_file = _password_file(args)
    service = LocalService(
        store=args.store, broker=args.broker, workers=args.workers, queues=args.queues,
        redis_dir=args.redis_dir, redis_port=args.redis_port, name="serve",
    )  # fmt: skip
    app_process = None

    def on_term(_signum, _frame):
        raise _StopRequestedError

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            service.start()
        except LocalRedisError as error:
            raise UserError(str(error)) from None
        if service.redis is not None:
            print(f"Redis on 127.0.0.1:{service.redis.port} (data in {service.redis.folder})")
        app_file = Path(ui.__file__).resolve().parent / "app.py"
        app_env = dict(service.env)
        if password_file is not None:
            app_env[PASSWORD_FILE_ENV] = str(password_file)
        app_process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(app_file),
             "--server.address", args.address, "--server.port", str(args.port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none", "--server.maxUploadSize", str(MAX_BYTES // 2**20),
             "--client.toolbarMode", "minimal"],
            env=app_env, start_new_session=True,
        )  # fmt: skip
        probe = "127.0.0.1" if args.address in ("0.0.0.0", "::") else args.address
        _wait_for_port(probe, args.port, app_process, timeout=120)
        print(f"StyleDrop is at http://{probe}:{args.port}  (Ctrl-C stops it)", flush=True)
        print(_join_hint(service), flush=True)
        while True:
            dead = app_process if app_process.poll() is not None else service.dead_worker()
            if dead is not None:
                print(
                    f"error: a service process ({' '.join(dead.args[2:5])}) exited with code"
                    f" {dead.returncode}; stopping the others.",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.5)
    except (KeyboardInterrupt, _StopRequestedError):
        print("Stopping: web app, workers, Redis.", flush=True)
        return 0
    finally:
        # Stopping takes seconds; a second Ctrl-C must not leave processes behind.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        if app_process is not None:
            stop_process(app_process, signal.SIGTERM)
        service.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
