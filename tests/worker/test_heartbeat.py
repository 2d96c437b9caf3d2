"""A running job's heartbeat decides whether a second worker waits or takes it over."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from worker import heartbeat, jobs
from worker.claim import claim
from worker.store import Store


def _running(store: Store, worker: str, beat_age: float) -> jobs.Job:
    job = jobs.create(store, "finetune", {"steps": 1})
    beat = (datetime.now(UTC) - timedelta(seconds=beat_age)).isoformat()
    return jobs.update(store, job.id, status="running", worker=worker, heartbeat=beat, attempts=1)


def test_only_a_fresh_heartbeat_of_another_worker_counts_as_alive(tmp_path, monkeypatch):
    monkeypatch.setenv(heartbeat.HEARTBEAT_ENV, "10")
    store = Store(tmp_path)
    fresh, stale = _running(store, "a", beat_age=5), _running(store, "a", beat_age=31)
    assert heartbeat.alive_elsewhere(fresh, "b")
    assert not heartbeat.alive_elsewhere(fresh, "a")  # the same worker, restarted
    assert not heartbeat.alive_elsewhere(stale, "b")  # 3 beats missed: that worker is gone
    assert heartbeat.age_seconds(jobs.Job(id="x", kind="finetune")) == float("inf")


def test_claim_waits_for_a_live_run_elsewhere_then_finds_it_ended(tmp_path, monkeypatch):
    monkeypatch.setenv(heartbeat.HEARTBEAT_ENV, "0.2")
    store = Store(tmp_path)
    job = _running(store, "a", beat_age=0)
    timer = threading.Timer(0.5, lambda: jobs.update(store, job.id, status="succeeded"))
    timer.start()
    started = time.monotonic()
    assert claim(store, job.id, "b") is None  # it waited, then had nothing to do
    assert time.monotonic() - started >= 0.4
    assert jobs.get(store, job.id).attempts == 1


def test_claim_takes_over_a_job_whose_worker_went_quiet(tmp_path, monkeypatch):
    monkeypatch.setenv(heartbeat.HEARTBEAT_ENV, "0.2")
    store = Store(tmp_path)
    job = _running(store, "a", beat_age=5)
    taken = claim(store, job.id, "b")
    assert taken is not None and taken.worker == "b" and taken.attempts == 2
    time.sleep(0.5)  # b's heartbeat thread refreshes the record
    assert heartbeat.age_seconds(jobs.get(store, job.id)) < 0.45
    jobs.update(store, job.id, status="succeeded")  # the thread stops at its next beat
