"""Stopping child processes: a signal first, a kill when they do not exit in time."""

from __future__ import annotations

import subprocess

STOP_GRACE = 20.0  # seconds a process gets to stop before it is killed


def stop_process(process: subprocess.Popen, first: int, grace: float = STOP_GRACE) -> None:
    """Sends `first` (a signal), waits up to `grace` seconds, then kills.

    A process that has already exited is left as it is.
    """
    if process.poll() is not None:
        return
    process.send_signal(first)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
