"""What `LocalService` gives the worker processes it starts (no process is started here)."""

from __future__ import annotations

import os

from worker.local_service import LocalService


def _service(tmp_path, workers: int) -> LocalService:
    return LocalService(store=str(tmp_path), broker="redis://127.0.0.1:1/0", workers=workers)


def test_several_workers_share_the_cores_for_torch(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert _service(tmp_path, 4).worker_env["OMP_NUM_THREADS"] == "4"
    assert _service(tmp_path, 32).worker_env["OMP_NUM_THREADS"] == "1"  # never 0
    # One worker keeps torch's default (a thread per core); the rest of the env is the same.
    one = _service(tmp_path, 1)
    assert "OMP_NUM_THREADS" not in one.worker_env and one.worker_env == one.env


def test_an_operators_thread_setting_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _service(tmp_path, 4).worker_env["OMP_NUM_THREADS"] == "3"
